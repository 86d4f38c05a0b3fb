//! The pure segment reader: [`scan`] checks a segment's header, then its
//! frames one by one, and says where the valid prefix ends and why.

use super::{
    ENCRYPTED_SEGMENT_HEADER_LEN, ENCRYPTED_VERSION, FLAG_PREALLOCATED, FRAME_AAD_LEN, FRAME_END,
    FRAME_HEADER_LEN, FrameKind, MAX_PAYLOAD, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, TAG_LEN, VERSION,
};

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
    /// The first [`FRAME_AAD_LEN`] bytes of its header as written (length,
    /// kind, reserved zeros, sequence number): what a sealed frame
    /// authenticates besides its payload.
    pub fn authenticated_header(&self) -> [u8; FRAME_AAD_LEN] {
        let mut h = [0u8; FRAME_AAD_LEN];
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        h[0..4].copy_from_slice(&len.to_le_bytes());
        h[4] = self.kind.code();
        h[8..16].copy_from_slice(&self.seq.to_le_bytes());
        h
    }

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

/// What an encrypted segment's header says (see the format module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedHeader {
    /// The id of the key its frames are sealed with.
    pub key_id: u32,
    /// The header's first 32 bytes (magic, version, flags, key id, index,
    /// salt): the start of every frame's associated data.
    pub aad: [u8; 32],
    /// The header's tag: an empty message sealed under the key.
    pub tag: [u8; TAG_LEN],
}

/// What [`scan`] found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan<'a> {
    /// The valid frames, in file order: a prefix of the file.
    pub frames: Vec<Frame<'a>>,
    /// How the valid prefix ends.
    pub end: End,
    /// The segment is encrypted (version 2): its header's key id, salt and
    /// tag. The frames' payloads are then sealed; the scan checks only
    /// their checksums, not their authenticity (that needs the key).
    pub encrypted: Option<EncryptedHeader>,
}

impl Scan<'_> {
    /// Length of the valid prefix (header included).
    pub fn valid_len(&self) -> usize {
        let header = if self.encrypted.is_some() {
            ENCRYPTED_SEGMENT_HEADER_LEN
        } else {
            SEGMENT_HEADER_LEN
        };
        match &self.end {
            End::BadHeader { .. } => 0,
            _ => self.frames.last().map_or(header, Frame::end),
        }
    }
}

/// The header length a segment starting with `bytes` has, by its version
/// field ([`SEGMENT_HEADER_LEN`] when there is none yet).
pub fn segment_header_len(bytes: &[u8]) -> usize {
    match bytes.get(8..10) {
        Some(v) if v == ENCRYPTED_VERSION.to_le_bytes() => ENCRYPTED_SEGMENT_HEADER_LEN,
        _ => SEGMENT_HEADER_LEN,
    }
}

/// Reads a segment: checks its header (which must name `index`, when
/// given), then every frame, and stops at the first one that is not valid.
/// Record frames must have sequence numbers strictly above `after_seq` and
/// strictly increasing; a frame that breaks this is corruption. Pure: no
/// I/O, no panics, whatever the bytes.
pub fn scan(bytes: &[u8], index: Option<u64>, after_seq: u64) -> Scan<'_> {
    let header = match check_segment_header(bytes, index) {
        Ok(header) => header,
        Err(reason) => {
            return Scan {
                frames: Vec::new(),
                end: End::BadHeader { reason },
                encrypted: None,
            };
        }
    };
    let (frames, end) = read_frames(bytes, header.len, header.marked, after_seq);
    let end = if header.marked {
        in_preallocated(bytes, end)
    } else {
        end
    };
    Scan {
        frames,
        end,
        encrypted: header.encrypted,
    }
}

/// A valid segment header.
struct Header {
    /// Its length.
    len: usize,
    /// Flagged preallocated.
    marked: bool,
    encrypted: Option<EncryptedHeader>,
}

