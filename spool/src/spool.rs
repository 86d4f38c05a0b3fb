//! [`DiskSpool`]: opening (recovery), the cheap calls the producer makes
//! under its lock (room, append, settled), and the state they share with
//! the spool's writer thread.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use robust_producer::{Record, RecordId, Room, Spool, SpoolSignal};

use crate::codec;
use crate::config::{FsyncPolicy, SpoolConfig};
use crate::error::SpoolError;
use crate::format::{self, FrameKind, SEGMENT_HEADER_LEN};
use crate::recovery::{RecoveryReport, recover};
use crate::spool_dir::{create_segment, lock_dir, segment_path, sync_dir};
use crate::writer::{Files, FilesMutex, Threads};

/// Write buffers larger than this are not kept for reuse.
pub(crate) const HIGH_WATER: usize = 4 << 20;

/// A durable on-disk spool for a [`Producer`](robust_producer::Producer):
/// attach it with
/// [`ProducerBuilder::spool`](robust_producer::ProducerBuilder::spool).
///
/// Cheap to clone; clones share the spool (keep one to read
/// [`DiskSpool::stats`]). One spool serves one producer session: open it
/// again for the next. Dropping the last clone finishes the writer thread
/// after a final write and fsync.
#[derive(Clone)]
pub struct DiskSpool {
    handle: Arc<Handle>,
}

struct Handle {
    core: Arc<Core>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.core.request_close();
        let threads = std::mem::take(
            self.threads
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a spool thread panicked");
            }
        }
    }
}

/// What the producer's calls and the writer thread share.
pub(crate) struct Core {
    pub(crate) config: SpoolConfig,
    pub(crate) report: RecoveryReport,
    pub(crate) state: Mutex<State>,
    /// The segment files; taken before `state` when both are needed.
    pub(crate) files: FilesMutex,
    /// Wakes the writer thread.
    pub(crate) wake_writer: Condvar,
    /// Wakes the syncer thread.
    pub(crate) wake_syncer: Condvar,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    /// Settled records whose settle marks are buffered, not yet written.
    pub(crate) unrecorded: AtomicUsize,
    /// Records were appended since the buffer was last taken.
    pub(crate) records_pending: std::sync::atomic::AtomicBool,
    /// Held for the spool's lifetime: the directory's lock.
    _lock: File,
}

/// How a spool thread waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// Working (or woken): it looks at the state again by itself.
    Busy,
    /// Asleep until woken.
    Idle,
    /// Asleep until its next tick (the syncer, Interval policy).
    Tick,
    /// Waiting briefly for the next record, yielding its CPU (the syncer,
    /// Always policy, after an fsync that made records Durable):
    /// it will look at the buffer by itself.
    Spinning,
}

/// One segment as the appenders see it (the last one is being appended to).
#[derive(Debug, Clone)]
pub(crate) struct Seg {
    pub(crate) index: u64,
    /// Offset of its first byte in the spool's byte stream.
    pub(crate) start: u64,
    /// Its length, buffered bytes included.
    pub(crate) len: u64,
    /// No record in it, or after it, has an id below this.
    pub(crate) first_id: u64,
    /// The highest record sequence number in it or before it.
    pub(crate) last_seq: u64,
}

