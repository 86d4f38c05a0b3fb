//! The spool's threads.
//!
//! * The **writer** writes buffered frames (records and settle marks) to the
//!   segment files as soon as they arrive, so that they reach the page
//!   cache within microseconds — a process crash then loses almost no
//!   settle marks, which bounds the records sent twice after it.
//! * The **syncer** (policies `Always` and `Interval`) writes what is still
//!   buffered, fdatasyncs every segment written since its last round (and
//!   the directory if a segment was created), then reports the records
//!   written before the fsync as Durable. It also deletes segments whose
//!   records have all settled: ledger first (synced), then the files, then
//!   a directory fsync. While it waits for an fsync the writer keeps
//!   writing, and records arriving meanwhile share the next fsync. With
//!   `Always`, after reporting records Durable it waits a little for the
//!   next record, yielding its CPU, before it sleeps (see [`SPIN_MAX`]).
//! * With `Never` the writer reports records Durable once written, and the
//!   syncer only deletes segments and does the final round at close.
//!
//! Both threads write under one file mutex, taking the buffer under it, so
//! frames reach the files in the order they were appended. An I/O error
//! stops the spool for good: it fails with the error, and fsync is never
//! retried (after a failed fsync the kernel may have dropped the dirty
//! pages; a retry that succeeds would prove nothing).

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use robust_producer::{RecordId, SpoolSignal};
use tracing::{debug, error};

use crate::config::FsyncPolicy;
use crate::error::SpoolError;
use crate::format::Ledger;
use crate::spool::{Core, HIGH_WATER, State, Waiting};
use crate::spool_dir::{create_segment, segment_path, sync_dir, write_ledger};

/// The longest the `Always` syncer waits, after reporting records Durable,
/// for the next record before it sleeps. A caller that sends, awaits
/// Durable and sends again is back 10–80 µs later on a 2-CPU VM (its
/// thread has to be woken: ~40 µs when its CPU was idle), a few hundred
/// when it was preempted; a syncer found asleep costs that record another
/// wake-up and more (measured: with 200 µs, 4 % of the rounds found it
/// asleep and lost 360 µs on average; with 500 µs, under 0.2 %). The wait
/// yields the CPU at every turn, so it takes little from a thread that
/// wants it, and it shrinks when callers do not come back ([`SPIN_MIN`]).
const SPIN_MAX: Duration = Duration::from_micros(500);

/// The shortest such wait: each wait that catches nothing halves the next
/// one down to this, so that callers who do not come back quickly cost
/// little CPU; one that catches a record brings it back to [`SPIN_MAX`].
const SPIN_MIN: Duration = Duration::from_micros(20);

/// The segment files being written, behind the file mutex.
pub(crate) struct Files {
    /// The segment being written.
    current: Arc<File>,
    index: u64,
    /// `current` was written since the syncer last took it.
    dirty: bool,
    /// Earlier segments written since their last fsync.
    unsynced: Vec<(u64, Arc<File>)>,
    /// A segment was created since the last directory fsync.
    dir_dirty: bool,
    /// A spare buffer, swapped with the shared one.
    spare: Vec<u8>,
}

impl Files {
    pub(crate) fn new(index: u64, file: File) -> Self {
        Self {
            current: Arc::new(file),
            index,
            dirty: false,
            unsynced: Vec::new(),
            dir_dirty: false,
            spare: Vec::new(),
        }
    }
}

/// What one fsync round covers.
struct SyncPlan {
    files: Vec<(u64, Arc<File>)>,
    dir: bool,
    /// Records up to this id become Durable when it succeeds.
    through: Option<u64>,
}

/// The threads' shared context.
#[derive(Clone)]
pub(crate) struct Threads {
    core: Arc<Core>,
    signal: SpoolSignal,
    dir: PathBuf,
    policy: FsyncPolicy,
}

impl Threads {
    pub(crate) fn new(core: Arc<Core>, signal: SpoolSignal) -> Self {
        let dir = core.config.dir().to_owned();
        let policy = core.config.fsync();
        Self {
            core,
            signal,
            dir,
            policy,
        }
    }

