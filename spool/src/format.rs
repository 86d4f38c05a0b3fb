//! The on-disk format, version 1, and its pure reader.
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
//! frame header (24 bytes), then `len` bytes of payload
//!   0  len       u32, payload length (at most MAX_PAYLOAD)
//!   4  kind      u8: 1 = record, 2 = settled
//!   5  reserved  3 bytes = 0
//!   8  seq       u64: the record's sequence number (record frames, strictly
//!                increasing through the whole spool); 0 in settled frames
//!  16  hcrc      u32 = crc32c(bytes 0..16)
//!  20  pcrc      u32 = crc32c(payload)
//! in a preallocated segment, one end byte FRAME_END (0xE5) after the payload
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

/// Magic bytes opening every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RPSPOOL\0";
/// Magic bytes opening the ledger.
pub const LEDGER_MAGIC: [u8; 8] = *b"RPLEDGER";
/// The format version this crate writes and reads.
pub const VERSION: u16 = 1;
/// Length of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
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
    fn code(self) -> u8 {
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

/// The header of segment file `index`.
pub fn segment_header(index: u64) -> [u8; SEGMENT_HEADER_LEN] {
    segment_header_with(index, 0)
}

/// The header of segment file `index` flagged [`FLAG_PREALLOCATED`]: its
/// space may have been reserved when it was created, and its frames end
/// with [`FRAME_END`] ([`push_frame_end`]).
pub fn preallocated_segment_header(index: u64) -> [u8; SEGMENT_HEADER_LEN] {
    segment_header_with(index, FLAG_PREALLOCATED)
}

fn segment_header_with(index: u64, flags: u16) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&flags.to_le_bytes());
    h[16..24].copy_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends the end byte that follows every frame in a preallocated segment.
pub fn push_frame_end(out: &mut Vec<u8>) {
    out.push(FRAME_END);
}

/// Appends one frame with `payload` to `out`.
///
/// # Panics
///
/// Never for payloads up to [`MAX_PAYLOAD`]; callers check the size first
/// (a larger payload is written with a length the reader refuses).
pub fn push_frame(out: &mut Vec<u8>, kind: FrameKind, seq: u64, payload: &[u8]) {
    let start = out.len();
    push_frame_with(out, kind, seq, |o| o.extend_from_slice(payload));
    debug_assert_eq!(out.len() - start, FRAME_HEADER_LEN + payload.len());
}

/// Appends one frame whose payload `write` appends to `out` (saves a copy).
pub fn push_frame_with(
    out: &mut Vec<u8>,
    kind: FrameKind,
    seq: u64,
    write: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    write(out);
    let len = out.len() - start - FRAME_HEADER_LEN;
    let pcrc = crc32c::crc32c(&out[start + FRAME_HEADER_LEN..]);
    let h = &mut out[start..start + FRAME_HEADER_LEN];
    h[0..4].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    h[4] = kind.code();
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    let hcrc = crc32c::crc32c(&h[0..16]);
    h[16..20].copy_from_slice(&hcrc.to_le_bytes());
    h[20..24].copy_from_slice(&pcrc.to_le_bytes());
}

/// Encodes the payload of a settled frame.
pub fn settled_payload(ranges: &[(u64, u64)], out: &mut Vec<u8>) {
    out.extend_from_slice(
        &u32::try_from(ranges.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for &(first, last) in ranges {
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&last.to_le_bytes());
    }
}

/// Decodes the payload of a settled frame, or `None` when malformed.
pub fn parse_settled(payload: &[u8]) -> Option<Vec<(u64, u64)>> {
    let count = usize::try_from(u32::from_le_bytes(payload.get(0..4)?.try_into().ok()?)).ok()?;
    if payload.len() != 4 + count.checked_mul(16)? {
        return None;
    }
    let mut ranges = Vec::with_capacity(count);
    for chunk in payload[4..].chunks_exact(16) {
        let first = u64::from_le_bytes(chunk[0..8].try_into().ok()?);
        let last = u64::from_le_bytes(chunk[8..16].try_into().ok()?);
        if first > last {
            return None;
        }
        ranges.push((first, last));
    }
    Some(ranges)
}

/// One valid frame found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Offset of the frame header in the segment.
    pub offset: usize,
    /// What it holds.
    pub kind: FrameKind,
    /// Its sequence number (record frames).
    pub seq: u64,
    /// The payload, checksum verified.
    pub payload: &'a [u8],
    /// The frame ends with [`FRAME_END`] (preallocated segments).
    pub marked: bool,
}

impl Frame<'_> {
    /// Offset just past the frame.
    pub fn end(&self) -> usize {
        self.offset + FRAME_HEADER_LEN + self.payload.len() + usize::from(self.marked)
    }
}

