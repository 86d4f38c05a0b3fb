//! Focused unit tests of the machine; the model-based properties live in
//! `tests/machine_model.rs`.

use std::time::{Duration, Instant};

use super::*;
use crate::config::{BackoffConfig, ConfigBuilder, OverflowPolicy};
use crate::event::EnqueueError;
use crate::transport::Ack;

fn config() -> ConfigBuilder {
    Config::builder()
        .max_queued_records(10)
        .max_in_flight(3)
        .connect_timeout(Duration::from_secs(1))
        .ack_timeout(Duration::from_secs(5))
        .backoff(BackoffConfig {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(1),
            jitter: 0.0,
        })
        .seed(3)
}

fn record(key: &str) -> Record {
    Record::new("topic", b"v".to_vec()).with_key(key.as_bytes().to_vec())
}

/// Runs commands, returning (connects, sent ids).
fn commands(m: &mut Machine, now: Instant) -> (usize, Vec<u64>) {
    let (mut connects, mut sent) = (0, Vec::new());
    while let Some(c) = m.poll_command(now) {
        match c {
            Command::Connect => connects += 1,
            Command::Send { id, .. } => sent.push(id.0),
            Command::Close => {}
        }
    }
    (connects, sent)
}

/// A machine whose first connect succeeded at `t0`.
fn connected(t0: Instant) -> Machine {
    let mut m = Machine::new(config().build().unwrap(), t0);
    m.handle_timeout(t0);
    let _ = commands(&mut m, t0);
    m.handle_transport(TransportEvent::Connected, t0);
    m
}

fn states(m: &mut Machine) -> Vec<State> {
    let mut out = Vec::new();
    while let Some(e) = m.poll_event() {
        if let Event::StateChanged { to, .. } = e {
            out.push(to);
        }
    }
    out
}

#[test]
fn starts_disconnected_and_connects_at_once() {
    let t0 = Instant::now();
    let mut m = Machine::new(config().build().unwrap(), t0);
    assert_eq!(m.state(), State::Disconnected);
    assert_eq!(m.poll_timeout(), Some(t0));
    m.handle_timeout(t0);
    assert_eq!(commands(&mut m, t0), (1, vec![]));
    assert_eq!(m.state(), State::Connecting);
    assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(1)));
}

#[test]
fn accepts_while_down_then_drains_in_order_with_a_window() {
    let t0 = Instant::now();
    let mut m = Machine::new(config().build().unwrap(), t0);
    for k in ["a", "b", "a", "c", "a"] {
        m.enqueue(record(k), t0).unwrap();
    }
    m.handle_timeout(t0);
    let _ = commands(&mut m, t0);
    m.handle_transport(TransportEvent::Connected, t0);
    assert_eq!(states(&mut m), [State::Connecting, State::Draining]);
    assert_eq!(commands(&mut m, t0).1, [1, 2, 3], "window of 3");
    m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(2))), t0);
    assert_eq!(commands(&mut m, t0).1, [4]);
    for id in [1, 3, 4] {
        m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(id))), t0);
    }
    assert_eq!(commands(&mut m, t0).1, [5]);
    m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(5))), t0);
    assert_eq!(states(&mut m), [State::Connected]);
    assert_eq!(m.stats(t0).delivered, 5);
}

#[test]
fn link_loss_puts_in_flight_back_in_front_and_backs_off() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    for k in ["a", "a", "a", "a"] {
        m.enqueue(record(k), t0).unwrap();
    }
    assert_eq!(commands(&mut m, t0).1, [1, 2, 3]);
    m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(1))), t0);
    m.handle_transport(TransportEvent::LinkLost("gone".into()), t0);
    assert_eq!(m.state(), State::Disconnected);
    assert_eq!(m.in_flight(), 0);
    let retry = m.poll_timeout().unwrap();
    assert_eq!(
        retry,
        t0 + Duration::from_millis(100),
        "initial backoff, no jitter"
    );
    m.handle_timeout(retry);
    let _ = commands(&mut m, retry);
    m.handle_transport(TransportEvent::Connected, retry);
    assert_eq!(
        commands(&mut m, retry).1,
        [2, 3, 4],
        "unacknowledged first, in order"
    );
    assert_eq!(m.stats(retry).link_losses, 1);
}

