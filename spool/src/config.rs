//! The spool's configuration: directory, bounds, fsync policy and the keys
//! for encryption at rest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::encryption::{EncryptionKey, Keys};
use crate::error::SpoolError;
use crate::format::{FRAME_HEADER_LEN, TAG_LEN};

/// When the spool fsyncs, and so what "Durable" means.
///
/// Whatever the policy, a record is written to the segment file before it is
/// reported Durable, records reach the file in the order they were accepted,
/// and `close` writes and fsyncs everything appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// A record is Durable once the segment file holding it has been
    /// `fdatasync`ed after the record was written (and, for a new segment,
    /// its directory too): it survives a process crash, a kernel crash and
    /// a power loss on a disk that honours flushes. The spool thread
    /// fsyncs back to back while records arrive, never waiting to batch:
    /// records that arrive during one fsync share the next (group commit
    /// without added latency).
    Always,
    /// Group commit on a timer: records wait in memory and are written and
    /// `fdatasync`ed together at most once per interval (written earlier,
    /// without an fsync, when 4 MiB accumulate). A record is Durable once
    /// that fsync returns — typically within the interval plus one fsync of
    /// its `send` — with the same guarantee as `Always` from then on. A
    /// crash loses only records not yet Durable: up to one interval of
    /// Accepted records.
    Interval(Duration),
    /// No fsync while running: a record is Durable once `write(2)` has
    /// handed it to the operating system. It survives the process being
    /// killed (SIGKILL, panic, OOM kill) but not a kernel crash or power
    /// loss, after which the file keeps whatever the kernel had written
    /// back (recovery then keeps the valid prefix).
    Never,
}

impl FsyncPolicy {
    /// Whether the syncer fsyncs while running.
    pub(crate) fn syncs(self) -> bool {
        !matches!(self, FsyncPolicy::Never)
    }
}

/// Bytes of the spool's files, by default (1 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Bytes of one segment file, by default (64 MiB).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// The smallest segment size accepted (64 KiB).
pub const MIN_SEGMENT_BYTES: u64 = 64 << 10;
/// The largest segment size accepted with encryption on (4 GiB - 1): a
/// frame's offset is part of its nonce, in 32 bits.
pub const MAX_ENCRYPTED_SEGMENT_BYTES: u64 = u32::MAX as u64;

/// Configuration of a [`DiskSpool`](crate::DiskSpool); build it with
/// [`SpoolConfig::builder`]. Its `Debug` output shows key ids, never key
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    pub(crate) dir: PathBuf,
    pub(crate) max_bytes: u64,
    pub(crate) segment_bytes: u64,
    pub(crate) fsync: FsyncPolicy,
    pub(crate) preallocate: bool,
    pub(crate) keys: Keys,
}

impl SpoolConfig {
    /// A builder for a spool in `dir` (created if missing), with the
    /// defaults: [`DEFAULT_MAX_BYTES`], [`DEFAULT_SEGMENT_BYTES`],
    /// [`FsyncPolicy::Always`].
    pub fn builder(dir: impl Into<PathBuf>) -> SpoolConfigBuilder {
        SpoolConfigBuilder(Self {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: FsyncPolicy::Always,
            preallocate: true,
            keys: Keys::default(),
        })
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bound on the spool's files: records are admitted (under the
    /// producer's overflow policy) only while the segments from the one
    /// holding the oldest unsettled record to the newest stay within it.
    /// Segments wholly settled are deleted by the spool thread in its next
    /// round; until then, and by the few bytes of settle marks written
    /// while full, the files may exceed it briefly.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The size at which a segment file is closed and the next one begun.
    /// Space is reclaimed a whole segment at a time. A record larger than a
    /// segment gets a segment of its own.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// The fsync policy.
    pub fn fsync(&self) -> FsyncPolicy {
        self.fsync
    }

    /// Whether each new segment file gets its [`segment_bytes`] reserved
    /// when it is created (`fallocate`; on by default). Appending into
    /// reserved space spares every `fdatasync` the file-size update, which
    /// on a journaling file system costs a journal commit (measured on
    /// ext4: 1.35-1.5 times the fsyncs per second). The reserved tail reads
    /// as zeros until written; every frame then ends with a one-byte marker
    /// so that recovery tells unused space, a torn write and corruption
    /// apart, and recovery cuts the unused space off. The segment being
    /// written counts at its full size against [`max_bytes`]. Where
    /// reserving is not supported, segments grow as written.
    ///
    /// [`segment_bytes`]: Self::segment_bytes
    /// [`max_bytes`]: Self::max_bytes
    pub fn preallocate(&self) -> bool {
        self.preallocate
    }

    /// The id of the key new segments are encrypted under, or `None` when
    /// they are written in clear (see
    /// [`SpoolConfigBuilder::encryption_key`]).
    pub fn encryption_key_id(&self) -> Option<u32> {
        self.keys.current.as_ref().map(EncryptionKey::id)
    }

    /// The ids of every key supplied (the current one first, then those
    /// kept for reading).
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.ids()
    }

