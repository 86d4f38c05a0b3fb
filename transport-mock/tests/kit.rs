//! The test kit on its own: the manual runtime's clock, sleeps, yields and
//! spawned tasks; the scripted transport's replies, held
//! acknowledgements, connections, send hook and what it records.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use robust_producer::{
    Record, RecordId, Runtime, Transport, TransportError, TransportEvent, TransportLimits,
};
use robust_producer_mock::{
    ConnectReply, CountYields, ManualRuntime, MockBroker, ScriptedTransport, SendReply,
};

fn rec(text: &str) -> Record {
    Record::new("t", text.to_owned())
}

fn delivered(event: Option<TransportEvent>) -> Option<u64> {
    match event {
        Some(TransportEvent::Delivered(ack)) => Some(ack.id.0),
        _ => None,
    }
}

#[test]
fn the_manual_clock_moves_only_when_told_and_wakes_due_sleeps() {
    let rt = ManualRuntime::new();
    let start = rt.now();
    let mut cx = Context::from_waker(Waker::noop());
    let mut early = rt.sleep_until(start + Duration::from_millis(10));
    let mut late = rt.sleep_until(start + Duration::from_millis(20));
    assert!(early.as_mut().poll(&mut cx).is_pending());
    assert!(late.as_mut().poll(&mut cx).is_pending());
    assert_eq!(rt.next_sleep(), Some(start + Duration::from_millis(10)));

    rt.advance(Duration::from_millis(10));
    assert_eq!(rt.now(), start + Duration::from_millis(10));
    assert!(early.as_mut().poll(&mut cx).is_ready());
    assert!(late.as_mut().poll(&mut cx).is_pending());
    rt.advance(Duration::MAX);
    assert!(
        late.as_mut().poll(&mut cx).is_ready(),
        "saturates, no panic"
    );
}

#[test]
fn the_manual_runtime_counts_yields_and_keeps_spawned_tasks() {
    let rt = ManualRuntime::new();
    let mut cx = Context::from_waker(Waker::noop());
    rt.yield_soon(&mut cx);
    rt.yield_soon(&mut cx);
    assert_eq!(rt.yields(), 2);

    let ran = Arc::new(AtomicU64::new(0));
    let task = Arc::clone(&ran);
    rt.spawn(Box::pin(async move {
        task.fetch_add(1, Ordering::Relaxed);
    }));
    assert_eq!(ran.load(Ordering::Relaxed), 0, "not run by the runtime");
    let mut spawned = rt.take_spawned();
    assert_eq!(spawned.len(), 1);
    assert!(spawned[0].as_mut().poll(&mut cx).is_ready());
    assert_eq!(ran.load(Ordering::Relaxed), 1);
    assert!(rt.take_spawned().is_empty());

    let counting = CountYields::new(rt.clone());
    let counter = counting.counter();
    counting.yield_soon(&mut cx);
    assert_eq!((counting.yields(), counter.load(Ordering::Relaxed)), (1, 1));
    assert_eq!(rt.yields(), 3, "the inner runtime still yields");
}

#[test]
fn a_broker_on_the_manual_clock_delays_by_it() {
    let rt = ManualRuntime::new();
    let broker = MockBroker::builder().runtime(rt.clone()).build();
    broker.delay(Duration::from_secs(1));
    let mut transport = broker.transport();
    transport.connect();
    assert_eq!(transport.try_next_event(), None, "connect delayed");
    rt.advance(Duration::from_secs(1));
    assert_eq!(transport.try_next_event(), Some(TransportEvent::Connected));
}

#[test]
fn by_default_it_connects_and_acknowledges_at_once() {
    let script = ScriptedTransport::new();
    let mut transport = script.clone();
    transport.connect();
    assert_eq!(transport.try_next_event(), Some(TransportEvent::Connected));
    transport.send(RecordId(1), &rec("a")).unwrap();
    assert_eq!(delivered(transport.try_next_event()), Some(1));
    assert_eq!(transport.try_next_event(), None);
    assert_eq!(script.connects(), 1);
    assert_eq!(script.payloads(), ["a"]);
    assert_eq!(script.records()[0].0, RecordId(1));
}