#[test]
fn connect_timeout_and_refusals_back_off_exponentially_up_to_the_cap() {
    let t0 = Instant::now();
    let mut m = Machine::new(config().build().unwrap(), t0);
    let mut now = t0;
    let mut waits = Vec::new();
    for attempt in 0..6 {
        m.handle_timeout(now);
        assert_eq!(commands(&mut m, now).0, 1);
        if attempt % 2 == 0 {
            now = m.poll_timeout().unwrap(); // connect deadline
            m.handle_timeout(now);
        } else {
            m.handle_transport(TransportEvent::ConnectFailed("refused".into()), now);
        }
        let next = m.poll_timeout().unwrap();
        waits.push((next - now).as_millis());
        now = next;
    }
    assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(m.stats(now).reconnect_attempts, 6);
}

#[test]
fn hung_link_is_detected_by_the_ack_timeout() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    m.enqueue(record("a"), t0).unwrap();
    let _ = commands(&mut m, t0);
    let deadline = t0 + Duration::from_secs(5);
    assert_eq!(m.poll_timeout(), Some(deadline));
    m.handle_timeout(deadline);
    assert_eq!(m.state(), State::Disconnected);
    assert!(
        m.stats(t0)
            .last_error
            .unwrap()
            .contains("no acknowledgement")
    );
}

#[test]
fn silence_counts_from_the_last_report_not_from_the_oldest_send() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut m = connected(t0);
    let first = m.enqueue(record("a"), t0).unwrap();
    m.enqueue(record("b"), t0).unwrap();
    let _ = commands(&mut m, t0);
    // "a" is acknowledged at 4 s; "b" stays in flight: the session is hung
    // only 5 s after that report.
    m.handle_transport(TransportEvent::Delivered(Ack::new(first)), t0 + s(4));
    assert_eq!(m.poll_timeout(), Some(t0 + s(9)));
    m.handle_timeout(t0 + s(8));
    assert_eq!(m.state(), State::Connected);
    m.handle_timeout(t0 + s(9));
    assert_eq!(m.state(), State::Disconnected);
}

/// Acknowledgements keep arriving (one record per 100 ms, each acknowledged
/// at once) while #1's never comes. Returns when the session was given up
/// and what was sent up to then.
fn run_with_one_lost_ack(m: &mut Machine, t0: Instant) -> (Instant, Vec<u64>) {
    m.enqueue(record("lost"), t0).unwrap();
    let mut sent = commands(m, t0).1;
    let mut now = t0;
    while m.state() == State::Connected {
        now += Duration::from_millis(100);
        if m.poll_timeout().is_some_and(|t| t <= now) {
            m.handle_timeout(now);
            break;
        }
        let id = m.enqueue(record("steady"), now).unwrap();
        sent.extend(commands(m, now).1);
        m.handle_transport(TransportEvent::Delivered(Ack::new(id)), now);
    }
    (now, sent)
}

#[test]
fn a_session_receiving_acknowledgements_is_kept_past_the_ack_timeout() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    let (given_up, sent) = run_with_one_lost_ack(&mut m, t0);
    // Every send was a new record: nothing was resent while acks arrived,
    // long after the oldest in flight passed ack_timeout (5 s).
    let waited = given_up - t0;
    assert!(waited >= Duration::from_secs(49), "{waited:?}");
    let distinct: std::collections::BTreeSet<u64> = sent.iter().copied().collect();
    assert_eq!(distinct.len(), sent.len(), "a record was resent");
    assert_eq!(
        sent.len(),
        usize::try_from(waited.as_millis() / 100).unwrap()
    );
    assert_eq!(m.stats(given_up).retried, 0);
}

#[test]
fn a_lost_ack_is_noticed_although_newer_records_keep_being_acknowledged() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    let (now, _) = run_with_one_lost_ack(&mut m, t0);
    assert_eq!(m.state(), State::Disconnected);
    let waited = now - t0;
    let backstop = Duration::from_secs(5) * crate::LOST_ACK_FACTOR;
    assert!(
        waited >= backstop && waited <= backstop + Duration::from_millis(1_000),
        "{waited:?}"
    );
    assert!(m.stats(now).last_error.unwrap().contains("unacknowledged"));
    assert_eq!(m.stats(now).link_losses, 1);
}