/// How a segment ends, after its valid frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The last frame ends exactly at the end of the file.
    Clean,
    /// The file ends inside a frame whose header is intact (or inside a
    /// frame header): the write of that frame never finished. Everything
    /// from `offset` on is to be truncated.
    Torn {
        /// Where the incomplete frame starts.
        offset: usize,
        /// What is incomplete.
        reason: String,
    },
    /// Zeros from `offset` to the end of a preallocated segment: space
    /// reserved and never written. Not damage.
    Unused {
        /// Where the unused space starts.
        offset: usize,
    },
    /// The bytes at `offset` are not a valid frame: corruption. Everything
    /// from `offset` on is unreadable (frame boundaries are lost) and is to
    /// be quarantined.
    Corrupt {
        /// Where the invalid frame starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// The segment header is missing, incomplete or invalid: nothing in the
    /// file can be trusted.
    BadHeader {
        /// What is wrong.
        reason: String,
    },
}

/// What [`scan`] found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan<'a> {
    /// The valid frames, in file order: a prefix of the file.
    pub frames: Vec<Frame<'a>>,
    /// How the valid prefix ends.
    pub end: End,
}

impl Scan<'_> {
    /// Length of the valid prefix (header included).
    pub fn valid_len(&self) -> usize {
        match &self.end {
            End::BadHeader { .. } => 0,
            _ => self.frames.last().map_or(SEGMENT_HEADER_LEN, Frame::end),
        }
    }
}

/// Reads a segment: checks its header (which must name `index`, when
/// given), then every frame, and stops at the first one that is not valid.
/// Record frames must have sequence numbers strictly above `after_seq` and
/// strictly increasing; a frame that breaks this is corruption. Pure: no
/// I/O, no panics, whatever the bytes.
pub fn scan(bytes: &[u8], index: Option<u64>, after_seq: u64) -> Scan<'_> {
    let bad = |reason: String| Scan {
        frames: Vec::new(),
        end: End::BadHeader { reason },
    };
    let Some(h) = bytes.get(..SEGMENT_HEADER_LEN) else {
        return bad(format!(
            "file has {} bytes, shorter than the {SEGMENT_HEADER_LEN}-byte segment header",
            bytes.len()
        ));
    };
    let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if crc32c::crc32c(&h[0..28]) != crc {
        return bad("segment header checksum mismatch".to_owned());
    }
    if h[0..8] != SEGMENT_MAGIC {
        return bad("not a spool segment (bad magic)".to_owned());
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != VERSION {
        return bad(format!(
            "unsupported segment version {version} (this build reads {VERSION})"
        ));
    }
    let flags = u16::from_le_bytes([h[10], h[11]]);
    if flags & !FLAG_PREALLOCATED != 0 || h[12..16].iter().chain(&h[24..28]).any(|&b| b != 0) {
        return bad("segment header has unknown flags or reserved bytes set".to_owned());
    }
    let marked = flags & FLAG_PREALLOCATED != 0;
    let found = u64::from_le_bytes(h[16..24].try_into().unwrap_or_default());
    if let Some(index) = index.filter(|&i| i != found) {
        return bad(format!(
            "segment header names segment {found}, file name says {index}"
        ));
    }

    let mut frames = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    let mut last_seq = after_seq;
    let end = loop {
        let rest = &bytes[at..];
        if rest.is_empty() {
            break End::Clean;
        }
        let Some(h) = rest.get(..FRAME_HEADER_LEN) else {
            break End::Torn {
                offset: at,
                reason: format!(
                    "{} bytes of a {FRAME_HEADER_LEN}-byte frame header",
                    rest.len()
                ),
            };
        };
        let hcrc = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
        if crc32c::crc32c(&h[0..16]) != hcrc {
            break End::Corrupt {
                offset: at,
                reason: "frame header checksum mismatch".to_owned(),
            };
        }
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let kind = FrameKind::from_code(h[4]);
        let seq = u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
        let Some(kind) = kind.filter(|_| h[5..8] == [0, 0, 0] && len <= MAX_PAYLOAD) else {
            break End::Corrupt {
                offset: at,
                reason: format!("invalid frame header (kind {}, length {len})", h[4]),
            };
        };
        let Some(payload) = rest.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
            break End::Torn {
                offset: at,
                reason: format!(
                    "frame of {len} bytes, only {} written",
                    rest.len() - FRAME_HEADER_LEN
                ),
            };
        };
        let pcrc = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
        if crc32c::crc32c(payload) != pcrc {
            break End::Corrupt {
                offset: at,
                reason: "frame payload checksum mismatch".to_owned(),
            };
        }
        if marked {
            match rest.get(FRAME_HEADER_LEN + len) {
                None => {
                    break End::Torn {
                        offset: at,
                        reason: "frame end byte not written".to_owned(),
                    };
                }
                Some(&b) if b != FRAME_END => {
                    break End::Corrupt {
                        offset: at,
                        reason: format!("frame end byte is {b:#04x}, not {FRAME_END:#04x}"),
                    };
                }
                Some(_) => {}
            }
        }
        if kind == FrameKind::Record {
            if seq <= last_seq {
                break End::Corrupt {
                    offset: at,
                    reason: format!("sequence number {seq} does not follow {last_seq}"),
                };
            }
            last_seq = seq;
        }
        frames.push(Frame {
            offset: at,
            kind,
            seq,
            payload,
            marked,
        });
        at += FRAME_HEADER_LEN + len + usize::from(marked);
    };
    let end = if marked {
        in_preallocated(bytes, end)
    } else {
        end
    };
    Scan { frames, end }
}

