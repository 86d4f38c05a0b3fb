//! # robust-producer-spool
//!
//! A durable on-disk spool for [`robust_producer`]: with it, a producer's
//! records become **Durable** (written and fsynced, as the
//! [`FsyncPolicy`] promises) shortly after they are Accepted, and a
//! restart — after a clean close, a crash, a `SIGKILL` or a power loss —
//! replays every Durable record that was not yet delivered, first and in
//! its original order.
//!
//! ```no_run
//! # async fn demo(transport: impl robust_producer::Transport + 'static) -> Result<(), Box<dyn std::error::Error>> {
//! use robust_producer::{Config, Producer, Record, TokioRuntime};
//! use robust_producer_spool::{DiskSpool, FsyncPolicy, SpoolConfig};
//!
//! let spool = DiskSpool::open(
//!     SpoolConfig::builder("/var/lib/my-service/spool")
//!         .fsync(FsyncPolicy::Always)
//!         .build()?,
//! )?;
//! let producer = Producer::builder(Config::builder().build()?)
//!     .spool(spool.clone())
//!     .start(transport, TokioRuntime::new())?;
//!
//! let handle = producer.send(Record::new("orders", b"...".to_vec())).await?; // Accepted
//! handle.durable().await?; // Durable: on disk, survives a crash
//! let ack = handle.await?; // Delivered
//! # let _ = ack; Ok(()) }
//! ```
//!
//! ## How it works
//!
//! * **Format.** A directory of segment files, each with a versioned
//!   header; every frame carries its length, a CRC-32C of its header and
//!   one of its payload, and the record's sequence number; a ledger holds
//!   the acknowledgement watermark (see [`format`](mod@format)).
//!   Encrypted segments have a version-2 header and sealed frames.
//! * **Writing.** `send` encodes the record into a buffer under the
//!   producer's lock — nothing more. A dedicated writer thread writes the
//!   buffer, fsyncs per the policy (group commit), reports what is
//!   Durable, and deletes segments whose records have all settled, after
//!   syncing the ledger and before a directory fsync. An I/O error (a
//!   failed fsync, a full disk) stops the spool with an error naming the
//!   file; fsync is never retried. The producer then refuses new records
//!   with `EnqueueError::SpoolFailed` and keeps delivering those it holds.
//! * **Settled records.** A record *settles* when it is delivered,
//!   dead-lettered or dropped by the overflow policy; the spool then writes
//!   a *settle mark* for it (settled frames hold them as ranges of sequence
//!   numbers). Deliveries may complete out of order across partitions. Only
//!   records neither settled nor below the watermark are replayed.
//! * **Recovery** ([`DiskSpool::open`]) keeps the valid prefix of each
//!   segment, truncates a torn tail, and moves unreadable bytes after a
//!   corruption into a `.quarantine` file with an error naming the file and
//!   offset ([`RecoveryReport`]). It never panics and never fails because
//!   of what it reads.
//! * **Bounds.** [`SpoolConfig::max_bytes`] bounds the files under the
//!   producer's overflow policy (Block, Reject, DropOldest, DropNewest), as
//!   the memory queue's bounds do.
//! * **Close.** `close` writes and fsyncs everything appended (whatever the
//!   policy); undelivered Durable records stay in the spool for the next
//!   start and are not handed back.
//! * **Encryption at rest** (optional): with a key supplied
//!   ([`SpoolConfigBuilder::encryption_key`]), every frame of a new
//!   segment is sealed with AES-256-GCM — by the writer thread, off the
//!   lock `send` takes — bound to its segment and offset, and the segment
//!   header names the key's id. Older keys
//!   ([`SpoolConfigBuilder::decryption_key`]) keep segments written under
//!   them readable (rotation); segments written in clear before are still
//!   replayed. A segment whose key is missing or wrong makes
//!   [`DiskSpool::open`] fail ([`SpoolError::UnknownKey`],
//!   [`SpoolError::WrongKey`]) rather than quarantine it; a frame changed
//!   or moved on purpose is quarantined like corruption. Key ids, sizes
//!   and counts stay visible; key bytes never appear in `Debug` output,
//!   logs or errors.
//! * **Permissions.** Unless encryption is on, the files hold the records'
//!   payloads in clear. The spool creates its directory with mode [`SPOOL_DIR_MODE`] (`0700`) and
//!   every file in it — segments, ledger, lock, quarantine files — with
//!   [`SPOOL_FILE_MODE`] (`0600`), whatever the process umask. An existing
//!   directory, or existing spool files, that group or others can read or
//!   write are not changed (they may be shared on purpose) and do not make
//!   [`DiskSpool::open`] fail: each is logged as a warning naming the path,
//!   its mode and the `chmod` that fixes it, and listed in
//!   [`RecoveryReport::permission_warnings`].
//!
//! Only one spool may use a directory at a time (an `flock` on its `lock`
//! file, released by the kernel if the process dies).

#![forbid(unsafe_code)]

pub mod codec;
mod config;
mod encryption;
mod error;
pub mod format;
mod permissions;
mod recovery;
mod shared;
mod spool;
mod spool_dir;
mod threads;

pub use config::{
    DEFAULT_MAX_BYTES, DEFAULT_SEGMENT_BYTES, FsyncPolicy, MAX_ENCRYPTED_SEGMENT_BYTES,
    MIN_SEGMENT_BYTES, SpoolConfig, SpoolConfigBuilder,
};
pub use encryption::{EncryptionKey, KEY_LEN};
pub use error::SpoolError;
pub use permissions::{PermissionWarning, SPOOL_DIR_MODE, SPOOL_FILE_MODE};
pub use recovery::{Damage, RecoveryReport};
pub use spool::{DiskSpool, SpoolStats};
