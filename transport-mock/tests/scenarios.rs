//! End-to-end scenarios: `Producer` → driver → `Machine` → `MockTransport`,
//! on tokio's paused clock. Each one checks the broker's log: every record
//! that should be delivered is stored, per key the first copies are in send
//! order, and duplicates are only of records whose acknowledgement the
//! producer never got (and none was re-sent after its acknowledgement).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use robust_producer::{
    Ack, Config, DeadLetter, DeadLetterReason, DeliveryError, DeliveryHandle, EVENT_ID_HEADER,
    EnqueueError, Producer, Record, RecordId, State, TokioRuntime, Transport, TransportError,
    TransportEvent,
};
use robust_producer_mock::{
    Chaos, InFlight, Matcher, MockBroker, MockTransport, Reset, Verification,
};
use tokio::time::{Instant, sleep};

const TOPIC: &str = "orders";

fn config() -> Config {
    Config::builder()
        .seed(7)
        .connect_timeout(Duration::from_secs(2))
        .ack_timeout(Duration::from_secs(3))
        .build()
        .expect("valid config")
}

fn broker() -> MockBroker {
    MockBroker::builder()
        .partitions(6)
        .seed(3)
        .runtime(TokioRuntime::new())
        .build()
}

/// Event `n`, keyed by one of `keys` customers, with a unique event id.
fn event(n: u64, keys: u64) -> Record {
    Record::new(TOPIC, format!("event {n}"))
        .with_key(format!("customer-{}", n % keys))
        .with_header(EVENT_ID_HEADER, format!("evt-{n}"))
}

/// A producer under test with everything it sent.
struct Scenario {
    producer: Producer,
    dead: Arc<Mutex<Vec<DeadLetter>>>,
    sent: Vec<Record>,
    handles: Vec<DeliveryHandle>,
}

impl Scenario {
    fn start(transport: impl Transport + 'static, config: Config) -> Self {
        let dead = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&dead);
        let producer = Producer::builder(config)
            .on_dead_letter(move |dl| sink.lock().expect("dead letters").push(dl))
            .start(transport, TokioRuntime::new())
            .expect("the producer config fits the transport");
        Self {
            producer,
            dead,
            sent: Vec::new(),
            handles: Vec::new(),
        }
    }

    async fn send(&mut self, record: Record) {
        let handle = self
            .producer
            .send(record.clone())
            .await
            .expect("accepted, whatever the broker does");
        self.sent.push(record);
        self.handles.push(handle);
    }

    async fn send_all(&mut self, ns: impl IntoIterator<Item = u64>, keys: u64) {
        for n in ns {
            self.send(event(n, keys)).await;
        }
    }

    /// Every record's fate, in send order.
    async fn outcomes(&mut self) -> Vec<Result<Ack, DeliveryError>> {
        let mut out = Vec::new();
        for h in self.handles.drain(..) {
            out.push(h.await);
        }
        out
    }

    fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead.lock().expect("dead letters").clone()
    }
}

impl Drop for Scenario {
    /// Every scenario ends with the accounting identity checked.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let stats = self.producer.stats();
            if let Err(e) = stats.check_accounting() {
                panic!("{e}: {stats:?}");
            }
        }
    }
}

/// The checks every scenario makes on the broker's log.
fn check_log(broker: &MockBroker, expected: &[Record]) -> Result<Verification, String> {
    let v = broker.verify(expected).map_err(|e| e.to_string())?;
    let unacked: HashSet<_> = broker.stored_unacknowledged().into_iter().collect();
    if let Some(d) = broker
        .duplicates()
        .into_iter()
        .find(|d| !unacked.contains(d))
    {
        return Err(format!(
            "{} {} was stored twice although its acknowledgement had been reported",
            d.0, d.1
        ));
    }
    Ok(v)
}

#[track_caller]
fn assert_log(broker: &MockBroker, expected: &[Record]) -> Verification {
    check_log(broker, expected).unwrap_or_else(|e| panic!("broker log: {e}"))
}