/// Checks the segment header (naming `index`, when given): its length,
/// whether the segment is flagged preallocated and whether it is
/// encrypted, or what is wrong with the header.
fn check_segment_header(bytes: &[u8], index: Option<u64>) -> Result<Header, String> {
    let len = segment_header_len(bytes);
    let Some(h) = bytes.get(..len) else {
        return Err(format!(
            "file has {} bytes, shorter than the {len}-byte segment header",
            bytes.len()
        ));
    };
    let (crc_at, reserved) = if len == SEGMENT_HEADER_LEN {
        (28, [12..16, 24..28])
    } else {
        (52, [48..52, 48..52])
    };
    let crc = u32::from_le_bytes([h[crc_at], h[crc_at + 1], h[crc_at + 2], h[crc_at + 3]]);
    if crc32c::crc32c(&h[0..crc_at]) != crc {
        return Err("segment header checksum mismatch".to_owned());
    }
    if h[0..8] != SEGMENT_MAGIC {
        return Err("not a spool segment (bad magic)".to_owned());
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != VERSION && version != ENCRYPTED_VERSION {
        return Err(format!(
            "unsupported segment version {version} (this build reads {VERSION} and {ENCRYPTED_VERSION})"
        ));
    }
    let flags = u16::from_le_bytes([h[10], h[11]]);
    if flags & !FLAG_PREALLOCATED != 0 || reserved.into_iter().any(|r| h[r].iter().any(|&b| b != 0))
    {
        return Err("segment header has unknown flags or reserved bytes set".to_owned());
    }
    let found = u64::from_le_bytes(h[16..24].try_into().unwrap_or_default());
    if let Some(index) = index.filter(|&i| i != found) {
        return Err(format!(
            "segment header names segment {found}, file name says {index}"
        ));
    }
    let encrypted = (len == ENCRYPTED_SEGMENT_HEADER_LEN).then(|| EncryptedHeader {
        key_id: u32::from_le_bytes([h[12], h[13], h[14], h[15]]),
        aad: h[0..32].try_into().unwrap_or_default(),
        tag: h[32..48].try_into().unwrap_or_default(),
    });
    Ok(Header {
        len,
        marked: flags & FLAG_PREALLOCATED != 0,
        encrypted,
    })
}

/// Reads the frames after the segment header until the file ends or a
/// frame is not valid: the valid frames, and how they end (before the
/// preallocated-space check).
fn read_frames(
    bytes: &[u8],
    header_len: usize,
    marked: bool,
    after_seq: u64,
) -> (Vec<Frame<'_>>, End) {
    let mut frames = Vec::new();
    let mut at = header_len;
    let mut last_seq = after_seq;
    let end = loop {
        let rest = bytes.get(at..).unwrap_or_default();
        if rest.is_empty() {
            break End::Clean;
        }
        match read_frame(rest, at, marked, last_seq) {
            Ok(frame) => {
                if frame.kind == FrameKind::Record {
                    last_seq = frame.seq;
                }
                at = frame.end();
                frames.push(frame);
            }
            Err(end) => break end,
        }
    };
    (frames, end)
}

/// Reads the frame at the start of `rest` (offset `at` in the segment),
/// whose record sequence number must follow `last_seq`; or says why the
/// valid prefix ends there.
fn read_frame(rest: &[u8], at: usize, marked: bool, last_seq: u64) -> Result<Frame<'_>, End> {
    let torn = |reason: String| End::Torn { offset: at, reason };
    let corrupt = |reason: String| End::Corrupt { offset: at, reason };
    let Some(h) = rest.get(..FRAME_HEADER_LEN) else {
        return Err(torn(format!(
            "{} bytes of a {FRAME_HEADER_LEN}-byte frame header",
            rest.len()
        )));
    };
    let hcrc = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
    if crc32c::crc32c(&h[0..16]) != hcrc {
        return Err(corrupt("frame header checksum mismatch".to_owned()));
    }
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let kind = FrameKind::from_code(h[4]);
    let seq = u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
    let Some(kind) = kind.filter(|_| h[5..8] == [0, 0, 0] && len <= MAX_PAYLOAD) else {
        return Err(corrupt(format!(
            "invalid frame header (kind {}, length {len})",
            h[4]
        )));
    };
    let Some(payload) = rest.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return Err(torn(format!(
            "frame of {len} bytes, only {} written",
            rest.len() - FRAME_HEADER_LEN
        )));
    };
    let pcrc = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
    if crc32c::crc32c(payload) != pcrc {
        return Err(corrupt("frame payload checksum mismatch".to_owned()));
    }
    if marked {
        match rest.get(FRAME_HEADER_LEN + len) {
            None => return Err(torn("frame end byte not written".to_owned())),
            Some(&b) if b != FRAME_END => {
                return Err(corrupt(format!(
                    "frame end byte is {b:#04x}, not {FRAME_END:#04x}"
                )));
            }
            Some(_) => {}
        }
    }
    if kind == FrameKind::Record && seq <= last_seq {
        return Err(corrupt(format!(
            "sequence number {seq} does not follow {last_seq}"
        )));
    }
    Ok(Frame {
        offset: at,
        kind,
        seq,
        payload,
        marked,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{preallocated_segment_header, push_frame, push_frame_end, segment_header};

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
}
