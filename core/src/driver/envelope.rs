//! The event envelope of the original design: every domain event travels as
//! JSON `{event_id, event_type, timestamp, producer, version, payload}`, with
//! `event_id`, `event_type` and `producer` also as Kafka headers so that
//! consumers can route and de-duplicate without parsing the value.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::record::{Bytes, Record};

/// Version written in the envelope's `version` field.
pub const ENVELOPE_VERSION: &str = "1.0";

/// Header carrying the envelope's event id (consumers de-duplicate on it).
pub const EVENT_ID_HEADER: &str = "event_id";
/// Header carrying the envelope's event type.
pub const EVENT_TYPE_HEADER: &str = "event_type";
/// Header carrying the producing service's name.
pub const PRODUCER_HEADER: &str = "producer";

/// One domain event, as serialized into a record's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope<P> {
    /// A random UUID (v4), unique per event; stable across resends.
    pub event_id: String,
    /// The event's type, for example `patient.registered`.
    pub event_type: String,
    /// When the event was created, RFC 3339 in UTC with milliseconds.
    pub timestamp: String,
    /// The producing service's name.
    pub producer: String,
    /// Envelope format version ([`ENVELOPE_VERSION`]).
    pub version: String,
    /// The event's own data.
    pub payload: P,
}

impl<P: Serialize> EventEnvelope<P> {
    /// A new envelope with a fresh event id and the current time.
    pub fn new(event_type: &str, producer: &str, payload: P) -> Self {
        Self {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type: event_type.to_owned(),
            timestamp: rfc3339_utc(SystemTime::now()),
            producer: producer.to_owned(),
            version: ENVELOPE_VERSION.to_owned(),
            payload,
        }
    }

    /// The record carrying this envelope as JSON, with its headers.
    ///
    /// # Errors
    ///
    /// When the payload cannot be serialized to JSON.
    pub fn into_record(self, topic: &str, key: Option<&str>) -> Result<Record, serde_json::Error> {
        let mut record = Record::new(topic, serde_json::to_vec(&self)?)
            .with_header(EVENT_ID_HEADER, self.event_id)
            .with_header(EVENT_TYPE_HEADER, self.event_type)
            .with_header(PRODUCER_HEADER, self.producer);
        record.key = key.map(|k| Bytes::copy_from_slice(k.as_bytes()));
        Ok(record)
    }
}

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn rfc3339_utc(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_known_dates() {
        let at = |s: u64, ms: u64| rfc3339_utc(UNIX_EPOCH + Duration::from_millis(s * 1000 + ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_798_761_599, 999), "2026-12-31T23:59:59.999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn envelope_round_trips_and_carries_headers() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Registered {
            patient_id: u32,
        }
        let env = EventEnvelope::new(
            "patient.registered",
            "patient-service",
            Registered { patient_id: 7 },
        );
        let id = env.event_id.clone();
        let record = env.into_record("patients", Some("p-7")).unwrap();
        assert_eq!(record.key.as_deref(), Some(&b"p-7"[..]));
        assert_eq!(record.header(EVENT_ID_HEADER), Some(id.as_bytes()));
        assert_eq!(
            record.header(EVENT_TYPE_HEADER),
            Some(&b"patient.registered"[..])
        );
        assert_eq!(
            record.header(PRODUCER_HEADER),
            Some(&b"patient-service"[..])
        );
        let back: EventEnvelope<Registered> = serde_json::from_slice(&record.payload).unwrap();
        assert_eq!(back.event_id, id);
        assert_eq!(back.payload, Registered { patient_id: 7 });
        assert_eq!(back.version, ENVELOPE_VERSION);
        assert!(
            back.timestamp.ends_with('Z') && back.timestamp.len() == 24,
            "{}",
            back.timestamp
        );
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    }
}
