//! # robust-producer-rdkafka
//!
//! The [`Transport`](robust_producer::Transport) that real services use:
//! librdkafka (bundled, through rdkafka 0.39) under the
//! [`robust_producer`] core, which owns every retry, reconnect and
//! expiry decision.
//!
//! ## Configuration
//!
//! An [`RdkafkaConfig`] holds librdkafka's properties and the transport's
//! own settings; [`RdkafkaTransport::new`] validates it and creates the
//! librdkafka client without waiting for a broker, so the producer starts
//! at once, Kafka up or not.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use robust_producer::{Config, Producer, TokioRuntime};
//! use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};
//!
//! let transport = RdkafkaTransport::new(
//!     RdkafkaConfig::new("kafka-1:9092,kafka-2:9092")
//!         .set("security.protocol", "SASL_SSL") // TLS needs the `tls` feature
//!         .set("sasl.mechanisms", "PLAIN")
//!         .set("sasl.username", "svc-patient")
//!         .set("sasl.password", "never printed"),
//! )?;
//! let producer = Producer::builder(Config::builder().service_name("patient-service").build()?)
//!     .start(transport, TokioRuntime::new())?;
//! let handle = producer
//!     .send_event("patient-events", "patient.registered", &serde_json::json!({"id": 7}), Some("p-7"))
//!     .await?;
//! let ack = handle.await?; // Delivered: stored with acks=all
//! # let _ = ack; Ok(()) }
//! ```
//!
//! * **Defaults** that keep every record and its order:
//!   `enable.idempotence=true`, `acks=all`, no expiry and no retry limit in
//!   librdkafka (`message.timeout.ms=0`; a finite value is replaced and
//!   listed by [`RdkafkaConfig::overridden`]), `linger.ms=5`, fast
//!   reconnects, `socket.timeout.ms=5000`, leaders re-read every 10 s, and
//!   Kafka's Java partitioner for keys (`murmur2_random`). The table of
//!   defaults and their reasons is on [`RdkafkaConfig`].
//! * **Any other property** passes through [`RdkafkaConfig::set`]
//!   (`security.protocol`, `sasl.*`, `ssl.*`, ...). Values of secret
//!   properties ([`is_secret_property`]) never appear in `Debug`, errors or
//!   logs.
//! * **Refused** by [`RdkafkaTransport::new`], with an [`Error`] naming the
//!   property and what to do instead: a `transactional.id`; `acks` other
//!   than `all` and idempotence off, unless
//!   [`RdkafkaConfig::allow_weaker_delivery`] opts in; a bootstrap list
//!   that is empty or not `host:port`; a
//!   [`probe_timeout`](RdkafkaConfig::probe_timeout) of zero or above
//!   [`MAX_PROBE_TIMEOUT`].
//! * **Limits stated to the core**
//!   ([`Transport::limits`](robust_producer::Transport::limits)):
//!   `message.max.bytes` (a larger record is refused at `send`) and the
//!   probe timeout (a `connect_timeout` that would always expire first is
//!   refused at `start`).
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `tls` (also named `ssl`) | TLS and SASL/SCRAM, linking the system OpenSSL; without it, TLS settings are refused at [`RdkafkaTransport::new`] naming the feature |
//! | `tls-vendored` (also named `ssl-vendored`) | the same, OpenSSL built from source |
//! | `gssapi` | SASL/GSSAPI (Kerberos) through Cyrus SASL |
//! | `zstd` | zstd compression |
//! | `readback` | module `readback`: reads a topic back with an independent consumer and checks every record, order and duplicates |
//! | `metrics` | module `telemetry`: the transport's series through the [`metrics`](https://docs.rs/metrics) facade (no exporter) |
//!
//! ## Monitoring
//!
//! [`RdkafkaTransport::metrics`] returns a cloneable [`TransportMetrics`]
//! handle, readable while the producer's driver owns the transport:
//!
//! * [`TransportMetrics::snapshot`]: the transport's own counters
//!   (producers built, sessions, link losses, fatal errors, ...);
//! * [`TransportMetrics::librdkafka_statistics`]: librdkafka's latest
//!   statistics as a [`LibrdkafkaStatistics`] (its queue in records and
//!   bytes; per broker a [`BrokerStatistics`] with state, round-trip time
//!   and outstanding requests), once enabled with
//!   [`RdkafkaConfig::statistics_interval`] (off by default). The snapshot
//!   is kept across producer rebuilds; its
//!   [`age`](LibrdkafkaStatistics::age) tells how fresh it is.
//!
//! With the `metrics` feature the transport also emits, through the
//! `metrics` facade, client rebuilds by reason and, from each statistics
//! snapshot, librdkafka's queue and per-broker gauges, labelled with the
//! service (librdkafka's `client.id`: set it to the service's name). Names,
//! types, units and labels are in the table of module `telemetry`. Install the
//! exporter before creating the transport.
//!
//! ```no_run
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use robust_producer_rdkafka::{RdkafkaConfig, RdkafkaTransport};
//!
//! let transport = RdkafkaTransport::new(
//!     RdkafkaConfig::new("kafka-1:9092")
//!         .set("client.id", "patient-service") // the metrics' `service` label
//!         .statistics_interval(Duration::from_secs(15)),
//! )?;
//! let metrics = transport.metrics(); // keep it; the transport goes to the producer
//! if let Some(stats) = metrics.librdkafka_statistics() {
//!     for broker in &stats.brokers {
//!         println!("{} {} rtt {:?}", broker.name, broker.state, broker.rtt_avg);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ## How it works
//!
//! * **Delivery callbacks, not futures.** Records go to a librdkafka
//!   `BaseProducer`. Its delivery reports, which librdkafka hands over in
//!   batches, become `Delivered` (with partition and offset) or `Failed`
//!   events on a queue the driver drains in batches
//!   ([`Transport::try_next_event`](robust_producer::Transport::try_next_event)).
//!   While the driver is busy it serves the reports itself, on its own
//!   thread, as raw rdkafka code polling inline does; when it goes idle
//!   ([`Transport::idle`](robust_producer::Transport::idle)) a dedicated
//!   poll thread takes over at once and wakes it once per batch. There is
//!   no future, channel or allocation per record on the transport's side
//!   besides librdkafka's own copy.
//! * **One topic handle per topic.** Records are handed off with
//!   `rd_kafka_produceva` and a librdkafka topic handle made once per topic
//!   (the crate's only unsafe code, in `produce.rs`), not through
//!   `BaseProducer::send`, which copies the topic name and has librdkafka
//!   look it up for every record.
//! * **Sessions.** `connect` starts a session with a metadata probe on its
//!   own thread (never on the executor's), bounded by
//!   [`RdkafkaConfig::probe_timeout`], reported as `Connected` or
//!   `ConnectFailed` (with librdkafka's last error, for example
//!   "Connection refused" or an authentication failure). Every event carries
//!   its session's generation; after `connect` nothing about earlier
//!   hand-offs is reported (the contract of [`robust_producer::transport`]).
//! * **Never dropped with records inside by accident.** Dropping an rdkafka
//!   producer purges its queue, so a producer is only retired when the core
//!   has already taken its records back (a new session was started, or the
//!   transport is closed); `close` flushes first.
//! * **Rebuilt when needed.** A producer is reused across sessions only
//!   when it is intact: not fatal, never purged (with idempotence a purge
//!   leaves a sequence gap the broker would reject), nothing outstanding.
//!   Otherwise the next `connect` builds a fresh one (new producer id,
//!   fresh sequence numbers). The core then resends, in order, everything
//!   that was not acknowledged.
//!
//! ## Signals
//!
//! | librdkafka says | class | what happens |
//! |---|---|---|
//! | `MSG_SIZE_TOO_LARGE`, `MESSAGE_BATCH_TOO_LARGE`, `INVALID_MSG_SIZE`, `INVALID_RECORD`, `TOPIC_AUTHORIZATION_FAILED`, `INVALID_TOPIC`, `UNKNOWN_TOPIC_OR_PART`, `_UNKNOWN_TOPIC`, `_UNKNOWN_PARTITION`, `POLICY_VIOLATION`, `UNSUPPORTED_FOR_MESSAGE_FORMAT`, `INVALID_REQUIRED_ACKS`, `INVALID_TIMESTAMP`, `_BAD_MSG`, `_INVALID_ARG` | Permanent | dead-lettered with librdkafka's words; records behind it flow on |
//! | `_QUEUE_FULL` (from `send`) | Backpressure | the core pauses sending until `Ready` |
//! | `_FATAL`, and any error while `fatal_error()` is set; idempotence state errors (`OUT_OF_ORDER_SEQUENCE_NUMBER`, `INVALID_PRODUCER_EPOCH`, `UNKNOWN_PRODUCER_ID`, `INVALID_PRODUCER_ID_MAPPING`, `PRODUCER_FENCED`, `CLUSTER_AUTHORIZATION_FAILED`, `_INCONSISTENT`, `_GAPLESS_GUARANTEE`, `_FENCED`, `_STATE`) | Fatal | `TransportEvent::Fatal`; the next `connect` builds a new producer; the core resends in order |
//! | `_ALL_BROKERS_DOWN` (error callback) | Link, once confirmed | `TransportEvent::LinkLost` if no broker then answers a metadata request within the probe timeout; otherwise nothing (librdkafka re-bootstrapped from `bootstrap.servers` and keeps its queue, in order) |
//! | anything else on a record, for example `_PURGE_*` or errors librdkafka gives up on (`_MSG_TIMED_OUT` and retry exhaustion cannot happen: a finite `message.timeout.ms` and a retry limit are not passed to librdkafka) | Retriable, at session granularity | the session ends with `LinkLost`, so that this record **and every record handed off after it** are resent in order (see [`RdkafkaConfig`]) |
//!
//! Success reports become `Delivered(Ack { id, partition, offset })`. The
//! reasoning about `message.timeout.ms` is on [`RdkafkaConfig`].
//!
//! ## Guarantees with Kafka
//!
//! With the defaults (`enable.idempotence=true`, `acks=all`, no expiry and
//! no retry limit in librdkafka, which the transport enforces): a record is Delivered only once every in-sync
//! replica stored it; librdkafka's own retries neither duplicate nor reorder;
//! resends after a lost session can duplicate only records whose produce
//! request was on the wire when the session was abandoned, and those carry
//! the same `event_id` header; per key, the stored order, ignoring such
//! duplicates, is the send order. No outage length turns into loss.
//!
//! Settings that would weaken this (`acks` other than `all`, idempotence
//! off, a `transactional.id`) are refused by
//! [`RdkafkaTransport::new`] unless the application opts in with
//! [`RdkafkaConfig::allow_weaker_delivery`] (never for a
//! `transactional.id`); see [`RdkafkaConfig`], "Refused at
//! `RdkafkaTransport::new`". Keyed records go to the partition Kafka's Java
//! client would pick (`partitioner=murmur2_random`).
//!
//! ## Logs
//!
//! An outage (connections refused or dropped, names that do not resolve,
//! every broker down) is logged at `warn` once, then at `info` until a
//! session comes up again; `error` is kept for what needs a person:
//! authentication, TLS, authorization and configuration problems, and
//! fatal errors. A connect attempt that fails on credentials or
//! certificates names the cause first (`authentication failed: ...`,
//! `TLS handshake failed: ...`), so that `last_error` and the health
//! verdict read as a misconfiguration, not an outage; a record for a topic
//! the user may not write is dead-lettered as `not authorized ...`.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod bell;
mod classify;
mod client;
mod config;
mod error;
mod events;
mod logs;
mod metrics;
mod produce;
#[cfg(feature = "readback")]
#[cfg_attr(docsrs, doc(cfg(feature = "readback")))]
pub mod readback;
mod rebuild;
mod stall;
mod statistics;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod telemetry;
mod transport;

pub use self::metrics::{MetricsSnapshot, TransportMetrics};
pub use config::{
    DEFAULT_LINGER_MS, DEFAULT_MESSAGE_MAX_BYTES, DEFAULT_PARTITIONER, DEFAULT_PROBE_TIMEOUT,
    MAX_PROBE_TIMEOUT, MAX_STATISTICS_INTERVAL, MIN_STATISTICS_INTERVAL, RdkafkaConfig,
    is_secret_property,
};
pub use error::Error;
pub use statistics::{BROKER_STATE_UP, BrokerStatistics, LibrdkafkaStatistics};
pub use transport::RdkafkaTransport;

/// The rdkafka crate this transport is built on, for tests and tools that
/// need librdkafka directly (for example its mock cluster).
pub use rdkafka;
