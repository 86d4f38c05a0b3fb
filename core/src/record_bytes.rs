//! [`IntoRecordBytes`]: how a payload, key or header value becomes the
//! [`Bytes`] a [`Record`](crate::Record) holds.
//!
//! It takes what `Into<Bytes>` takes, with one difference: a `Vec<u8>` or
//! `String` whose capacity exceeds its length is shrunk to its length first.
//! `Bytes::from(Vec)` would instead allocate a second, shared block to
//! remember the capacity, and keep the whole capacity alive. `format!`,
//! `to_string()` and `serde_json::to_vec` leave spare capacity almost
//! always, and a record is held until the broker acknowledges it, so
//! shrinking saves an allocation, a free and an atomic count per value, and
//! the memory held matches what `max_queued_bytes` counts. (glibc's malloc
//! shrinks a block in place; an allocator with size classes may instead
//! move a small value to a smaller class, which copies its bytes once.)

use bytes::{Bytes, BytesMut};

/// A value that becomes a record's payload, key or header value: `Bytes`,
/// `Vec<u8>`, `String`, `Box<[u8]>`, `BytesMut`, `&'static [u8]` or
/// `&'static str`. Unlike `Into<Bytes>`, it shrinks a `Vec<u8>` or
/// `String` with spare capacity to its length first: a record held until
/// the broker acknowledges it then keeps no unused memory, and `Bytes`
/// needs no second, shared block to remember the capacity.
pub trait IntoRecordBytes {
    /// The value as `Bytes`, holding no spare capacity.
    fn into_record_bytes(self) -> Bytes;
}

impl IntoRecordBytes for Bytes {
    fn into_record_bytes(self) -> Bytes {
        self
    }
}

impl IntoRecordBytes for Vec<u8> {
    fn into_record_bytes(self) -> Bytes {
        Bytes::from(self.into_boxed_slice())
    }
}

impl IntoRecordBytes for String {
    fn into_record_bytes(self) -> Bytes {
        String::into_bytes(self).into_record_bytes()
    }
}

impl IntoRecordBytes for Box<[u8]> {
    fn into_record_bytes(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoRecordBytes for BytesMut {
    fn into_record_bytes(self) -> Bytes {
        self.freeze()
    }
}

impl IntoRecordBytes for &'static [u8] {
    fn into_record_bytes(self) -> Bytes {
        Bytes::from_static(self)
    }
}

impl IntoRecordBytes for &'static str {
    fn into_record_bytes(self) -> Bytes {
        Bytes::from_static(self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_keeps_its_contents() {
        let mut spare = String::with_capacity(64);
        spare.push_str("event-1");
        let mut vec = Vec::with_capacity(64);
        vec.extend_from_slice(b"v");
        assert_eq!(spare.into_record_bytes(), "event-1");
        assert_eq!(vec.into_record_bytes(), "v");
        assert_eq!(Bytes::from_static(b"b").into_record_bytes(), "b");
        assert_eq!(Box::<[u8]>::from(&b"x"[..]).into_record_bytes(), "x");
        assert_eq!(BytesMut::from(&b"m"[..]).into_record_bytes(), "m");
        assert_eq!(b"s".as_slice().into_record_bytes(), "s");
        assert_eq!("t".into_record_bytes(), "t");
    }

    /// The capacity a value keeps alive, seen through `BytesMut`.
    fn held_capacity(b: Bytes) -> usize {
        b.try_into_mut().map(|m| m.capacity()).unwrap_or(0)
    }

    #[test]
    fn spare_capacity_is_not_kept() {
        let id = format!("00000000-0000-4000-8000-{:012x}", 7);
        assert!(id.capacity() > id.len(), "the case this is about");
        let len = id.len();
        let mut payload = Vec::with_capacity(4096);
        payload.extend_from_slice(b"{}");
        assert_eq!(held_capacity(id.into_record_bytes()), len);
        assert_eq!(held_capacity(payload.into_record_bytes()), 2);
        // What `Bytes::from` keeps instead (with a second, shared block).
        let mut spare = String::with_capacity(64);
        spare.push('x');
        assert_eq!(held_capacity(Bytes::from(spare)), 64);
    }
}
