//! Driver tests on a fake clock, without tokio: the driver future and the
//! application's futures are polled by hand, time moves only when the test
//! moves it, and a scripted transport answers exactly as told.

#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use robust_producer::{
    Ack, BackoffConfig, BoxFuture, Config, DeadLetter, DeadLetterReason, DeliveryError,
    EnqueueError, FlushError, OverflowPolicy, Producer, Record, RecordId, Runtime, State,
    TransportError, TransportEvent,
};
use robust_producer_mock::{ConnectReply, ManualRuntime, ScriptedTransport, SendReply};

// ----- harness ----------------------------------------------------------

struct Harness {
    rt: ManualRuntime,
    transport: ScriptedTransport,
    producer: Producer,
    driver: Option<BoxFuture>,
    dead: Arc<Mutex<Vec<DeadLetter>>>,
}

fn config() -> robust_producer::ConfigBuilder {
    Config::builder()
        .max_queued_records(100)
        .max_in_flight(4)
        .connect_timeout(Duration::from_secs(1))
        .ack_timeout(Duration::from_secs(5))
        .backoff(BackoffConfig {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(1),
            jitter: 0.0,
        })
}

impl Harness {
    fn new(config: Config) -> Self {
        let rt = ManualRuntime::new();
        // Connects wait for the test's word; records wait for `ack_all`.
        let transport = ScriptedTransport::new();
        transport.set_connect(ConnectReply::Silent);
        transport.set_send(SendReply::Hold);
        let dead = Arc::new(Mutex::new(Vec::new()));
        let sink = dead.clone();
        let (producer, driver) = Producer::builder(config)
            .on_dead_letter(move |dl| sink.lock().unwrap().push(dl))
            .build(transport.clone(), Arc::new(rt.clone()))
            .expect("the producer config fits the transport");
        let mut h = Self {
            rt,
            transport,
            producer,
            driver: Some(driver),
            dead,
        };
        h.run();
        h
    }