#[test]
fn after_a_retriable_failure_nothing_is_resent_until_flight_is_empty() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    for k in ["a", "a", "a", "a"] {
        m.enqueue(record(k), t0).unwrap();
    }
    assert_eq!(commands(&mut m, t0).1, [1, 2, 3]);
    let error = TransportError::retriable("timed out");
    m.handle_transport(
        TransportEvent::Failed {
            id: RecordId(1),
            error: error.clone(),
        },
        t0,
    );
    let later = t0 + Duration::from_secs(1);
    m.handle_timeout(later);
    assert_eq!(
        commands(&mut m, later).1,
        Vec::<u64>::new(),
        "2 and 3 still in flight"
    );
    // Their failures arrive late: they go back in order before anything new.
    m.handle_transport(
        TransportEvent::Failed {
            id: RecordId(2),
            error: error.clone(),
        },
        later,
    );
    m.handle_transport(
        TransportEvent::Failed {
            id: RecordId(3),
            error,
        },
        later,
    );
    let resume = m.poll_timeout().unwrap();
    m.handle_timeout(resume);
    assert_eq!(commands(&mut m, resume).1, [1, 2, 3]);
}

#[test]
fn permanent_failure_dead_letters_and_does_not_block() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    for k in ["a", "a"] {
        m.enqueue(record(k), t0).unwrap();
    }
    let _ = commands(&mut m, t0);
    let error = TransportError::permanent("MSG_SIZE_TOO_LARGE");
    m.handle_transport(
        TransportEvent::Failed {
            id: RecordId(1),
            error,
        },
        t0,
    );
    m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(2))), t0);
    let events: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(e,
        Event::DeadLettered { id: RecordId(1), reason, .. } if reason == "MSG_SIZE_TOO_LARGE")));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Delivered { ack, .. } if ack.id == RecordId(2)))
    );
    assert_eq!(m.held_records(), 0);
}

#[test]
fn overflow_policies() {
    let t0 = Instant::now();
    let small = || config().max_queued_records(2).max_in_flight(1);
    let mut reject = Machine::new(
        small().overflow(OverflowPolicy::Reject).build().unwrap(),
        t0,
    );
    reject.enqueue(record("a"), t0).unwrap();
    reject.enqueue(record("b"), t0).unwrap();
    let err = reject.enqueue(record("c"), t0).unwrap_err();
    assert!(matches!(
        &err,
        EnqueueError::QueueFull {
            held_records: 2,
            ..
        }
    ));
    assert_eq!(err.into_record().key.as_deref(), Some(&b"c"[..]));

    let mut oldest = Machine::new(
        small()
            .overflow(OverflowPolicy::DropOldest)
            .build()
            .unwrap(),
        t0,
    );
    for k in ["a", "b", "c"] {
        oldest.enqueue(record(k), t0).unwrap();
    }
    assert!(matches!(
        oldest.poll_event(),
        Some(Event::Dropped {
            id: RecordId(1),
            ..
        })
    ));
    assert_eq!(oldest.held_records(), 2);

    let mut newest = Machine::new(
        small()
            .overflow(OverflowPolicy::DropNewest)
            .build()
            .unwrap(),
        t0,
    );
    for k in ["a", "b", "c"] {
        newest.enqueue(record(k), t0).unwrap();
    }
    assert!(matches!(
        newest.poll_event(),
        Some(Event::Dropped {
            id: RecordId(3),
            ..
        })
    ));
    assert_eq!(newest.stats(t0).dropped, 1);
}

#[test]
fn bad_records_are_refused_with_a_reason() {
    let t0 = Instant::now();
    let mut m = Machine::new(config().max_record_bytes(100).build().unwrap(), t0);
    let err = m
        .enqueue(Record::new("bad topic!", b"x".to_vec()), t0)
        .unwrap_err();
    assert!(err.to_string().contains("only [a-zA-Z0-9._-]"), "{err}");
    let err = m.enqueue(Record::new("", b"x".to_vec()), t0).unwrap_err();
    assert!(err.to_string().contains("1 to 249"), "{err}");
    let err = m.enqueue(Record::new("t", vec![0; 200]), t0).unwrap_err();
    assert!(matches!(
        err,
        EnqueueError::RecordTooLarge {
            size: 201,
            max: 100,
            ..
        }
    ));
    assert_eq!(m.stats(t0).accepted, 0);
}

