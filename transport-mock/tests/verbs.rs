//! Each fault verb of the mock broker, driving the `Transport` directly, and
//! the transport contract it must keep: per-partition prefixes, no event
//! about a record handed off before `connect`, cancel-safe `next_event`,
//! determinism.

use std::time::Duration;

use robust_producer::{
    ErrorClass, Record, RecordId, TokioRuntime, Transport, TransportError, TransportEvent,
};
use robust_producer_mock::{
    Chaos, InFlight, Matcher, MockBroker, MockTransport, Reset, Storage, TransportId, VerifyError,
};

const TOPIC: &str = "events";

fn rec(key: &str, n: u64) -> Record {
    Record::new(TOPIC, format!("payload {n}"))
        .with_key(key.to_owned())
        .with_header("event_id", format!("e{n}"))
}

/// Record `n` with key `k{n % keys}`.
fn rec_n(n: u64, keys: u64) -> Record {
    rec(&format!("k{}", n % keys), n)
}

fn drain(t: &mut MockTransport) -> Vec<TransportEvent> {
    std::iter::from_fn(|| t.try_next_event()).collect()
}

fn connected(broker: &MockBroker) -> MockTransport {
    let mut t = broker.transport();
    t.connect();
    assert_eq!(drain(&mut t), vec![TransportEvent::Connected]);
    t
}

fn delivered(events: &[TransportEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            TransportEvent::Delivered(a) => Some(a.id.0),
            _ => None,
        })
        .collect()
}

fn failed(events: &[TransportEvent], class: ErrorClass) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            TransportEvent::Failed { id, error } if error.class == class => Some(id.0),
            _ => None,
        })
        .collect()
}

fn ids(log: &[robust_producer_mock::StoredRecord]) -> Vec<u64> {
    log.iter().map(|s| s.id.0).collect()
}

fn send(t: &mut MockTransport, ns: impl IntoIterator<Item = u64>, keys: u64) {
    for n in ns {
        t.send(RecordId(n), &rec_n(n, keys)).expect("send");
    }
}

// ----- normal service ------------------------------------------------------

#[test]
fn immediate_mode_stores_and_acknowledges_in_order() {
    let broker = MockBroker::builder().partitions(3).build();
    let mut t = connected(&broker);
    let sent: Vec<Record> = (1..=100).map(|n| rec_n(n, 10)).collect();
    for (i, r) in sent.iter().enumerate() {
        t.send(RecordId(i as u64 + 1), r).unwrap();
    }
    let events = drain(&mut t);
    assert_eq!(delivered(&events), (1..=100).collect::<Vec<_>>());
    // Every ack names the partition and offset the log has.
    for e in &events {
        let TransportEvent::Delivered(ack) = e else {
            panic!("{e:?}")
        };
        let log = broker.log(TOPIC, ack.partition.unwrap());
        let stored = &log[ack.offset.unwrap() as usize];
        assert_eq!(stored.id, ack.id);
        assert_eq!(stored.transport, t.id());
        assert_eq!(stored.session, 1);
        let key = stored.key().unwrap();
        assert_eq!(
            stored.partition,
            MockBroker::partition_for_key(key, 3),
            "keys hash to their partition"
        );
    }
    assert_eq!(broker.stored_count(TOPIC), 100);
    assert_eq!(broker.partition_count(TOPIC), Some(3));
    let v = broker.verify(&sent).unwrap();
    assert_eq!((v.expected, v.duplicates, v.unexpected), (100, 0, 0));
    let stats = broker.stats();
    assert_eq!(
        (stats.handed_off, stats.stored, stats.acked),
        (100, 100, 100)
    );
}

#[test]
fn keyless_records_spread_by_id_and_keep_their_partition() {
    let broker = MockBroker::builder().topic(TOPIC, 4).build();
    let mut t = connected(&broker);
    for n in 1..=8 {
        t.send(RecordId(n), &Record::new(TOPIC, format!("{n}")))
            .unwrap();
    }
    for p in 0..4 {
        let want: Vec<u64> = (1..=8).filter(|n| n % 4 == p as u64).collect();
        assert_eq!(ids(&broker.log(TOPIC, p)), want);
    }
}