#[test]
fn replies_follow_the_script() {
    let script = ScriptedTransport::new();
    let mut transport = script.clone();
    script.set_connect(ConnectReply::Refuse("down".into()));
    transport.connect();
    assert_eq!(
        transport.try_next_event(),
        Some(TransportEvent::ConnectFailed("down".into()))
    );
    script.set_connect(ConnectReply::Silent);
    transport.connect();
    assert_eq!(transport.try_next_event(), None);
    script.push_event(TransportEvent::Connected);
    assert_eq!(transport.try_next_event(), Some(TransportEvent::Connected));

    script.set_send(SendReply::Refuse(TransportError::link("gone")));
    let err = transport.send(RecordId(1), &rec("a")).unwrap_err();
    assert_eq!(err, TransportError::link("gone"));
    assert!(script.records().is_empty(), "a refused record is not taken");
}

#[test]
fn held_acknowledgements_wait_for_release() {
    let script = ScriptedTransport::new();
    script.set_send(SendReply::Hold);
    let mut transport = script.clone();
    for id in 1..=5 {
        transport.send(RecordId(id), &rec("x")).unwrap();
    }
    assert_eq!(transport.try_next_event(), None);
    assert_eq!(script.release(|id| id.0 % 2 == 0), 2);
    assert_eq!(delivered(transport.try_next_event()), Some(2));
    assert_eq!(delivered(transport.try_next_event()), Some(4));
    assert_eq!(script.release_oldest(2), 2);
    assert_eq!(delivered(transport.try_next_event()), Some(1));
    assert_eq!(delivered(transport.try_next_event()), Some(3));
    assert_eq!(script.held(), [RecordId(5)]);
    assert_eq!(script.release_all(), 1);
    assert!(script.held().is_empty());
}

#[test]
fn each_connection_has_its_own_events_and_the_newest_gets_the_tests() {
    let script = ScriptedTransport::new();
    let mut first = script.connection();
    first.connect();
    let mut second = script.connection();
    second.connect();
    assert_eq!(first.try_next_event(), Some(TransportEvent::Connected));
    assert_eq!(second.try_next_event(), Some(TransportEvent::Connected));
    script.push_event(TransportEvent::Ready);
    assert_eq!(first.try_next_event(), None);
    assert_eq!(second.try_next_event(), Some(TransportEvent::Ready));
    assert_eq!(script.connects(), 2, "counted across connections");
}

#[test]
fn next_event_waits_for_a_pushed_event() {
    let script = ScriptedTransport::new();
    script.set_connect(ConnectReply::Silent);
    let mut transport = script.clone();
    let mut cx = Context::from_waker(Waker::noop());
    {
        let mut next = pin!(transport.next_event());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        script.push_event(TransportEvent::Connected);
        assert_eq!(
            next.as_mut().poll(&mut cx),
            Poll::Ready(TransportEvent::Connected)
        );
    }
    let mut close = pin!(transport.close(Duration::ZERO));
    assert!(close.as_mut().poll(&mut cx).is_ready());
    assert_eq!(script.closes(), 1);
}

#[test]
fn the_send_hook_sees_every_call_and_idle_counts_batches() {
    let seen = Arc::new(AtomicU64::new(0));
    let hook_seen = Arc::clone(&seen);
    let script = ScriptedTransport::new()
        .with_limits(TransportLimits::new().with_max_wire_bytes(10))
        .forget_records()
        .on_send(move |nth, id, _| {
            assert_eq!(nth, id.0, "numbered from 1");
            hook_seen.store(nth, Ordering::Relaxed);
        });
    let mut transport = script.clone();
    assert_eq!(transport.limits().max_wire_bytes, Some(10));
    for id in 1..=3 {
        transport.send(RecordId(id), &rec("x")).unwrap();
    }
    transport.idle();
    transport.send(RecordId(4), &rec("x")).unwrap();
    transport.idle();
    transport.idle();
    assert_eq!(seen.load(Ordering::Relaxed), 4);
    assert_eq!(script.idles(), [3, 1, 0]);
    assert!(script.records().is_empty(), "records forgotten");
}