#[test]
fn shutdown_returns_what_is_left_at_the_deadline() {
    let t0 = Instant::now();
    let mut m = Machine::new(config().build().unwrap(), t0);
    for k in ["a", "b"] {
        m.enqueue(record(k), t0).unwrap();
    }
    m.shutdown(t0 + Duration::from_secs(2), t0);
    assert!(matches!(
        m.enqueue(record("c"), t0),
        Err(EnqueueError::Closed { .. })
    ));
    let mut now = t0;
    while m.state() != State::Closed {
        now = m.poll_timeout().unwrap();
        m.handle_timeout(now);
        let _ = commands(&mut m, now);
    }
    assert_eq!(now, t0 + Duration::from_secs(2));
    let returned: Vec<_> = std::iter::from_fn(|| m.poll_event())
        .filter_map(|e| match e {
            Event::Returned { id, .. } => Some(id.0),
            _ => None,
        })
        .collect();
    assert_eq!(returned, [1, 2]);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn shutdown_with_nothing_held_closes_at_once() {
    let t0 = Instant::now();
    let mut m = Machine::new(config().build().unwrap(), t0);
    m.shutdown(t0 + Duration::from_secs(2), t0);
    assert_eq!(m.state(), State::Closed);
    assert_eq!(m.poll_command(t0), Some(Command::Close));
}

#[test]
fn a_retried_record_waits_for_the_backoff_then_goes_first() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    for k in ["a", "b", "c", "d"] {
        m.enqueue(record(k), t0).unwrap();
    }
    assert_eq!(commands(&mut m, t0).1, [1, 2, 3]);
    let error = TransportError::retriable("timed out");
    m.handle_transport(
        TransportEvent::Failed {
            id: RecordId(1),
            error,
        },
        t0,
    );
    assert_eq!(m.queue.in_flight_ids(), [RecordId(2), RecordId(3)]);
    for id in [2, 3] {
        m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(id))), t0);
    }
    assert_eq!(commands(&mut m, t0).1, Vec::<u64>::new(), "held back");
    let later = m.poll_timeout().unwrap();
    assert_eq!(later, t0 + Duration::from_millis(100));
    m.handle_timeout(later);
    assert_eq!(commands(&mut m, later).1, [1, 4]);
    assert_eq!(m.stats(later).retried, 1);
}

#[test]
fn a_refused_batch_is_resent_one_record_at_a_time_and_only_the_bad_one_is_dead_lettered() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    for k in ["a", "b", "a", "b", "a"] {
        m.enqueue(record(k), t0).unwrap();
    }
    assert_eq!(commands(&mut m, t0).1, vec![1, 2, 3], "the window of three");
    // The broker refuses the batch of 1..=3 because of record 2 alone.
    for id in 1..=3 {
        let error = TransportError::isolate("MessageSizeTooLarge");
        m.handle_transport(
            TransportEvent::Failed {
                id: RecordId(id),
                error,
            },
            t0,
        );
    }
    let alone = |m: &mut Machine, id: u64| {
        assert_eq!(commands(m, t0).1, vec![id], "record {id} goes alone");
        assert_eq!(commands(m, t0).1, Vec::<u64>::new(), "nothing beside it");
    };
    alone(&mut m, 1);
    m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(1))), t0);
    alone(&mut m, 2);
    let error = TransportError::isolate("MessageSizeTooLarge");
    m.handle_transport(
        TransportEvent::Failed {
            id: RecordId(2),
            error,
        },
        t0,
    );
    alone(&mut m, 3);
    m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(3))), t0);
    assert_eq!(commands(&mut m, t0).1, vec![4, 5], "then batches again");
    let mut dead = Vec::new();
    while let Some(e) = m.poll_event() {
        if let Event::DeadLettered { id, reason, .. } = e {
            dead.push((id.0, reason));
        }
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, 2);
    assert!(dead[0].1.contains("refused alone"), "{}", dead[0].1);
    assert_eq!(m.stats(t0).dead_lettered, 1);
}

