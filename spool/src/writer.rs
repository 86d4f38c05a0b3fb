//! The spool's writer thread: takes the buffered frames, writes them to the
//! segment files, fsyncs as the policy says, reports what is Durable, and
//! deletes segments whose records have all settled (after syncing the
//! ledger). An I/O error stops it for good: the spool fails with the error,
//! and fsync is never retried (after a failed fsync the kernel may have
//! dropped the dirty pages; a retry that succeeds would prove nothing).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use robust_producer::{RecordId, SpoolSignal};
use tracing::{debug, error};

use crate::config::FsyncPolicy;
use crate::error::SpoolError;
use crate::format::{self, Ledger};
use crate::fs::{segment_path, sync_dir, write_ledger};
use crate::spool::{Core, HIGH_WATER, State, WriterWait};

/// One round of work taken from the shared state.
struct Job {
    bytes: Vec<u8>,
    rolls: Vec<(usize, u64)>,
    last_id: Option<u64>,
    close: bool,
    /// Whether the Interval tick is due.
    due: bool,
}

pub(crate) struct Writer {
    core: Arc<Core>,
    signal: SpoolSignal,
    dir: PathBuf,
    policy: FsyncPolicy,
    /// The segment being written.
    file: File,
    index: u64,
    /// Bytes written to `file` since its last fsync.
    dirty: bool,
    /// Earlier segments with writes not yet fsynced.
    unsynced: Vec<(u64, File)>,
    /// A segment was created since the last directory fsync.
    dir_dirty: bool,
    /// The last record id written but not yet reported Durable.
    pending: Option<u64>,
    last_sync: Instant,
    /// A spare buffer, swapped with the shared one each round.
    spare: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(core: Arc<Core>, signal: SpoolSignal, index: u64, file: File) -> Self {
        let dir = core.config.dir().to_owned();
        let policy = core.config.fsync();
        Self {
            core,
            signal,
            dir,
            policy,
            file,
            index,
            dirty: false,
            unsynced: Vec::new(),
            dir_dirty: false,
            pending: None,
            last_sync: Instant::now(),
            spare: Vec::new(),
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            let Some(job) = self.next_job() else { return };
            let close = job.close;
            if let Err(e) = self.work(job) {
                self.fail(&e);
                return;
            }
            if close {
                return;
            }
        }
    }

