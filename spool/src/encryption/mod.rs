//! Encryption at rest: the keys the application supplies
//! ([`EncryptionKey`]), the keyring recovery reads encrypted segments with,
//! and the [`Sealer`] that encrypts the frames of new segments.
//!
//! Frames are sealed with AES-256-GCM (the `aes-gcm` crate: AES-NI and
//! PCLMULQDQ detected at run time). The primitives — nonces, associated
//! data, the header tag — are in `seal`; the layout is in the `format`
//! module's docs.

mod seal;

use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use aes_gcm::aead::rand_core::RngCore;
use zeroize::Zeroizing;

use crate::format::{
    self, EncryptedHeader, FLAG_PREALLOCATED, FRAME_AAD_LEN, FRAME_HEADER_LEN, Frame,
};

pub(crate) use seal::{AAD_HEADER_LEN, open_frame, verify_header};

/// Bytes of an [`EncryptionKey`].
pub const KEY_LEN: usize = 32;

/// A 256-bit key for encryption at rest, with the id segments written
/// under it carry in their header (so that a rotated key can still read
/// them).
///
/// Its bytes never appear in `Debug` output, logs or errors, and are wiped
/// from memory when it is dropped. Load it from a secrets manager or a file
/// only the service can read; never store it next to the spool.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey {
    id: u32,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl EncryptionKey {
    /// The key `bytes`, known by `id` (any value; each key of one spool
    /// needs its own id).
    pub fn new(id: u32, bytes: [u8; KEY_LEN]) -> Self {
        Self {
            id,
            bytes: Zeroizing::new(bytes),
        }
    }

    /// The key's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether this key authenticates an encrypted segment's header (as
    /// [`scan`](crate::format::scan) reports it): false for a different
    /// key. For tools that read segments; the spool checks this at open.
    pub fn authenticates(&self, header: &EncryptedHeader) -> bool {
        header.key_id == self.id && verify_header(&self.cipher(), &header.aad, &header.tag)
    }

    /// The plaintext payload of `frame`, read by [`scan`](crate::format::scan)
    /// from an encrypted segment with `header`; `None` when it does not
    /// authenticate under this key (another key, or bytes changed since
    /// they were written). For tools that read segments.
    pub fn open(&self, header: &EncryptedHeader, frame: &Frame<'_>) -> Option<Vec<u8>> {
        open_frame(
            &self.cipher(),
            &header.aad,
            frame.offset as u64,
            &frame.authenticated_header(),
            frame.payload,
        )
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.bytes.as_ref().into())
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

/// The keys a spool holds: the current one (new segments are encrypted
/// under it), if any, and older ones kept for reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Keys {
    pub(crate) current: Option<EncryptionKey>,
    pub(crate) old: Vec<EncryptionKey>,
}

impl Keys {
    /// Every key's id, the current one first.
    pub(crate) fn ids(&self) -> Vec<u32> {
        self.current
            .iter()
            .chain(&self.old)
            .map(EncryptionKey::id)
            .collect()
    }

    /// A key id given twice, if any.
    pub(crate) fn duplicate_id(&self) -> Option<u32> {
        let mut ids = self.ids();
        ids.sort_unstable();
        ids.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
    }
}

/// The ciphers recovery reads encrypted segments with, by key id.
pub(crate) struct Keyring {
    ciphers: Vec<(u32, Aes256Gcm)>,
    /// A current key is configured: new segments are encrypted.
    pub(crate) encrypting: bool,
}

impl Keyring {
    pub(crate) fn new(keys: &Keys) -> Self {
        Self {
            ciphers: keys
                .current
                .iter()
                .chain(&keys.old)
                .map(|k| (k.id, k.cipher()))
                .collect(),
            encrypting: keys.current.is_some(),
        }
    }

    /// The cipher of key `id`, if it was supplied.
    pub(crate) fn get(&self, id: u32) -> Option<&Aes256Gcm> {
        self.ciphers.iter().find(|(i, _)| *i == id).map(|(_, c)| c)
    }

    /// The ids of the keys supplied.
    pub(crate) fn ids(&self) -> Vec<u32> {
        self.ciphers.iter().map(|(i, _)| *i).collect()
    }
}

