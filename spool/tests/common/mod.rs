//! Test helpers: in-process brokers (the test kit's scripted transport),
//! and spool configs in temporary directories.

#![expect(
    unreachable_pub,
    reason = "helpers shared by test binaries are `pub` in a private module"
)]
#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::path::Path;
use std::time::Duration;

use robust_producer::{Config, Record, TransportError};
use robust_producer_mock::{ConnectReply, ScriptedTransport, SendReply};
use robust_producer_spool::{FsyncPolicy, SpoolConfig};

/// An in-process broker that connects, stores payloads and acknowledges
/// them at once (or holds the acknowledgements: `set_send(SendReply::Hold)`).
pub fn broker_up() -> ScriptedTransport {
    ScriptedTransport::new()
}

/// An in-process broker that refuses connects and records.
pub fn broker_down() -> ScriptedTransport {
    let broker = ScriptedTransport::new();
    broker.set_connect(ConnectReply::Refuse("broker down".into()));
    broker.set_send(SendReply::Refuse(TransportError::link("broker down")));
    broker
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
