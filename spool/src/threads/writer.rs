//! The writer thread: writes buffered frames (records and settle marks) to
//! the segment files as soon as they come, starting the segments the
//! appenders rolled to; with `Never`, reports records Durable once written.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use robust_producer::RecordId;
use tracing::debug;

use super::{Files, HIGH_WATER, Threads};
use crate::encryption::aad_of;
use crate::error::SpoolError;
use crate::shared::Waiting;
use crate::spool_dir::{create_segment, segment_path};

impl Threads {
    /// The writer thread: writes buffered frames as soon as they come; with
    /// `Never`, reports them Durable once written.
    pub(crate) fn run_writer(self) {
        loop {
            {
                let mut st = self.shared.lock();
                loop {
                    if st.failed.is_some() || st.closed || st.closing {
                        return; // the syncer does the final round
                    }
                    if !st.buf.is_empty() {
                        break;
                    }
                    st.writer = Waiting::Idle;
                    st = self
                        .shared
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
    pub(super) fn report_written(&self) {
        let through = self.shared.lock().written_id.take();
        if let Some(id) = through {
            self.signal.durable(RecordId(id));
        }
    }

    /// Writes every buffered frame, creating segments where the appenders
    /// rolled. The buffer is taken under the file mutex, so concurrent
    /// callers write in append order.
    pub(super) fn write_pending(&self) -> Result<(), SpoolError> {
        let mut files = self.files();
        let (bytes, rolls, last_id, settle_marks) = {
            let mut st = self.shared.lock();
            self.shared.records_pending.store(false, Ordering::Release);
            let spare = std::mem::take(&mut files.spare);
            (
                std::mem::replace(&mut st.buf, spare),
                std::mem::take(&mut st.rolls),
                st.buf_last_id.take(),
                std::mem::take(&mut st.buf_settle_marks),
            )
        };
        let mut bytes = bytes;
        let mut at = 0;
        for roll in &rolls {
            self.seal(&files, &mut bytes[at..roll.at])?;
            self.write(&mut files, &bytes[at..roll.at])?;
            self.roll(&mut files, roll.index, &roll.header)?;
            at = roll.at;
        }
        self.seal(&files, &mut bytes[at..])?;
        self.write(&mut files, &bytes[at..])?;
        bytes.clear();
        if bytes.capacity() <= 2 * HIGH_WATER {
            files.spare = bytes;
        }
        if let Some(id) = last_id {
            let mut st = self.shared.lock();
            st.written_id = st.written_id.max(Some(id));
            // The syncer may have looked before these records were taken
            // from the buffer and gone to sleep: they are its work now.
            if self.policy.syncs() && st.syncer == Waiting::Idle {
                st.syncer = Waiting::Busy;
                self.shared.wake_syncer.notify_one();
            }
        }
        drop(files);
        if settle_marks > 0 {
            self.shared
                .unrecorded
                .fetch_sub(settle_marks, Ordering::AcqRel);
            self.signal.progress();
        }
        Ok(())
    }

    /// Seals `frames`, the next ones for the current segment, when
    /// encryption is on: here, off the spool's lock, so that `send` only
    /// encodes.
    fn seal(&self, files: &Files, frames: &mut [u8]) -> Result<(), SpoolError> {
        match &files.sealer {
            Some(sealer)
                if !sealer.seal_frames(
                    &files.aad,
                    files.offset,
                    frames,
                    self.shared.config.preallocate(),
                ) =>
            {
                Err(SpoolError::Seal(segment_path(&self.dir, files.index)))
            }
            _ => Ok(()),
        }
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
        files.offset += bytes.len() as u64;
        self.shared
            .bytes_written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Starts segment `index` with its `header`.
    fn roll(&self, files: &mut Files, index: u64, header: &[u8]) -> Result<(), SpoolError> {
        let file = create_segment(&self.dir, index, header, self.shared.config.reserve())?;
        let old = std::mem::replace(&mut files.current, Arc::new(file));
        let old_index = std::mem::replace(&mut files.index, index);
        files.aad = aad_of(header);
        files.offset = header.len() as u64;
        if files.dirty {
            files.unsynced.push((old_index, old));
        }
        files.dirty = true;
        files.dir_dirty = true;
        debug!(segment = index, "spool segment started");
        Ok(())
    }
}
