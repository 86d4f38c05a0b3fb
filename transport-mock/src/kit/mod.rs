//! The test kit: a [`ManualRuntime`](crate::ManualRuntime) whose clock the
//! test moves, [`CountYields`](crate::CountYields) around any runtime, and
//! a [`ScriptedTransport`](crate::ScriptedTransport) whose answers the test
//! chooses. Use them where the simulated broker ([`MockBroker`](crate::MockBroker))
//! is more than a test needs, or less exact.

mod runtime;
mod scripted;

pub use runtime::{CountYields, ManualRuntime};
pub use scripted::{ConnectReply, ScriptedTransport, SendReply};