/// Everything behind the spool's mutex.
pub(crate) struct State {
    /// The session's signal, once started.
    pub(crate) signal: Option<SpoolSignal>,
    recovered: Option<Vec<Record>>,
    recovered_seqs: Vec<u64>,
    /// A new record with id `id` gets sequence number `seq_base + id`.
    pub(crate) seq_base: u64,
    /// The last id appended.
    pub(crate) last_id: u64,
    /// Every record before this id has settled (`None`: every record
    /// appended so far has).
    pub(crate) oldest_held: Option<u64>,
    /// Frames not yet handed to the writer.
    pub(crate) buf: Vec<u8>,
    /// Where in `buf` a new segment starts, and its index.
    pub(crate) rolls: Vec<(usize, u64)>,
    /// The last record id in `buf`.
    pub(crate) buf_last_id: Option<u64>,
    /// Settled records whose marks are in `buf`.
    pub(crate) buf_settles: usize,
    /// The segments, oldest first; the last is the one appended to.
    pub(crate) segments: VecDeque<Seg>,
    /// Offset of the end of the byte stream, buffered bytes included.
    pub(crate) head: u64,
    pub(crate) next_index: u64,
    /// Every record up to this sequence number has settled.
    pub(crate) watermark: u64,
    /// The last record id written to a file and not yet reported Durable.
    pub(crate) written_id: Option<u64>,
    pub(crate) writer: Waiting,
    pub(crate) syncer: Waiting,
    pub(crate) closing: bool,
    pub(crate) closed: bool,
    pub(crate) failed: Option<String>,
    appended: u64,
    ranges: Vec<(u64, u64)>,
    seqs: Vec<u64>,
}

/// A snapshot of the spool's gauges and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpoolStats {
    /// Bytes of segments, from the oldest kept to the newest, including
    /// bytes buffered but not yet written.
    pub bytes: u64,
    /// Segment files.
    pub segments: usize,
    /// Records appended in this session.
    pub appended: u64,
    /// Records replayed at the start of the session.
    pub replayed: usize,
    /// Every record with an id up to this is Durable.
    pub durable_through: RecordId,
    /// fsyncs done (segment files and directory).
    pub fsyncs: u64,
    /// Bytes written to segment files.
    pub bytes_written: u64,
    /// Why the spool stopped, if it did.
    pub failed: Option<String>,
}

impl fmt::Debug for DiskSpool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskSpool")
            .field("dir", &self.handle.core.config.dir())
            .field("fsync", &self.handle.core.config.fsync())
            .finish_non_exhaustive()
    }
}

impl DiskSpool {
    /// Opens (or creates) the spool in the configured directory: takes its
    /// lock, recovers (see [`RecoveryReport`]) and starts a new segment.
    /// Corruption found in the files never makes this fail: it is repaired
    /// and reported. The records recovered are handed to the producer the
    /// spool is attached to.
    ///
    /// # Errors
    ///
    /// [`SpoolError::Locked`] when another spool holds the directory;
    /// [`SpoolError::Io`] naming the file when the directory cannot be
    /// created or read, or a repair cannot be written.
    pub fn open(config: SpoolConfig) -> Result<Self, SpoolError> {
        let dir = config.dir().to_owned();
        std::fs::create_dir_all(&dir).map_err(SpoolError::io("create directory", &dir))?;
        let lock = lock_dir(&dir)?;
        let rec = recover(&dir)?;

        // The session's first segment.
        let index = rec.next_index;
        let path = segment_path(&dir, index);
        let file = create_segment(&dir, index, config.reserve())?;
        file.sync_all().map_err(SpoolError::io("fsync", &path))?;
        sync_dir(&dir)?;

        let n = rec.records.len() as u64;
        let mut segments = VecDeque::with_capacity(rec.segments.len() + 1);
        let mut start = 0;
        // first_id: the id of the first live record in the segment or
        // after it (recovered record i has id i + 1).
        let mut next_first = n + 1;
        let mut firsts = vec![0; rec.segments.len()];
        for (i, s) in rec.segments.iter().enumerate().rev() {
            if let Some(first) = s.first_live {
                next_first = first as u64 + 1;
            }
            firsts[i] = next_first;
        }
        for (s, first_id) in rec.segments.iter().zip(firsts) {
            segments.push_back(Seg {
                index: s.index,
                start,
                len: s.len,
                first_id,
                last_seq: s.last_seq,
            });
            start += s.len;
        }
        let last_seq = rec.next_seq.saturating_sub(1);
        segments.push_back(Seg {
            index,
            start,
            len: SEGMENT_HEADER_LEN as u64,
            first_id: n + 1,
            last_seq,
        });
        let head = start + SEGMENT_HEADER_LEN as u64;
        tracing::info!(dir = %dir.display(), segment = index, replay = n, "spool open");
        let state = State {
            signal: None,
            recovered: Some(rec.records),
            recovered_seqs: rec.seqs,
            // seq(n + 1) = next_seq
            seq_base: rec.next_seq - (n + 1).min(rec.next_seq),
            last_id: n,
            oldest_held: (n > 0).then_some(1),
            buf: Vec::new(),
            rolls: Vec::new(),
            buf_last_id: None,
            buf_settles: 0,
            segments,
            head,
            next_index: index + 1,
            watermark: rec.watermark,
            written_id: None,
            writer: Waiting::Busy,
            syncer: Waiting::Busy,
            closing: false,
            closed: false,
            failed: None,
            appended: 0,
            ranges: Vec::new(),
            seqs: Vec::new(),
        };
        let core = Arc::new(Core {
            config,
            report: rec.report,
            state: Mutex::new(state),
            files: Mutex::new(Files::new(index, file)),
            wake_writer: Condvar::new(),
            wake_syncer: Condvar::new(),
            fsyncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            unrecorded: AtomicUsize::new(0),
            records_pending: std::sync::atomic::AtomicBool::new(false),
            _lock: lock,
        });
        Ok(Self {
            handle: Arc::new(Handle {
                core,
                threads: Mutex::new(Vec::new()),
            }),
        })
    }

