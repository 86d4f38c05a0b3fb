//! Whether the service is ready for traffic: its producer has been
//! connected at least once, and the service is not shutting down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use robust_producer::{Producer, State};

/// Readiness as `/readyz` reports it (see [`routes::readyz`](super::routes::readyz)
/// for why an outage does not make the service unready).
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    connected_once: Arc<AtomicBool>,
    shutting_down: Arc<AtomicBool>,
}

impl Readiness {
    /// Follows `producer`'s transitions until it first connects. Call it
    /// inside a tokio runtime.
    pub fn follow(producer: &Producer) -> Self {
        let readiness = Self::default();
        // Subscribe first, then look: a connection made in between is seen
        // by one or the other.
        let mut transitions = producer.transitions();
        if connected(producer.state()) {
            readiness.connected_once.store(true, Ordering::Release);
            return readiness;
        }
        let flag = Arc::clone(&readiness.connected_once);
        tokio::spawn(async move {
            while let Some(transition) = transitions.next().await {
                if connected(transition.to) {
                    flag.store(true, Ordering::Release);
                    tracing::info!("producer connected: ready");
                    break;
                }
            }
        });
        readiness
    }

    /// Whether the producer has been connected at least once.
    pub fn connected_once(&self) -> bool {
        self.connected_once.load(Ordering::Acquire)
    }

    /// Marks the service as shutting down: not ready from now on.
    pub fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Ready: connected at least once, not shutting down, and the producer
    /// (now in `state`) neither closed nor failed.
    pub fn is_ready(&self, state: State) -> bool {
        self.connected_once()
            && !self.shutting_down.load(Ordering::Acquire)
            && !matches!(state, State::Closed | State::Failed)
    }
}

/// Whether `state` has a session with the cluster.
fn connected(state: State) -> bool {
    matches!(state, State::Connected | State::Draining)
}