#[test]
fn count_only_storage_counts_without_keeping() {
    let broker = MockBroker::builder().storage(Storage::CountOnly).build();
    let mut t = connected(&broker);
    send(&mut t, 1..=10, 3);
    assert_eq!(delivered(&drain(&mut t)).len(), 10);
    assert_eq!(broker.stored_count(TOPIC), 10);
    assert!(broker.records(TOPIC).is_empty());
    assert_eq!(broker.verify(&[rec_n(1, 3)]), Err(VerifyError::NothingKept));
}

#[test]
fn send_without_session_is_refused_as_link_error() {
    let broker = MockBroker::new();
    let mut t = broker.transport();
    let err = t.send(RecordId(1), &rec_n(1, 1)).unwrap_err();
    assert_eq!(err.class, ErrorClass::Link);
    broker.refuse(1);
    t.connect();
    assert!(t.send(RecordId(1), &rec_n(1, 1)).is_err());
    assert_eq!(broker.stored_count(TOPIC), 0);
}

// ----- refuse / down / heal --------------------------------------------------

#[test]
fn refuse_n_fails_exactly_n_connects() {
    let broker = MockBroker::new();
    let mut t = broker.transport();
    broker.refuse(2);
    for _ in 0..2 {
        t.connect();
        let events = drain(&mut t);
        assert!(
            matches!(events.as_slice(), [TransportEvent::ConnectFailed(_)]),
            "{events:?}"
        );
    }
    t.connect();
    assert_eq!(drain(&mut t), vec![TransportEvent::Connected]);
    let s = broker.stats();
    assert_eq!((s.connect_attempts, s.refused, s.connects), (3, 2, 1));
}

#[test]
fn refuse_until_healed_then_heal() {
    let broker = MockBroker::new();
    let mut t = broker.transport();
    broker.refuse_until_healed();
    for _ in 0..50 {
        t.connect();
        assert!(matches!(
            drain(&mut t).as_slice(),
            [TransportEvent::ConnectFailed(_)]
        ));
    }
    broker.heal();
    t.connect();
    assert_eq!(drain(&mut t), vec![TransportEvent::Connected]);
}

#[test]
fn down_resets_sessions_and_refuses_until_healed() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    send(&mut t, [1], 1);
    broker.down();
    let events = drain(&mut t);
    assert_eq!(delivered(&events), vec![1], "queued ack still reported");
    assert!(matches!(events.last(), Some(TransportEvent::LinkLost(_))));
    t.connect();
    assert!(matches!(
        drain(&mut t).as_slice(),
        [TransportEvent::ConnectFailed(_)]
    ));
    broker.heal();
    t.connect();
    assert_eq!(drain(&mut t), vec![TransportEvent::Connected]);
}

// ----- partition ----------------------------------------------------------

#[test]
fn partition_hangs_connect_and_heal_completes_it() {
    let broker = MockBroker::new();
    let mut t = broker.transport();
    broker.partition();
    t.connect();
    assert!(drain(&mut t).is_empty());
    assert!(t.send(RecordId(1), &rec_n(1, 1)).is_err(), "not up yet");
    broker.heal();
    assert_eq!(drain(&mut t), vec![TransportEvent::Connected]);
    assert_eq!(broker.stats().hung_connects, 1);
}

#[test]
fn heal_completes_only_the_latest_connect() {
    let broker = MockBroker::new();
    let mut t = broker.transport();
    broker.partition();
    t.connect();
    t.connect();
    t.connect();
    broker.heal();
    assert_eq!(drain(&mut t), vec![TransportEvent::Connected]);
}