    /// What recovery found when the spool opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.handle.core.report
    }

    /// The spool's directory.
    pub fn dir(&self) -> PathBuf {
        self.handle.core.config.dir().to_owned()
    }

    /// Gauges and counters, now.
    pub fn stats(&self) -> SpoolStats {
        let core = &self.handle.core;
        let st = core.lock();
        SpoolStats {
            bytes: st.head - st.segments.front().map_or(st.head, |s| s.start),
            segments: st.segments.len(),
            appended: st.appended,
            replayed: core.report.replayed,
            durable_through: st
                .signal
                .as_ref()
                .map_or(RecordId(0), SpoolSignal::durable_through),
            fsyncs: core.fsyncs.load(Ordering::Relaxed),
            bytes_written: core.bytes_written.load(Ordering::Relaxed),
            failed: st.failed.clone(),
        }
    }
}

impl Core {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn request_close(&self) {
        let mut st = self.lock();
        st.closing = true;
        drop(st);
        self.wake_writer.notify_all();
        self.wake_syncer.notify_all();
    }

    /// Wakes the spool thread that has work now, if it sleeps: new records
    /// go to an idle syncer (it writes and syncs them in one go), anything
    /// else buffered to the writer; a possible segment deletion wakes the
    /// syncer, which does the deleting.
    fn nudge(&self, st: &mut State, records: bool) {
        let deletion = st.segments.len() > 1
            && st
                .segments
                .get(1)
                .is_some_and(|s| st.oldest_held.is_none_or(|o| s.first_id <= o));
        let syncs = self.config.fsync().syncs();
        // Settle marks alone wait for a syncer busy with an fsync (it writes
        // them as soon as the fsync returns), or waiting for the next
        // record (it writes them at once).
        let syncer_on_it = matches!(st.syncer, Waiting::Busy | Waiting::Spinning);
        let mut writer = !st.buf.is_empty() && (records || !syncs || !syncer_on_it);
        if records && st.syncer == Waiting::Spinning {
            return; // it takes them in a moment, writing and syncing in one go
        }
        if st.syncer == Waiting::Idle && (deletion || (records && syncs)) {
            st.syncer = Waiting::Busy;
            self.wake_syncer.notify_one();
            writer &= !(records && syncs); // the syncer writes them
        }
        if writer && st.writer == Waiting::Idle {
            st.writer = Waiting::Busy;
            self.wake_writer.notify_one();
        }
    }