/// Every outcome is Delivered, and its ack points at the stored record.
#[track_caller]
fn assert_all_delivered(
    broker: &MockBroker,
    sent: &[Record],
    outcomes: &[Result<Ack, DeliveryError>],
) {
    assert_eq!(sent.len(), outcomes.len());
    let partitions = broker.partition_count(TOPIC).unwrap_or(0) as i32;
    let logs: Vec<_> = (0..partitions).map(|p| broker.log(TOPIC, p)).collect();
    for (r, o) in sent.iter().zip(outcomes) {
        let ack = o
            .as_ref()
            .unwrap_or_else(|e| panic!("{:?} not delivered: {e}", r.header(EVENT_ID_HEADER)));
        let log = &logs[usize::try_from(ack.partition.expect("partition")).expect("partition")];
        let stored = &log[usize::try_from(ack.offset.expect("offset")).expect("offset")];
        assert_eq!(stored.record, *r, "ack points at another record");
    }
}

// ----- 1. transport down at start ------------------------------------------------

#[tokio::test(start_paused = true)]
async fn down_at_start_accepts_everything_then_delivers_in_order() {
    let broker = broker();
    broker.refuse_until_healed();
    let mut s = Scenario::start(broker.transport(), config());
    let t0 = Instant::now();
    s.send_all(0..10_000, 50).await;
    assert_eq!(t0.elapsed(), Duration::ZERO, "accepting never waits");
    let stats = s.producer.stats();
    assert_eq!((stats.accepted, stats.delivered), (10_000, 0));

    sleep(Duration::from_secs(30)).await;
    assert_ne!(s.producer.state(), State::Connected);
    assert!(broker.stats().refused >= 5, "{:?}", broker.stats());
    assert_eq!(broker.stored_count(TOPIC), 0);
    assert_eq!(s.producer.stats().queued_records, 10_000);

    broker.heal();
    let healed = Instant::now();
    s.producer
        .flush(Duration::from_secs(60))
        .await
        .expect("flushed");
    // The default reconnect backoff is capped at 2 s, and a connect attempt
    // takes at most 2 s here: delivery is not needlessly late.
    assert!(
        healed.elapsed() <= Duration::from_secs(6),
        "{:?}",
        healed.elapsed()
    );
    let outcomes = s.outcomes().await;
    assert_all_delivered(&broker, &s.sent, &outcomes);
    let v = assert_log(&broker, &s.sent);
    assert_eq!((v.expected, v.duplicates, v.unexpected), (10_000, 0, 0));
    assert_eq!(broker.stored_count(TOPIC), 10_000);
    assert_eq!(s.producer.state(), State::Connected);
}

// ----- 2. failure during operation -----------------------------------------------

#[tokio::test(start_paused = true)]
async fn failures_during_operation_lose_nothing() {
    let broker = broker();
    broker.delay(Duration::from_millis(2));
    let mut s = Scenario::start(broker.transport(), config());
    for batch in 0..30u64 {
        s.send_all(batch * 100..(batch + 1) * 100, 40).await;
        sleep(Duration::from_millis(1)).await; // handed off, in flight
        match batch {
            10 => broker.reset_with(
                Reset::new()
                    .in_flight(InFlight::Prefix)
                    .drop_unreported_acks(),
            ),
            15 => broker.fatal(),
            20 => broker.down(),
            25 => broker.heal(),
            _ => {}
        }
        sleep(Duration::from_millis(20)).await;
    }
    s.producer
        .flush(Duration::from_secs(60))
        .await
        .expect("flushed");
    let outcomes = s.outcomes().await;
    assert_all_delivered(&broker, &s.sent, &outcomes);
    let v = assert_log(&broker, &s.sent);
    let bs = broker.stats();
    assert!(
        bs.stored_unacknowledged > 0,
        "the reset stored in-flight records: {bs:?}"
    );
    assert_eq!(v.duplicates as u64, bs.duplicates);
    assert!(
        bs.resets >= 2 && bs.fatals == 1 && bs.rebuilds == 1,
        "{bs:?}"
    );
    assert!(s.producer.stats().link_losses >= 3);
}

