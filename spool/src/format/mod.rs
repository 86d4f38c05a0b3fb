//! The on-disk format — version 1, and version 2 for encrypted segments:
//! building it (segment headers, frames, settled payloads), its pure
//! reader ([`scan`]) and the [`Ledger`].
//!
//! A spool directory holds segment files named `<index>.seg` (20 decimal
//! digits), a `ledger`, and a `lock` file. Integers are little-endian;
//! checksums are CRC-32C (Castagnoli).
//!
//! ```text
//! segment header (32 bytes)
//!   0  magic     b"RPSPOOL\0"
//!   8  version   u16 = 1
//!  10  flags     u16: bit 0 = preallocated (see below); others 0
//!  12  reserved  u32 = 0
//!  16  index     u64, equal to the file name's
//!  24  reserved  u32 = 0
//!  28  crc       u32 = crc32c(bytes 0..28)
//!
//! encrypted segment header (version 2, 56 bytes)
//!   0  magic     b"RPSPOOL\0"
//!   8  version   u16 = 2
//!  10  flags     u16: as in version 1
//!  12  key id    u32: the id of the key its frames are sealed with
//!  16  index     u64, equal to the file name's
//!  24  salt      u64: the segment's nonce prefix
//!  32  tag       16 bytes: AES-256-GCM tag of an empty message, nonce
//!                salt ++ u32 0, associated data bytes 0..32 (tells a
//!                wrong key before any frame is read)
//!  48  reserved  u32 = 0
//!  52  crc       u32 = crc32c(bytes 0..52)
//!
//! frame header (24 bytes), then `len` bytes of payload
//!   0  len       u32, payload length (at most MAX_PAYLOAD)
//!   4  kind      u8: 1 = record, 2 = settled
//!   5  reserved  3 bytes = 0
//!   8  seq       u64: the record's sequence number (record frames, strictly
//!                increasing through the whole spool); 0 in settled frames
//!  16  hcrc      u32 = crc32c(bytes 0..16)
//!  20  pcrc      u32 = crc32c(payload)
//! in a preallocated segment, one end byte FRAME_END (0xE5) after the payload
//! in an encrypted segment, the payload is sealed: AES-256-GCM ciphertext of
//!   the plaintext payload, then its 16-byte tag (`len` counts both); nonce
//!   = salt (u64) ++ the frame's offset in the segment (u32); associated
//!   data = segment header bytes 0..32 ++ frame header bytes 0..16. The
//!   checksums cover the sealed bytes, so torn tails and bit flips are told
//!   apart without the key; a frame that passes them but does not
//!   authenticate was changed on purpose (or the key is wrong).
//!
//! record payload: see the codec module
//! settled payload: u32 count, then count x (u64 first, u64 last): ranges of
//!   sequence numbers that settled (first <= last)
//!
//! ledger (44 bytes), replaced atomically (write, fsync, rename, fsync dir)
//!   0  magic      b"RPLEDGER"
//!   8  version    u16 = 1
//!  10  reserved   6 bytes = 0
//!  16  watermark  u64: every record with seq <= watermark has settled
//!  24  next_seq   u64: sequence numbers below it were used
//!  32  next_index u64: segment indexes below it were used
//!  40  crc        u32 = crc32c(bytes 0..40)
//! ```
//!
//! Every byte of a segment is covered by a checksum, so a single flipped bit
//! anywhere is detected. The header checksum lets the reader tell a torn
//! tail (a frame whose intact header says it runs past the end of the file:
//! the process died while writing it) from corruption (a header or payload
//! that fails its checksum).
//!
//! A segment flagged *preallocated* may have had its space reserved when it
//! was created, so the file is longer than what was written and the rest
//! reads as zeros. Each of its frames ends with a non-zero end byte, so that
//! a frame whose write finished never ends in zeros. Where its frames stop,
//! zeros to the end of the file are unused space, not damage; a frame whose
//! bytes stop before its end byte, with only zeros after, is a torn tail
//! (its write never finished), as a frame cut by the end of the file is in
//! a segment that is not preallocated; and anything else is corruption as
//! usual: a flipped bit in a finished frame leaves its end byte non-zero,
//! or is the end byte.

mod frames;
mod ledger;
mod reader;

pub use frames::{
    encrypted_segment_header, fill_frame_checksums, parse_settled, preallocated_segment_header,
    push_frame, push_frame_end, push_frame_to_seal_with, push_frame_with, push_sealed_frame_with,
    segment_header, settled_payload,
};
pub use ledger::Ledger;
pub use reader::{EncryptedHeader, End, Frame, Scan, scan, segment_header_len};

/// Magic bytes opening every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RPSPOOL\0";
/// Magic bytes opening the ledger.
pub const LEDGER_MAGIC: [u8; 8] = *b"RPLEDGER";
/// The format version of the ledger and of segments that are not
/// encrypted.
pub const VERSION: u16 = 1;
/// The format version of encrypted segments.
pub const ENCRYPTED_VERSION: u16 = 2;
/// Length of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Length of an encrypted segment's header.
pub const ENCRYPTED_SEGMENT_HEADER_LEN: usize = 56;
/// Length of the authentication tag after a sealed frame's ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes of a frame header that a sealed frame authenticates (length,
/// kind, reserved, sequence number).
pub const FRAME_AAD_LEN: usize = 16;
/// Length of a frame header.
pub const FRAME_HEADER_LEN: usize = 24;
/// Length of the ledger file.
pub const LEDGER_LEN: usize = 44;
/// Largest frame payload the reader accepts (256 MiB).
pub const MAX_PAYLOAD: usize = 256 << 20;
/// Segment header flag: the file's space may have been reserved when it
/// was created (past the last frame it then holds zeros), and every frame
/// ends with [`FRAME_END`].
pub const FLAG_PREALLOCATED: u16 = 1;
/// The byte that ends every frame of a preallocated segment.
pub const FRAME_END: u8 = 0xE5;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameKind {
    /// One encoded record (see the codec module).
    Record,
    /// Ranges of sequence numbers that settled.
    Settled,
}

impl FrameKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            FrameKind::Record => 1,
            FrameKind::Settled => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(FrameKind::Record),
            2 => Some(FrameKind::Settled),
            _ => None,
        }
    }
}