#[test]
fn partition_blackholes_hand_offs_and_the_session_stays_silent_after_heal() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    send(&mut t, [1], 1);
    broker.partition();
    send(&mut t, [2, 3], 1);
    assert_eq!(delivered(&drain(&mut t)), vec![1]);
    broker.heal();
    send(&mut t, [4], 1);
    assert!(
        drain(&mut t).is_empty(),
        "4 must not overtake the lost 2 and 3"
    );
    assert_eq!(ids(&broker.log(TOPIC, 0)), vec![1]);
    // The producer's ack timeout fires; it reconnects and re-sends.
    t.connect();
    assert_eq!(drain(&mut t), vec![TransportEvent::Connected]);
    send(&mut t, [2, 3, 4], 1);
    assert_eq!(delivered(&drain(&mut t)), vec![2, 3, 4]);
    assert_eq!(ids(&broker.log(TOPIC, 0)), vec![1, 2, 3, 4]);
    assert_eq!(broker.stats().blackholed, 3);
}

#[test]
fn idle_session_survives_a_partition() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    broker.partition();
    broker.heal();
    send(&mut t, [1], 1);
    assert_eq!(delivered(&drain(&mut t)), vec![1]);
}

#[test]
fn partition_loses_held_records() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    broker.hold();
    send(&mut t, [1, 2], 1);
    broker.partition();
    broker.release();
    broker.heal();
    assert!(drain(&mut t).is_empty());
    assert_eq!(broker.stored_count(TOPIC), 0);
}

// ----- reset ----------------------------------------------------------------

#[test]
fn reset_reports_queued_outcomes_then_link_lost() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    send(&mut t, [1, 2], 1);
    broker.reset();
    let events = drain(&mut t);
    assert_eq!(delivered(&events), vec![1, 2]);
    assert!(matches!(
        events.as_slice(),
        [_, _, TransportEvent::LinkLost(_)]
    ));
    assert_eq!(
        t.send(RecordId(3), &rec_n(3, 1)).unwrap_err().class,
        ErrorClass::Link
    );
    assert_eq!(broker.stats().resets, 1);
}

#[test]
fn reset_dropping_unreported_acks_makes_resends_duplicates() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    send(&mut t, [1, 2], 1);
    broker.reset_with(Reset::new().drop_unreported_acks());
    assert!(matches!(
        drain(&mut t).as_slice(),
        [TransportEvent::LinkLost(_)]
    ));
    let tid = t.id();
    assert_eq!(
        broker.stored_unacknowledged(),
        vec![(tid, RecordId(1)), (tid, RecordId(2))]
    );
    t.connect();
    send(&mut t, [1, 2], 1);
    assert_eq!(delivered(&drain(&mut t)), vec![1, 2]);
    assert_eq!(
        broker.duplicates(),
        vec![(tid, RecordId(1)), (tid, RecordId(2))]
    );
    let v = broker.verify(&[rec_n(1, 1), rec_n(2, 1)]).unwrap();
    assert_eq!(v.duplicates, 2);
}

#[test]
fn reset_stores_in_flight_records_when_asked() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    broker.hold();
    send(&mut t, 1..=5, 1);
    broker.reset_with(Reset::new().in_flight(InFlight::Stored));
    assert!(matches!(
        drain(&mut t).as_slice(),
        [TransportEvent::LinkLost(_)]
    ));
    assert_eq!(ids(&broker.log(TOPIC, 0)), vec![1, 2, 3, 4, 5]);
    assert_eq!(broker.stored_unacknowledged().len(), 5);
}

/// The contract's point 3: what a reset leaves stored is, per partition, a
/// prefix of the session's hand-offs; and the prefixes really vary.
#[test]
fn reset_stores_a_prefix_per_partition() {
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let broker = MockBroker::builder().partitions(3).seed(seed).build();
        let mut t = connected(&broker);
        broker.hold();
        send(&mut t, 1..=30, 7);
        broker.reset_with(Reset::new().in_flight(InFlight::Prefix));
        for p in 0..3 {
            let handed: Vec<u64> = (1..=30)
                .filter(|&n| {
                    MockBroker::partition_for_key(format!("k{}", n % 7).as_bytes(), 3) == p
                })
                .collect();
            let stored = ids(&broker.log(TOPIC, p));
            assert_eq!(
                stored,
                handed[..stored.len()],
                "seed {seed} partition {p}: not a prefix"
            );
            lengths.insert((stored.len() * 4).div_ceil(handed.len().max(1)));
        }
    }
    assert!(lengths.len() >= 3, "prefix lengths never vary: {lengths:?}");
}

