//! [`ScriptedTransport`]: a [`Transport`] whose every answer the test
//! chooses, for driver and spool tests that need exact control rather than
//! a simulated broker.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use robust_producer::{
    Ack, Record, RecordId, Transport, TransportError, TransportEvent, TransportLimits,
};

/// How a [`ScriptedTransport`] answers `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectReply {
    /// [`TransportEvent::Connected`] at once.
    Accept,
    /// [`TransportEvent::ConnectFailed`] with this reason, at once.
    Refuse(String),
    /// Nothing: the test pushes the outcome with
    /// [`ScriptedTransport::push_event`].
    Silent,
}

/// How a [`ScriptedTransport`] answers `send`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendReply {
    /// Takes the record and acknowledges it at once.
    Ack,
    /// Takes the record and holds its acknowledgement until the test
    /// releases it ([`ScriptedTransport::release`]).
    Hold,
    /// Refuses the record with this error.
    Refuse(TransportError),
}

/// Watches every `send` before it is answered: gets the 1-based number of
/// the call, the id and the record.
type SendHook = Arc<dyn Fn(u64, RecordId, &Record) + Send + Sync>;

/// The events of one connection, and the waker of its waiting reader.
#[derive(Default)]
struct Inbox {
    events: VecDeque<TransportEvent>,
    waker: Option<Waker>,
}