#[test]
fn a_record_to_send_alone_survives_a_link_loss_and_still_goes_alone() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    for k in ["a", "b", "c"] {
        m.enqueue(record(k), t0).unwrap();
    }
    assert_eq!(commands(&mut m, t0).1, vec![1, 2, 3]);
    let error = TransportError::isolate("MessageBatchTooLarge");
    m.handle_transport(
        TransportEvent::Failed {
            id: RecordId(2),
            error,
        },
        t0,
    );
    m.handle_transport(TransportEvent::LinkLost("session ended".into()), t0);
    let t1 = t0 + Duration::from_secs(2);
    m.handle_timeout(t1);
    assert_eq!(commands(&mut m, t1).0, 1);
    m.handle_transport(TransportEvent::Connected, t1);
    assert_eq!(
        commands(&mut m, t1).1,
        vec![1],
        "1 is not marked: it may batch"
    );
    m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(1))), t1);
    assert_eq!(commands(&mut m, t1).1, vec![2], "2 alone");
    m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(2))), t1);
    assert_eq!(commands(&mut m, t1).1, vec![3]);
}

#[test]
fn a_record_waiting_to_go_alone_is_dead_lettered_once_a_later_record_of_its_key_is_stored() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    for k in ["a", "b", "a"] {
        m.enqueue(record(k), t0).unwrap();
    }
    assert_eq!(commands(&mut m, t0).1, vec![1, 2, 3]);
    let error = TransportError::isolate("MessageSizeTooLarge");
    m.handle_transport(
        TransportEvent::Failed {
            id: RecordId(1),
            error,
        },
        t0,
    );
    // The client stored 2 (key b) and 3 (key a) after 1's batch was refused.
    m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(2))), t0);
    assert_eq!(m.stats(t0).dead_lettered, 0, "another key: 1 may still go");
    m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(3))), t0);
    let mut dead = Vec::new();
    while let Some(e) = m.poll_event() {
        if let Event::DeadLettered { id, reason, .. } = e {
            dead.push((id.0, reason));
        }
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, 1);
    assert!(dead[0].1.contains("order"), "{}", dead[0].1);
    assert_eq!(commands(&mut m, t0).1, Vec::<u64>::new(), "nothing resent");
    assert_eq!(m.held_records(), 0);
}

#[test]
fn a_stall_the_transport_explains_is_not_a_hang_and_shows_in_health() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut m = connected(t0);
    let id = m.enqueue(record("a"), t0).unwrap();
    let _ = commands(&mut m, t0);
    let why = "orders/3: 1 of 3 replicas in sync";
    for n in 1..=4 {
        m.handle_transport(TransportEvent::Stalled(why.to_owned()), t0 + s(4 * n));
    }
    m.handle_timeout(t0 + s(18));
    assert_eq!(m.state(), State::Connected, "the wait was explained");
    assert_eq!(m.stats(t0 + s(18)).stalled.as_deref(), Some(why));
    let health = m.health(t0 + s(18));
    assert_eq!(health.verdict, crate::Verdict::Degraded);
    assert!(health.reasons.iter().any(|r| r.contains(why)), "{health:?}");
    m.handle_transport(TransportEvent::Delivered(Ack::new(id)), t0 + s(19));
    assert_eq!(m.stats(t0 + s(19)).stalled, None);
    // Unexplained silence is still a hang.
    m.enqueue(record("b"), t0 + s(20)).unwrap();
    let _ = commands(&mut m, t0 + s(20));
    m.handle_timeout(t0 + s(25));
    assert_eq!(m.state(), State::Disconnected);
}

#[test]
fn unrecorded_spool_settle_marks_share_the_window_and_are_named() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    for k in ["a", "b", "c", "d"] {
        m.enqueue(record(k), t0).unwrap();
    }
    m.handle_spool_unrecorded(2);
    // max_in_flight 3: one record in flight beside two unrecorded marks.
    assert_eq!(commands(&mut m, t0).1, vec![1]);
    assert_eq!(
        m.stats(t0).send_held,
        Some(SendHold::SpoolUnrecorded { unrecorded: 2 })
    );
    m.handle_spool_unrecorded(0);
    assert_eq!(commands(&mut m, t0).1, vec![2, 3]);
    assert_eq!(m.send_hold(t0), Some(SendHold::InFlightFull));
    m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(1))), t0);
    assert_eq!(commands(&mut m, t0).1, vec![4]);
    assert_eq!(m.send_hold(t0), None, "nothing waits");
}