    fn files(&self) -> MutexGuard<'_, Files> {
        self.core
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer thread: writes buffered frames as soon as they come; with
    /// `Never`, reports them Durable once written.
    pub(crate) fn run_writer(self) {
        loop {
            {
                let mut st = self.core.lock();
                loop {
                    if st.failed.is_some() || st.closed || st.closing {
                        return; // the syncer does the final round
                    }
                    if !st.buf.is_empty() {
                        break;
                    }
                    st.writer = Waiting::Idle;
                    st = self
                        .core
                        .wake_writer
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                st.writer = Waiting::Busy;
            }
            if let Err(e) = self.write_pending() {
                self.fail(&e);
                return;
            }
            if !self.policy.syncs() {
                self.report_written();
            }
        }
    }

    /// `Never`: records written are Durable.
    fn report_written(&self) {
        let through = self.core.lock().written_id.take();
        if let Some(id) = through {
            self.signal.durable(RecordId(id));
        }
    }

    /// The syncer thread: fsyncs (`Always`, `Interval`), deletes settled
    /// segments, and does the final round at close.
    pub(crate) fn run_syncer(self) {
        let syncs = self.policy.syncs();
        let mut last_sync = Instant::now();
        let mut spin = SPIN_MAX;
        // The last round reported records Durable: their callers may send
        // again at once.
        let mut reported = false;
        loop {
            if reported && self.policy == FsyncPolicy::Always {
                match self.spin_for_records(spin) {
                    Ok(true) => spin = SPIN_MAX,
                    Ok(false) => spin = (spin / 2).max(SPIN_MIN),
                    Err(e) => {
                        self.fail(&e);
                        return;
                    }
                }
            }
            let closing = {
                let mut st = self.core.lock();
                loop {
                    if st.failed.is_some() || st.closed {
                        return;
                    }
                    let now = Instant::now();
                    let tick = match self.policy {
                        FsyncPolicy::Interval(d) => Some(last_sync + d),
                        FsyncPolicy::Always | FsyncPolicy::Never => None,
                    };
                    let due = tick.is_none_or(|t| t <= now);
                    let records = syncs && (st.buf_last_id.is_some() || st.written_id.is_some());
                    if st.closing || (due && records) || self.deletable(&st, None) > 0 {
                        break;
                    }
                    // Before sleeping: buffered frames (settle marks the
                    // appenders left to this thread) go to the writer.
                    if !st.buf.is_empty() && st.writer == Waiting::Idle {
                        st.writer = Waiting::Busy;
                        self.core.wake_writer.notify_one();
                    }
                    match tick {
                        Some(t) if records => {
                            st.syncer = Waiting::Tick;
                            let wait = t.saturating_duration_since(now);
                            st = self
                                .core
                                .wake_syncer
                                .wait_timeout(st, wait)
                                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
                        }
                        _ => {
                            st.syncer = Waiting::Idle;
                            st = self
                                .core
                                .wake_syncer
                                .wait(st)
                                .unwrap_or_else(PoisonError::into_inner);
                        }
                    }
                }
                st.syncer = Waiting::Busy;
                st.closing
            };
            let round = self.write_pending().and_then(|()| {
                let records = self.core.lock().written_id.is_some();
                let mut reported = false;
                if closing || (syncs && records) {
                    let plan = self.plan(closing);
                    self.sync(&plan)?; // close syncs whatever the policy
                    reported = plan.through.is_some();
                    if reported && self.policy == FsyncPolicy::Always && !closing {
                        // Records sent in answer to this fsync come to this
                        // thread (it looks before sleeping), not the writer.
                        self.core.lock().syncer = Waiting::Spinning;
                    }
                    if let Some(id) = plan.through {
                        self.signal.durable(RecordId(id));
                    }
                    // What arrived during the fsync (settle marks above
                    // all) goes to the file now; records among it make the
                    // next round.
                    if !self.core.lock().buf.is_empty() {
                        self.write_pending()?;
                    }
                } else if !syncs {
                    self.report_written();
                }
                self.delete_settled()?;
                if closing {
                    self.finish()?;
                }
                Ok(reported)
            });
            last_sync = Instant::now();
            match round {
                Ok(r) => reported = r,
                Err(e) => {
                    self.fail(&e);
                    return;
                }
            }
            if closing {
                return;
            }
        }
    }

    /// `Always`: after an fsync that made records Durable, waits up to
    /// `budget` for the next record before going to sleep, sparing a caller
    /// that sends, awaits Durable and sends again a thread wake-up. Returns
    /// whether records are waiting (found at once or caught while waiting).
    /// Settle marks buffered meanwhile it writes itself (the appenders do
    /// not wake the writer for them while this thread waits).
    ///
    /// The wait yields the CPU at every turn rather than spinning: the
    /// caller just woken is often queued on this very CPU, and a pure spin
    /// would hold it off for the whole budget (measured: 250 µs lost in
    /// 7–15 % of the rounds with a 200 µs pure spin on 2 CPUs).
    fn spin_for_records(&self, budget: Duration) -> Result<bool, SpoolError> {
        {
            let mut st = self.core.lock();
            // Records written but not yet synced (the write after the last
            // fsync took records sent meanwhile) are work now: spinning for
            // `records_pending` would wait the whole spin for nothing.
            if st.buf_last_id.is_some()
                || st.written_id.is_some()
                || st.closing
                || st.failed.is_some()
            {
                st.syncer = Waiting::Busy;
                return Ok(st.failed.is_none() && !st.closing);
            }
            st.syncer = Waiting::Spinning;
        }
        let until = Instant::now() + budget;
        let caught = loop {
            if self.core.records_pending.load(Ordering::Acquire) {
                break true;
            }
            if self.core.unrecorded.load(Ordering::Acquire) > 0 {
                // Settle marks: to the file now. Records appended meanwhile
                // are taken with them and wait for an fsync.
                if let Err(e) = self.write_pending() {
                    self.core.lock().syncer = Waiting::Busy;
                    return Err(e);
                }
                if self.core.lock().written_id.is_some() {
                    break true;
                }
            }
            if Instant::now() >= until {
                break false;
            }
            std::thread::yield_now();
        };
        // Back to Busy under the lock: an appender that saw Spinning left
        // its records (and settle marks) for this thread, which looks at
        // them next.
        self.core.lock().syncer = Waiting::Busy;
        Ok(caught)
    }

    /// Writes every buffered frame, creating segments where the appenders
    /// rolled. The buffer is taken under the file mutex, so concurrent
    /// callers write in append order.
    fn write_pending(&self) -> Result<(), SpoolError> {
        let mut files = self.files();
        let (bytes, rolls, last_id, settles) = {
            let mut st = self.core.lock();
            self.core.records_pending.store(false, Ordering::Release);
            let spare = std::mem::take(&mut files.spare);
            (
                std::mem::replace(&mut st.buf, spare),
                std::mem::take(&mut st.rolls),
                st.buf_last_id.take(),
                std::mem::take(&mut st.buf_settles),
            )
        };
        let mut at = 0;
        for &(roll_at, index) in &rolls {
            self.write(&mut files, &bytes[at..roll_at])?;
            self.roll(&mut files, index)?;
            at = roll_at;
        }
        self.write(&mut files, &bytes[at..])?;
        let mut bytes = bytes;
        bytes.clear();
        if bytes.capacity() <= 2 * HIGH_WATER {
            files.spare = bytes;
        }
        if let Some(id) = last_id {
            let mut st = self.core.lock();
            st.written_id = st.written_id.max(Some(id));
            // The syncer may have looked before these records were taken
            // from the buffer and gone to sleep: they are its work now.
            if self.policy.syncs() && st.syncer == Waiting::Idle {
                st.syncer = Waiting::Busy;
                self.core.wake_syncer.notify_one();
            }
        }
        drop(files);
        if settles > 0 {
            self.core.unrecorded.fetch_sub(settles, Ordering::AcqRel);
            self.signal.progress();
        }
        Ok(())
    }

    fn write(&self, files: &mut Files, bytes: &[u8]) -> Result<(), SpoolError> {
        if bytes.is_empty() {
            return Ok(());
        }
        (&*files.current).write_all(bytes).map_err(SpoolError::io(
            "write",
            segment_path(&self.dir, files.index),
        ))?;
        files.dirty = true;
        self.core
            .bytes_written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Starts segment `index`.
    fn roll(&self, files: &mut Files, index: u64) -> Result<(), SpoolError> {
        let file = create_segment(&self.dir, index, self.core.config.reserve())?;
        let old = std::mem::replace(&mut files.current, Arc::new(file));
        let old_index = std::mem::replace(&mut files.index, index);
        if files.dirty {
            files.unsynced.push((old_index, old));
        }
        files.dirty = true;
        files.dir_dirty = true;
        debug!(segment = index, "spool segment started");
        Ok(())
    }

    /// What an fsync now must cover: every segment written since the last
    /// plan, the directory if a segment was created, and the records
    /// written so far. `all`: also the current segment even if clean.
    fn plan(&self, all: bool) -> SyncPlan {
        let mut files = self.files();
        let through = self.core.lock().written_id.take();
        let mut list = std::mem::take(&mut files.unsynced);
        if files.dirty || all {
            list.push((files.index, Arc::clone(&files.current)));
            files.dirty = false;
        }
        SyncPlan {
            files: list,
            dir: std::mem::take(&mut files.dir_dirty) || all,
            through,
        }
    }

    fn sync(&self, plan: &SyncPlan) -> Result<(), SpoolError> {
        for (index, file) in &plan.files {
            file.sync_data()
                .map_err(SpoolError::io("fdatasync", segment_path(&self.dir, *index)))?;
            self.core.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        if plan.dir {
            sync_dir(&self.dir)?;
            self.core.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// How many segments at the front can be deleted: every record in them
    /// settled, and none is being written. `written`: the index of the
    /// segment being written, if known.
    fn deletable(&self, st: &State, written: Option<u64>) -> usize {
        let mut limit = match st.oldest_held {
            Some(id) => st.segment_of(id).map_or(0, |s| s.index),
            None => st.segments.back().map_or(0, |s| s.index),
        };
        if let Some(w) = written {
            limit = limit.min(w);
        }
        // Segments still to be created (rolls not yet written) are after
        // every existing one: `limit` never passes the one being written.
        if let Some(&(_, first_unwritten)) = st.rolls.first() {
            limit = limit.min(first_unwritten);
        }
        st.segments.iter().take_while(|s| s.index < limit).count()
    }

    /// Deletes the segments whose records all settled: ledger first (synced),
    /// then the files, then a directory fsync.
    fn delete_settled(&self) -> Result<(), SpoolError> {
        let written = self.files().index;
        let (doomed, ledger) = {
            let st = self.core.lock();
            let n = self.deletable(&st, Some(written));
            if n == 0 {
                return Ok(());
            }
            let doomed: Vec<(u64, u64)> = st
                .segments
                .iter()
                .take(n)
                .map(|s| (s.index, s.last_seq))
                .collect();
            let mut ledger = ledger_of(&st);
            ledger.watermark = doomed.iter().map(|d| d.1).fold(st.watermark, u64::max);
            (doomed, ledger)
        };
        write_ledger(&self.dir, &ledger)?;
        self.core.fsyncs.fetch_add(2, Ordering::Relaxed);
        for &(index, _) in &doomed {
            let path = segment_path(&self.dir, index);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(SpoolError::Io {
                        op: "remove",
                        path,
                        source: e,
                    });
                }
            }
        }
        self.files()
            .unsynced
            .retain(|(i, _)| !doomed.iter().any(|d| d.0 == *i));
        sync_dir(&self.dir)?;
        self.core.fsyncs.fetch_add(1, Ordering::Relaxed);
        let mut st = self.core.lock();
        for &(index, _) in &doomed {
            if st.segments.front().is_some_and(|s| s.index == index) {
                st.segments.pop_front();
            }
        }
        st.watermark = ledger.watermark;
        debug!(
            deleted = doomed.len(),
            watermark = ledger.watermark,
            "spool segments deleted"
        );
        Ok(())
    }

    /// The last step of close: the ledger, then `closed`.
    fn finish(&self) -> Result<(), SpoolError> {
        let ledger = ledger_of(&self.core.lock());
        write_ledger(&self.dir, &ledger)?;
        let mut st = self.core.lock();
        st.closed = true;
        drop(st);
        self.core.wake_writer.notify_all();
        self.signal.closed();
        debug!("spool closed");
        Ok(())
    }

    /// Stops the spool for good after an I/O error.
    fn fail(&self, e: &SpoolError) {
        let reason =
            format!("{e}; the spool is stopped (records not yet Durable are not safe on disk)");
        let mut st = self.core.lock();
        if st.failed.is_some() {
            return;
        }
        error!(%reason, disk_full = e.is_disk_full(), "spool failed");
        st.failed = Some(reason.clone());
        st.buf = Vec::new();
        st.rolls.clear();
        st.buf_settles = 0;
        drop(st);
        // Settle marks will never be written: stop holding sends back.
        self.core.unrecorded.store(0, Ordering::Release);
        self.signal.progress();
        self.core.wake_writer.notify_all();
        self.core.wake_syncer.notify_all();
        self.signal.failed(reason);
    }
}

fn ledger_of(st: &State) -> Ledger {
    Ledger {
        watermark: st.watermark,
        next_seq: st.seq_base + st.last_id + 1,
        next_index: st.next_index,
    }
}

/// Makes sure `Files` can live in a mutex in `Core`.
pub(crate) type FilesMutex = Mutex<Files>;