// ----- contract point 1: nothing stale after connect --------------------------

#[test]
fn no_event_about_records_handed_off_before_connect() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    // Queued acks of the old session.
    send(&mut t, [1, 2], 1);
    // Held records of the old session.
    broker.hold();
    send(&mut t, [3, 4], 1);
    // Take one event so that the other sits inside the transport.
    assert_eq!(delivered(&[t.try_next_event().unwrap()]), vec![1]);
    t.connect();
    broker.release();
    broker.reset_with(Reset::new().in_flight(InFlight::Stored));
    let events = drain(&mut t);
    assert!(
        matches!(
            events.as_slice(),
            [TransportEvent::Connected, TransportEvent::LinkLost(_)]
        ),
        "{events:?}"
    );
    // 1 was reported; 2 was stored but its ack never reported; 3 and 4 were
    // never processed.
    assert_eq!(ids(&broker.log(TOPIC, 0)), vec![1, 2]);
    assert_eq!(broker.stored_unacknowledged(), vec![(t.id(), RecordId(2))]);
}

// ----- hold / release / delay ---------------------------------------------------

#[test]
fn hold_then_release_acknowledges_in_order() {
    let broker = MockBroker::builder().partitions(2).build();
    let mut t = connected(&broker);
    broker.hold();
    send(&mut t, 1..=6, 3);
    assert!(drain(&mut t).is_empty());
    assert_eq!(broker.stored_count(TOPIC), 0);
    broker.release();
    assert_eq!(delivered(&drain(&mut t)), vec![1, 2, 3, 4, 5, 6]);
    // Records handed off after release go behind nothing.
    send(&mut t, [7], 3);
    assert_eq!(delivered(&drain(&mut t)), vec![7]);
}

#[test]
fn delay_on_the_manual_clock() {
    let broker = MockBroker::new();
    broker.delay(Duration::from_millis(100));
    let mut t = broker.transport();
    t.connect();
    assert!(drain(&mut t).is_empty());
    assert!(broker.advance(Duration::from_millis(99)));
    assert!(drain(&mut t).is_empty());
    broker.advance(Duration::from_millis(1));
    assert_eq!(drain(&mut t), vec![TransportEvent::Connected]);
    send(&mut t, [1], 1);
    broker.advance(Duration::from_millis(50));
    send(&mut t, [2], 1);
    broker.advance(Duration::from_millis(50));
    assert_eq!(delivered(&drain(&mut t)), vec![1]);
    broker.advance(Duration::from_millis(50));
    assert_eq!(delivered(&drain(&mut t)), vec![2]);
    // Lowering the delay never lets a record overtake an earlier one.
    broker.delay(Duration::from_millis(100));
    send(&mut t, [3], 1);
    broker.delay(Duration::ZERO);
    send(&mut t, [4], 1);
    assert!(drain(&mut t).is_empty());
    broker.advance(Duration::from_millis(100));
    assert_eq!(delivered(&drain(&mut t)), vec![3, 4]);
    assert_eq!(broker.log(TOPIC, 0)[2].at, Duration::from_millis(350));
}

#[tokio::test(start_paused = true)]
async fn delay_follows_the_runtime_clock() {
    let broker = MockBroker::builder().runtime(TokioRuntime::new()).build();
    broker.delay(Duration::from_millis(40));
    let start = tokio::time::Instant::now();
    let mut t = broker.transport();
    t.connect();
    assert_eq!(t.next_event().await, TransportEvent::Connected);
    assert_eq!(start.elapsed(), Duration::from_millis(40));
    send(&mut t, [1, 2], 1);
    assert_eq!(delivered(&[t.next_event().await]), vec![1]);
    assert_eq!(delivered(&[t.next_event().await]), vec![2]);
    assert_eq!(start.elapsed(), Duration::from_millis(80));
    broker.jitter(Duration::from_millis(30));
    send(&mut t, 3..=20, 1);
    let mut got = Vec::new();
    while got.len() < 18 {
        got.extend(delivered(&[t.next_event().await]));
    }
    assert_eq!(got, (3..=20).collect::<Vec<_>>(), "jitter keeps order");
}

