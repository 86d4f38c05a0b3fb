//! Metadata requests on threads of their own, never on the executor's: the
//! probe that opens each session (reported as `Connected` or
//! `ConnectFailed`), and the confirmation that every broker is down before
//! a session is given up on librdkafka's `AllBrokersDown`.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer;
use robust_producer::TransportEvent;
use tracing::{debug, info, warn};

use super::RdProducer;
use super::context::{Context, UP, generation_of, phase_of};
use crate::classify::is_misconfiguration;
use crate::config::seconds;

impl Context {
    /// librdkafka reported every broker it knows down. That is not yet an
    /// unreachable cluster: since librdkafka 2.10 a client knows only the
    /// brokers its last metadata listed (a cluster lists only live brokers,
    /// so a client that started while one broker answered knows that one
    /// until its next refresh), and with this signal librdkafka
    /// re-bootstraps from `bootstrap.servers` (`metadata.recovery.strategy`
    /// `rebootstrap`, its default). So the session is given up only if no
    /// broker answers a metadata request within the probe timeout; if one
    /// does, librdkafka carries on with its queue, in order, and nothing is
    /// resent. Runs the request on a thread of its own; one per session.
    pub(super) fn confirm_all_down(&self, reason: String) {
        let word = self.session.load(Ordering::Acquire);
        if phase_of(word) != UP {
            return;
        }
        let generation = generation_of(word);
        let mark = generation + 1;
        if self.confirming.swap(mark, Ordering::AcqRel) == mark {
            return; // this session's confirmation is under way
        }
        let Some(producer) = self.producer.get().and_then(Weak::upgrade) else {
            self.end_session_of(Some(generation), reason, true);
            return;
        };
        let timeout = self.confirm_timeout;
        let topic = self.probe_topic.clone();
        let why = reason.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("rdkafka-confirm-{generation}"))
            .spawn(move || confirm_down(&producer, generation, timeout, topic.as_deref(), why));
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start a thread to confirm that every broker is down");
            let _ = self
                .confirming
                .compare_exchange(mark, 0, Ordering::AcqRel, Ordering::Acquire);
            self.end_session_of(Some(generation), reason, true);
        }
    }
}

/// Confirms that every broker is down for session `generation` (see
/// [`Context::confirm_all_down`]): a broker answering a metadata request
/// within `timeout` keeps the session; otherwise it ends, with `reason`.
fn confirm_down(
    producer: &RdProducer,
    generation: u64,
    timeout: Duration,
    topic: Option<&str>,
    reason: String,
) {
    let ctx = producer.context();
    let outcome = producer.client().fetch_metadata(topic, timeout);
    let _ = ctx
        .confirming
        .compare_exchange(generation + 1, 0, Ordering::AcqRel, Ordering::Acquire);
    let failure = match outcome {
        Ok(md) if !md.brokers().is_empty() => {
            if ctx.generation() == generation {
                info!(
                    brokers = md.brokers().len(),
                    "kafka reachable again after every known broker went down \
                     (librdkafka re-bootstrapped); the session goes on"
                );
                ctx.forget_errors();
            }
            return;
        }
        Ok(_) => "metadata lists no brokers".to_owned(),
        Err(e) => match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::OperationTimedOut) => {
                format!("no broker answered within {}", seconds(timeout))
            }
            _ => format!("no broker answered: {e}"),
        },
    };
    ctx.end_session_of(Some(generation), format!("{reason}; {failure}"), true);
}

/// The probe: fetches metadata, then reports the session up or failed.
pub(super) fn probe(
    producer: &RdProducer,
    generation: u64,
    timeout: Duration,
    topic: Option<&str>,
) {
    let ctx = producer.context();
    let outcome = producer.client().fetch_metadata(topic, timeout);
    let failure = match outcome {
        Ok(md) if md.brokers().is_empty() => "metadata lists no brokers".to_owned(),
        Ok(md) => {
            if ctx.probe_succeeded(generation) {
                ctx.counters.connected.fetch_add(1, Ordering::Relaxed);
                info!(
                    brokers = md.brokers().len(),
                    topics = md.topics().len(),
                    "kafka session up"
                );
                ctx.push(generation, TransportEvent::Connected);
            }
            return;
        }
        Err(e) => {
            let what = match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::OperationTimedOut) => {
                    format!("metadata probe timed out after {}", seconds(timeout))
                }
                _ => format!("metadata probe failed: {e}"),
            };
            let down = if ctx.all_down.load(Ordering::Acquire) {
                "; all brokers down"
            } else {
                ""
            };
            match ctx.last_error() {
                // Credentials or certificates: the cause, named first.
                Some(last) if is_misconfiguration(&last) => format!("{last}; {what}{down}"),
                Some(last) => format!("{what}{down}; last client error: {last}"),
                None => format!("{what}{down}"),
            }
        }
    };
    if ctx.generation() == generation {
        debug!(reason = %failure, "kafka connect attempt failed");
        ctx.counters.connect_failed.fetch_add(1, Ordering::Relaxed);
        ctx.push(generation, TransportEvent::ConnectFailed(failure));
    }
}
