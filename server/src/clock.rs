//! The one clock of the server: every part that needs the time of day (token, session and
//! link expiry, lockouts, comments, notifications, activity, webhooks) reads the [`Clock`]
//! built at start-up and passed in, never the system clock itself, so tests control time
//! by passing one they move by hand (`Application::build_with_clock`).
//!
//! Durations measured on the monotonic clock (timeouts, debounces, rate limits) are not
//! times of day and do not go through here.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now" in milliseconds since the Unix epoch, as stored in `*_at` columns.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}
