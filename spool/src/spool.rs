//! [`DiskSpool`]: opening (recovery, then the session's first segment),
//! its statistics, and the cheap calls the producer makes under its lock
//! (room, append, settled).

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use robust_producer::{Record, RecordId, Room, Spool, SpoolSignal};

use crate::codec;
use crate::config::SpoolConfig;
use crate::encryption::{Keyring, Sealer};
use crate::error::SpoolError;
use crate::format::FrameKind;
use crate::permissions::{create_spool_dir, loose_permissions};
use crate::recovery::{RecoveryReport, recover};
use crate::shared::{Resumed, Shared, SpoolInner};
use crate::spool_dir::{create_segment, lock_dir, plain_segment_header, segment_path, sync_dir};
use crate::threads::{Files, Threads};

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
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.request_close();
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
            .field("dir", &self.handle.shared.config.dir())
            .field("fsync", &self.handle.shared.config.fsync())
            .finish_non_exhaustive()
    }
}

impl DiskSpool {
    /// Opens (or creates) the spool in the configured directory: takes its
    /// lock, recovers (see [`RecoveryReport`]) and starts a new segment.
    /// Corruption found in the files never makes this fail: it is repaired
    /// and reported. A new directory is created with mode
    /// [`SPOOL_DIR_MODE`](crate::SPOOL_DIR_MODE) and every file the spool
    /// creates gets [`SPOOL_FILE_MODE`](crate::SPOOL_FILE_MODE); an
    /// existing directory or file that group or others can read or write
    /// is left as it is, logged as a warning and listed in
    /// [`RecoveryReport::permission_warnings`]. The records recovered are handed to the producer the
    /// spool is attached to.
    ///
    /// # Errors
    ///
    /// [`SpoolError::Locked`] when another spool holds the directory;
    /// [`SpoolError::UnknownKey`] or [`SpoolError::WrongKey`] when a
    /// segment is encrypted under a key that was not supplied, or under
    /// another key with the same id (nothing in it is changed; supply the
    /// key and open again); [`SpoolError::Io`] naming the file when the
    /// directory cannot be created or read, a repair cannot be written, or
    /// the random source for a new segment's salt fails.
    pub fn open(config: SpoolConfig) -> Result<Self, SpoolError> {
        let dir = config.dir().to_owned();
        create_spool_dir(&dir).map_err(SpoolError::io("create directory", &dir))?;
        let lock = lock_dir(&dir)?;
        let mut rec = recover(&dir, &Keyring::new(&config.keys))?;
        // After recovery: the ledger is rewritten and settled segments are
        // gone, so what is reported is what stays readable.
        rec.report.permission_warnings = loose_permissions(&dir);

        // The session's first segment.
        let index = rec.next_index;
        let path = segment_path(&dir, index);
        let sealer = match &config.keys.current {
            Some(key) => {
                Some(Sealer::new(key).map_err(SpoolError::io("read random salt for", &path))?)
            }
            None => None,
        };
        let header = match &sealer {
            Some(sealer) => sealer.segment_header(index, config.preallocate()),
            None => plain_segment_header(index, config.preallocate()),
        };
        let file = create_segment(&dir, index, &header, config.reserve())?;
        file.sync_all().map_err(SpoolError::io("fsync", &path))?;
        sync_dir(&dir)?;

        let replay = rec.records.len();
        tracing::info!(dir = %dir.display(), segment = index, replay, "spool open");
        let inner = SpoolInner::resume(Resumed {
            records: rec.records,
            seqs: rec.seqs,
            segments: &rec.segments,
            watermark: rec.watermark,
            next_seq: rec.next_seq,
            index,
            header: &header,
            sealer: sealer.clone(),
        });
        let shared = Arc::new(Shared {
            config,
            report: rec.report,
            inner: Mutex::new(inner),
            files: Mutex::new(Files::new(index, file, &header, sealer)),
            wake_writer: Condvar::new(),
            wake_syncer: Condvar::new(),
            fsyncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            unrecorded: AtomicUsize::new(0),
            records_pending: AtomicBool::new(false),
            _lock: lock,
        });
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                threads: Mutex::new(Vec::new()),
            }),
        })
    }

    /// What recovery found when the spool opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.handle.shared.report
    }

    /// The spool's directory.
    pub fn dir(&self) -> PathBuf {
        self.handle.shared.config.dir().to_owned()
    }

    /// Gauges and counters, now.
    pub fn stats(&self) -> SpoolStats {
        let shared = &self.handle.shared;
        let st = shared.lock();
        SpoolStats {
            bytes: held_bytes(&st),
            segments: st.segments.len(),
            appended: st.appended,
            replayed: shared.report.replayed,
            durable_through: st
                .signal
                .as_ref()
                .map_or(RecordId(0), SpoolSignal::durable_through),
            fsyncs: shared.fsyncs.load(Ordering::Relaxed),
            bytes_written: shared.bytes_written.load(Ordering::Relaxed),
            failed: st.failed.clone(),
        }
    }

    /// Starts the writer and syncer threads of the session `signal` serves.
    fn start_threads(&self, signal: &SpoolSignal) -> Result<(), String> {
        let shared = &self.handle.shared;
        let threads = Threads::new(Arc::clone(shared), signal.clone());
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
                Ok(())
            }
            Err(e) => {
                let reason = format!("cannot start the spool writer thread: {e}");
                shared.lock().failed = Some(reason.clone());
                signal.failed(reason.clone());
                Err(reason)
            }
        }
    }
}