#[tokio::test(start_paused = true)]
async fn next_event_is_woken_by_fault_verbs() {
    let broker = MockBroker::builder().runtime(TokioRuntime::new()).build();
    let mut t = connected(&broker);
    let waiter = tokio::spawn(async move { t.next_event().await });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    broker.reset();
    let event = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(event, TransportEvent::LinkLost(_)));
}

#[tokio::test(start_paused = true)]
async fn next_event_is_cancel_safe() {
    let broker = MockBroker::builder().runtime(TokioRuntime::new()).build();
    let mut t = connected(&broker);
    broker.delay(Duration::from_micros(700));
    broker.jitter(Duration::from_millis(2));
    send(&mut t, 1..=200, 3);
    let mut got = Vec::new();
    let mut cancelled = 0;
    while got.len() < 200 {
        tokio::select! {
            e = t.next_event() => got.extend(delivered(&[e])),
            () = tokio::time::sleep(Duration::from_micros(300)) => cancelled += 1,
        }
    }
    assert_eq!(got, (1..=200).collect::<Vec<_>>());
    assert!(cancelled > 0, "the race never cancelled a wait");
}

#[tokio::test(start_paused = true)]
async fn close_waits_for_delayed_records_within_its_timeout() {
    let broker = MockBroker::builder().runtime(TokioRuntime::new()).build();
    let mut t = connected(&broker);
    broker.delay(Duration::from_millis(10));
    send(&mut t, 1..=3, 1);
    broker.delay(Duration::from_secs(60));
    send(&mut t, [4], 1);
    let start = tokio::time::Instant::now();
    t.close(Duration::from_secs(1)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(10));
    assert_eq!(ids(&broker.log(TOPIC, 0)), vec![1, 2, 3]);
    // A held broker: close gives up at its deadline.
    broker.delay(Duration::ZERO);
    let mut t = connected(&broker);
    broker.hold();
    send(&mut t, [9], 1);
    t.close(Duration::from_millis(500)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(510));
    assert_eq!(
        t.send(RecordId(10), &rec_n(10, 1)).unwrap_err().class,
        ErrorClass::Link
    );
}

// ----- per-record faults ------------------------------------------------------

#[test]
fn reject_fails_permanently_and_does_not_block_the_partition() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    broker.reject(Matcher::larger_than(40), "MSG_SIZE_TOO_LARGE");
    t.send(RecordId(1), &rec_n(1, 1)).unwrap();
    let big = Record::new(TOPIC, vec![b'x'; 100]).with_key("k0");
    t.send(RecordId(2), &big).unwrap();
    t.send(RecordId(3), &rec_n(3, 1)).unwrap();
    let events = drain(&mut t);
    assert_eq!(delivered(&events), vec![1, 3]);
    assert!(events.contains(&TransportEvent::Failed {
        id: RecordId(2),
        error: TransportError::permanent("MSG_SIZE_TOO_LARGE"),
    }));
    assert_eq!(ids(&broker.log(TOPIC, 0)), vec![1, 3]);
    assert_eq!(broker.stats().rejected, 1);
}

