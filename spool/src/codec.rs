//! The record codec: how a [`Record`] (topic, key, payload, headers) is laid
//! out in the payload of a record frame.
//!
//! ```text
//! u16 topic length, topic (UTF-8)
//! u8  key tag: 0 = no key, 1 = key follows
//!     [u32 key length, key]
//! u32 payload length, payload
//! u16 header count, then per header:
//!     u16 name length, name (UTF-8), u32 value length, value
//! ```
//!
//! All integers are little-endian. Decoding checks every length against the
//! bytes that remain and requires the input to be consumed exactly.

use std::borrow::Cow;

use robust_producer::{Bytes, Record};

/// Why a payload is not a valid encoded record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A length runs past the end of the payload.
    #[error("truncated record: {field} needs {need} bytes, {left} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        left: usize,
    },
    /// A text field is not UTF-8.
    #[error("{field} is not UTF-8")]
    NotUtf8 {
        /// The field.
        field: &'static str,
    },
    /// The key tag is neither 0 nor 1.
    #[error("invalid key tag {0}")]
    KeyTag(u8),
    /// Bytes remain after the last header.
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
}

/// Bytes `record` takes once encoded, or `None` when a field exceeds what
/// the format can hold (a topic, header count or header name over 65 535, a
/// key, payload or header value over 4 GiB).
pub fn encoded_len(record: &Record) -> Option<usize> {
    if record.topic.len() > usize::from(u16::MAX) || record.headers.len() > usize::from(u16::MAX) {
        return None;
    }
    let u32_max = u32::MAX as usize;
    let mut n = 2 + record.topic.len() + 1 + 4 + record.payload.len() + 2;
    if record.payload.len() > u32_max {
        return None;
    }
    if let Some(key) = &record.key {
        if key.len() > u32_max {
            return None;
        }
        n += 4 + key.len();
    }
    for (name, value) in &record.headers {
        if name.len() > usize::from(u16::MAX) || value.len() > u32_max {
            return None;
        }
        n += 2 + name.len() + 4 + value.len();
    }
    Some(n)
}

/// Appends the encoding of `record` to `out`. Returns false (and appends
/// nothing) when [`encoded_len`] is `None`.
pub fn encode(record: &Record, out: &mut Vec<u8>) -> bool {
    let Some(len) = encoded_len(record) else {
        return false;
    };
    out.reserve(len);
    // The casts below are in range: encoded_len checked every length.
    out.extend_from_slice(&(record.topic.len() as u16).to_le_bytes());
    out.extend_from_slice(record.topic.as_bytes());
    match &record.key {
        None => out.push(0),
        Some(key) => {
            out.push(1);
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
        }
    }
    out.extend_from_slice(&(record.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&record.payload);
    out.extend_from_slice(&(record.headers.len() as u16).to_le_bytes());
    for (name, value) in &record.headers {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    true
}

/// Decodes a record encoded by [`encode`].
///
/// # Errors
///
/// [`DecodeError`] when `bytes` is not exactly one encoded record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let mut r = Reader { bytes };
    let topic_len = usize::from(r.u16("topic length")?);
    let topic = r.text(topic_len, "topic")?;
    let key = match r.u8("key tag")? {
        0 => None,
        1 => {
            let n = r.u32("key length")?;
            Some(Bytes::copy_from_slice(r.take(n, "key")?))
        }
        tag => return Err(DecodeError::KeyTag(tag)),
    };
    let n = r.u32("payload length")?;
    let payload = Bytes::copy_from_slice(r.take(n, "payload")?);
    let count = usize::from(r.u16("header count")?);
    // Every header takes at least 6 bytes: never reserve more than the
    // input can hold.
    let mut headers = robust_producer::Headers::with_capacity(count.min(r.bytes.len() / 6));
    for _ in 0..count {
        let name_len = usize::from(r.u16("header name length")?);
        let name = r.text(name_len, "header name")?;
        let n = r.u32("header value length")?;
        headers.push((
            Cow::Owned(name),
            Bytes::copy_from_slice(r.take(n, "header value")?),
        ));
    }
    if !r.bytes.is_empty() {
        return Err(DecodeError::Trailing(r.bytes.len()));
    }
    Ok(Record {
        topic: topic.into(),
        key,
        payload,
        headers,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Err(DecodeError::Truncated {
                field,
                need: n,
                left: self.bytes.len(),
            });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = u32::from_le_bytes(self.array(field)?);
        // On 16-bit targets a length beyond usize cannot be in the input.
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn text(&mut self, n: usize, field: &'static str) -> Result<String, DecodeError> {
        let bytes = self.take(n, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8 { field })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Record {
        Record::new("orders", b"payload".to_vec())
            .with_key(b"k-1".to_vec())
            .with_header("event_id", b"e-1".to_vec())
            .with_header("empty", Vec::new())
    }

    #[test]
    fn round_trips_and_length_matches() {
        for record in [full(), Record::new("t", Vec::new())] {
            let mut out = Vec::new();
            assert!(encode(&record, &mut out));
            assert_eq!(out.len(), encoded_len(&record).unwrap());
            assert_eq!(decode(&out).unwrap(), record);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let mut out = Vec::new();
        assert!(encode(&full(), &mut out));
        for cut in 0..out.len() {
            assert!(decode(&out[..cut]).is_err(), "cut at {cut}");
        }
        out.push(0);
        assert_eq!(decode(&out), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn oversized_fields_are_refused() {
        let record = Record::new("x".repeat(70_000), Vec::new());
        assert_eq!(encoded_len(&record), None);
        let mut out = Vec::new();
        assert!(!encode(&record, &mut out));
        assert!(out.is_empty());
    }
}
