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
    let t = if time_us >= 0 {
        UNIX_EPOCH + std::time::Duration::from_micros(time_us as u64)
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_micros(t).to_string()
}