#[test]
fn stats_keep_the_accounting_identity_and_serialize_with_stable_names() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    for k in ["a", "b", "c"] {
        m.enqueue(record(k), t0).unwrap();
    }
    let _ = commands(&mut m, t0);
    m.handle_transport(TransportEvent::Delivered(Ack::new(RecordId(1))), t0);
    let s = m.stats(t0 + Duration::from_millis(1500));
    assert_eq!((s.accepted, s.delivered, s.queued_records), (3, 1, 2));
    assert_eq!(s.check_accounting(), Ok(()));
    let mut broken = s.clone();
    broken.delivered += 1;
    let e = broken.check_accounting().unwrap_err();
    assert_eq!((e.accepted, e.ended, e.held), (3, 2, 2));

    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["state"], "connected");
    assert_eq!(json["time_in_state"], 1.5);
    assert_eq!(json["disconnected_for"], serde_json::Value::Null);
    assert_eq!(json["oldest_queued_age"], 1.5);
    assert_eq!(json["queued_records"], 2);
    assert_eq!(json["in_flight"], 2);
    assert_eq!(json["send_held"], serde_json::Value::Null);
    let hold = serde_json::to_value(SendHold::SpoolUnrecorded { unrecorded: 2 }).unwrap();
    assert_eq!(
        hold,
        serde_json::json!({"reason": "spool_unrecorded", "unrecorded": 2})
    );

    let health = m.health(t0);
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(
        json["verdict"],
        serde_json::to_value(health.verdict).unwrap()
    );
    assert_eq!(crate::Verdict::Healthy.http_status(), 200);
    assert_eq!(crate::Verdict::Degraded.http_status(), 200);
    assert_eq!(crate::Verdict::Unhealthy.http_status(), 503);
    assert_eq!(
        serde_json::to_value(crate::Verdict::Unhealthy).unwrap(),
        "unhealthy"
    );
}

#[test]
fn bytes_balance_like_records_and_every_delivery_says_how_long_it_waited() {
    let t0 = Instant::now();
    let mut m = connected(t0);
    let size = record("a").size() as u64;
    for k in ["a", "b", "c"] {
        m.enqueue(record(k), t0).unwrap();
    }
    let _ = commands(&mut m, t0);
    while m.poll_event().is_some() {}
    m.handle_transport(
        TransportEvent::Delivered(Ack::new(RecordId(2))),
        t0 + Duration::from_millis(250),
    );
    let waited = std::iter::from_fn(|| m.poll_event()).find_map(|e| match e {
        Event::Delivered { ack, waited } if ack.id == RecordId(2) => Some(waited),
        _ => None,
    });
    assert_eq!(waited, Some(Duration::from_millis(250)));

    let s = m.stats(t0);
    assert_eq!((s.accepted_bytes, s.delivered_bytes), (3 * size, size));
    assert_eq!(s.queued_bytes as u64, 2 * size);
    assert_eq!(s.check_accounting(), Ok(()));
    let mut broken = s.clone();
    broken.returned_bytes += 1;
    let e = broken.check_accounting().unwrap_err();
    assert_eq!(e.unit, crate::Counted::Bytes);
    assert_eq!(
        (e.accepted, e.ended, e.held),
        (3 * size, size + 1, 2 * size)
    );
    assert!(e.to_string().contains("in bytes"), "{e}");

    m.shutdown(t0, t0);
    let s = m.stats(t0);
    assert_eq!((s.returned, s.returned_bytes), (2, 2 * size));
    assert_eq!(s.check_accounting(), Ok(()));
}

#[test]
fn time_disconnected_adds_up_over_outages() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut m = Machine::new(config().build().unwrap(), t0);
    assert_eq!(
        m.stats(t0 + s(2)).disconnected_total,
        s(2),
        "down since start"
    );
    m.handle_timeout(t0 + s(3));
    let _ = commands(&mut m, t0 + s(3));
    m.handle_transport(TransportEvent::Connected, t0 + s(3));
    assert_eq!(m.stats(t0 + s(10)).disconnected_total, s(3));
    m.handle_transport(TransportEvent::LinkLost("gone".into()), t0 + s(10));
    let json = serde_json::to_value(m.stats(t0 + s(14))).unwrap();
    assert_eq!(
        json["disconnected_total"], 7.0,
        "3 s, then 4 s of a second outage"
    );
}
