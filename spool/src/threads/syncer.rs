//! The syncer thread (see [the threads module](super)): fsync rounds, the
//! `Always` policy's short wait for the next record, deleting segments
//! whose records all settled, and the final round at close.

use std::fs::{self, File};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use robust_producer::RecordId;
use tracing::debug;

use super::{Threads, ledger_of};
use crate::config::FsyncPolicy;
use crate::error::SpoolError;
use crate::shared::{SpoolInner, Waiting};
use crate::spool_dir::{segment_path, sync_dir, write_ledger};

/// The longest the `Always` syncer waits, after reporting records Durable,
/// for the next record before it sleeps. A caller that sends, awaits
/// Durable and sends again is back 10–80 µs later on a 2-CPU VM (its
/// thread has to be woken: ~40 µs when its CPU was idle), a few hundred
/// when it was preempted; a syncer found asleep costs that record another
/// wake-up and more (measured: with 200 µs, 4 % of the rounds found it
/// asleep and lost 360 µs on average; with 500 µs, under 0.2 %). The wait
/// yields the CPU at every turn, so it takes little from a thread that
/// wants it, and it shrinks when callers do not come back ([`SPIN_MIN`]).
pub(super) const SPIN_MAX: Duration = Duration::from_micros(500);

/// The shortest such wait: each wait that catches nothing halves the next
/// one down to this, so that callers who do not come back quickly cost
/// little CPU; one that catches a record brings it back to [`SPIN_MAX`].
const SPIN_MIN: Duration = Duration::from_micros(20);

/// What one fsync round covers.
struct SyncPlan {
    files: Vec<(u64, Arc<File>)>,
    dir: bool,
    /// Records up to this id become Durable when it succeeds.
    through: Option<u64>,
}

impl Threads {
    /// The syncer thread: fsyncs (`Always`, `Interval`), deletes settled
    /// segments, and does the final round at close.
    pub(crate) fn run_syncer(self) {
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
            let Some(closing) = self.wait_for_round(last_sync) else {
                return; // failed, or closed
            };
            let round = self.round(closing);
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

    /// Sleeps until a round is due: the spool closes (`Some(true)`), records
    /// wait for an fsync that is due, or segments can be deleted
    /// (`Some(false)`); `None` once the spool failed or closed. Before
    /// sleeping, hands buffered frames (settle marks the appenders left to
    /// this thread) to the writer.
    fn wait_for_round(&self, last_sync: Instant) -> Option<bool> {
        let syncs = self.policy.syncs();
        let mut st = self.shared.lock();
        loop {
            if st.failed.is_some() || st.closed {
                return None;
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
            if !st.buf.is_empty() && st.writer == Waiting::Idle {
                st.writer = Waiting::Busy;
                self.shared.wake_writer.notify_one();
            }
            match tick {
                Some(t) if records => {
                    st.syncer = Waiting::Tick;
                    let wait = t.saturating_duration_since(now);
                    st = self
                        .shared
                        .wake_syncer
                        .wait_timeout(st, wait)
                        .map_or_else(|p| p.into_inner().0, |(g, _)| g);
                }
                _ => {
                    st.syncer = Waiting::Idle;
                    st = self
                        .shared
                        .wake_syncer
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
        st.syncer = Waiting::Busy;
        Some(st.closing)
    }

    /// One round: writes what is buffered, fsyncs and reports Durable what
    /// was written (at close whatever the policy), deletes the segments
    /// whose records all settled, and at close finishes. Returns whether it
    /// reported records Durable.
    fn round(&self, closing: bool) -> Result<bool, SpoolError> {
        let syncs = self.policy.syncs();
        self.write_pending()?;
        let records = self.shared.lock().written_id.is_some();
        let mut reported = false;
        if closing || (syncs && records) {
            reported = self.sync_and_report(closing)?;
        } else if !syncs {
            self.report_written();
        }
        self.delete_settled_segments()?;
        if closing {
            self.finish()?;
        }
        Ok(reported)
    }

    /// Fsyncs what was written and reports its records Durable, then writes
    /// what arrived meanwhile. Returns whether records were reported.
    fn sync_and_report(&self, closing: bool) -> Result<bool, SpoolError> {
        let plan = self.plan(closing);
        self.sync(&plan)?; // close syncs whatever the policy
        let reported = plan.through.is_some();
        if reported && self.policy == FsyncPolicy::Always && !closing {
            // Records sent in answer to this fsync come to this thread (it
            // looks before sleeping), not the writer.
            self.shared.lock().syncer = Waiting::Spinning;
        }
        if let Some(id) = plan.through {
            self.signal.durable(RecordId(id));
        }
        // What arrived during the fsync (settle marks above all) goes to
        // the file now; records among it make the next round.
        if !self.shared.lock().buf.is_empty() {
            self.write_pending()?;
        }
        Ok(reported)
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
            let mut st = self.shared.lock();
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
            if self.shared.records_pending.load(Ordering::Acquire) {
                break true;
            }
            if self.shared.unrecorded.load(Ordering::Acquire) > 0 {
                // Settle marks: to the file now. Records appended meanwhile
                // are taken with them and wait for an fsync.
                if let Err(e) = self.write_pending() {
                    self.shared.lock().syncer = Waiting::Busy;
                    return Err(e);
                }
                if self.shared.lock().written_id.is_some() {
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
        self.shared.lock().syncer = Waiting::Busy;
        Ok(caught)
    }

    /// What an fsync now must cover: every segment written since the last
    /// plan, the directory if a segment was created, and the records
    /// written so far. `all`: also the current segment even if clean.
    fn plan(&self, all: bool) -> SyncPlan {
        let mut files = self.files();
        let through = self.shared.lock().written_id.take();
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
            self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        if plan.dir {
            sync_dir(&self.dir)?;
            self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// How many segments at the front can be deleted: every record in them
    /// settled, and none is being written. `written`: the index of the
    /// segment being written, if known.
    fn deletable(&self, st: &SpoolInner, written: Option<u64>) -> usize {
        let mut limit = match st.oldest_held {
            Some(id) => st.segment_of(id).map_or(0, |s| s.index),
            None => st.segments.back().map_or(0, |s| s.index),
        };
        if let Some(w) = written {
            limit = limit.min(w);
        }
        // Segments still to be created (rolls not yet written) are after
        // every existing one: `limit` never passes the one being written.
        if let Some(first_unwritten) = st.rolls.first().map(|r| r.index) {
            limit = limit.min(first_unwritten);
        }
        st.segments.iter().take_while(|s| s.index < limit).count()
    }

    /// Deletes the segments whose records all settled: ledger first (synced),
    /// then the files, then a directory fsync.
    fn delete_settled_segments(&self) -> Result<(), SpoolError> {
        let written = self.files().index;
        let (doomed, ledger) = {
            let st = self.shared.lock();
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
        self.shared.fsyncs.fetch_add(2, Ordering::Relaxed);
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
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        let mut st = self.shared.lock();
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
        let ledger = ledger_of(&self.shared.lock());
        write_ledger(&self.dir, &ledger)?;
        let mut st = self.shared.lock();
        st.closed = true;
        drop(st);
        self.shared.wake_writer.notify_all();
        self.signal.closed();
        debug!("spool closed");
        Ok(())
    }
}
