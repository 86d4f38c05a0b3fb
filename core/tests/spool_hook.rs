//! The spool hook with an in-memory spool: replay first and in order,
//! Durable on the spool's word, the spool's bound under the overflow
//! policies, settled reports, close keeping Durable records, and the
//! in-flight window shared with unrecorded settle marks.

#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use robust_producer::{
    Config, DeliveryError, DurableError, EnqueueError, OverflowPolicy, Producer, Record, RecordId,
    Room, Spool, SpoolSignal, TokioRuntime, TransportEvent,
};
use robust_producer_mock::{ConnectReply, ScriptedTransport, SendReply};

/// An in-memory spool: holds up to `capacity` unsettled records; Durable
/// when the test says so.
#[derive(Default)]
struct MemState {
    recovered: Vec<Record>,
    signal: Option<SpoolSignal>,
    appended: Vec<RecordId>,
    settled: Vec<RecordId>,
    oldest: Option<RecordId>,
    capacity: usize,
    unrecorded: usize,
    closed: bool,
}

#[derive(Clone, Default)]
struct MemSpool(Arc<Mutex<MemState>>);

impl MemSpool {
    fn new(capacity: usize, recovered: Vec<Record>) -> Self {
        let s = Self::default();
        {
            let mut st = s.0.lock().unwrap();
            st.capacity = capacity;
            st.recovered = recovered;
        }
        s
    }

    fn signal(&self) -> SpoolSignal {
        self.0.lock().unwrap().signal.clone().unwrap()
    }
}

impl Spool for MemSpool {
    fn open_session(&self, signal: SpoolSignal) -> Result<Vec<Record>, String> {
        let mut st = self.0.lock().unwrap();
        st.signal = Some(signal);
        Ok(std::mem::take(&mut st.recovered))
    }

    fn room(&self, _record: &Record, oldest: Option<RecordId>) -> Room {
        let st = self.0.lock().unwrap();
        let held = st
            .appended
            .iter()
            .filter(|id| oldest.is_some_and(|o| **id >= o))
            .count();
        if held < st.capacity {
            Room::Fits
        } else {
            Room::Full
        }
    }

    fn append(&self, id: RecordId, _record: &Record) {
        self.0.lock().unwrap().appended.push(id);
    }

    fn settled(&self, ids: &[RecordId], oldest: Option<RecordId>) {
        let mut st = self.0.lock().unwrap();
        st.settled.extend_from_slice(ids);
        st.oldest = oldest;
    }

    fn close(&self) {
        let mut st = self.0.lock().unwrap();
        st.closed = true;
        if let Some(s) = &st.signal {
            s.closed();
        }
    }

    fn unrecorded(&self) -> usize {
        self.0.lock().unwrap().unrecorded
    }
}

/// A broker that stores payloads and acks when told (`hold`) or at once;
/// connects fail while it is not `up`.
fn scripted_broker(up: bool, hold: bool) -> ScriptedTransport {
    let broker = ScriptedTransport::new();
    if !up {
        broker.set_connect(ConnectReply::Refuse("down".into()));
    }
    if hold {
        broker.set_send(SendReply::Hold);
    }
    broker
}

fn rec(text: &str) -> Record {
    Record::new("t", text.as_bytes().to_vec()).with_key(b"k".to_vec())
}

fn start(spool: &MemSpool, broker: &ScriptedTransport, config: Config) -> Producer {
    Producer::builder(config)
        .spool(spool.clone())
        .start(broker.connection(), TokioRuntime::new())
        .expect("the producer config fits the transport")
}

async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not met");
}

#[tokio::test]
async fn recovered_records_go_first_in_order_are_durable_and_reported_settled() {
    let spool = MemSpool::new(100, vec![rec("old1"), rec("old2")]);
    let broker = scripted_broker(true, false);
    let producer = start(&spool, &broker, Config::builder().build().unwrap());
    let h = producer.send(rec("new")).await.unwrap();
    assert_eq!(h.id(), RecordId(3), "recovered records take ids 1 and 2");
    assert!(!h.is_durable());
    spool.signal().durable(RecordId(3));
    h.durable().await.unwrap();
    h.await.unwrap();
    producer.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(broker.payloads(), ["old1", "old2", "new"]);
    eventually(|| spool.0.lock().unwrap().settled.len() == 3).await;
    let st = spool.0.lock().unwrap();
    assert_eq!(
        st.appended,
        [RecordId(3)],
        "recovered records are not appended again"
    );
    assert_eq!(st.oldest, None);
}

#[tokio::test]
async fn a_full_spool_meets_the_overflow_policy() {
    let broker = scripted_broker(false, false);
    // Reject: SpoolFull with the record.
    let spool = MemSpool::new(2, Vec::new());
    let reject = Config::builder()
        .overflow(OverflowPolicy::Reject)
        .build()
        .unwrap();
    let producer = start(&spool, &broker, reject);
    drop(producer.send(rec("a")).await.unwrap());
    drop(producer.send(rec("b")).await.unwrap());
    let e = producer.send(rec("c")).await.unwrap_err();
    assert!(matches!(e, EnqueueError::SpoolFull { .. }), "{e}");
    assert_eq!(e.into_record().payload, &b"c"[..]);

    // DropNewest: accepted, dropped, never spooled.
    let spool = MemSpool::new(1, Vec::new());
    let config = Config::builder()
        .overflow(OverflowPolicy::DropNewest)
        .build()
        .unwrap();
    let producer = start(&spool, &broker, config);
    drop(producer.send(rec("a")).await.unwrap());
    let h = producer.send(rec("b")).await.unwrap();
    assert_eq!(h.durable().await, Err(DurableError::NotSpooled));
    assert_eq!(h.await.unwrap_err(), DeliveryError::Dropped);
    assert_eq!(spool.0.lock().unwrap().appended, [RecordId(1)]);
}

