//! The keepalive every long-lived WebSocket runs: the editing session and the AI peer's
//! control socket both ping on `--ping-interval` and give up after `--ping-timeout` of
//! silence.

use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::config::SessionConfig;

/// What a keepalive tick asks of the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeepaliveTick {
    /// Send a ping.
    Ping,
    /// Nothing was heard for longer than the timeout: close.
    TimedOut,
}

/// The ping timer and the time anything was last heard from the other side.
pub(crate) struct Keepalive {
    ping: Interval,
    last_heard: Instant,
    timeout: Duration,
}

impl Keepalive {
    /// Starts the timer; the other side counts as heard now.
    pub(crate) fn new(config: &SessionConfig) -> Self {
        let mut ping = tokio::time::interval(config.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            ping,
            last_heard: Instant::now(),
            timeout: config.ping_timeout,
        }
    }

    /// Records that a message (of any kind, pongs included) arrived.
    pub(crate) fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Waits for the next tick. Cancel-safe, as `select!` needs: nothing happens after the
    /// interval's own (cancel-safe) tick but a comparison.
    pub(crate) async fn tick(&mut self) -> KeepaliveTick {
        self.ping.tick().await;
        if self.last_heard.elapsed() > self.timeout {
            KeepaliveTick::TimedOut
        } else {
            KeepaliveTick::Ping
        }
    }
}