    /// Space the segments from `oldest_held`'s to the newest would take
    /// with one more frame of `frame` bytes; `None` if a frame that size can
    /// never fit.
    fn usage_with(&self, st: &State, frame: u64, oldest_held: Option<u64>) -> Option<u64> {
        let max_frame =
            self.config.max_bytes - self.config.segment_bytes - SEGMENT_HEADER_LEN as u64;
        if frame > max_frame {
            return None;
        }
        let active = st.segments.back()?;
        let roll = st.needs_roll(&self.config, frame);
        let start = match oldest_held {
            Some(id) => st.segment_of(id).map_or(active.start, |s| s.start),
            // Everything settled: after a roll only the new segment counts
            // (the old ones are deleted next).
            None if roll => st.head,
            None => active.start,
        };
        let header = if roll { SEGMENT_HEADER_LEN as u64 } else { 0 };
        // A preallocated segment takes its full size from the start.
        let written = if roll {
            header + frame
        } else {
            active.len + frame
        };
        let reserved = self
            .config
            .reserve()
            .map_or(0, |bytes| bytes.saturating_sub(written));
        Some(st.head + header + frame - start + reserved)
    }
}

impl State {
    fn needs_roll(&self, config: &SpoolConfig, frame: u64) -> bool {
        self.segments.back().is_some_and(|a| {
            a.len > SEGMENT_HEADER_LEN as u64 && a.len + frame > config.segment_bytes
        })
    }

    /// The segment holding record `id`.
    pub(crate) fn segment_of(&self, id: u64) -> Option<&Seg> {
        let i = self.segments.partition_point(|s| s.first_id <= id);
        self.segments.get(i.saturating_sub(1))
    }

    /// Starts a new segment before a frame of `frame` bytes if the current
    /// one is full. `first_id`: no record in the new segment has a lower id.
    fn roll_if_needed(&mut self, config: &SpoolConfig, frame: u64, first_id: u64) {
        if !self.needs_roll(config, frame) {
            return;
        }
        let index = self.next_index;
        self.next_index += 1;
        self.rolls.push((self.buf.len(), index));
        let last_seq = self.segments.back().map_or(0, |s| s.last_seq);
        self.segments.push_back(Seg {
            index,
            start: self.head,
            len: SEGMENT_HEADER_LEN as u64,
            first_id,
            last_seq,
        });
        self.head += SEGMENT_HEADER_LEN as u64;
    }

    /// Appends one frame to the buffer, with its end byte when segments are
    /// preallocated, and counts its bytes in the active segment.
    fn push_frame(
        &mut self,
        config: &SpoolConfig,
        kind: FrameKind,
        seq: u64,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let before = self.buf.len();
        format::push_frame_with(&mut self.buf, kind, seq, write);
        if config.preallocate() {
            format::push_frame_end(&mut self.buf);
        }
        let bytes = (self.buf.len() - before) as u64;
        self.head += bytes;
        if let Some(active) = self.segments.back_mut() {
            active.len += bytes;
        }
    }

    /// The sequence number of the record with `id`, if it was appended.
    fn seq_of(&self, id: u64) -> Option<u64> {
        let n = self.recovered_seqs.len() as u64;
        if id == 0 || id > self.last_id {
            None
        } else if id <= n {
            usize::try_from(id - 1)
                .ok()
                .and_then(|i| self.recovered_seqs.get(i).copied())
        } else {
            Some(self.seq_base + id)
        }
    }
}

impl Spool for DiskSpool {
    fn open_session(&self, signal: SpoolSignal) -> Result<Vec<Record>, String> {
        let core = &self.handle.core;
        let mut st = core.lock();
        let Some(records) = st.recovered.take() else {
            return Err(format!(
                "the spool in {} already served a session; open it again for a new producer",
                core.config.dir().display()
            ));
        };
        st.signal = Some(signal.clone());
        drop(st);
        let threads = Threads::new(Arc::clone(core), signal.clone());
        let syncer = threads.clone();
        let spawned = std::thread::Builder::new()
            .name("spool-writer".to_owned())
            .spawn(move || threads.run_writer())
            .and_then(|w| {
                let s = std::thread::Builder::new()
                    .name("spool-syncer".to_owned())
                    .spawn(move || syncer.run_syncer())?;
                Ok(vec![w, s])
            });
        match spawned {
            Ok(all) => {
                *self
                    .handle
                    .threads
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = all;
                Ok(records)
            }
            Err(e) => {
                let reason = format!("cannot start the spool writer thread: {e}");
                core.lock().failed = Some(reason.clone());
                signal.failed(reason.clone());
                Err(reason)
            }
        }
    }

