//! The runtime-agnostic async layer over [`Machine`](crate::Machine): the
//! [`Producer`] handle, its driver task, delivery handles, the event
//! envelope, and the [`Runtime`] trait with, behind the `tokio` feature, its
//! tokio implementation.

mod delivery;
mod envelope;
mod monitor;
mod outcome;
mod producer;
mod runtime;
mod shared;
mod spooling;
mod supervise;
mod task;
mod transitions;

pub use delivery::DeliveryHandle;
pub use envelope::{
    ENVELOPE_VERSION, EVENT_ID_HEADER, EVENT_TYPE_HEADER, EventEnvelope, PRODUCER_HEADER,
};
pub use outcome::{DeadLetter, DeadLetterReason, DeliveryError};
pub use producer::{DEFAULT_DROP_GRACE, FlushError, Producer, ProducerBuilder, SendEventError};
#[cfg(feature = "tokio")]
pub use runtime::TokioRuntime;
pub use runtime::{BoxFuture, Runtime};
pub use transitions::{StateWatch, Transition, Transitions};