#[tokio::test]
async fn close_keeps_durable_records_in_the_spool_and_hands_back_the_rest() {
    let spool = MemSpool::new(100, Vec::new());
    let broker = scripted_broker(false, false);
    let producer = start(&spool, &broker, Config::builder().build().unwrap());
    let a = producer.send(rec("a")).await.unwrap();
    let b = producer.send(rec("b")).await.unwrap();
    spool.signal().durable(RecordId(1)); // only "a" is Durable
    let returned = producer.close(Duration::from_millis(20)).await;
    assert_eq!(returned, [rec("b")]);
    assert_eq!(a.await.unwrap_err(), DeliveryError::Spooled);
    assert_eq!(b.await.unwrap_err(), DeliveryError::Returned);
    let st = spool.0.lock().unwrap();
    assert!(st.closed);
    assert!(
        st.settled.is_empty(),
        "records kept or handed back are not settled"
    );
}

#[tokio::test]
async fn a_failed_spool_refuses_records_and_fails_durable() {
    let spool = MemSpool::new(100, Vec::new());
    let broker = scripted_broker(true, true);
    let producer = start(&spool, &broker, Config::builder().build().unwrap());
    let h = producer.send(rec("a")).await.unwrap();
    spool.signal().failed("fdatasync: EIO");
    assert_eq!(
        h.durable().await,
        Err(DurableError::Failed("fdatasync: EIO".into()))
    );
    let e = producer.send(rec("b")).await.unwrap_err();
    assert!(matches!(e, EnqueueError::SpoolFailed { ref reason, .. } if reason.contains("EIO")));
    eventually(|| broker.held().len() == 1).await;
    broker.release_oldest(1);
    h.await.unwrap(); // still delivered from memory
}

#[tokio::test]
async fn unrecorded_settle_marks_share_the_in_flight_window() {
    let spool = MemSpool::new(1000, Vec::new());
    spool.0.lock().unwrap().unrecorded = 3;
    let broker = scripted_broker(true, true);
    let config = Config::builder().max_in_flight(4).build().unwrap();
    let producer = start(&spool, &broker, config);
    for i in 0..10 {
        drop(producer.send(rec(&format!("r{i}"))).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(broker.payloads().len(), 1, "4 in flight minus 3 unrecorded");
    spool.0.lock().unwrap().unrecorded = 0;
    spool.signal().progress();
    eventually(|| broker.payloads().len() == 4).await;
    eventually(|| broker.held().len() == 4).await;
    broker.release_oldest(4);
    eventually(|| broker.payloads().len() == 8).await;
    producer.close(Duration::from_millis(20)).await;
}

/// The machine's extra bound: DropOldest drops waiting records for it, but
/// never because of a record in flight (dropping waiting ones would not
/// move the oldest held record).
#[test]
fn drop_oldest_for_the_extra_bound_stops_at_a_record_in_flight() {
    use robust_producer::{Command, Event, Machine};
    let now = std::time::Instant::now();
    let config = Config::builder()
        .overflow(OverflowPolicy::DropOldest)
        .build()
        .unwrap();
    // Room for two records from the oldest held one on.
    let room = |next: u64| {
        move |_: &Record, oldest: Option<RecordId>| oldest.is_none_or(|o| next - o.0 < 2)
    };
    let mut m = Machine::new(config.clone(), now);
    assert_eq!(m.enqueue_with(rec("1"), now, room(1)).unwrap(), RecordId(1));
    assert_eq!(m.enqueue_with(rec("2"), now, room(2)).unwrap(), RecordId(2));
    // Both waiting: the third drops the oldest.
    assert_eq!(m.enqueue_with(rec("3"), now, room(3)).unwrap(), RecordId(3));
    let dropped: Vec<RecordId> = std::iter::from_fn(|| m.poll_event())
        .filter_map(|e| match e {
            Event::Dropped { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, [RecordId(1)]);

    // Now with the oldest in flight: the new record is dropped instead.
    let mut m = Machine::new(config, now);
    m.enqueue_with(rec("1"), now, room(1)).unwrap();
    m.enqueue_with(rec("2"), now, room(2)).unwrap();
    m.handle_timeout(now); // connect
    assert_eq!(m.poll_command(now), Some(Command::Connect));
    m.handle_transport(TransportEvent::Connected, now);
    assert!(matches!(
        m.poll_command(now),
        Some(Command::Send {
            id: RecordId(1),
            ..
        })
    ));
    assert_eq!(m.enqueue_with(rec("3"), now, room(3)).unwrap(), RecordId(3));
    let dropped: Vec<RecordId> = std::iter::from_fn(|| m.poll_event())
        .filter_map(|e| match e {
            Event::Dropped { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(
        dropped,
        [RecordId(3)],
        "record 2 waits behind 1 in flight: dropping it frees nothing"
    );
    assert_eq!(m.oldest_held(), Some(RecordId(1)));
    assert_eq!(
        m.record(RecordId(2)).map(|r| r.payload.clone()),
        Some(robust_producer::Bytes::from_static(b"2"))
    );
}
