//! Keeps a producer truthful when its driver dies: [`Supervised`] wraps the
//! driver future, catches a panic in it, records the reason, and then
//! completes every open delivery handle with it (see [`finish`]). The
//! producer then reports [`State::Failed`](crate::State::Failed) instead of
//! looking alive.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::runtime::BoxFuture;
use super::shared::{Shared, panic_message};
use super::task::finish;

/// The driver future, with its panics turned into a failed producer.
pub(crate) struct Supervised {
    driver: Option<BoxFuture>,
    shared: Arc<Shared>,
}

impl Supervised {
    pub(crate) fn new(shared: Arc<Shared>, driver: BoxFuture) -> Self {
        Self {
            driver: Some(driver),
            shared,
        }
    }
}

impl Future for Supervised {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(driver) = self.driver.as_mut() else {
            return Poll::Ready(());
        };
        match catch_unwind(AssertUnwindSafe(|| driver.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                self.driver = None;
                Poll::Ready(())
            }
            Err(panic) => {
                let reason = format!("the driver panicked: {}", panic_message(&*panic));
                tracing::error!(%reason, "producer failed");
                self.shared.lock().failure.get_or_insert(reason);
                self.driver = None;
                finish(&self.shared);
                Poll::Ready(())
            }
        }
    }
}
