//! Test helpers: an in-process broker and its transport, and spool
//! configs in temporary directories.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use robust_producer::{Ack, Config, Record, RecordId, Transport, TransportError, TransportEvent};
use robust_producer_spool::{FsyncPolicy, SpoolConfig};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// What the broker stored, and how it behaves.
#[derive(Default)]
pub struct BrokerState {
    /// Connects fail while false.
    pub up: bool,
    /// Acknowledgements are held (not sent) while true.
    pub hold: bool,
    /// Payloads stored, in arrival order.
    pub log: Vec<Vec<u8>>,
    /// Held acknowledgements.
    pub held: VecDeque<RecordId>,
    events: Option<UnboundedSender<TransportEvent>>,
}

/// An in-process broker shared by a test and its transport.
#[derive(Clone, Default)]
pub struct Broker(pub Arc<Mutex<BrokerState>>);

impl Broker {
    pub fn up() -> Self {
        let b = Self::default();
        b.0.lock().unwrap().up = true;
        b
    }

    pub fn down() -> Self {
        Self::default()
    }

    pub fn transport(&self) -> TestTransport {
        let (tx, rx) = unbounded_channel();
        self.0.lock().unwrap().events = Some(tx);
        TestTransport {
            broker: self.clone(),
            rx,
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .log
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    pub fn set_hold(&self, hold: bool) {
        self.0.lock().unwrap().hold = hold;
    }

    /// Acknowledges held records, those matching `pick` first, in the order
    /// given; returns how many.
    pub fn release(&self, mut pick: impl FnMut(RecordId) -> bool) -> usize {
        let mut s = self.0.lock().unwrap();
        let held: Vec<RecordId> = s.held.drain(..).collect();
        let (now, later): (Vec<_>, Vec<_>) = held.into_iter().partition(|id| pick(*id));
        s.held.extend(later);
        if let Some(tx) = &s.events {
            for id in &now {
                let _ = tx.send(TransportEvent::Delivered(Ack::new(*id)));
            }
        }
        now.len()
    }
}

pub struct TestTransport {
    broker: Broker,
    rx: UnboundedReceiver<TransportEvent>,
}

#[async_trait]
impl Transport for TestTransport {
    fn connect(&mut self) {
        let s = self.broker.0.lock().unwrap();
        let e = if s.up {
            TransportEvent::Connected
        } else {
            TransportEvent::ConnectFailed("broker down".into())
        };
        if let Some(tx) = &s.events {
            let _ = tx.send(e);
        }
    }

    fn send(&mut self, id: RecordId, record: &Record) -> Result<(), TransportError> {
        let mut s = self.broker.0.lock().unwrap();
        if !s.up {
            return Err(TransportError::link("broker down"));
        }
        s.log.push(record.payload.to_vec());
        if s.hold {
            s.held.push_back(id);
        } else if let Some(tx) = &s.events {
            let _ = tx.send(TransportEvent::Delivered(Ack::new(id)));
        }
        Ok(())
    }

    fn try_next_event(&mut self) -> Option<TransportEvent> {
        self.rx.try_recv().ok()
    }

    async fn next_event(&mut self) -> TransportEvent {
        match self.rx.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        }
    }

    async fn close(&mut self, _timeout: Duration) {}
}

/// A spool config in `dir` with small segments.
pub fn spool_config(dir: &Path, fsync: FsyncPolicy) -> SpoolConfig {
    SpoolConfig::builder(dir)
        .segment_bytes(64 << 10)
        .max_bytes(4 << 20)
        .fsync(fsync)
        .build()
        .unwrap()
}

/// A producer config for tests: fast reconnects.
pub fn producer_config() -> robust_producer::ConfigBuilder {
    let backoff = robust_producer::BackoffConfig {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(20),
        ..Default::default()
    };
    Config::builder().backoff(backoff).seed(7)
}

/// A record whose payload is `text`, keyed.
pub fn rec(key: &str, text: &str) -> Record {
    Record::new("t", text.as_bytes().to_vec()).with_key(key.as_bytes().to_vec())
}