#[test]
fn retriable_failure_fails_the_rest_of_its_partition_until_resent() {
    let broker = MockBroker::builder().partitions(2).build();
    let p_a = MockBroker::partition_for_key(b"a", 2);
    let other = (0..)
        .map(|i| format!("b{i}"))
        .find(|k| MockBroker::partition_for_key(k.as_bytes(), 2) != p_a)
        .unwrap();
    let p_b = 1 - p_a;
    let mut t = connected(&broker);
    let rule = broker.fail_retriable(Matcher::id(RecordId(2)).times(1), "REQUEST_TIMED_OUT");
    let r = |n: u64| rec(if n.is_multiple_of(2) { "a" } else { &other }, n);
    for n in 1..=6 {
        t.send(RecordId(n), &r(n)).unwrap();
    }
    let events = drain(&mut t);
    // Partition of "a" (even ids): 2 fails, so do 4 and 6; "c" goes on.
    assert_eq!(delivered(&events), vec![1, 3, 5]);
    assert_eq!(failed(&events, ErrorClass::Retriable), vec![2, 4, 6]);
    // Records of that partition sent before the re-send fail too.
    t.send(RecordId(8), &r(8)).unwrap();
    assert_eq!(failed(&drain(&mut t), ErrorClass::Retriable), vec![8]);
    // The re-send, in order, lifts it.
    for n in [2, 4, 6, 8] {
        t.send(RecordId(n), &r(n)).unwrap();
    }
    assert_eq!(delivered(&drain(&mut t)), vec![2, 4, 6, 8]);
    assert_eq!(ids(&broker.log(TOPIC, p_a)), vec![2, 4, 6, 8]);
    assert_eq!(ids(&broker.log(TOPIC, p_b)), vec![1, 3, 5]);
    assert!(!broker.remove_rule(rule), "used up rules are gone");
    assert_eq!(broker.stats().failed_retriable, 4);
}

/// Re-sending the first failed record is not enough: a record handed off
/// while a younger failed one waits for its re-send must fail too.
#[test]
fn nothing_overtakes_any_failed_record_of_its_partition() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    broker.fail_retriable(Matcher::id(RecordId(1)).times(1), "REQUEST_TIMED_OUT");
    send(&mut t, 1..=3, 1);
    assert_eq!(failed(&drain(&mut t), ErrorClass::Retriable), vec![1, 2, 3]);
    send(&mut t, [1], 1);
    // 2 and 3 still wait for their re-send: 4 must not get ahead of them.
    send(&mut t, [4], 1);
    let events = drain(&mut t);
    assert_eq!(delivered(&events), vec![1]);
    assert_eq!(failed(&events, ErrorClass::Retriable), vec![4]);
    send(&mut t, [2, 3, 4], 1);
    assert_eq!(delivered(&drain(&mut t)), vec![2, 3, 4]);
    assert_eq!(ids(&broker.log(TOPIC, 0)), vec![1, 2, 3, 4]);
}

/// A permanently rejected record never comes back: it must not hold its
/// partition.
#[test]
fn a_rejected_resend_does_not_block_its_partition() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    broker.fail_retriable(Matcher::id(RecordId(1)).times(1), "REQUEST_TIMED_OUT");
    send(&mut t, [1], 1);
    assert_eq!(failed(&drain(&mut t), ErrorClass::Retriable), vec![1]);
    broker.reject(Matcher::id(RecordId(1)), "MSG_SIZE_TOO_LARGE");
    send(&mut t, [1, 2], 1);
    let events = drain(&mut t);
    assert_eq!(failed(&events, ErrorClass::Permanent), vec![1]);
    assert_eq!(delivered(&events), vec![2]);
}

#[test]
fn lost_acks_make_resends_duplicates_of_unacknowledged_records_only() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    broker.lose_acks(Matcher::id(RecordId(2)).times(1));
    send(&mut t, 1..=3, 1);
    assert_eq!(delivered(&drain(&mut t)), vec![1, 3]);
    assert_eq!(ids(&broker.log(TOPIC, 0)), vec![1, 2, 3]);
    let tid = t.id();
    assert_eq!(broker.stored_unacknowledged(), vec![(tid, RecordId(2))]);
    t.connect();
    send(&mut t, [2], 1);
    assert_eq!(delivered(&drain(&mut t)), vec![2]);
    assert_eq!(broker.duplicates(), vec![(tid, RecordId(2))]);
    let v = broker
        .verify(&[rec_n(1, 1), rec_n(2, 1), rec_n(3, 1)])
        .unwrap();
    assert_eq!(v.duplicates, 1);
}

