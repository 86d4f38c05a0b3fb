//! The spool's threads.
//!
//! * The **writer** writes buffered frames (records and settle marks) to the
//!   segment files as soon as they arrive (sealing them first when
//!   encryption is on, off the lock the appenders take), so that they reach
//!   the page cache within microseconds — a process crash then loses almost no
//!   settle marks, which bounds the records sent twice after it.
//! * The **syncer** (policies `Always` and `Interval`) writes what is still
//!   buffered, fdatasyncs every segment written since its last round (and
//!   the directory if a segment was created), then reports the records
//!   written before the fsync as Durable. It also deletes segments whose
//!   records have all settled: ledger first (synced), then the files, then
//!   a directory fsync. While it waits for an fsync the writer keeps
//!   writing, and records arriving meanwhile share the next fsync. With
//!   `Always`, after reporting records Durable it waits a little for the
//!   next record, yielding its CPU, before it sleeps (see
//!   [`SPIN_MAX`](syncer::SPIN_MAX)).
//! * With `Never` the writer reports records Durable once written, and the
//!   syncer only deletes segments and does the final round at close.
//!
//! Both threads write under one file mutex, taking the buffer under it, so
//! frames reach the files in the order they were appended. An I/O error
//! stops the spool for good: it fails with the error, and fsync is never
//! retried (after a failed fsync the kernel may have dropped the dirty
//! pages; a retry that succeeds would prove nothing).

mod syncer;
mod writer;

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use robust_producer::SpoolSignal;
use tracing::error;

use crate::config::FsyncPolicy;
use crate::encryption::{AAD_HEADER_LEN, Sealer, aad_of};
use crate::error::SpoolError;
use crate::format::Ledger;
use crate::shared::{Shared, SpoolInner};

/// Write buffers larger than this are not kept for reuse.
const HIGH_WATER: usize = 4 << 20;

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
    /// Seals frames before they are written, when encryption is on.
    sealer: Option<Sealer>,
    /// The first bytes of `current`'s header: the start of its frames'
    /// associated data (encrypted segments).
    aad: [u8; AAD_HEADER_LEN],
    /// Bytes in `current` (header included): where the next frame goes.
    offset: u64,
}

impl Files {
    /// The session's files: segment `index`, just created with `header`.
    pub(crate) fn new(index: u64, file: File, header: &[u8], sealer: Option<Sealer>) -> Self {
        Self {
            current: Arc::new(file),
            sealer,
            aad: aad_of(header),
            offset: header.len() as u64,
            index,
            dirty: false,
            unsynced: Vec::new(),
            dir_dirty: false,
            spare: Vec::new(),
        }
    }
}

/// Makes sure `Files` can live in a mutex in [`Shared`].
pub(crate) type FilesMutex = Mutex<Files>;

/// The threads' shared context.
#[derive(Clone)]
pub(crate) struct Threads {
    shared: Arc<Shared>,
    signal: SpoolSignal,
    dir: PathBuf,
    policy: FsyncPolicy,
}

impl Threads {
    pub(crate) fn new(shared: Arc<Shared>, signal: SpoolSignal) -> Self {
        let dir = shared.config.dir().to_owned();
        let policy = shared.config.fsync();
        Self {
            shared,
            signal,
            dir,
            policy,
        }
    }

    fn files(&self) -> MutexGuard<'_, Files> {
        self.shared
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the spool for good after an I/O error.
    fn fail(&self, e: &SpoolError) {
        let reason =
            format!("{e}; the spool is stopped (records not yet Durable are not safe on disk)");
        let mut st = self.shared.lock();
        if st.failed.is_some() {
            return;
        }
        error!(%reason, disk_full = e.is_disk_full(), "spool failed");
        st.failed = Some(reason.clone());
        st.buf = Vec::new();
        st.rolls.clear();
        st.buf_settle_marks = 0;
        drop(st);
        // Settle marks will never be written: stop holding sends back.
        self.shared.unrecorded.store(0, Ordering::Release);
        self.signal.progress();
        self.shared.wake_writer.notify_all();
        self.shared.wake_syncer.notify_all();
        self.signal.failed(reason);
    }
}

fn ledger_of(st: &SpoolInner) -> Ledger {
    Ledger {
        watermark: st.watermark,
        next_seq: st.seq_base + st.last_id + 1,
        next_index: st.next_index,
    }
}