/// Encrypts the segments a session writes, under the current key.
///
/// Nonce uniqueness: a frame's nonce is its segment's 64-bit salt followed
/// by the frame's offset in the segment (32 bits; encrypted segments are at
/// most 4 GiB, and frames start after the header, so offset 0 is free for
/// the header's own tag). Within a segment, offsets are distinct, and a
/// segment is written in one session only (recovery truncates, never
/// appends; every session starts new segments). A segment's salt is the
/// session's random 64-bit base plus the segment index: distinct within a
/// session (indexes are), and across sessions and spools sharing the key
/// two salts collide only if two random bases fall within the number of
/// segments of each other — with a 64-bit base, a chance of about
/// `sessions² × segments per session / 2⁶⁴`.
#[derive(Clone)]
pub(crate) struct Sealer {
    cipher: Aes256Gcm,
    key_id: u32,
    salt_base: u64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer for a new session under `key`, with a salt base from the
    /// operating system's random source.
    ///
    /// # Errors
    ///
    /// The random source failed.
    pub(crate) fn new(key: &EncryptionKey) -> Result<Self, std::io::Error> {
        let mut base = [0u8; 8];
        aes_gcm::aead::OsRng
            .try_fill_bytes(&mut base)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self {
            cipher: key.cipher(),
            key_id: key.id,
            salt_base: u64::from_le_bytes(base),
        })
    }

    /// The header of encrypted segment `index`.
    pub(crate) fn segment_header(&self, index: u64, preallocated: bool) -> Vec<u8> {
        let flags = if preallocated { FLAG_PREALLOCATED } else { 0 };
        let salt = self.salt_base.wrapping_add(index);
        format::encrypted_segment_header(index, flags, self.key_id, salt, |aad| {
            seal::header_tag(&self.cipher, aad, salt)
        })
        .to_vec()
    }

    /// Seals, in place, the frames in `frames` appended with
    /// [`format::push_frame_to_seal_with`] (each followed by an end byte
    /// when `marked`): a run of frames of the segment whose header begins
    /// with `segment_aad`, the first at `offset` in it. Returns false when
    /// the bytes are not such frames, or one cannot be sealed.
    pub(crate) fn seal_frames(
        &self,
        segment_aad: &[u8; AAD_HEADER_LEN],
        mut offset: u64,
        frames: &mut [u8],
        marked: bool,
    ) -> bool {
        let mut at = 0;
        while at < frames.len() {
            let Some(len) = frames
                .get(at..at + 4)
                .and_then(|l| l.try_into().ok())
                .map(|l| u32::from_le_bytes(l) as usize)
            else {
                return false;
            };
            let end = at + FRAME_HEADER_LEN + len;
            let Some(frame) = frames.get_mut(at..end) else {
                return false;
            };
            let (header, payload) = frame.split_at_mut(FRAME_HEADER_LEN);
            let Some(plain_len) = len.checked_sub(format::TAG_LEN) else {
                return false;
            };
            let (plain, tag) = payload.split_at_mut(plain_len);
            let Some(sealed) = self.seal(segment_aad, offset, &header[..FRAME_AAD_LEN], plain)
            else {
                return false;
            };
            tag.copy_from_slice(&sealed);
            format::fill_frame_checksums(frame);
            let size = end - at + usize::from(marked);
            at += size;
            offset += size as u64;
        }
        true
    }

    /// Encrypts a frame's `payload` in place: the frame starts at `offset`
    /// in the segment whose header begins with `segment_aad`, and its
    /// header begins with `frame_header`. Returns the tag, or `None` when
    /// the payload is too large to seal (never for the spool's sizes).
    pub(crate) fn seal(
        &self,
        segment_aad: &[u8; AAD_HEADER_LEN],
        offset: u64,
        frame_header: &[u8],
        payload: &mut [u8],
    ) -> Option<[u8; format::TAG_LEN]> {
        seal::seal_frame(&self.cipher, segment_aad, offset, frame_header, payload)
    }
}

/// The first [`AAD_HEADER_LEN`] bytes of a segment header (zeros for a
/// shorter one): the start of its frames' associated data.
pub(crate) fn aad_of(header: &[u8]) -> [u8; AAD_HEADER_LEN] {
    header
        .get(..AAD_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .unwrap_or([0; AAD_HEADER_LEN])
}

/// The key the crate's unit tests encrypt with.
#[cfg(test)]
pub(crate) fn test_key() -> EncryptionKey {
    EncryptionKey::new(42, [0x5A; KEY_LEN])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_id_and_never_the_bytes() {
        let key = EncryptionKey::new(7, [0xAB; KEY_LEN]);
        let shown = format!(
            "{key:?} {:?}",
            Keys {
                current: Some(key.clone()),
                old: vec![key.clone()],
            }
        );
        assert!(shown.contains("id: 7"), "{shown}");
        assert!(!shown.to_lowercase().contains("ab, ab") && !shown.contains("171"));
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
    }

    #[test]
    fn duplicate_ids_are_found() {
        let keys = Keys {
            current: Some(EncryptionKey::new(1, [1; KEY_LEN])),
            old: vec![
                EncryptionKey::new(2, [2; KEY_LEN]),
                EncryptionKey::new(1, [3; KEY_LEN]),
            ],
        };
        assert_eq!(keys.duplicate_id(), Some(1));
        assert_eq!(keys.ids(), [1, 2, 1]);
    }
}