    /// Polls the driver until it has nothing left to do right now.
    fn run(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            if let Some(d) = self.driver.as_mut()
                && d.as_mut().poll(&mut cx).is_ready()
            {
                self.driver = None;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.rt.advance(by);
        self.run();
    }

    fn connect(&mut self) {
        self.transport.push_event(TransportEvent::Connected);
        self.run();
    }

    /// The records handed off and not yet acknowledged.
    fn sent(&self) -> Vec<u64> {
        self.transport.held().iter().map(|id| id.0).collect()
    }

    /// Acknowledges every record handed off.
    fn ack_all(&self) {
        self.transport.release_all();
    }

    /// Polls the driver once.
    fn poll_driver(&mut self) -> Poll<()> {
        let mut cx = Context::from_waker(Waker::noop());
        self.driver.as_mut().unwrap().as_mut().poll(&mut cx)
    }
}

fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

fn rec(key: &str) -> Record {
    Record::new("events", b"{}".to_vec()).with_key(key.as_bytes().to_vec())
}

// ----- tests ------------------------------------------------------------

#[test]
fn start_with_broker_down_accepts_at_once_and_delivers_after_connect() {
    let mut h = Harness::new(config().build().unwrap());
    assert_eq!(h.transport.connects(), 1, "first connect at start");
    assert_eq!(h.producer.state(), State::Connecting);

    let mut handles: Vec<_> = (0..6)
        .map(|i| h.producer.try_send(rec(&format!("k{i}"))).unwrap())
        .collect();
    h.run();
    assert!(h.sent().is_empty(), "nothing sent before connected");
    assert!(poll_once(&mut handles[0]).is_pending());

    h.transport
        .push_event(TransportEvent::ConnectFailed("refused".into()));
    h.run();
    assert_eq!(h.producer.state(), State::Disconnected);
    h.advance(Duration::from_millis(99));
    assert_eq!(h.transport.connects(), 1, "backoff not over yet");
    h.advance(Duration::from_millis(1));
    assert_eq!(h.transport.connects(), 2);

    h.connect();
    assert_eq!(h.producer.state(), State::Draining);
    assert_eq!(h.sent(), [1, 2, 3, 4], "in-flight window of 4");
    h.ack_all();
    h.run();
    assert_eq!(h.sent(), [5, 6]);
    h.ack_all();
    h.run();
    assert_eq!(h.producer.state(), State::Connected);
    for (i, handle) in handles.iter_mut().enumerate() {
        match poll_once(handle) {
            Poll::Ready(Ok(ack)) => assert_eq!(ack.id, RecordId(i as u64 + 1)),
            other => panic!("handle {i}: {other:?}"),
        }
    }
    let stats = h.producer.stats();
    assert_eq!(
        (stats.accepted, stats.delivered, stats.queued_records),
        (6, 6, 0)
    );
}

#[test]
fn hung_connect_times_out_on_the_fake_clock() {
    let mut h = Harness::new(config().build().unwrap());
    assert_eq!(h.rt.next_sleep(), Some(h.rt.now() + Duration::from_secs(1)));
    h.advance(Duration::from_secs(1));
    assert_eq!(h.producer.state(), State::Disconnected);
    assert!(
        h.producer
            .stats()
            .last_error
            .unwrap()
            .contains("connect timed out")
    );
    h.advance(Duration::from_millis(200));
    assert_eq!(h.transport.connects(), 2);
}

#[test]
fn flush_waits_for_acknowledgements_and_times_out_on_the_fake_clock() {
    let mut h = Harness::new(config().build().unwrap());
    h.connect();
    drop(h.producer.try_send(rec("a")).unwrap());
    h.run();
    let p = h.producer.clone();
    let mut flush = Box::pin(p.flush(Duration::from_secs(3)));
    assert!(poll_once(&mut flush).is_pending());
    h.run();
    assert_eq!(
        h.producer.state(),
        State::Connected,
        "a flush does not flap the state"
    );
    h.ack_all();
    h.run();
    assert_eq!(poll_once(&mut flush), Poll::Ready(Ok(())));
    assert_eq!(h.producer.state(), State::Connected);

    drop(h.producer.try_send(rec("b")).unwrap());
    h.run();
    let p = h.producer.clone();
    let mut flush = Box::pin(p.flush(Duration::from_secs(3)));
    assert!(poll_once(&mut flush).is_pending());
    h.advance(Duration::from_secs(3));
    assert_eq!(
        poll_once(&mut flush),
        Poll::Ready(Err(FlushError::Timeout { held: 1 }))
    );
}

#[test]
fn close_during_an_outage_returns_the_undelivered_records_by_the_deadline() {
    let mut h = Harness::new(config().build().unwrap());
    let mut handles: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|k| h.producer.try_send(rec(k)).unwrap())
        .collect();
    let p = h.producer.clone();
    let mut close = Box::pin(p.close(Duration::from_secs(2)));
    assert!(poll_once(&mut close).is_pending());
    h.run();
    assert!(matches!(
        h.producer.try_send(rec("d")),
        Err(EnqueueError::Closed { .. })
    ));
    h.advance(Duration::from_millis(1_999));
    assert!(
        poll_once(&mut close).is_pending(),
        "still trying before the deadline"
    );
    h.advance(Duration::from_millis(1));
    let Poll::Ready(returned) = poll_once(&mut close) else {
        panic!("close did not finish at its deadline");
    };
    let keys: Vec<_> = returned.iter().map(|r| r.key.clone().unwrap()).collect();
    assert_eq!(keys, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert!(h.driver.is_none(), "driver finished");
    assert!(h.transport.closes() > 0, "the transport was closed");
    for handle in &mut handles {
        assert_eq!(poll_once(handle), Poll::Ready(Err(DeliveryError::Returned)));
    }
    assert_eq!(h.producer.state(), State::Closed);
}

#[test]
fn block_policy_waits_for_room_then_gives_up_at_its_timeout() {
    let cfg = config()
        .max_queued_records(2)
        .max_in_flight(2)
        .overflow(OverflowPolicy::Block {
            timeout: Duration::from_millis(500),
        })
        .build()
        .unwrap();
    let mut h = Harness::new(cfg);
    h.connect();
    for k in ["a", "b"] {
        drop(h.producer.try_send(rec(k)).unwrap());
    }
    h.run();
    let p = h.producer.clone();
    let mut blocked = Box::pin(p.send(rec("c")));
    assert!(poll_once(&mut blocked).is_pending(), "queue full: waits");
    h.ack_all();
    h.run();
    assert!(
        matches!(poll_once(&mut blocked), Poll::Ready(Ok(_))),
        "room: accepted"
    );

    h.run();
    drop(h.producer.try_send(rec("d")).unwrap());
    let p = h.producer.clone();
    let mut blocked = Box::pin(p.send(rec("e")));
    assert!(poll_once(&mut blocked).is_pending());
    h.advance(Duration::from_millis(500));
    match poll_once(&mut blocked) {
        Poll::Ready(Err(EnqueueError::QueueFull { record, .. })) => {
            assert_eq!(record.key.unwrap(), &b"e"[..])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn permanent_failures_reach_the_dead_letter_handler_with_their_reason() {
    let mut h = Harness::new(config().build().unwrap());
    h.connect();
    let mut bad = h.producer.try_send(rec("a")).unwrap();
    let mut good = h.producer.try_send(rec("a")).unwrap();
    h.run();
    h.transport.push_event(TransportEvent::Failed {
        id: bad.id(),
        error: TransportError::permanent("Broker: Message size too large"),
    });
    h.transport
        .push_event(TransportEvent::Delivered(Ack::new(good.id())));
    h.run();
    assert!(
        matches!(poll_once(&mut bad), Poll::Ready(Err(DeliveryError::DeadLettered { reason })) if reason.contains("too large"))
    );
    assert!(matches!(poll_once(&mut good), Poll::Ready(Ok(_))));
    let dead = h.dead.lock().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].reason,
        DeadLetterReason::Rejected("Broker: Message size too large".into())
    );
}

#[test]
fn link_errors_from_send_reconnect_and_resend_in_order() {
    let mut h = Harness::new(config().build().unwrap());
    h.transport
        .set_send(SendReply::Refuse(TransportError::link("down")));
    h.connect();
    for k in ["a", "b"] {
        drop(h.producer.try_send(rec(k)).unwrap());
    }
    h.run();
    assert_eq!(h.producer.state(), State::Disconnected);
    h.transport.set_send(SendReply::Hold);
    h.advance(Duration::from_millis(100));
    h.connect();
    assert_eq!(h.sent(), [1, 2]);
}

#[test]
fn state_watch_sees_a_change() {
    let mut h = Harness::new(config().build().unwrap());
    let mut watch = h.producer.watch_state();
    let mut next = Box::pin(watch.changed());
    assert!(poll_once(&mut next).is_pending());
    h.connect();
    assert_eq!(poll_once(&mut next), Poll::Ready(Some(State::Connected)));
}

#[test]
fn dropping_the_driver_fails_the_producer_and_close_still_returns_records() {
    let mut h = Harness::new(config().build().unwrap());
    let mut handle = h.producer.try_send(rec("a")).unwrap();
    let mut transitions = h.producer.transitions();
    h.driver = None; // the executor shut down
    let mut next = Box::pin(transitions.next());
    let Poll::Ready(Some(failed)) = poll_once(&mut next) else {
        panic!("the failure is a transition");
    };
    assert_eq!(failed.to, State::Failed);
    drop(next);
    assert!(matches!(
        poll_once(&mut handle),
        Poll::Ready(Err(DeliveryError::Failed { .. }))
    ));
    assert_eq!(h.producer.state(), State::Failed);
    assert!(matches!(
        h.producer.try_send(rec("b")),
        Err(EnqueueError::Failed { .. })
    ));
    let p = h.producer.clone();
    let mut close = Box::pin(p.close(Duration::from_secs(1)));
    let Poll::Ready(returned) = poll_once(&mut close) else {
        panic!("close hangs")
    };
    assert_eq!(returned.len(), 1);
}

#[test]
fn dropping_every_handle_delivers_for_the_grace_period_then_dead_letters() {
    let mut h = Harness::new(config().build().unwrap());
    drop(h.producer.try_send(rec("a")).unwrap());
    let producer = std::mem::replace(
        &mut h.producer,
        Producer::builder(config().build().unwrap())
            .build(ScriptedTransport::new(), Arc::new(h.rt.clone()))
            .expect("the producer config fits the transport")
            .0,
    );
    drop(producer);
    h.run();
    assert!(
        h.driver.is_some(),
        "still delivering during the grace period"
    );
    h.advance(robust_producer::DEFAULT_DROP_GRACE);
    assert!(h.driver.is_none());
    let dead = h.dead.lock().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadLetterReason::Abandoned);
}

#[test]
fn driver_tells_the_transport_when_it_goes_idle_and_only_then() {
    let mut h = Harness::new(config().build().unwrap());
    h.connect();
    let idles = |h: &Harness| h.transport.idles();
    let before = idles(&h).len();

    let _handles: Vec<_> = (0..6)
        .map(|i| h.producer.try_send(rec(&format!("k{i}"))).unwrap())
        .collect();
    assert!(h.poll_driver().is_pending());
    // One poll: the window (4) handed off, then idle, once, after the sends.
    assert_eq!(h.sent(), vec![1, 2, 3, 4]);
    assert_eq!(idles(&h)[before..], [4]);

    // Acks free the window: the next poll sends the rest, then goes idle.
    h.ack_all();
    assert!(h.poll_driver().is_pending());
    assert_eq!(h.sent(), vec![5, 6]);
    assert_eq!(idles(&h)[before..], [4, 2]);

    // A poll that ends because the driver yields while still busy is not
    // idle: 5000 records take more than one poll's rounds to hand off.
    let mut h = Harness::new(
        config()
            .max_queued_records(10_000)
            .max_in_flight(10_000)
            .build()
            .unwrap(),
    );
    h.connect();
    let before = idles(&h).len();
    let _handles: Vec<_> = (0..5000)
        .map(|i| h.producer.try_send(rec(&format!("k{i}"))).unwrap())
        .collect();
    assert!(h.poll_driver().is_pending());
    let sent = h.sent().len();
    assert!(sent > 0 && sent < 5000, "{sent}");
    assert_eq!(idles(&h).len(), before, "yielded while busy: not idle");
    assert!(h.poll_driver().is_pending());
    assert_eq!(h.sent().len(), 5000);
    assert_eq!(idles(&h)[before..], [5000]);
}

/// `transitions()` gives every transition in order, none skipped, and ends
/// with the producer; `watch_state()` gives the latest state only.
#[test]
fn transitions_are_never_skipped_while_the_watch_gives_the_latest() {
    let mut h = Harness::new(config().build().unwrap());
    let mut transitions = h.producer.transitions();
    let mut watch = h.producer.watch_state();
    // Connecting now: fail, reconnect, connect with a backlog, drain.
    drop(h.producer.try_send(rec("a")).unwrap());
    h.transport
        .push_event(TransportEvent::ConnectFailed("refused".into()));
    h.run();
    h.advance(Duration::from_millis(100));
    h.connect();
    h.ack_all();
    h.run();
    assert_eq!(h.producer.state(), State::Connected);

    let mut watched = Box::pin(watch.changed());
    assert_eq!(
        poll_once(&mut watched),
        Poll::Ready(Some(State::Connected)),
        "the watch skips to the latest state"
    );
    drop(watched);
    let mut seen = Vec::new();
    loop {
        let mut next = Box::pin(transitions.next());
        match poll_once(&mut next) {
            Poll::Ready(Some(t)) => seen.push((t.from, t.to)),
            Poll::Ready(None) => panic!("the stream ended while the producer runs"),
            Poll::Pending => break,
        }
    }
    use State::*;
    assert_eq!(
        seen,
        [
            (Connecting, Disconnected),
            (Disconnected, Connecting),
            (Connecting, Draining),
            (Draining, Connected),
        ]
    );

    let p = h.producer.clone();
    let mut close = Box::pin(p.close(Duration::from_secs(1)));
    assert!(poll_once(&mut close).is_pending());
    h.run();
    assert_eq!(poll_once(&mut close), Poll::Ready(Vec::new()));
    let mut rest = Vec::new();
    loop {
        let mut next = Box::pin(transitions.next());
        match poll_once(&mut next) {
            Poll::Ready(Some(t)) => rest.push((t.from, t.to)),
            Poll::Ready(None) => break,
            Poll::Pending => panic!("the stream must end once the producer stopped"),
        }
    }
    assert_eq!(rest.last(), Some(&(Connected, Closed)), "{rest:?}");
}