#[test]
fn fatal_ends_the_session_and_the_next_connect_rebuilds() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    broker.hold();
    send(&mut t, [1], 1);
    broker.fatal();
    assert!(matches!(
        drain(&mut t).as_slice(),
        [TransportEvent::Fatal(_)]
    ));
    assert!(t.send(RecordId(2), &rec_n(2, 1)).is_err());
    broker.release();
    t.connect();
    assert_eq!(drain(&mut t), vec![TransportEvent::Connected]);
    let s = broker.stats();
    assert_eq!((s.fatals, s.rebuilds, s.stored, s.discarded), (1, 1, 0, 1));
}

#[test]
fn backpressure_refuses_beyond_capacity_then_reports_ready() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    broker.backpressure(3);
    send(&mut t, 1..=3, 1);
    let err = t.send(RecordId(4), &rec_n(4, 1)).unwrap_err();
    assert_eq!(err.class, ErrorClass::Backpressure);
    let events = drain(&mut t);
    assert_eq!(delivered(&events), vec![1, 2, 3]);
    assert_eq!(events.last(), Some(&TransportEvent::Ready));
    send(&mut t, [4], 1);
    assert_eq!(delivered(&drain(&mut t)), vec![4]);
    assert_eq!(broker.stats().backpressured, 1);
}

#[test]
fn clear_faults_undoes_everything() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    broker.hold();
    broker.delay(Duration::from_secs(5));
    broker.reject(Matcher::any(), "NOPE");
    broker.backpressure(0);
    broker.chaos(Chaos::new(1).lose_ack(1.0));
    broker.refuse_until_healed();
    broker.clear_faults();
    send(&mut t, [1], 1);
    assert_eq!(delivered(&drain(&mut t)), vec![1]);
}

// ----- the broker's own checks ----------------------------------------------------

