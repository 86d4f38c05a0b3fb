//! The AES-256-GCM primitives of encrypted segments: a frame's nonce (its
//! segment's salt and its offset), its associated data (the segment
//! header's first bytes and the frame header's), sealing and opening a
//! frame, and the header's own tag, which tells a wrong key at once.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, Nonce, Tag};

use crate::format::{FRAME_AAD_LEN, TAG_LEN};

/// Bytes of the segment header that every frame's associated data starts
/// with: magic, version, flags, key id, index and salt.
pub(crate) const AAD_HEADER_LEN: usize = 32;

/// The nonce of the frame at `offset` in a segment with `salt`: the salt
/// (8 bytes) then the offset (4 bytes), little-endian. Offset 0 is the
/// header's own tag. Offsets beyond 32 bits cannot occur (encrypted
/// segments are at most 4 GiB, checked when the configuration is built);
/// should one, it maps to no nonce at all rather than a repeated one.
fn nonce(salt: u64, offset: u64) -> Option<Nonce<aes_gcm::aead::consts::U12>> {
    let offset = u32::try_from(offset).ok()?;
    let mut n = [0u8; 12];
    n[0..8].copy_from_slice(&salt.to_le_bytes());
    n[8..12].copy_from_slice(&offset.to_le_bytes());
    Some(n.into())
}

/// The associated data of a frame: the segment header's first
/// [`AAD_HEADER_LEN`] bytes (so a frame cannot move to another segment, or
/// its segment's flags change) and the frame header's first
/// [`FRAME_AAD_LEN`] bytes (its length, kind and sequence number). With the
/// offset in the nonce, a frame moved, swapped or replayed elsewhere fails.
fn frame_aad(segment_aad: &[u8; AAD_HEADER_LEN], frame_header: &[u8]) -> Option<[u8; 48]> {
    let mut aad = [0u8; AAD_HEADER_LEN + FRAME_AAD_LEN];
    aad[..AAD_HEADER_LEN].copy_from_slice(segment_aad);
    aad[AAD_HEADER_LEN..].copy_from_slice(frame_header.get(..FRAME_AAD_LEN)?);
    Some(aad)
}

/// The salt in a segment header's associated-data prefix.
fn salt_of(segment_aad: &[u8; AAD_HEADER_LEN]) -> u64 {
    let mut s = [0u8; 8];
    s.copy_from_slice(&segment_aad[24..32]);
    u64::from_le_bytes(s)
}

/// Encrypts `payload` in place and returns its tag (see
/// [`Sealer::seal`](super::Sealer::seal)).
pub(super) fn seal_frame(
    cipher: &Aes256Gcm,
    segment_aad: &[u8; AAD_HEADER_LEN],
    offset: u64,
    frame_header: &[u8],
    payload: &mut [u8],
) -> Option<[u8; TAG_LEN]> {
    let nonce = nonce(salt_of(segment_aad), offset)?;
    let aad = frame_aad(segment_aad, frame_header)?;
    let tag = cipher
        .encrypt_in_place_detached(&nonce, &aad, payload)
        .ok()?;
    Some(tag.into())
}

/// Decrypts a sealed frame read from a segment: `sealed` is its payload
/// (ciphertext then tag), `frame_header` its header, `offset` where it
/// starts. Returns the plaintext, or `None` when it does not authenticate
/// (a different key, or bytes changed since they were written).
pub(crate) fn open_frame(
    cipher: &Aes256Gcm,
    segment_aad: &[u8; AAD_HEADER_LEN],
    offset: u64,
    frame_header: &[u8],
    sealed: &[u8],
) -> Option<Vec<u8>> {
    let split = sealed.len().checked_sub(TAG_LEN)?;
    let (ciphertext, tag) = sealed.split_at(split);
    let nonce = nonce(salt_of(segment_aad), offset)?;
    let aad = frame_aad(segment_aad, frame_header)?;
    let mut plain = ciphertext.to_vec();
    cipher
        .decrypt_in_place_detached(&nonce, &aad, &mut plain, Tag::from_slice(tag))
        .ok()?;
    Some(plain)
}

/// The tag an encrypted segment header carries: an empty message sealed
/// with the header's first bytes as associated data, at offset 0.
pub(super) fn header_tag(cipher: &Aes256Gcm, aad: &[u8; AAD_HEADER_LEN], salt: u64) -> [u8; 16] {
    let mut tag = [0u8; TAG_LEN];
    if let Some(nonce) = nonce(salt, 0)
        && let Ok(t) = cipher.encrypt_in_place_detached(&nonce, aad, &mut [])
    {
        tag = t.into();
    }
    tag
}

/// Whether an encrypted segment header's `tag` authenticates its first
/// bytes `aad` under `cipher`: false means a different key (or a header
/// changed on purpose: its checksum passed).
pub(crate) fn verify_header(
    cipher: &Aes256Gcm,
    aad: &[u8; AAD_HEADER_LEN],
    tag: &[u8; 16],
) -> bool {
    let Some(nonce) = nonce(salt_of(aad), 0) else {
        return false;
    };
    cipher
        .decrypt_in_place_detached(&nonce, aad, &mut [], GenericArray::from_slice(tag))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use aes_gcm::aead::KeyInit;

    use super::*;

    #[test]
    fn a_frame_opens_only_where_it_was_sealed() {
        let cipher = Aes256Gcm::new(&[9u8; 32].into());
        let mut seg = [1u8; AAD_HEADER_LEN];
        let header = [2u8; 16];
        let mut payload = b"patient note".to_vec();
        let tag = seal_frame(&cipher, &seg, 56, &header, &mut payload).unwrap();
        assert_ne!(payload, b"patient note");
        let mut sealed = payload.clone();
        sealed.extend_from_slice(&tag);
        assert_eq!(
            open_frame(&cipher, &seg, 56, &header, &sealed).as_deref(),
            Some(&b"patient note"[..])
        );
        assert!(open_frame(&cipher, &seg, 57, &header, &sealed).is_none());
        assert!(open_frame(&cipher, &seg, 56, &[3u8; 16], &sealed).is_none());
        let other = Aes256Gcm::new(&[8u8; 32].into());
        assert!(open_frame(&other, &seg, 56, &header, &sealed).is_none());
        seg[30] ^= 1; // another salt
        assert!(open_frame(&cipher, &seg, 56, &header, &sealed).is_none());
        assert!(seal_frame(&cipher, &seg, 1 << 32, &header, &mut payload).is_none());
    }

    #[test]
    fn the_header_tag_tells_the_key() {
        let cipher = Aes256Gcm::new(&[9u8; 32].into());
        let aad = [5u8; AAD_HEADER_LEN];
        let tag = header_tag(&cipher, &aad, salt_of(&aad));
        assert!(verify_header(&cipher, &aad, &tag));
        let other = Aes256Gcm::new(&[8u8; 32].into());
        assert!(!verify_header(&other, &aad, &tag));
    }
}
