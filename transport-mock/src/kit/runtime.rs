//! Test runtimes: [`ManualRuntime`], whose clock moves only when the test
//! moves it, and [`CountYields`], which counts the yields of any runtime.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use robust_producer::{BoxFuture, Runtime, deadline_after};

/// What the clock of a [`ManualRuntime`] holds.
struct ManualClock {
    now: Instant,
    sleepers: Vec<(Instant, Waker)>,
    yields: u64,
    spawned: Vec<BoxFuture>,
}

/// A [`Runtime`] for tests that poll futures by hand: time stands still
/// until [`ManualRuntime::advance`] moves it (waking every sleep that is
/// then due), yields are counted, and spawned tasks are kept for the test
/// to take ([`ManualRuntime::take_spawned`]) rather than run.
///
/// Clones share one clock: keep one, hand one to the producer (or to a
/// [`MockBroker`](crate::MockBroker) built with it, so that the broker's
/// delays follow the same clock).
///
/// ```
/// use std::task::{Context, Waker};
/// use std::time::Duration;
/// use robust_producer::Runtime;
/// use robust_producer_mock::ManualRuntime;
///
/// let rt = ManualRuntime::new();
/// let start = rt.now();
/// let mut sleep = rt.sleep_until(start + Duration::from_secs(1));
/// let mut cx = Context::from_waker(Waker::noop());
/// assert!(sleep.as_mut().poll(&mut cx).is_pending());
/// assert_eq!(rt.next_sleep(), Some(start + Duration::from_secs(1)));
/// rt.advance(Duration::from_secs(1));
/// assert_eq!(rt.now(), start + Duration::from_secs(1));
/// assert_eq!(rt.next_sleep(), None, "the due sleep was woken");
/// assert!(sleep.as_mut().poll(&mut cx).is_ready());
/// ```
#[derive(Clone)]
pub struct ManualRuntime(Arc<Mutex<ManualClock>>);

impl ManualRuntime {
    /// A clock that starts at the real `Instant::now()` and then stands
    /// still.
    pub fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    /// A clock that starts at `now`.
    pub fn starting_at(now: Instant) -> Self {
        Self(Arc::new(Mutex::new(ManualClock {
            now,
            sleepers: Vec::new(),
            yields: 0,
            spawned: Vec::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, ManualClock> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the clock forward by `by` (saturating far in the future) and
    /// wakes every sleep that is then due.
    pub fn advance(&self, by: Duration) {
        let due: Vec<Waker> = {
            let mut clock = self.lock();
            let now = deadline_after(clock.now, by);
            clock.now = now;
            let (due, later) = clock
                .sleepers
                .drain(..)
                .partition::<Vec<_>, _>(|(t, _)| *t <= now);
            clock.sleepers = later;
            due.into_iter().map(|(_, w)| w).collect()
        };
        due.into_iter().for_each(Waker::wake);
    }

    /// The earliest deadline a pending sleep waits for.
    pub fn next_sleep(&self) -> Option<Instant> {
        self.lock().sleepers.iter().map(|(t, _)| *t).min()
    }

    /// How many times [`Runtime::yield_soon`] was called.
    pub fn yields(&self) -> u64 {
        self.lock().yields
    }

    /// The tasks spawned so far, for the test to poll (they are not run).
    pub fn take_spawned(&self) -> Vec<BoxFuture> {
        std::mem::take(&mut self.lock().spawned)
    }
}

impl Default for ManualRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clock = self.lock();
        f.debug_struct("ManualRuntime")
            .field("now", &clock.now)
            .field("sleepers", &clock.sleepers.len())
            .field("yields", &clock.yields)
            .field("spawned", &clock.spawned.len())
            .finish()
    }
}

impl Runtime for ManualRuntime {
    fn now(&self) -> Instant {
        self.lock().now
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture {
        Box::pin(ManualSleep {
            clock: self.clone(),
            deadline,
        })
    }

    fn spawn(&self, task: BoxFuture) {
        self.lock().spawned.push(task);
    }

    fn yield_soon(&self, cx: &mut Context<'_>) {
        self.lock().yields += 1;
        cx.waker().wake_by_ref();
    }
}

/// A sleep on a [`ManualRuntime`]'s clock.
struct ManualSleep {
    clock: ManualRuntime,
    deadline: Instant,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut clock = self.clock.lock();
        if clock.now >= self.deadline {
            return Poll::Ready(());
        }
        clock.sleepers.push((self.deadline, cx.waker().clone()));
        Poll::Pending
    }
}

/// Any [`Runtime`], counting the calls of [`Runtime::yield_soon`]: to
/// measure, for example, how often a busy driver yields on tokio.
///
/// ```
/// use robust_producer_mock::{CountYields, ManualRuntime};
///
/// let rt = CountYields::new(ManualRuntime::new());
/// assert_eq!(rt.yields(), 0);
/// ```
pub struct CountYields<R> {
    inner: R,
    yields: Arc<AtomicU64>,
}

impl<R: Runtime> CountYields<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            yields: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The yields so far.
    pub fn yields(&self) -> u64 {
        self.yields.load(Ordering::Relaxed)
    }

    /// A counter that reads the yields after the runtime is handed away.
    pub fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.yields)
    }
}

impl<R> fmt::Debug for CountYields<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountYields")
            .field("yields", &self.yields.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Runtime for CountYields<R> {
    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture {
        self.inner.sleep_until(deadline)
    }

    fn spawn(&self, task: BoxFuture) {
        self.inner.spawn(task);
    }

    fn yield_soon(&self, cx: &mut Context<'_>) {
        self.yields.fetch_add(1, Ordering::Relaxed);
        self.inner.yield_soon(cx);
    }
}
