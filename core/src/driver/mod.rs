//! The runtime-agnostic async layer over [`Machine`](crate::Machine): the
//! [`Runtime`] trait and, behind the `tokio` feature, its tokio
//! implementation.

mod runtime;

#[cfg(feature = "tokio")]
pub use runtime::TokioRuntime;
pub use runtime::{BoxFuture, Runtime};
