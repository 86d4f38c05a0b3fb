//! # robust-producer-tests
//!
//! The harness of the integration suite that proves robust-producer against
//! a real Apache Kafka broker in a container (see `tests/real_kafka.rs`):
//!
//! * [`kafka`]: the broker, started by testcontainers on a fixed host port
//!   behind a [`proxy::Proxy`]; stop, kill, restart, pause, unpause.
//! * [`cluster`]: a KRaft cluster of three brokers and three dedicated
//!   controllers on its own Docker network, each broker behind its own
//!   proxy; kill, stop, start, pause, isolate any node from its peers, cut
//!   the client's path, elect preferred leaders, watch leadership move.
//! * [`proxy`]: a TCP proxy with pass / blackhole / reset modes for
//!   controllable partitions.
//! * The read-back (an independent rdkafka consumer that reads the topic
//!   back and checks every event id and the per-key order) is
//!   [`robust_producer_rdkafka::readback`], shared with the mock-cluster
//!   tests.
//! * [`load`]: services sending a steady keyed stream, recording what was
//!   accepted, acknowledged (when, on which partition) and dead-lettered.
//! * [`audit`]: the cluster scenarios' checker: lost, duplicates, reordered,
//!   the accounting identity, and resume times.
//! * [`scenario`]: one cluster scenario in progress, audited at its end.
//! * [`secure`]: a broker with TLS, SASL_SSL (SCRAM) and ACLs, and the
//!   certificates it was given, made at run time.
//! * [`prereq`]: what the suite needs, and the clear failure (never a
//!   silent skip in CI) when it is missing.
//!
//! The image is built by `tests/kafka-image/prepare.sh`; `KAFKA_IMAGE`
//! names another image built the same way.

#![forbid(unsafe_code)]

pub mod audit;
pub mod cluster;
pub mod kafka;
pub mod load;
pub mod prereq;
pub mod proxy;
pub mod scenario;
pub mod secure;
pub mod single;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