// ----- 3. partition (hang), detected by the core's timeouts ------------------------

#[tokio::test(start_paused = true)]
async fn partition_is_detected_by_timeouts_and_healed() {
    let broker = broker();
    broker.delay(Duration::from_millis(1));
    let mut s = Scenario::start(broker.transport(), config());
    s.send_all(0..500, 20).await;
    sleep(Duration::from_millis(100)).await;
    assert_eq!(s.producer.stats().delivered, 500);

    broker.partition();
    let cut = Instant::now();
    s.send_all(500..1_000, 20).await;
    sleep(Duration::from_millis(2_900)).await;
    assert_eq!(
        s.producer.stats().link_losses,
        0,
        "too early for the ack timeout"
    );
    sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.producer.stats().link_losses,
        1,
        "ack timeout (3 s) noticed the hang"
    );
    assert_ne!(s.producer.state(), State::Connected);
    // Connect attempts hang too, and the connect timeout gives up on them.
    sleep(Duration::from_secs(10)).await;
    s.send_all(1_000..1_500, 20).await;
    let bs = broker.stats();
    assert!(bs.hung_connects >= 2, "{bs:?}");
    assert!(s.producer.stats().reconnect_attempts >= 3);
    assert_eq!(
        broker.stored_count(TOPIC),
        500,
        "nothing crosses a partition"
    );
    assert!(cut.elapsed() >= Duration::from_secs(13));

    broker.heal();
    s.producer
        .flush(Duration::from_secs(30))
        .await
        .expect("flushed");
    let outcomes = s.outcomes().await;
    assert_all_delivered(&broker, &s.sent, &outcomes);
    let v = assert_log(&broker, &s.sent);
    assert_eq!(v.duplicates, 0, "blackholed records were never stored");
}

// ----- 4. flapping ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn flapping_link_loses_nothing_and_keeps_order() {
    let broker = broker();
    broker.delay(Duration::from_millis(1));
    broker.jitter(Duration::from_millis(2));
    let mut s = Scenario::start(broker.transport(), config());
    for cycle in 0..60u64 {
        s.send_all(cycle * 50..(cycle + 1) * 50, 30).await;
        sleep(Duration::from_millis(2)).await;
        match cycle % 5 {
            0 => broker.reset_with(
                Reset::new()
                    .in_flight(InFlight::Prefix)
                    .drop_unreported_acks(),
            ),
            1 => {
                broker.down();
                sleep(Duration::from_millis(300)).await;
                broker.heal();
            }
            2 => {
                broker.partition();
                sleep(Duration::from_secs(4)).await;
                broker.heal();
            }
            3 => {
                broker.refuse(2);
                broker.reset();
            }
            _ => broker.reset_with(Reset::new().in_flight(InFlight::Stored)),
        }
        sleep(Duration::from_millis(5 + (cycle % 7) * 60)).await;
    }
    s.producer
        .flush(Duration::from_secs(120))
        .await
        .expect("flushed");
    let outcomes = s.outcomes().await;
    assert_all_delivered(&broker, &s.sent, &outcomes);
    let v = assert_log(&broker, &s.sent);
    assert!(v.duplicates > 0, "resets stored unacknowledged records");
    let losses = s.producer.stats().link_losses;
    assert!(losses >= 20, "{losses} link losses");
}

// ----- 5. lost acknowledgements --------------------------------------------------