/// How a preallocated segment ends where its valid frames stop: unused
/// space if only zeros follow; a torn tail if the frame there stops before
/// its end byte with only zeros after; otherwise what the scan found.
fn in_preallocated(bytes: &[u8], end: End) -> End {
    let at = match &end {
        End::Torn { offset, .. } | End::Corrupt { offset, .. } => *offset,
        _ => return end,
    };
    let rest = bytes.get(at..).unwrap_or_default();
    let Some(last) = rest.iter().rposition(|&b| b != 0) else {
        return End::Unused { offset: at };
    };
    let written = last + 1;
    // The frame's extent, as far as its header can be trusted.
    let extent = match rest.get(..FRAME_HEADER_LEN) {
        Some(h)
            if crc32c::crc32c(&h[0..16]) == u32::from_le_bytes([h[16], h[17], h[18], h[19]]) =>
        {
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            FRAME_HEADER_LEN + len.min(MAX_PAYLOAD) + 1
        }
        _ => FRAME_HEADER_LEN,
    };
    if written < extent {
        End::Torn {
            offset: at,
            reason: format!(
                "frame followed only by zeros: its write never finished \
                 ({written} of {extent} bytes written)"
            ),
        }
    } else {
        end
    }
}

/// The ledger: the acknowledgement watermark and the next sequence number
/// and segment index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ledger {
    /// Every record with a sequence number up to this has settled (its
    /// segment may be deleted).
    pub watermark: u64,
    /// Sequence numbers below this were used; new records get higher ones.
    pub next_seq: u64,
    /// Segment indexes below this were used; new segments get higher ones.
    pub next_index: u64,
}

