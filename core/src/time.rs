//! Deadline arithmetic that never overflows: a duration too long to add to
//! an instant means "never", which is [`FAR_FUTURE`] from now.
//!
//! Every deadline the library computes from a duration a user gave
//! (`connect_timeout`, `ack_timeout`, `Block { timeout }`, `flush`, `close`,
//! `drop_grace`, ...) goes through [`deadline_after`], so `Duration::MAX`
//! is accepted everywhere and waits as long as a process can live.

use std::time::{Duration, Instant};

/// How far "never" is: about 30 years, as far as the timers of common
/// runtimes (tokio's among them) take a deadline.
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + d`, or `now + FAR_FUTURE` when `d` is longer than that.
#[inline]
#[must_use]
pub fn deadline_after(now: Instant, d: Duration) -> Instant {
    let d = d.min(FAR_FUTURE);
    // Only an instant near the end of the clock's range cannot take 30
    // years; a year then, or at worst now.
    now.checked_add(d)
        .or_else(|| now.checked_add(d.min(Duration::from_secs(86_400 * 365))))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_durations_saturate_to_the_far_future() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Duration::ZERO), now);
        assert_eq!(
            deadline_after(now, Duration::from_nanos(1)),
            now + Duration::from_nanos(1)
        );
        assert_eq!(deadline_after(now, Duration::MAX), now + FAR_FUTURE);
        assert_eq!(deadline_after(now, FAR_FUTURE * 2), now + FAR_FUTURE);
    }
}