#[tokio::test(start_paused = true)]
async fn lost_acks_duplicate_only_unacknowledged_records() {
    let broker = broker();
    broker.lose_acks(Matcher::any().skip(100).times(5));
    let mut s = Scenario::start(broker.transport(), config());
    s.send_all(0..1_000, 10).await;
    s.producer
        .flush(Duration::from_secs(30))
        .await
        .expect("flushed");
    let outcomes = s.outcomes().await;
    assert_all_delivered(&broker, &s.sent, &outcomes);
    let v = assert_log(&broker, &s.sent);
    assert_eq!(
        v.duplicates, 5,
        "exactly the five records whose ack was lost"
    );
    assert_eq!(broker.stored_unacknowledged().len(), 5);
    let dups: HashSet<_> = broker.duplicates().into_iter().collect();
    let lost: HashSet<_> = broker.stored_unacknowledged().into_iter().collect();
    assert_eq!(dups, lost);
    // Only the ack timeout could notice: one link loss.
    assert_eq!(s.producer.stats().link_losses, 1);
}

#[tokio::test(start_paused = true)]
async fn a_session_receiving_acks_is_kept_while_one_ack_is_lost() {
    let broker = broker();
    broker.lose_acks(Matcher::any().skip(10).times(1));
    let mut s = Scenario::start(broker.transport(), config());
    // 20 s of steady traffic, well past the 3 s ack_timeout, while record
    // #11's acknowledgement never comes.
    for n in 0..2_000 {
        s.send(event(n, 10)).await;
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        s.producer.stats().link_losses,
        0,
        "{:?}",
        s.producer.stats()
    );
    assert!(broker.duplicates().is_empty(), "nothing was resent");
    // Only the lost-ack backstop (10 x ack_timeout) ends the session; the
    // one record is resent and stored twice.
    s.producer
        .flush(Duration::from_secs(60))
        .await
        .expect("flushed");
    let outcomes = s.outcomes().await;
    assert_all_delivered(&broker, &s.sent, &outcomes);
    assert_eq!(assert_log(&broker, &s.sent).duplicates, 1);
    assert_eq!(s.producer.stats().link_losses, 1);
}

// ----- 6. permanent rejections ---------------------------------------------------

#[tokio::test(start_paused = true)]
async fn rejected_records_are_dead_lettered_and_the_rest_delivered_in_order() {
    let broker = broker();
    broker.reject(Matcher::larger_than(300), "MSG_SIZE_TOO_LARGE");
    let mut s = Scenario::start(broker.transport(), config());
    for n in 0..1_000u64 {
        let mut r = event(n, 10);
        if n % 10 == 3 {
            r.payload = vec![b'x'; 1_000].into();
        }
        s.send(r).await;
    }
    s.producer
        .flush(Duration::from_secs(30))
        .await
        .expect("flushed");
    let outcomes = s.outcomes().await;
    let (big, small): (Vec<_>, Vec<_>) = s
        .sent
        .iter()
        .cloned()
        .zip(outcomes)
        .partition(|(r, _)| r.payload.len() > 300);
    for (_, o) in &big {
        assert_eq!(
            o,
            &Err(DeliveryError::DeadLettered {
                reason: "MSG_SIZE_TOO_LARGE".to_owned()
            })
        );
    }
    let (small_sent, small_out): (Vec<_>, Vec<_>) = small.into_iter().unzip();
    assert_all_delivered(&broker, &small_sent, &small_out);
    let v = assert_log(&broker, &small_sent);
    assert_eq!((v.expected, v.unexpected), (900, 0), "no big record stored");
    let dead = s.dead_letters();
    assert_eq!(
        dead.iter().map(|d| d.record.clone()).collect::<Vec<_>>(),
        big.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
        "every rejected record, in order"
    );
    assert!(
        dead.iter()
            .all(|d| d.reason == DeadLetterReason::Rejected("MSG_SIZE_TOO_LARGE".to_owned()))
    );
}

// ----- 7. close during an outage -------------------------------------------------