impl Spool for DiskSpool {
    fn open_session(&self, signal: SpoolSignal) -> Result<Vec<Record>, String> {
        let shared = &self.handle.shared;
        let mut st = shared.lock();
        let Some(records) = st.recovered.take() else {
            return Err(format!(
                "the spool in {} already served a session; open it again for a new producer",
                shared.config.dir().display()
            ));
        };
        st.signal = Some(signal.clone());
        drop(st);
        self.start_threads(&signal)?;
        Ok(records)
    }

    fn room(&self, record: &Record, oldest_held: Option<RecordId>) -> Room {
        let shared = &self.handle.shared;
        let st = shared.lock();
        if let Some(reason) = &st.failed {
            return Room::Failed(reason.clone());
        }
        if st.closing || st.closed {
            return Room::Failed("the spool is closed".to_owned());
        }
        let config = &shared.config;
        let max = (config.max_bytes - config.segment_bytes - st.header_len) as usize;
        let Some(len) = codec::encoded_len(record) else {
            return Room::TooLarge {
                size: usize::MAX,
                max,
            };
        };
        let frame = config.frame_bytes(len);
        match shared.usage_with(&st, frame, oldest_held.map(|id| id.0)) {
            None => Room::TooLarge {
                size: usize::try_from(frame).unwrap_or(usize::MAX),
                max,
            },
            Some(used) if used <= config.max_bytes => Room::Fits,
            Some(_) => Room::Full,
        }
    }

    fn append(&self, id: RecordId, record: &Record) {
        let shared = &self.handle.shared;
        let mut st = shared.lock();
        if st.failed.is_some() || st.closing || st.closed {
            return; // its durable() reports the failure
        }
        let Some(len) = codec::encoded_len(record) else {
            return; // room() refused it already
        };
        let frame = shared.config.frame_bytes(len);
        st.roll_if_needed(&shared.config, frame, id.0);
        st.last_id = st.last_id.max(id.0);
        let seq = st.seq_base + id.0;
        st.push_frame(&shared.config, FrameKind::Record, seq, |out| {
            codec::encode(record, out);
        });
        if let Some(active) = st.segments.back_mut() {
            active.last_seq = seq;
        }
        st.buf_last_id = Some(id.0);
        st.appended += 1;
        shared.records_pending.store(true, Ordering::Release);
        // A record just appended is held: the oldest held is it, unless an
        // older one still is.
        st.oldest_held.get_or_insert(id.0);
        shared.nudge(&mut st, true);
    }

    fn settled(&self, ids: &[RecordId], oldest_held: Option<RecordId>) {
        let shared = &self.handle.shared;
        let mut st = shared.lock();
        st.oldest_held = oldest_held.map(|id| id.0);
        if st.failed.is_some() || st.closed {
            return;
        }
        let marks = st.push_settle_marks(&shared.config, ids.iter().map(|id| id.0));
        if marks > 0 {
            shared.unrecorded.fetch_add(marks, Ordering::AcqRel);
        }
        // With no marks, the oldest held record still moved: maybe a
        // segment to delete.
        shared.nudge(&mut st, false);
    }

    fn close(&self) {
        self.handle.shared.request_close();
    }

    fn unrecorded(&self) -> usize {
        self.handle.shared.unrecorded.load(Ordering::Acquire)
    }

    fn bytes(&self) -> Option<u64> {
        let st = self.handle.shared.lock();
        Some(held_bytes(&st))
    }
}

/// Bytes of segments, from the oldest kept to the newest, including bytes
/// buffered but not yet written.
fn held_bytes(st: &SpoolInner) -> u64 {
    st.head - st.segments.front().map_or(st.head, |s| s.start)
}
