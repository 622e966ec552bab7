//! Time as a parameter. Domain code asks a [`Clock`] for the time instead of calling `now()`,
//! so tests can pin it and the journal's timestamps come from one place.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch.
    fn now_us(&self) -> i64;
}

/// The operating system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            // A clock set before 1970 is a broken clock; `doctor` reports it. Keep going.
            Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
        }
    }
}

/// A clock that only moves when told to; for tests.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_us: i64) -> Self {
        Self(AtomicI64::new(start_us))
    }

    pub fn advance_us(&self, by: i64) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// RFC 3339 rendering of a microsecond timestamp, for exports and pages.
pub fn format_rfc3339(time_us: i64) -> String {
    // RFC 3339 ends with year 9999; a clock or file that says later is shown as it is
    // rather than failing the page or export that shows it.
    const AFTER_9999_US: i64 = 253_402_300_800_000_000;
    if time_us >= AFTER_9999_US {
        return format!("after 9999 ({time_us} µs since 1970)");
    }
    let t = if time_us >= 0 {
        UNIX_EPOCH + std::time::Duration::from_micros(time_us as u64)
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::format_rfc3339;

    #[test]
    fn times_past_year_9999_are_shown_not_a_panic() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_rfc3339(253_402_300_799_999_999),
            "9999-12-31T23:59:59.999999Z"
        );
        let far = format_rfc3339(253_402_300_800_000_000);
        assert!(far.contains("253402300800000000"), "{far}");
        assert!(format_rfc3339(i64::MAX).contains(&i64::MAX.to_string()));
    }
}