impl Inbox {
    fn push(&mut self, event: TransportEvent) {
        self.events.push_back(event);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// Everything the handles of one script share.
struct Script {
    connect: ConnectReply,
    send: SendReply,
    limits: TransportLimits,
    keep_records: bool,
    hook: Option<SendHook>,
    /// One inbox per connection; the test's events go to the last one.
    inboxes: Vec<Inbox>,
    sends: u64,
    records: Vec<(RecordId, Record)>,
    held: VecDeque<RecordId>,
    connects: usize,
    closes: usize,
    sent_since_idle: usize,
    idles: Vec<usize>,
}

/// A [`Transport`] the test scripts: how it answers `connect`
/// ([`ConnectReply`]) and `send` ([`SendReply`]), which events it reports
/// ([`ScriptedTransport::push_event`], [`ScriptedTransport::release`]),
/// and what it was asked (connects, records taken, held acknowledgements,
/// `idle` calls, closes).
///
/// By default it connects at once and acknowledges every record at once.
/// Clones share the script and the connection: keep one, hand one to the
/// producer. [`ScriptedTransport::connection`] opens another connection on
/// the same script (for a second producer); the test's events then go to
/// the newest one.
///
/// ```
/// use robust_producer::{Record, RecordId, Transport, TransportEvent};
/// use robust_producer_mock::{ScriptedTransport, SendReply};
///
/// let script = ScriptedTransport::new();
/// script.set_send(SendReply::Hold);
/// let mut transport = script.clone();
/// transport.connect();
/// assert_eq!(transport.try_next_event(), Some(TransportEvent::Connected));
/// transport.send(RecordId(1), &Record::new("t", "a"))?;
/// assert_eq!(transport.try_next_event(), None, "held");
/// assert_eq!(script.held(), [RecordId(1)]);
/// assert_eq!(script.release_all(), 1);
/// assert!(matches!(transport.try_next_event(), Some(TransportEvent::Delivered(_))));
/// # Ok::<(), robust_producer::TransportError>(())
/// ```
#[derive(Clone)]
pub struct ScriptedTransport {
    script: Arc<Mutex<Script>>,
    inbox: usize,
}

impl ScriptedTransport {
    /// A transport that connects at once and acknowledges every record at
    /// once.
    pub fn new() -> Self {
        Self {
            script: Arc::new(Mutex::new(Script {
                connect: ConnectReply::Accept,
                send: SendReply::Ack,
                limits: TransportLimits::default(),
                keep_records: true,
                hook: None,
                inboxes: vec![Inbox::default()],
                sends: 0,
                records: Vec::new(),
                held: VecDeque::new(),
                connects: 0,
                closes: 0,
                sent_since_idle: 0,
                idles: Vec::new(),
            })),
            inbox: 0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// States these limits to the producer ([`Transport::limits`]).
    #[must_use]
    pub fn with_limits(self, limits: TransportLimits) -> Self {
        self.lock().limits = limits;
        self
    }

    /// Does not keep the records taken (for benchmarks): only their ids
    /// are held or acknowledged.
    #[must_use]
    pub fn forget_records(self) -> Self {
        self.lock().keep_records = false;
        self
    }

    /// Calls `hook` on every `send`, before it is answered, with the
    /// 1-based number of the call, the id and the record. A test can make
    /// the transport misbehave there (a panic stands for a transport bug).
    /// The hook runs outside the transport's lock.
    #[must_use]
    pub fn on_send(self, hook: impl Fn(u64, RecordId, &Record) + Send + Sync + 'static) -> Self {
        self.lock().hook = Some(Arc::new(hook));
        self
    }

    /// How `connect` is answered from now on.
    pub fn set_connect(&self, reply: ConnectReply) {
        self.lock().connect = reply;
    }

    /// How `send` is answered from now on.
    pub fn set_send(&self, reply: SendReply) {
        self.lock().send = reply;
    }

    /// Another connection on the same script: it shares the replies and
    /// the records, has its own events, and becomes the one the test's
    /// events ([`ScriptedTransport::push_event`], released
    /// acknowledgements) go to.
    pub fn connection(&self) -> Self {
        let mut script = self.lock();
        script.inboxes.push(Inbox::default());
        Self {
            script: Arc::clone(&self.script),
            inbox: script.inboxes.len() - 1,
        }
    }

    /// Reports `event` on the newest connection, waking its reader.
    pub fn push_event(&self, event: TransportEvent) {
        let mut script = self.lock();
        if let Some(inbox) = script.inboxes.last_mut() {
            inbox.push(event);
        }
    }

    /// Acknowledges the held records `pick` chooses (asked once per held
    /// record, oldest first), on the newest connection; the others stay
    /// held. Returns how many were acknowledged.
    pub fn release(&self, mut pick: impl FnMut(RecordId) -> bool) -> usize {
        let mut script = self.lock();
        let held = std::mem::take(&mut script.held);
        let (now, later): (Vec<_>, Vec<_>) = held.into_iter().partition(|id| pick(*id));
        script.held = later.into();
        if let Some(inbox) = script.inboxes.last_mut() {
            for id in &now {
                inbox.push(TransportEvent::Delivered(Ack::new(*id)));
            }
        }
        now.len()
    }

    /// Acknowledges the `n` oldest held records (or all, if fewer are
    /// held); returns how many.
    pub fn release_oldest(&self, n: usize) -> usize {
        let mut left = n;
        self.release(|_| {
            let pick = left > 0;
            left = left.saturating_sub(1);
            pick
        })
    }

    /// Acknowledges every held record; returns how many.
    pub fn release_all(&self) -> usize {
        self.release(|_| true)
    }

    /// The records whose acknowledgement is held, oldest first.
    pub fn held(&self) -> Vec<RecordId> {
        self.lock().held.iter().copied().collect()
    }

    /// The records taken (not refused), in order, unless
    /// [`ScriptedTransport::forget_records`] was called.
    pub fn records(&self) -> Vec<(RecordId, Record)> {
        self.lock().records.clone()
    }

    /// The payloads of [`ScriptedTransport::records`], as (lossy) text.
    pub fn payloads(&self) -> Vec<String> {
        self.lock()
            .records
            .iter()
            .map(|(_, r)| String::from_utf8_lossy(&r.payload).into_owned())
            .collect()
    }

    /// How many times `connect` was called, on every connection.
    pub fn connects(&self) -> usize {
        self.lock().connects
    }

    /// How many times `close` was called, on every connection.
    pub fn closes(&self) -> usize {
        self.lock().closes
    }

    /// For each `idle` call, how many records were taken since the
    /// previous one.
    pub fn idles(&self) -> Vec<usize> {
        self.lock().idles.clone()
    }
}

impl Default for ScriptedTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ScriptedTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let script = self.lock();
        f.debug_struct("ScriptedTransport")
            .field("connect", &script.connect)
            .field("send", &script.send)
            .field("connects", &script.connects)
            .field("sends", &script.sends)
            .field("held", &script.held.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Transport for ScriptedTransport {
    fn connect(&mut self) {
        let mut script = self.lock();
        script.connects += 1;
        let event = match &script.connect {
            ConnectReply::Accept => TransportEvent::Connected,
            ConnectReply::Refuse(reason) => TransportEvent::ConnectFailed(reason.clone()),
            ConnectReply::Silent => return,
        };
        script.inboxes[self.inbox].push(event);
    }

    fn send(&mut self, id: RecordId, record: &Record) -> Result<(), TransportError> {
        let (nth, hook) = {
            let mut script = self.lock();
            script.sends += 1;
            (script.sends, script.hook.clone())
        };
        if let Some(hook) = hook {
            hook(nth, id, record);
        }
        let mut script = self.lock();
        let hold = match &script.send {
            SendReply::Refuse(error) => return Err(error.clone()),
            SendReply::Ack => false,
            SendReply::Hold => true,
        };
        if script.keep_records {
            script.records.push((id, record.clone()));
        }
        script.sent_since_idle += 1;
        if hold {
            script.held.push_back(id);
        } else {
            script.inboxes[self.inbox].push(TransportEvent::Delivered(Ack::new(id)));
        }
        Ok(())
    }

    fn try_next_event(&mut self) -> Option<TransportEvent> {
        self.lock().inboxes[self.inbox].events.pop_front()
    }

    async fn next_event(&mut self) -> TransportEvent {
        poll_fn(|cx| {
            let mut script = self.lock();
            let inbox = &mut script.inboxes[self.inbox];
            match inbox.events.pop_front() {
                Some(event) => Poll::Ready(event),
                None => {
                    inbox.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    fn idle(&mut self) {
        let mut script = self.lock();
        let batch = std::mem::take(&mut script.sent_since_idle);
        script.idles.push(batch);
    }

    async fn close(&mut self, _timeout: Duration) {
        self.lock().closes += 1;
    }

    fn limits(&self) -> TransportLimits {
        self.lock().limits
    }
}
