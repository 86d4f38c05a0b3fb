//! Fuzzes the segment reader (`format::scan`) and what recovery does with
//! each frame it accepts (record decode, settled ranges).
//!
//! The first input byte picks a mode: odd, the rest is a segment file as is
//! (seeds in `fuzz/seeds/segment_reader`; most mutations break a checksum
//! and exercise the torn/corrupt paths); even, the rest is cut into frames
//! that get valid checksums, so that arbitrary payloads reach the record
//! decoder and the settled-range parser behind valid CRCs (and, when the
//! mode's second bit is set, go into a preallocated segment: flagged, with
//! zeros after the frames; when its third bit is set, go into an
//! encrypted segment: sealed under a fixed test key, so that arbitrary
//! plaintext reaches the decoders after decryption).
//!
//! Invariants: no panic; the valid frames tile the file from the header
//! on, with strictly increasing record sequence numbers; the end says
//! where the valid prefix stops and why; scanning that prefix again reads
//! the same frames and ends cleanly; a decoded record encodes back to the
//! same bytes.

#![no_main]

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use libfuzzer_sys::fuzz_target;
use robust_producer_spool::format::{
    self, ENCRYPTED_SEGMENT_HEADER_LEN, End, FLAG_PREALLOCATED, FrameKind, SEGMENT_HEADER_LEN,
};
use robust_producer_spool::{EncryptionKey, codec};

/// The fixed test key of encrypted segments.
const KEY: [u8; 32] = [0x2D; 32];
const KEY_ID: u32 = 3;

/// `built_sealed`: the segment was built here, sealed under the test key.
fn check(data: &[u8], built_sealed: bool) {
    let scan = format::scan(data, None, 0);
    let valid = scan.valid_len();
    assert!(valid <= data.len());
    let key = EncryptionKey::new(KEY_ID, KEY);
    let opens = scan
        .encrypted
        .as_ref()
        .is_some_and(|h| key.authenticates(h));
    assert!(
        !built_sealed || opens,
        "the test key must open what it sealed"
    );
    let mut at = match scan.encrypted {
        Some(_) => ENCRYPTED_SEGMENT_HEADER_LEN,
        None => SEGMENT_HEADER_LEN,
    };
    let mut last_seq = 0;
    for f in &scan.frames {
        assert_eq!(f.offset, at, "frames must tile the file");
        at = f.end();
        if f.kind == FrameKind::Record {
            assert!(f.seq > last_seq);
            last_seq = f.seq;
        }
        let opened;
        let payload = match &scan.encrypted {
            None => f.payload,
            Some(header) => {
                let Some(plain) = key.open(header, f) else {
                    assert!(!built_sealed, "a sealed frame must open at {}", f.offset);
                    continue;
                };
                let mut moved = f.clone();
                moved.offset += 1;
                assert!(
                    key.open(header, &moved).is_none(),
                    "opens only at its offset"
                );
                opened = plain;
                &opened[..]
            }
        };
        match f.kind {
            FrameKind::Record => {
                if let Ok(record) = codec::decode(payload) {
                    let mut again = Vec::new();
                    assert!(codec::encode(&record, &mut again));
                    assert_eq!(again, payload, "decode/encode must round-trip");
                    assert_eq!(codec::encoded_len(&record), Some(payload.len()));
                }
            }
            FrameKind::Settled => {
                if let Some(ranges) = format::parse_settled(payload) {
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

/// AES-256-GCM under the test key, as the format module documents it:
/// nonce = salt ++ offset (u32), associated data = segment header bytes
/// 0..32 ++ frame header bytes 0..16.
fn seal(segment: &[u8], offset: usize, frame_header: &[u8], payload: &mut [u8]) -> [u8; 16] {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&segment[24..32]);
    nonce[8..].copy_from_slice(&(offset as u32).to_le_bytes());
    let aad = [&segment[..32], frame_header].concat();
    Aes256Gcm::new(&KEY.into())
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, payload)
        .map(Into::into)
        .unwrap_or([0; 16])
}

/// Builds a segment whose frames have valid checksums from `data`: each
/// chunk is (kind byte, length byte, payload). `preallocated`: flagged so,
/// frames with their end byte, and zeros after them, as a segment whose
/// space was reserved. `encrypted`: sealed under the test key.
fn with_valid_crcs(data: &[u8], preallocated: bool, encrypted: bool) -> Vec<u8> {
    let mut seg = match (encrypted, preallocated) {
        (true, _) => {
            let flags = if preallocated { FLAG_PREALLOCATED } else { 0 };
            format::encrypted_segment_header(1, flags, KEY_ID, 0x5EED, |aad| {
                seal(aad, 0, &[], &mut [])
            })
            .to_vec()
        }
        (false, true) => format::preallocated_segment_header(1).to_vec(),
        (false, false) => format::segment_header(1).to_vec(),
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
        if encrypted {
            let at = seg.len();
            let header = seg[..32].to_vec();
            format::push_sealed_frame_with(
                &mut seg,
                kind,
                seq,
                |out| out.extend_from_slice(payload),
                |h, p| Some(seal(&header, at, h, p)),
            );
        } else {
            format::push_frame(&mut seg, kind, seq, payload);
        }
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
        Some((mode, rest)) if mode & 1 == 1 => check(rest, false),
        Some((mode, rest)) => {
            let encrypted = mode & 4 == 4;
            check(&with_valid_crcs(rest, mode & 2 == 2, encrypted), encrypted);
        }
        None => check(data, false),
    }
});