impl Ledger {
    /// The ledger file's bytes.
    pub fn encode(&self) -> [u8; LEDGER_LEN] {
        let mut b = [0u8; LEDGER_LEN];
        b[0..8].copy_from_slice(&LEDGER_MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.watermark.to_le_bytes());
        b[24..32].copy_from_slice(&self.next_seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.next_index.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads a ledger file.
    ///
    /// # Errors
    ///
    /// What is wrong with it, when it is not a valid ledger.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() != LEDGER_LEN {
            return Err(format!(
                "ledger has {} bytes, expected {LEDGER_LEN}",
                b.len()
            ));
        }
        let crc = u32::from_le_bytes([b[40], b[41], b[42], b[43]]);
        if crc32c::crc32c(&b[0..40]) != crc {
            return Err("ledger checksum mismatch".to_owned());
        }
        if b[0..8] != LEDGER_MAGIC || b[10..16].iter().any(|&x| x != 0) {
            return Err("not a spool ledger".to_owned());
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != VERSION {
            return Err(format!("unsupported ledger version {version}"));
        }
        Ok(Self {
            watermark: u64::from_le_bytes(b[16..24].try_into().unwrap_or_default()),
            next_seq: u64::from_le_bytes(b[24..32].try_into().unwrap_or_default()),
            next_index: u64::from_le_bytes(b[32..40].try_into().unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn segment(frames: &[(FrameKind, u64, &[u8])]) -> Vec<u8> {
        let mut s = segment_header(7).to_vec();
        for &(kind, seq, payload) in frames {
            push_frame(&mut s, kind, seq, payload);
        }
        s
    }

    #[test]
    fn reads_back_what_was_written() {
        let s = segment(&[
            (FrameKind::Record, 5, b"a"),
            (FrameKind::Settled, 0, b"\x00\x00\x00\x00"),
            (FrameKind::Record, 9, b""),
        ]);
        let scan = scan(&s, Some(7), 4);
        assert_eq!(scan.end, End::Clean);
        assert_eq!(scan.valid_len(), s.len());
        let seqs: Vec<_> = scan.frames.iter().map(|f| (f.kind, f.seq)).collect();
        assert_eq!(
            seqs,
            [
                (FrameKind::Record, 5),
                (FrameKind::Settled, 0),
                (FrameKind::Record, 9)
            ]
        );
    }

    #[test]
    fn every_cut_is_torn_or_clean_and_every_bit_flip_is_caught() {
        let s = segment(&[
            (FrameKind::Record, 1, b"hello"),
            (FrameKind::Record, 2, b"world"),
        ]);
        let boundaries = [SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN + 29, s.len()];
        for cut in 0..s.len() {
            let scan = scan(&s[..cut], Some(7), 0);
            match scan.end {
                End::Clean => assert!(boundaries.contains(&cut), "cut {cut}"),
                End::Torn { .. } => assert!(!boundaries.contains(&cut)),
                End::BadHeader { .. } => assert!(cut < SEGMENT_HEADER_LEN),
                End::Corrupt { .. } | End::Unused { .. } => {
                    panic!("cut {cut} read as {:?}", scan.end)
                }
            }
        }
        for bit in 0..s.len() * 8 {
            let mut d = s.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            let scan = scan(&d, Some(7), 0);
            assert!(!matches!(scan.end, End::Clean), "bit {bit} not detected");
        }
    }

    #[test]
    fn preallocated_space_is_unused_and_a_frame_cut_in_it_is_torn() {
        let mut s = preallocated_segment_header(7).to_vec();
        // Payloads ending in zeros, as encoded records without headers do.
        push_frame(&mut s, FrameKind::Record, 1, b"hello\0\0");
        push_frame_end(&mut s);
        push_frame(&mut s, FrameKind::Record, 2, b"world\0\0");
        push_frame_end(&mut s);
        let written = s.len();
        s.resize(written + 100, 0);
        let boundaries = [SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN + 32, written];
        let full = scan(&s, Some(7), 0);
        assert_eq!(full.end, End::Unused { offset: written });
        assert_eq!(full.frames.len(), 2);
        assert_eq!(full.valid_len(), written);
        // The process died at `cut`: the rest of the reserved space is zeros.
        for cut in SEGMENT_HEADER_LEN..written {
            let mut d = s.clone();
            d[cut..].fill(0);
            let frame_start = *boundaries.iter().rfind(|&&b| b <= cut).unwrap();
            match scan(&d, Some(7), 0).end {
                End::Unused { offset } => assert_eq!((offset, cut), (frame_start, frame_start)),
                End::Torn { offset, .. } => assert_eq!(offset, frame_start, "cut {cut}"),
                end => panic!("cut {cut} read as {end:?}"),
            }
        }
        // A flipped bit in a written frame is corruption, as without
        // preallocation, though the payloads end in zeros.
        for bit in SEGMENT_HEADER_LEN * 8..written * 8 {
            let mut d = s.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            let end = scan(&d, Some(7), 0).end;
            assert!(matches!(end, End::Corrupt { .. }), "bit {bit}: {end:?}");
        }
        // Written bytes past the unused space are corruption.
        let mut d = s.clone();
        d[written + 50] = 1;
        assert!(
            matches!(scan(&d, Some(7), 0).end, End::Corrupt { offset, .. } if offset == written)
        );
        // Unknown flags are refused.
        let mut d = s.clone();
        d[10] = 2;
        assert!(matches!(scan(&d, Some(7), 0).end, End::BadHeader { .. }));
    }

    #[test]
    fn sequence_numbers_must_increase() {
        let s = segment(&[(FrameKind::Record, 3, b"a"), (FrameKind::Record, 3, b"b")]);
        let scan = scan(&s, None, 0);
        assert_eq!(scan.frames.len(), 1);
        assert!(matches!(scan.end, End::Corrupt { .. }));
        assert!(
            matches!(super::scan(&s, None, 3).end, End::Corrupt { offset, .. } if offset == SEGMENT_HEADER_LEN)
        );
    }

    #[test]
    fn settled_payload_round_trips() {
        let mut p = Vec::new();
        settled_payload(&[(1, 4), (9, 9)], &mut p);
        assert_eq!(parse_settled(&p), Some(vec![(1, 4), (9, 9)]));
        assert_eq!(parse_settled(&p[..p.len() - 1]), None);
    }

    #[test]
    fn ledger_round_trips_and_detects_damage() {
        let l = Ledger {
            watermark: 41,
            next_seq: 100,
            next_index: 3,
        };
        let b = l.encode();
        assert_eq!(Ledger::decode(&b), Ok(l));
        for bit in 0..LEDGER_LEN * 8 {
            let mut d = b;
            d[bit / 8] ^= 1 << (bit % 8);
            assert!(Ledger::decode(&d).is_err(), "bit {bit}");
        }
    }
}
