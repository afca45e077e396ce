//! Login throttling: after `max_failures` login attempts for one email within `window`, the
//! email is locked for `lockout`; a successful login clears the count.
//!
//! The policy is applied by one SQL statement per attempt (`RESERVE_LOGIN_ATTEMPT` in the
//! parent module), which counts the attempt *before* its password is checked: however many
//! guesses arrive at once, the database serialises them on the email's row, so at most
//! `max_failures` passwords are checked per window, and the one that reaches the limit locks
//! the email unless it is the right password.

use std::time::Duration;

/// The throttling policy.
#[derive(Clone, Copy, Debug)]
pub struct LoginPolicy {
    /// Attempts that trigger a lockout.
    pub max_failures: u32,
    /// Attempts older than this are forgotten.
    pub window: Duration,
    /// How long a lockout lasts.
    pub lockout: Duration,
}
