//! Fuzzes the segment reader (`format::scan`) and what recovery does with
//! each frame it accepts (record decode, settled ranges).
//!
//! The first input byte picks a mode: odd, the rest is a segment file as is
//! (seeds in `fuzz/seeds/segment_reader`; most mutations break a checksum
//! and exercise the torn/corrupt paths); even, the rest is cut into frames
//! that get valid checksums, so that arbitrary payloads reach the record
//! decoder and the settled-range parser behind valid CRCs (and, when the
//! mode's second bit is set, go into a preallocated segment: flagged, with
//! zeros after the frames).
//!
//! Invariants: no panic; the valid frames tile the file from the header
//! on, with strictly increasing record sequence numbers; the end says
//! where the valid prefix stops and why; scanning that prefix again reads
//! the same frames and ends cleanly; a decoded record encodes back to the
//! same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use robust_producer_spool::codec;
use robust_producer_spool::format::{self, End, FrameKind, SEGMENT_HEADER_LEN};

fn check(data: &[u8]) {
    let scan = format::scan(data, None, 0);
    let valid = scan.valid_len();
    assert!(valid <= data.len());
    let mut at = SEGMENT_HEADER_LEN;
    let mut last_seq = 0;
    for f in &scan.frames {
        assert_eq!(f.offset, at, "frames must tile the file");
        at = f.end();
        match f.kind {
            FrameKind::Record => {
                assert!(f.seq > last_seq);
                last_seq = f.seq;
                if let Ok(record) = codec::decode(f.payload) {
                    let mut again = Vec::new();
                    assert!(codec::encode(&record, &mut again));
                    assert_eq!(again, f.payload, "decode/encode must round-trip");
                    assert_eq!(codec::encoded_len(&record), Some(f.payload.len()));
                }
            }
            FrameKind::Settled => {
                if let Some(ranges) = format::parse_settled(f.payload) {
                    assert!(ranges.iter().all(|(a, b)| a <= b));
                }
            }
            _ => {}
        }
    }
    match &scan.end {
        End::Clean => assert_eq!(valid, data.len()),
        End::Torn { offset, .. } | End::Corrupt { offset, .. } => {
            assert_eq!(*offset, valid);
            assert!(*offset < data.len());
        }
        End::Unused { offset } => {
            assert_eq!(*offset, valid);
            assert!(data[*offset..].iter().all(|&b| b == 0));
        }
        End::BadHeader { .. } => assert!(scan.frames.is_empty()),
    }
    if !matches!(scan.end, End::BadHeader { .. }) {
        let again = format::scan(&data[..valid], None, 0);
        assert_eq!(again.end, End::Clean);
        assert_eq!(again.frames, scan.frames);
    }
}

/// Builds a segment whose frames have valid checksums from `data`: each
/// chunk is (kind byte, length byte, payload). `preallocated`: flagged so,
/// frames with their end byte, and zeros after them, as a segment whose
/// space was reserved.
fn with_valid_crcs(data: &[u8], preallocated: bool) -> Vec<u8> {
    let mut seg = if preallocated {
        format::preallocated_segment_header(1).to_vec()
    } else {
        format::segment_header(1).to_vec()
    };
    let mut rest = data;
    let mut seq = 0u64;
    while let [kind, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        let kind = if kind & 1 == 0 {
            FrameKind::Record
        } else {
            FrameKind::Settled
        };
        seq += 1 + u64::from(*len % 3);
        format::push_frame(&mut seg, kind, seq, payload);
        if preallocated {
            format::push_frame_end(&mut seg);
        }
        rest = next;
    }
    if preallocated {
        seg.resize(seg.len() + 64, 0);
    }
    seg
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode & 1 == 1 => check(rest),
        Some((mode, rest)) => check(&with_valid_crcs(rest, mode & 2 == 2)),
        None => check(data),
    }
});