#[test]
fn verify_reports_missing_and_out_of_order_records() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    let sent: Vec<Record> = (1..=4).map(|n| rec_n(n, 1)).collect();
    for n in [1u64, 3, 2] {
        t.send(RecordId(n), &sent[n as usize - 1]).unwrap();
    }
    match broker.verify(&sent) {
        Err(VerifyError::Missing {
            missing: 1, first, ..
        }) => assert_eq!(first, "e4"),
        other => panic!("{other:?}"),
    }
    match broker.verify(&sent[..3]) {
        Err(VerifyError::OutOfOrder { earlier, later, .. }) => {
            assert_eq!((earlier.as_str(), later.as_str()), ("e2", "e3"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        broker.verify(&[sent[0].clone(), sent[0].clone()]),
        Err(VerifyError::AmbiguousIdentity { .. })
    ));
    // A custom identity: the payload.
    let v = broker
        .verify_with(&[sent[0].clone()], |r| r.payload.to_vec())
        .unwrap();
    assert_eq!(v.unexpected, 2);
}

#[test]
fn resending_an_acknowledged_record_is_flagged() {
    let broker = MockBroker::new();
    let mut t = connected(&broker);
    send(&mut t, [1], 1);
    assert_eq!(delivered(&drain(&mut t)), vec![1]);
    send(&mut t, [1], 1);
    assert_eq!(broker.resent_after_ack(), vec![(t.id(), RecordId(1))]);
    assert!(matches!(
        broker.verify(&[rec_n(1, 1)]),
        Err(VerifyError::ResentAfterAck { count: 1, .. })
    ));
}

#[test]
fn transports_share_topics_but_not_ids() {
    let broker = MockBroker::new();
    let mut a = connected(&broker);
    let mut b = connected(&broker);
    send(&mut a, [1], 1);
    send(&mut b, [1], 1);
    assert_eq!(broker.duplicates(), vec![]);
    let log = broker.log(TOPIC, 0);
    assert_eq!(
        log.iter()
            .map(|s| (s.transport, s.offset))
            .collect::<Vec<_>>(),
        vec![(TransportId(0), 0), (TransportId(1), 1)]
    );
    drop(a);
    assert_eq!(delivered(&drain(&mut b)), vec![1]);
}

// ----- chaos and determinism -------------------------------------------------------

/// A stand-in producer driving the transport the way the core does: ids
/// handed off in order within a window; a failed record goes back among the
/// waiting ones; after any break (or silence, our "ack timeout") every
/// unacknowledged record goes back and the transport reconnects.
fn run_naive_producer(broker: &MockBroker, records: &[Record], window: usize) {
    use std::collections::BTreeSet;
    let mut t = broker.transport();
    let mut waiting: BTreeSet<u64> = (1..=records.len() as u64).collect();
    let mut in_flight: BTreeSet<u64> = BTreeSet::new();
    let mut up = false;
    let mut steps = 0;
    t.connect();
    while !(waiting.is_empty() && in_flight.is_empty()) {
        steps += 1;
        assert!(steps < 1_000_000, "no progress");
        if up
            && in_flight.len() < window
            && let Some(id) = waiting.pop_first()
        {
            in_flight.insert(id);
            if t.send(RecordId(id), &records[id as usize - 1]).is_ok() {
                continue;
            }
        }
        match t.try_next_event() {
            Some(TransportEvent::Connected) => {
                up = true;
                continue;
            }
            Some(TransportEvent::Delivered(a)) => {
                assert!(in_flight.remove(&a.id.0), "ack for {} not in flight", a.id);
                continue;
            }
            Some(TransportEvent::Failed { id, .. }) => {
                assert!(in_flight.remove(&id.0), "failure of {id} not in flight");
                waiting.insert(id.0);
                continue;
            }
            _ => {}
        }
        // A break, a failed send, or silence.
        up = false;
        waiting.append(&mut in_flight);
        t.connect();
    }
}

fn chaos_log(seed: u64) -> (Vec<(i32, i64, u64, u64)>, robust_producer_mock::BrokerStats) {
    let broker = MockBroker::builder().partitions(4).seed(seed).build();
    broker.chaos(
        Chaos::new(seed)
            .refuse_connect(0.3)
            .hang_connect(0.05)
            .reset(0.01)
            .fatal(0.002)
            .hang(0.005)
            .lose_ack(0.01)
            .fail_retriable(0.01),
    );
    let records: Vec<Record> = (1..=2_000).map(|n| rec_n(n, 13)).collect();
    run_naive_producer(&broker, &records, 64);
    let v = broker.verify(&records).expect("log verifies");
    let stats = broker.stats();
    assert_eq!(v.duplicates as u64, stats.duplicates);
    // Duplicates only of records whose ack was never reported.
    let unacked: std::collections::HashSet<_> =
        broker.stored_unacknowledged().into_iter().collect();
    for d in broker.duplicates() {
        assert!(
            unacked.contains(&d),
            "{d:?} duplicated but was acknowledged"
        );
    }
    let log = (0..4)
        .flat_map(|p| broker.log(TOPIC, p))
        .map(|s| (s.partition, s.offset, s.id.0, s.session))
        .collect();
    (log, stats)
}

#[test]
fn chaos_keeps_the_contract_and_same_seed_gives_same_log() {
    let (a, stats) = chaos_log(7);
    let (b, _) = chaos_log(7);
    assert_eq!(a, b, "same seed, same log");
    let (c, _) = chaos_log(8);
    assert_ne!(a, c, "another seed, another log");
    // The schedule really injected every kind of fault.
    assert!(stats.refused > 0, "{stats:?}");
    assert!(stats.hung_connects > 0, "{stats:?}");
    assert!(stats.resets > 0, "{stats:?}");
    assert!(stats.fatals > 0, "{stats:?}");
    assert!(stats.blackholed > 0, "{stats:?}");
    assert!(stats.failed_retriable > 0, "{stats:?}");
    assert!(stats.duplicates > 0, "{stats:?}");
}
