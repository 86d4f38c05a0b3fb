//! [`DurationHistogram`]: how long delivered records waited, from
//! acceptance to acknowledgement, counted in fixed buckets (Prometheus'
//! layout) at the cost of a few comparisons per record, whatever the rate.

use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// Upper bounds of the buckets (inclusive), from a millisecond to an hour:
/// the fast path of a healthy cluster and the long waits of an outage.
pub const DELIVERY_BUCKETS: [Duration; 17] = [
    Duration::from_millis(1),
    Duration::from_micros(2_500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2_500),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(3_600),
];

/// Counts of durations per bucket of [`DELIVERY_BUCKETS`], plus one for
/// longer ones, with their sum.
///
/// Serialized as `{"le": [0.001, …, 3600.0, null], "cumulative": [...],
/// "count": n, "sum": seconds}`: `cumulative[i]` durations were at most
/// `le[i]` seconds (`null`: any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DurationHistogram {
    counts: [u64; DELIVERY_BUCKETS.len() + 1],
    sum: Duration,
}

impl DurationHistogram {
    /// Counts one duration.
    #[inline]
    pub(crate) fn record(&mut self, d: Duration) {
        let at = DELIVERY_BUCKETS.partition_point(|bound| *bound < d);
        if let Some(n) = self.counts.get_mut(at) {
            *n += 1;
        }
        self.sum = self.sum.saturating_add(d);
    }

    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Their sum.
    pub fn sum(&self) -> Duration {
        self.sum
    }

    /// Per bucket, its upper bound (`None` for the last, unbounded one)
    /// and how many durations were at most that: Prometheus' `le` and
    /// cumulative count.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let bounds = DELIVERY_BUCKETS.iter().copied().map(Some).chain([None]);
        bounds.zip(self.counts.iter().scan(0u64, |total, n| {
            *total += n;
            Some(*total)
        }))
    }
}

impl Serialize for DurationHistogram {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (le, cumulative): (Vec<_>, Vec<_>) = self
            .cumulative()
            .map(|(bound, n)| (bound.map(|b| b.as_secs_f64()), n))
            .unzip();
        let mut out = s.serialize_struct("DurationHistogram", 4)?;
        out.serialize_field("le", &le)?;
        out.serialize_field("cumulative", &cumulative)?;
        out.serialize_field("count", &self.count())?;
        out.serialize_field("sum", &self.sum.as_secs_f64())?;
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        let mut h = DurationHistogram::default();
        for ms in [0, 1, 2, 3, 999, 1_000, 1_001] {
            h.record(Duration::from_millis(ms));
        }
        h.record(Duration::from_secs(7_200));
        let cumulative: Vec<_> = h.cumulative().collect();
        assert_eq!(cumulative.len(), DELIVERY_BUCKETS.len() + 1);
        assert_eq!(
            cumulative[0],
            (Some(Duration::from_millis(1)), 2),
            "0 and 1 ms"
        );
        assert_eq!(cumulative[1], (Some(Duration::from_micros(2_500)), 3));
        assert_eq!(cumulative[2], (Some(Duration::from_millis(5)), 4));
        assert_eq!(
            cumulative[9],
            (Some(Duration::from_secs(1)), 6),
            "1 s included"
        );
        assert_eq!(cumulative[10].1, 7);
        assert_eq!(cumulative[16], (Some(Duration::from_secs(3_600)), 7));
        assert_eq!(cumulative[17], (None, 8), "two hours: only the last bucket");
        assert_eq!(h.count(), 8);
        assert_eq!(h.sum(), Duration::from_millis(7_200_000 + 3_006));

        let json = serde_json::to_value(h).unwrap();
        assert_eq!(json["le"][0], 0.001);
        assert_eq!(json["le"][17], serde_json::Value::Null);
        assert_eq!(json["cumulative"][17], 8);
        assert_eq!(json["count"], 8);
    }
}
