//! Login throttling: after `max_failures` failed logins for one email within `window`, the
//! email is locked for `lockout`. A pure policy over stored counters; the caller supplies the
//! time, so tests control it.

use std::time::Duration;

/// The stored state for one email.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Attempts {
    /// Failures counted in the current window.
    pub failures: u32,
    /// When the current window started (ms since the epoch).
    pub first_failure_at: i64,
    /// Locked until this time (ms since the epoch), if locked.
    pub locked_until: Option<i64>,
}

/// The throttling policy.
#[derive(Clone, Copy, Debug)]
pub struct LoginPolicy {
    /// Failures that trigger a lockout.
    pub max_failures: u32,
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// How long a lockout lasts.
    pub lockout: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl LoginPolicy {
    /// `Some(retry_after)` while `attempts` is locked at `now`.
    pub fn locked(&self, attempts: &Attempts, now: i64) -> Option<Duration> {
        let until = attempts.locked_until?;
        (until > now).then(|| Duration::from_millis((until - now) as u64))
    }

    /// The state after a failed login at `now`.
    pub fn record_failure(&self, attempts: Attempts, now: i64) -> Attempts {
        let in_window = now - attempts.first_failure_at < ms(self.window)
            && self.locked(&attempts, now).is_none()
            && attempts.locked_until.is_none();
        let (failures, first_failure_at) = if in_window && attempts.failures > 0 {
            (attempts.failures + 1, attempts.first_failure_at)
        } else {
            (1, now)
        };
        let locked_until =
            (failures >= self.max_failures).then(|| now.saturating_add(ms(self.lockout)));
        Attempts {
            failures,
            first_failure_at,
            locked_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LoginPolicy = LoginPolicy {
        max_failures: 3,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(300),
    };

    #[test]
    fn locks_after_max_failures_and_unlocks_after_the_lockout() {
        let mut attempts = Attempts::default();
        let t0 = 1_000_000;
        for i in 0..3 {
            assert_eq!(POLICY.locked(&attempts, t0 + i), None);
            attempts = POLICY.record_failure(attempts, t0 + i);
        }
        let retry = POLICY.locked(&attempts, t0 + 10).expect("locked");
        assert!(retry > Duration::from_secs(299) && retry <= Duration::from_secs(300));
        // One millisecond before the end it is still locked; at the end it is not.
        assert!(POLICY.locked(&attempts, t0 + 2 + 300_000 - 1).is_some());
        assert_eq!(POLICY.locked(&attempts, t0 + 2 + 300_000), None);
        // After a lockout the count starts over.
        let after = POLICY.record_failure(attempts, t0 + 400_000);
        assert_eq!(after.failures, 1);
        assert_eq!(after.locked_until, None);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let t0 = 5_000;
        let a = POLICY.record_failure(Attempts::default(), t0);
        let a = POLICY.record_failure(a, t0 + 1_000);
        let a = POLICY.record_failure(a, t0 + 61_000);
        assert_eq!(a.failures, 1);
        assert_eq!(POLICY.locked(&a, t0 + 61_001), None);
    }
}
