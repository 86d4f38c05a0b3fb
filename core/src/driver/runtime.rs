//! The little the driver needs from an async runtime: a clock, a timer, a
//! way to spawn a task and a fair way to yield. Implement [`Runtime`] for any
//! executor; tokio's implementation is [`TokioRuntime`](crate::TokioRuntime)
//! (feature `tokio`).

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Instant;

/// A boxed, sendable future, as runtimes take and give them.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Clock, timer and spawner of an async runtime.
///
/// `now` must be the clock the timers follow: a runtime with virtual time
/// (tokio's paused clock, a test clock) returns virtual instants.
pub trait Runtime: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;

    /// A future that completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: Instant) -> BoxFuture;

    /// Runs `task` in the background until it completes.
    fn spawn(&self, task: BoxFuture);

    /// Called by a task that still has work but gives its executor a turn:
    /// arranges for the task (whose context is `cx`) to be polled again
    /// after the executor has run its other tasks and its timers. The
    /// default wakes the task at once, which is fair on executors that
    /// queue a self-woken task behind the others; override it where that
    /// would starve timers (tokio's current-thread scheduler).
    fn yield_soon(&self, cx: &mut Context<'_>) {
        cx.waker().wake_by_ref();
    }
}

#[cfg(feature = "tokio")]
mod tokio_runtime {
    use super::{BoxFuture, Runtime};
    use std::time::Instant;

    /// [`Runtime`] over tokio; works with tokio's paused clock in tests.
    ///
    /// Create it inside a tokio runtime: it spawns on the runtime it was
    /// created in, so `Producer` handles may be used from any thread.
    #[derive(Debug, Clone)]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub struct TokioRuntime {
        handle: tokio::runtime::Handle,
    }

    impl TokioRuntime {
        /// Captures the current tokio runtime.
        ///
        /// # Panics
        ///
        /// When called outside a tokio runtime.
        pub fn new() -> Self {
            Self {
                handle: tokio::runtime::Handle::current(),
            }
        }

        /// Uses the given tokio runtime.
        pub fn from_handle(handle: tokio::runtime::Handle) -> Self {
            Self { handle }
        }
    }

    impl Default for TokioRuntime {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Runtime for TokioRuntime {
        fn now(&self) -> Instant {
            tokio::time::Instant::now().into_std()
        }

        fn sleep_until(&self, deadline: Instant) -> BoxFuture {
            Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                deadline,
            )))
        }

        fn spawn(&self, task: BoxFuture) {
            drop(self.handle.spawn(task));
        }

        /// `tokio::task::yield_now`'s first poll: the wake-up is deferred
        /// until tokio has polled its timers and I/O, so a busy driver does
        /// not hold other tasks' timers back on a current-thread runtime.
        fn yield_soon(&self, cx: &mut std::task::Context<'_>) {
            let mut yielding = std::pin::pin!(tokio::task::yield_now());
            // Pending by design: the first poll only schedules the wake-up.
            let _ = yielding.as_mut().poll(cx);
        }
    }
}

#[cfg(feature = "tokio")]
pub use tokio_runtime::TokioRuntime;