    /// Waits for work and takes it.
    fn next_job(&mut self) -> Option<Job> {
        let core = Arc::clone(&self.core);
        let mut st = core.lock();
        loop {
            if st.failed.is_some() || st.closed {
                return None;
            }
            let now = Instant::now();
            let tick = match self.policy {
                FsyncPolicy::Interval(d) => Some(self.last_sync + d),
                FsyncPolicy::Always | FsyncPolicy::Never => None,
            };
            let due = tick.is_none_or(|t| t <= now);
            let deletable = self.deletable(&st) > 0;
            let unsynced = self.pending.is_some();
            let ready = st.closing
                || deletable
                || match self.policy {
                    FsyncPolicy::Always | FsyncPolicy::Never => !st.buf.is_empty(),
                    FsyncPolicy::Interval(_) => {
                        (due && (!st.buf.is_empty() || unsynced)) || st.buf.len() >= HIGH_WATER
                    }
                };
            if ready {
                st.writer = WriterWait::Busy;
                let bytes = std::mem::replace(&mut st.buf, std::mem::take(&mut self.spare));
                return Some(Job {
                    bytes,
                    rolls: std::mem::take(&mut st.rolls),
                    last_id: st.buf_last_id.take(),
                    close: st.closing,
                    due,
                });
            }
            match tick {
                Some(t) if !st.buf.is_empty() || unsynced => {
                    st.writer = WriterWait::Tick;
                    let wait = t.saturating_duration_since(now);
                    st = core
                        .wake
                        .wait_timeout(st, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
                _ => {
                    st.writer = WriterWait::Idle;
                    st = core
                        .wake
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
            st.writer = WriterWait::Busy;
        }
    }

    fn work(&mut self, mut job: Job) -> Result<(), SpoolError> {
        // Write, creating segments where the appenders rolled.
        let mut at = 0;
        for &(roll_at, index) in &job.rolls {
            self.write(&job.bytes[at..roll_at])?;
            self.roll(index)?;
            at = roll_at;
        }
        self.write(&job.bytes[at..])?;
        job.bytes.clear();
        self.spare = std::mem::take(&mut job.bytes);
        if let Some(id) = job.last_id {
            self.pending = Some(id);
        }

        // Sync as the policy says; close always syncs.
        let sync = job.close
            || match self.policy {
                FsyncPolicy::Always => self.pending.is_some(),
                FsyncPolicy::Interval(_) => job.due && (self.pending.is_some() || self.dirty),
                FsyncPolicy::Never => false,
            };
        if sync {
            self.sync()?;
        }
        if sync || !self.policy.syncs() {
            if let Some(id) = self.pending.take() {
                self.signal.durable(RecordId(id));
            }
        }

        self.delete_settled()?;

        if job.close {
            let ledger = {
                let st = self.core.lock();
                ledger_of(&st)
            };
            write_ledger(&self.dir, &ledger)?;
            self.core.lock().closed = true;
            self.signal.closed();
            debug!("spool closed");
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(bytes)
            .map_err(SpoolError::io("write", segment_path(&self.dir, self.index)))?;
        self.dirty = true;
        self.core
            .bytes_written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Starts segment `index`.
    fn roll(&mut self, index: u64) -> Result<(), SpoolError> {
        let path = segment_path(&self.dir, index);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(SpoolError::io("create", &path))?;
        file.write_all(&format::segment_header(index))
            .map_err(SpoolError::io("write", &path))?;
        let old = std::mem::replace(&mut self.file, file);
        let old_index = std::mem::replace(&mut self.index, index);
        if self.dirty {
            self.unsynced.push((old_index, old));
        }
        self.dirty = true;
        self.dir_dirty = true;
        debug!(segment = index, "spool segment started");
        Ok(())
    }

    /// fdatasyncs every segment written since the last sync, oldest first,
    /// then the directory if a segment was created.
    fn sync(&mut self) -> Result<(), SpoolError> {
        for (index, file) in self.unsynced.drain(..) {
            file.sync_data()
                .map_err(SpoolError::io("fdatasync", segment_path(&self.dir, index)))?;
            self.core.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        if self.dirty {
            self.file.sync_data().map_err(SpoolError::io(
                "fdatasync",
                segment_path(&self.dir, self.index),
            ))?;
            self.core.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.dirty = false;
        }
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.core.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.dir_dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// How many segments at the front can be deleted: every record in them
    /// settled, and none is the one being written.
    fn deletable(&self, st: &State) -> usize {
        let limit = match st.oldest_held {
            Some(id) => st.segment_of(id).map_or(0, |s| s.index),
            None => st.segments.back().map_or(0, |s| s.index),
        }
        .min(self.index);
        st.segments.iter().take_while(|s| s.index < limit).count()
    }

    /// Deletes the segments whose records all settled: ledger first (synced),
    /// then the files, then a directory fsync.
    fn delete_settled(&mut self) -> Result<(), SpoolError> {
        let (doomed, ledger) = {
            let st = self.core.lock();
            let n = self.deletable(&st);
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
            self.unsynced.retain(|(i, _)| *i != index);
        }
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

    /// Stops the spool for good after an I/O error.
    fn fail(&mut self, e: &SpoolError) {
        let reason =
            format!("{e}; the spool is stopped (records not yet Durable are not safe on disk)");
        error!(%reason, disk_full = e.is_disk_full(), "spool failed");
        let mut st = self.core.lock();
        st.failed = Some(reason.clone());
        st.buf = Vec::new();
        st.rolls.clear();
        drop(st);
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