#[tokio::test(start_paused = true)]
async fn close_during_an_outage_returns_the_undelivered_records() {
    let broker = broker();
    let mut s = Scenario::start(broker.transport(), config());
    s.send_all(0..100, 10).await;
    s.producer
        .flush(Duration::from_secs(5))
        .await
        .expect("flushed");
    broker.down();
    s.send_all(100..600, 10).await;
    sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    let returned = s.producer.close(Duration::from_secs(2)).await;
    assert!(t0.elapsed() <= Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(
        returned,
        s.sent[100..],
        "undelivered records, in send order"
    );
    assert_eq!(s.producer.state(), State::Closed);
    let outcomes = s.outcomes().await;
    assert!(outcomes[..100].iter().all(Result::is_ok));
    assert!(
        outcomes[100..]
            .iter()
            .all(|o| o == &Err(DeliveryError::Returned))
    );
    assert_log(&broker, &s.sent[..100]);
    assert_eq!(broker.stored_count(TOPIC), 100);
    assert!(matches!(
        s.producer.try_send(event(600, 10)),
        Err(EnqueueError::Closed { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn close_during_a_partition_returns_records_in_flight_too() {
    let broker = broker();
    let mut s = Scenario::start(broker.transport(), config());
    s.send_all(0..100, 10).await;
    sleep(Duration::from_millis(10)).await;
    broker.partition();
    s.send_all(100..300, 10).await;
    sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.producer.stats().in_flight,
        200,
        "handed off into the void"
    );
    let returned = s.producer.close(Duration::from_secs(1)).await;
    assert_eq!(returned, s.sent[100..]);
    assert_log(&broker, &s.sent[..100]);
    assert_eq!(broker.stored_count(TOPIC), 100);
}

// ----- slow broker, stalls, back-pressure ---------------------------------------------

#[tokio::test(start_paused = true)]
async fn slow_broker_and_backpressure_deliver_without_reconnects() {
    let broker = broker();
    broker.delay(Duration::from_millis(500));
    broker.backpressure(64);
    let mut s = Scenario::start(broker.transport(), config());
    s.send_all(0..2_000, 25).await;
    // A stall shorter than the ack timeout is not a failure.
    sleep(Duration::from_millis(700)).await;
    broker.hold();
    sleep(Duration::from_millis(2_000)).await;
    broker.release();
    s.producer
        .flush(Duration::from_secs(120))
        .await
        .expect("flushed");
    let outcomes = s.outcomes().await;
    assert_all_delivered(&broker, &s.sent, &outcomes);
    assert_eq!(assert_log(&broker, &s.sent).duplicates, 0);
    assert_eq!(s.producer.stats().link_losses, 0);
    assert!(broker.stats().backpressured > 0);
}

#[tokio::test(start_paused = true)]
async fn stall_longer_than_the_ack_timeout_reconnects_and_resends() {
    let broker = broker();
    let mut s = Scenario::start(broker.transport(), config());
    s.send_all(0..100, 5).await;
    sleep(Duration::from_millis(10)).await;
    broker.hold();
    s.send_all(100..200, 5).await;
    sleep(Duration::from_secs(5)).await;
    assert_eq!(s.producer.stats().link_losses, 1);
    broker.release();
    s.producer
        .flush(Duration::from_secs(30))
        .await
        .expect("flushed");
    let outcomes = s.outcomes().await;
    assert_all_delivered(&broker, &s.sent, &outcomes);
    assert_eq!(assert_log(&broker, &s.sent).duplicates, 0);
}

// ----- chaos, determinism, restarts ------------------------------------------------

async fn chaos_run(seed: u64) -> Vec<(i32, i64, u64, u64)> {
    let broker = MockBroker::builder()
        .partitions(4)
        .seed(seed)
        .runtime(TokioRuntime::new())
        .build();
    broker.delay(Duration::from_millis(1));
    broker.jitter(Duration::from_millis(1));
    broker.chaos(
        Chaos::new(seed)
            .refuse_connect(0.2)
            .hang_connect(0.02)
            .reset(0.002)
            .fatal(0.0005)
            .hang(0.001)
            .lose_ack(0.002)
            .fail_retriable(0.003),
    );
    let mut s = Scenario::start(broker.transport(), config());
    for batch in 0..100u64 {
        s.send_all(batch * 50..(batch + 1) * 50, 17).await;
        sleep(Duration::from_millis(3)).await;
    }
    sleep(Duration::from_secs(5)).await;
    broker.stop_chaos();
    s.producer
        .flush(Duration::from_secs(120))
        .await
        .expect("flushed");
    let outcomes = s.outcomes().await;
    assert_all_delivered(&broker, &s.sent, &outcomes);
    assert_log(&broker, &s.sent);
    let bs = broker.stats();
    assert!(
        bs.resets > 0 && bs.failed_retriable > 0 && bs.refused > 0 && bs.stored_unacknowledged > 0,
        "the schedule injected faults: {bs:?}"
    );
    (0..4)
        .flat_map(|p| broker.log(TOPIC, p))
        .map(|r| (r.partition, r.offset, r.id.0, r.session))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn seeded_chaos_loses_nothing_and_replays_identically() {
    let first = chaos_run(21).await;
    let again = chaos_run(21).await;
    assert_eq!(first, again, "same seeds, same log");
}

#[tokio::test(start_paused = true)]
async fn restarted_producer_resends_what_the_first_handed_back() {
    let broker = broker();
    let mut first = Scenario::start(broker.transport(), config());
    first.send_all(0..200, 10).await;
    first
        .producer
        .flush(Duration::from_secs(5))
        .await
        .expect("flushed");
    broker.hold();
    first.send_all(200..400, 10).await;
    sleep(Duration::from_millis(10)).await;
    broker.down();
    let returned = first.producer.close(Duration::from_millis(500)).await;
    assert_eq!(returned, first.sent[200..]);

    // A new process: a new transport on the same broker.
    broker.release();
    broker.heal();
    let mut second = Scenario::start(broker.transport(), config());
    for r in returned {
        second.send(r).await;
    }
    second.send_all(400..500, 10).await;
    second
        .producer
        .flush(Duration::from_secs(10))
        .await
        .expect("flushed");
    let outcomes = second.outcomes().await;
    assert_all_delivered(&broker, &second.sent, &outcomes);
    let all: Vec<Record> = first
        .sent
        .iter()
        .take(200)
        .chain(&second.sent)
        .cloned()
        .collect();
    let v = assert_log(&broker, &all);
    assert_eq!((v.expected, v.duplicates), (500, 0));
    let transports: HashSet<_> = broker.records(TOPIC).iter().map(|r| r.transport).collect();
    assert_eq!(transports.len(), 2);
}

// ----- the checks can fail -----------------------------------------------------------

/// A broken transport: it swallows its `nth` hand-off and fakes the ack.
struct Lossy {
    inner: MockTransport,
    nth: u64,
    count: u64,
    fake: Option<TransportEvent>,
}

#[async_trait]
impl Transport for Lossy {
    fn connect(&mut self) {
        self.fake = None;
        self.inner.connect();
    }

    fn send(&mut self, id: RecordId, record: &Record) -> Result<(), TransportError> {
        self.count += 1;
        if self.count == self.nth {
            self.fake = Some(TransportEvent::Delivered(Ack::new(id)));
            return Ok(());
        }
        self.inner.send(id, record)
    }

    fn try_next_event(&mut self) -> Option<TransportEvent> {
        self.fake.take().or_else(|| self.inner.try_next_event())
    }

    async fn next_event(&mut self) -> TransportEvent {
        match self.fake.take() {
            Some(e) => e,
            None => self.inner.next_event().await,
        }
    }

    async fn close(&mut self, timeout: Duration) {
        self.inner.close(timeout).await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_log_checks_catch_a_lost_record() {
    let broker = broker();
    let lossy = Lossy {
        inner: broker.transport(),
        nth: 42,
        count: 0,
        fake: None,
    };
    let mut s = Scenario::start(lossy, config());
    s.send_all(0..100, 5).await;
    s.producer
        .flush(Duration::from_secs(5))
        .await
        .expect("flushed");
    let err = check_log(&broker, &s.sent).expect_err("a record is missing");
    assert!(err.contains("evt-41"), "{err}");
}
