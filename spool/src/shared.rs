//! What the producer's calls and the spool's threads share: [`Shared`]
//! (the configuration, the files, the wake-ups and counters) and
//! [`SpoolInner`], the bookkeeping behind the spool's mutex — the segments
//! and where each record lies, the buffer of frames not yet written, and
//! how each thread waits.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use robust_producer::{Record, SpoolSignal};

use crate::config::SpoolConfig;
use crate::encryption::Sealer;
use crate::format::{self, FrameKind};
use crate::recovery::{RecoveryReport, Segment};
use crate::spool_dir::plain_segment_header;
use crate::threads::FilesMutex;

/// What the producer's calls and the writer threads share.
pub(crate) struct Shared {
    pub(crate) config: SpoolConfig,
    pub(crate) report: RecoveryReport,
    pub(crate) inner: Mutex<SpoolInner>,
    /// The segment files; taken before `inner` when both are needed.
    pub(crate) files: FilesMutex,
    /// Wakes the writer thread.
    pub(crate) wake_writer: Condvar,
    /// Wakes the syncer thread.
    pub(crate) wake_syncer: Condvar,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    /// Settle marks buffered, not yet written (one per settled record).
    pub(crate) unrecorded: AtomicUsize,
    /// Records were appended since the buffer was last taken.
    pub(crate) records_pending: AtomicBool,
    /// Held for the spool's lifetime: the directory's lock.
    pub(crate) _lock: File,
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

/// The spool's bookkeeping, behind its mutex: the segments and where each
/// record lies, the buffer of frames not yet written, the ids' sequence
/// numbers, and how each thread waits.
pub(crate) struct SpoolInner {
    /// The session's signal, once started.
    pub(crate) signal: Option<SpoolSignal>,
    /// The records recovery found, until the session takes them.
    pub(crate) recovered: Option<Vec<Record>>,
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
    /// Where in `buf` a new segment starts.
    pub(crate) rolls: Vec<Roll>,
    /// Writes the headers of encrypted segments, when encryption is on
    /// (the writer seals the frames, off this lock).
    sealer: Option<Sealer>,
    /// Bytes of the header of each segment this session starts.
    pub(crate) header_len: u64,
    /// The last record id in `buf`.
    pub(crate) buf_last_id: Option<u64>,
    /// Settle marks in `buf` (one per settled record).
    pub(crate) buf_settle_marks: usize,
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
    /// Records appended in this session.
    pub(crate) appended: u64,
    /// Reused by [`SpoolInner::push_settle_marks`].
    ranges: Vec<(u64, u64)>,
    /// Reused by [`SpoolInner::push_settle_marks`].
    seqs: Vec<u64>,
}

/// A segment the appenders rolled to: the writer creates it when it
/// reaches `at` in the buffer.
#[derive(Debug, Clone)]
pub(crate) struct Roll {
    /// Where in the buffer its frames start.
    pub(crate) at: usize,
    /// Its index.
    pub(crate) index: u64,
    /// Its header.
    pub(crate) header: Vec<u8>,
}

/// What recovery hands to the bookkeeping of a new session.
pub(crate) struct Resumed<'a> {
    /// The records to replay, in order (they get ids 1, 2, ...).
    pub(crate) records: Vec<Record>,
    /// Their sequence numbers.
    pub(crate) seqs: Vec<u64>,
    /// The segments kept, in order.
    pub(crate) segments: &'a [Segment],
    /// Every record up to this sequence number has settled.
    pub(crate) watermark: u64,
    /// The next free sequence number.
    pub(crate) next_seq: u64,
    /// The index of the session's first segment, just created.
    pub(crate) index: u64,
    /// The header it was created with.
    pub(crate) header: &'a [u8],
    /// Encrypts the session's frames, when encryption is on.
    pub(crate) sealer: Option<Sealer>,
}

impl SpoolInner {
    /// The bookkeeping of a session that starts after recovery: the kept
    /// segments, then the session's first segment (empty but its header).
    pub(crate) fn resume(r: Resumed<'_>) -> Self {
        let n = r.records.len() as u64;
        let header_len = r.header.len() as u64;
        let (segments, head) = session_segments(r.segments, n, r.index, r.next_seq, header_len);
        Self {
            signal: None,
            recovered: Some(r.records),
            recovered_seqs: r.seqs,
            // seq(n + 1) = next_seq
            seq_base: r.next_seq - (n + 1).min(r.next_seq),
            last_id: n,
            oldest_held: (n > 0).then_some(1),
            buf: Vec::new(),
            rolls: Vec::new(),
            sealer: r.sealer,
            header_len,
            buf_last_id: None,
            buf_settle_marks: 0,
            segments,
            head,
            next_index: r.index + 1,
            watermark: r.watermark,
            written_id: None,
            writer: Waiting::Busy,
            syncer: Waiting::Busy,
            closing: false,
            closed: false,
            failed: None,
            appended: 0,
            ranges: Vec::new(),
            seqs: Vec::new(),
        }
    }

    pub(crate) fn needs_roll(&self, config: &SpoolConfig, frame: u64) -> bool {
        self.segments
            .back()
            .is_some_and(|a| a.len > self.header_len && a.len + frame > config.segment_bytes)
    }