    /// The bytes to reserve for a new segment, if any.
    pub(crate) fn reserve(&self) -> Option<u64> {
        self.preallocate.then_some(self.segment_bytes)
    }

    /// The bytes a frame with a `payload`-byte payload takes in a segment.
    pub(crate) fn frame_bytes(&self, payload: usize) -> u64 {
        let tag = if self.keys.current.is_some() {
            TAG_LEN
        } else {
            0
        };
        (FRAME_HEADER_LEN + payload + tag + usize::from(self.preallocate)) as u64
    }
}

/// Builds a [`SpoolConfig`]; [`SpoolConfigBuilder::build`] validates it.
#[derive(Debug, Clone)]
#[must_use]
pub struct SpoolConfigBuilder(SpoolConfig);

impl SpoolConfigBuilder {
    /// See [`SpoolConfig::max_bytes`]. At least twice the segment size.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.0.max_bytes = bytes;
        self
    }

    /// See [`SpoolConfig::segment_bytes`]. At least [`MIN_SEGMENT_BYTES`].
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.0.segment_bytes = bytes;
        self
    }

    /// See [`FsyncPolicy`].
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.0.fsync = policy;
        self
    }

    /// See [`SpoolConfig::preallocate`].
    pub fn preallocate(mut self, on: bool) -> Self {
        self.0.preallocate = on;
        self
    }

    /// Encrypts the segments the spool writes from now on under `key`
    /// (AES-256-GCM; each segment's header names the key's id), and reads
    /// segments written under it. Segments written earlier in clear are
    /// still read and replayed, and deleted once their records settle.
    ///
    /// To rotate keys, make the new key the current one and keep the old
    /// one with [`decryption_key`](Self::decryption_key) until no segment
    /// written under it remains (once every record in them has settled:
    /// [`DiskSpool::open`](crate::DiskSpool::open) fails with
    /// [`SpoolError::UnknownKey`] naming a segment that still needs it).
    pub fn encryption_key(mut self, key: EncryptionKey) -> Self {
        self.0.keys.current = Some(key);
        self
    }

    /// Keeps `key` for reading segments written under it (an older key
    /// after a rotation, or the last key after encryption is turned off);
    /// nothing new is encrypted under it. May be given several times.
    pub fn decryption_key(mut self, key: EncryptionKey) -> Self {
        self.0.keys.old.push(key);
        self
    }

    /// Validates and returns the configuration.
    ///
    /// # Errors
    ///
    /// [`SpoolError::Config`] naming the field and the reason.
    pub fn build(self) -> Result<SpoolConfig, SpoolError> {
        let c = self.0;
        let bad = |field: &'static str, reason: String| Err(SpoolError::Config { field, reason });
        if c.dir.as_os_str().is_empty() {
            return bad("dir", "must not be empty".to_owned());
        }
        if c.segment_bytes < MIN_SEGMENT_BYTES {
            return bad(
                "segment_bytes",
                format!(
                    "{} is below the minimum of {MIN_SEGMENT_BYTES}",
                    c.segment_bytes
                ),
            );
        }
        if c.keys.current.is_some() && c.segment_bytes > MAX_ENCRYPTED_SEGMENT_BYTES {
            return bad(
                "segment_bytes",
                format!(
                    "{} is above {MAX_ENCRYPTED_SEGMENT_BYTES}, the maximum with encryption",
                    c.segment_bytes
                ),
            );
        }
        if let Some(id) = c.keys.duplicate_id() {
            return bad(
                "encryption_key",
                format!("key id {id} is given more than once; every key needs its own id"),
            );
        }
        if c.max_bytes < 2 * c.segment_bytes {
            return bad(
                "max_bytes",
                format!(
                    "{} must be at least twice segment_bytes ({})",
                    c.max_bytes, c.segment_bytes
                ),
            );
        }
        if let FsyncPolicy::Interval(d) = c.fsync
            && (d.is_zero() || d > Duration::from_secs(60))
        {
            return bad(
                "fsync",
                format!(
                    "Interval({d:?}) must be above zero and at most 60 s (use Always for no delay)"
                ),
            );
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_field() {
        assert!(SpoolConfig::builder("/tmp/x").build().is_ok());
        let e = SpoolConfig::builder("/tmp/x")
            .segment_bytes(1)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("segment_bytes"), "{e}");
        let e = SpoolConfig::builder("/tmp/x")
            .segment_bytes(1 << 20)
            .max_bytes(1 << 20)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("max_bytes"), "{e}");
        let e = SpoolConfig::builder("/tmp/x")
            .fsync(FsyncPolicy::Interval(Duration::ZERO))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("fsync"), "{e}");
    }
}