    fn room(&self, record: &Record, oldest_held: Option<RecordId>) -> Room {
        let core = &self.handle.core;
        let st = core.lock();
        if let Some(reason) = &st.failed {
            return Room::Failed(reason.clone());
        }
        if st.closing || st.closed {
            return Room::Failed("the spool is closed".to_owned());
        }
        let max = (core.config.max_bytes - core.config.segment_bytes) as usize - SEGMENT_HEADER_LEN;
        let Some(len) = codec::encoded_len(record) else {
            return Room::TooLarge {
                size: usize::MAX,
                max,
            };
        };
        let frame = core.config.frame_bytes(len);
        match core.usage_with(&st, frame, oldest_held.map(|id| id.0)) {
            None => Room::TooLarge {
                size: usize::try_from(frame).unwrap_or(usize::MAX),
                max,
            },
            Some(used) if used <= core.config.max_bytes => Room::Fits,
            Some(_) => Room::Full,
        }
    }

    fn append(&self, id: RecordId, record: &Record) {
        let core = &self.handle.core;
        let mut st = core.lock();
        if st.failed.is_some() || st.closing || st.closed {
            return; // its durable() reports the failure
        }
        let Some(len) = codec::encoded_len(record) else {
            return; // room() refused it already
        };
        let frame = core.config.frame_bytes(len);
        st.roll_if_needed(&core.config, frame, id.0);
        st.last_id = st.last_id.max(id.0);
        let seq = st.seq_base + id.0;
        st.push_frame(&core.config, FrameKind::Record, seq, |out| {
            codec::encode(record, out);
        });
        if let Some(active) = st.segments.back_mut() {
            active.last_seq = seq;
        }
        st.buf_last_id = Some(id.0);
        st.appended += 1;
        core.records_pending.store(true, Ordering::Release);
        // A record just appended is held: the oldest held is it, unless an
        // older one still is.
        st.oldest_held.get_or_insert(id.0);
        core.nudge(&mut st, true);
    }

    fn settled(&self, ids: &[RecordId], oldest_held: Option<RecordId>) {
        let core = &self.handle.core;
        let mut st = core.lock();
        st.oldest_held = oldest_held.map(|id| id.0);
        if st.failed.is_some() || st.closed {
            return;
        }
        let mut seqs = std::mem::take(&mut st.seqs);
        seqs.clear();
        seqs.extend(ids.iter().filter_map(|id| st.seq_of(id.0)));
        if seqs.is_empty() {
            st.seqs = seqs;
            core.nudge(&mut st, false); // the oldest held record moved: maybe a segment to delete
            return;
        }
        seqs.sort_unstable();
        let mut ranges = std::mem::take(&mut st.ranges);
        ranges.clear();
        for &s in &seqs {
            match ranges.last_mut() {
                Some((_, last)) if *last + 1 >= s => *last = s.max(*last),
                _ => ranges.push((s, s)),
            }
        }
        let frame = core.config.frame_bytes(4 + 16 * ranges.len());
        let first_id = st.last_id + 1;
        st.roll_if_needed(&core.config, frame, first_id);
        st.push_frame(&core.config, FrameKind::Settled, 0, |out| {
            format::settled_payload(&ranges, out);
        });
        st.buf_settles += seqs.len();
        core.unrecorded.fetch_add(seqs.len(), Ordering::AcqRel);
        st.seqs = seqs;
        st.ranges = ranges;
        core.nudge(&mut st, false);
    }

    fn close(&self) {
        self.handle.core.request_close();
    }

    fn unrecorded(&self) -> usize {
        self.handle.core.unrecorded.load(Ordering::Acquire)
    }
}

impl FsyncPolicy {
    /// Whether the writer fsyncs while running.
    pub(crate) fn syncs(self) -> bool {
        !matches!(self, FsyncPolicy::Never)
    }
}