    /// The segment holding record `id`.
    pub(crate) fn segment_of(&self, id: u64) -> Option<&Seg> {
        let i = self.segments.partition_point(|s| s.first_id <= id);
        self.segments.get(i.saturating_sub(1))
    }

    /// Starts a new segment before a frame of `frame` bytes if the current
    /// one is full. `first_id`: no record in the new segment has a lower id.
    pub(crate) fn roll_if_needed(&mut self, config: &SpoolConfig, frame: u64, first_id: u64) {
        if !self.needs_roll(config, frame) {
            return;
        }
        let index = self.next_index;
        self.next_index += 1;
        let header = self.segment_header(index, config.preallocate());
        self.rolls.push(Roll {
            at: self.buf.len(),
            index,
            header,
        });
        let last_seq = self.segments.back().map_or(0, |s| s.last_seq);
        self.segments.push_back(Seg {
            index,
            start: self.head,
            len: self.header_len,
            first_id,
            last_seq,
        });
        self.head += self.header_len;
    }

    /// The header of a new segment `index`: encrypted under the current
    /// key when encryption is on.
    pub(crate) fn segment_header(&self, index: u64, preallocated: bool) -> Vec<u8> {
        match &self.sealer {
            Some(sealer) => sealer.segment_header(index, preallocated),
            None => plain_segment_header(index, preallocated),
        }
    }

    /// Appends one frame to the buffer — with room for its tag and no
    /// checksums yet, when encryption is on: the writer seals it before
    /// writing, off this lock — with its end byte when segments are
    /// preallocated, and counts its bytes in the active segment.
    pub(crate) fn push_frame(
        &mut self,
        config: &SpoolConfig,
        kind: FrameKind,
        seq: u64,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let before = self.buf.len();
        if self.sealer.is_some() {
            format::push_frame_to_seal_with(&mut self.buf, kind, seq, write);
        } else {
            format::push_frame_with(&mut self.buf, kind, seq, write);
        }
        if config.preallocate() {
            format::push_frame_end(&mut self.buf);
        }
        let bytes = (self.buf.len() - before) as u64;
        self.head += bytes;
        if let Some(active) = self.segments.back_mut() {
            active.len += bytes;
        }
    }

    /// Buffers a settled frame with the settle marks of the records `ids`
    /// (those appended), rolling first if the segment is full. Returns how
    /// many settle marks it holds (0: nothing was buffered).
    pub(crate) fn push_settle_marks(
        &mut self,
        config: &SpoolConfig,
        ids: impl IntoIterator<Item = u64>,
    ) -> usize {
        let mut seqs = std::mem::take(&mut self.seqs);
        seqs.clear();
        seqs.extend(ids.into_iter().filter_map(|id| self.seq_of(id)));
        let marks = seqs.len();
        if marks > 0 {
            let mut ranges = std::mem::take(&mut self.ranges);
            seq_ranges(&mut seqs, &mut ranges);
            let frame = config.frame_bytes(4 + 16 * ranges.len());
            let first_id = self.last_id + 1;
            self.roll_if_needed(config, frame, first_id);
            self.push_frame(config, FrameKind::Settled, 0, |out| {
                format::settled_payload(&ranges, out);
            });
            self.buf_settle_marks += marks;
            self.ranges = ranges;
        }
        self.seqs = seqs;
        marks
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

/// The segments a session starts with: those recovery kept (`replayed`
/// records live in them), then the session's first segment `index`, empty
/// but its header; and the offset of the end of their byte stream.
fn session_segments(
    kept: &[Segment],
    replayed: u64,
    index: u64,
    next_seq: u64,
    header_len: u64,
) -> (VecDeque<Seg>, u64) {
    let mut segments = VecDeque::with_capacity(kept.len() + 1);
    let mut start = 0;
    // first_id: the id of the first live record in the segment or after
    // it (recovered record i has id i + 1).
    let mut next_first = replayed + 1;
    let mut firsts = vec![0; kept.len()];
    for (i, s) in kept.iter().enumerate().rev() {
        if let Some(first) = s.first_live {
            next_first = first as u64 + 1;
        }
        firsts[i] = next_first;
    }
    for (s, first_id) in kept.iter().zip(firsts) {
        segments.push_back(Seg {
            index: s.index,
            start,
            len: s.len,
            first_id,
            last_seq: s.last_seq,
        });
        start += s.len;
    }
    segments.push_back(Seg {
        index,
        start,
        len: header_len,
        first_id: replayed + 1,
        last_seq: next_seq.saturating_sub(1),
    });
    (segments, start + header_len)
}

/// Sorts `seqs` and writes into `ranges` the fewest ranges covering them.
fn seq_ranges(seqs: &mut [u64], ranges: &mut Vec<(u64, u64)>) {
    seqs.sort_unstable();
    ranges.clear();
    for &s in seqs.iter() {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 >= s => *last = s.max(*last),
            _ => ranges.push((s, s)),
        }
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SpoolInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn request_close(&self) {
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
    pub(crate) fn nudge(&self, st: &mut SpoolInner, records: bool) {
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
    pub(crate) fn usage_with(
        &self,
        st: &SpoolInner,
        frame: u64,
        oldest_held: Option<u64>,
    ) -> Option<u64> {
        let max_frame = self.config.max_bytes - self.config.segment_bytes - st.header_len;
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
        let header = if roll { st.header_len } else { 0 };
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
