//! Building what the spool writes: segment headers, frames with their
//! checksums and end byte, and the payload of settled frames (and its
//! parser).

use super::{
    ENCRYPTED_SEGMENT_HEADER_LEN, ENCRYPTED_VERSION, FLAG_PREALLOCATED, FRAME_AAD_LEN, FRAME_END,
    FRAME_HEADER_LEN, FrameKind, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, TAG_LEN, VERSION,
};

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

/// The header of encrypted segment `index` (version
/// [`ENCRYPTED_VERSION`]) with `flags`, written under key `key_id` with
/// `salt`; `tag` computes the header's tag from its first 32 bytes.
pub fn encrypted_segment_header(
    index: u64,
    flags: u16,
    key_id: u32,
    salt: u64,
    tag: impl FnOnce(&[u8; 32]) -> [u8; TAG_LEN],
) -> [u8; ENCRYPTED_SEGMENT_HEADER_LEN] {
    let mut h = [0u8; ENCRYPTED_SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&ENCRYPTED_VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&flags.to_le_bytes());
    h[12..16].copy_from_slice(&key_id.to_le_bytes());
    h[16..24].copy_from_slice(&index.to_le_bytes());
    h[24..32].copy_from_slice(&salt.to_le_bytes());
    let mut aad = [0u8; 32];
    aad.copy_from_slice(&h[0..32]);
    h[32..48].copy_from_slice(&tag(&aad));
    let crc = crc32c::crc32c(&h[0..52]);
    h[52..56].copy_from_slice(&crc.to_le_bytes());
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
/// Never for payloads up to [`MAX_PAYLOAD`](super::MAX_PAYLOAD); callers
/// check the size first (a larger payload is written with a length the
/// reader refuses).
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
    fill_frame_fields(&mut out[start..start + FRAME_HEADER_LEN], len, kind, seq);
    fill_frame_checksums_at(out, start);
}

/// Appends one sealed frame (encrypted segments): the frame of
/// [`push_frame_to_seal_with`], then `seal` encrypts the payload in place,
/// given the frame header's first [`FRAME_AAD_LEN`] bytes (length, with
/// the tag; kind; sequence number) as associated data, and returns the
/// tag, which follows the ciphertext. The checksums cover the sealed
/// bytes. Returns false, with `out` as it was, when `seal` fails.
pub fn push_sealed_frame_with(
    out: &mut Vec<u8>,
    kind: FrameKind,
    seq: u64,
    write: impl FnOnce(&mut Vec<u8>),
    seal: impl FnOnce(&[u8], &mut [u8]) -> Option<[u8; TAG_LEN]>,
) -> bool {
    let start = out.len();
    push_frame_to_seal_with(out, kind, seq, write);
    let (h, rest) = out[start..].split_at_mut(FRAME_HEADER_LEN);
    let (payload, tag_slot) = rest.split_at_mut(rest.len() - TAG_LEN);
    let Some(tag) = seal(&h[..FRAME_AAD_LEN], payload) else {
        out.truncate(start);
        return false;
    };
    tag_slot.copy_from_slice(&tag);
    fill_frame_checksums_at(out, start);
    true
}

/// Appends one frame to be sealed later (encrypted segments), without its
/// checksums: its header's length counts a [`TAG_LEN`]-byte tag, `write`
/// appends the plaintext payload, and zeros hold the tag's place. Sealing
/// encrypts the payload in place, writes the tag, then
/// [`fill_frame_checksums`].
pub fn push_frame_to_seal_with(
    out: &mut Vec<u8>,
    kind: FrameKind,
    seq: u64,
    write: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    write(out);
    out.extend_from_slice(&[0u8; TAG_LEN]);
    let len = out.len() - start - FRAME_HEADER_LEN;
    fill_frame_fields(&mut out[start..start + FRAME_HEADER_LEN], len, kind, seq);
}

/// Writes the checksums of `frame` (its header, then its whole payload;
/// no end byte).
pub fn fill_frame_checksums(frame: &mut [u8]) {
    if frame.len() >= FRAME_HEADER_LEN {
        fill_frame_checksums_at(frame, 0);
    }
}

/// Writes a frame header's length, kind and sequence number.
fn fill_frame_fields(h: &mut [u8], len: usize, kind: FrameKind, seq: u64) {
    h[0..4].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    h[4] = kind.code();
    h[8..16].copy_from_slice(&seq.to_le_bytes());
}

/// Writes the checksums of the frame starting at `start`, the last one in
/// `out`.
fn fill_frame_checksums_at(out: &mut [u8], start: usize) {
    let pcrc = crc32c::crc32c(&out[start + FRAME_HEADER_LEN..]);
    let h = &mut out[start..start + FRAME_HEADER_LEN];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_payload_round_trips() {
        let mut p = Vec::new();
        settled_payload(&[(1, 4), (9, 9)], &mut p);
        assert_eq!(parse_settled(&p), Some(vec![(1, 4), (9, 9)]));
        assert_eq!(parse_settled(&p[..p.len() - 1]), None);
    }
}
