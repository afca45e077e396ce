//! Limits per client address: how often a client may call the password endpoints or open a
//! WebSocket, and how many WebSockets it may hold open at once.
//!
//! The client is the TCP peer address of the connection. Behind a reverse proxy that is the
//! proxy's address, so these limits then apply to all of the proxy's clients together (raise
//! them there); `X-Forwarded-For` is never trusted, since any client can send it. IPv6
//! clients are counted per /64, the block one subscriber usually holds, so an attacker cannot
//! reset the limits by changing the low bits of its address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A rate: so many per minute on average, and at most `burst` at once.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Sustained requests per minute.
    pub per_minute: u32,
    /// Requests allowed in a burst (the bucket size).
    pub burst: u32,
}

/// The per-client limits, as configured.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimitsConfig {
    /// `POST /api/auth/login`, `/register` and `/refresh` together, per client.
    pub auth_rate: Rate,
    /// WebSocket upgrade attempts per client.
    pub ws_upgrade_rate: Rate,
    /// Open WebSockets per client.
    pub ws_connections_per_client: usize,
}

/// The client a peer address counts as: the address itself for IPv4 (IPv4-mapped IPv6
/// included), its /64 for IPv6.
pub fn client_key(peer: Option<SocketAddr>) -> IpAddr {
    // No peer address happens only on transports without one; they share one budget.
    let Some(peer) = peer else {
        return IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    };
    match peer.ip() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Counts one refusal by `limit` (`tandem_client_limit_refusals_total`).
fn refused(limit: &'static str) {
    metrics::counter!("tandem_client_limit_refusals_total", "limit" => limit).increment(1);
}

/// A keyed token bucket per client (GCRA, from `governor`).
struct ClientRate {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Checks since the last sweep of clients whose buckets are full again.
    checks: AtomicU64,
}

/// How many checks pass between sweeps of idle clients out of a limiter's map, which keeps
/// its memory proportional to the clients seen recently rather than ever.
const SWEEP_EVERY: u64 = 4096;

impl ClientRate {
    fn new(rate: Rate) -> Self {
        let per_minute = NonZeroU32::new(rate.per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            checks: AtomicU64::new(0),
        }
    }

    /// `Err(wait)` when `client` has used its budget; `wait` is when the next request may
    /// pass.
    fn check(&self, client: IpAddr) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// Open WebSockets per client. A `std` mutex on purpose: it is held for one map update,
/// never across an `.await`.
struct ClientConnections {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One of a client's WebSocket slots; frees it when dropped.
pub struct ConnectionSlot {
    client: IpAddr,
    limits: Arc<LimitsInner>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .ws_connections
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

struct LimitsInner {
    auth: ClientRate,
    ws_upgrades: ClientRate,
    ws_connections: ClientConnections,
}

/// Why a client was refused.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The client sends requests of this kind too fast.
    #[error("too many requests from this address; try again in {} seconds", .retry_after.as_secs().max(1))]
    RateLimited {
        /// When the next one may pass.
        retry_after: Duration,
    },
    /// The client holds its maximum number of open WebSockets.
    #[error("this address has {max} WebSocket connections open, the most allowed")]
    TooManyConnections {
        /// The cap.
        max: usize,
    },
}

/// The per-client limits. Cheap to clone; every worker shares one.
#[derive(Clone)]
pub struct ClientLimits {
    inner: Arc<LimitsInner>,
}

impl ClientLimits {
    /// Limits as configured, with no client seen yet.
    pub fn new(config: ClientLimitsConfig) -> Self {
        Self {
            inner: Arc::new(LimitsInner {
                auth: ClientRate::new(config.auth_rate),
                ws_upgrades: ClientRate::new(config.ws_upgrade_rate),
                ws_connections: ClientConnections {
                    max: config.ws_connections_per_client.max(1),
                    open: Mutex::new(HashMap::new()),
                },
            }),
        }
    }

    /// Counts one login, registration or refresh from `peer`.
    pub fn check_auth(&self, peer: Option<SocketAddr>) -> Result<(), LimitError> {
        self.inner
            .auth
            .check(client_key(peer))
            .map_err(|retry_after| {
                refused("auth_rate");
                LimitError::RateLimited { retry_after }
            })
    }

    /// Counts one WebSocket upgrade from `peer` and takes one of its connection slots, to be
    /// held for the life of the socket.
    pub fn admit_websocket(&self, peer: Option<SocketAddr>) -> Result<ConnectionSlot, LimitError> {
        let client = client_key(peer);
        self.inner
            .ws_upgrades
            .check(client)
            .map_err(|retry_after| {
                refused("ws_upgrade_rate");
                LimitError::RateLimited { retry_after }
            })?;
        let connections = &self.inner.ws_connections;
        let mut open = connections
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(client).or_insert(0);
        if *count >= connections.max {
            refused("ws_connections");
            return Err(LimitError::TooManyConnections {
                max: connections.max,
            });
        }
        *count += 1;
        drop(open);
        Ok(ConnectionSlot {
            client,
            limits: self.inner.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connections: usize) -> ClientLimits {
        ClientLimits::new(ClientLimitsConfig {
            auth_rate: Rate {
                per_minute: 1,
                burst: 2,
            },
            ws_upgrade_rate: Rate {
                per_minute: 1000,
                burst: 1000,
            },
            ws_connections_per_client: connections,
        })
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            client_key(peer("[2001:db8:1:2:aaaa::1]:1")),
            client_key(peer("[2001:db8:1:2:bbbb::9]:2"))
        );
        assert_ne!(
            client_key(peer("[2001:db8:1:2::1]:1")),
            client_key(peer("[2001:db8:1:3::1]:1"))
        );
        assert_eq!(
            client_key(peer("[::ffff:192.0.2.7]:1")),
            client_key(peer("192.0.2.7:5"))
        );
    }

    #[test]
    fn the_burst_passes_then_the_client_waits_and_others_do_not() {
        let limits = limits(1);
        assert!(limits.check_auth(peer("192.0.2.1:1")).is_ok());
        assert!(limits.check_auth(peer("192.0.2.1:2")).is_ok());
        let Err(LimitError::RateLimited { retry_after }) = limits.check_auth(peer("192.0.2.1:3"))
        else {
            panic!("the third request in a burst of two passed");
        };
        assert!(retry_after > Duration::from_secs(1) && retry_after <= Duration::from_secs(60));
        assert!(limits.check_auth(peer("192.0.2.2:1")).is_ok());
    }

    #[test]
    fn a_connection_slot_is_freed_when_dropped() {
        let limits = limits(2);
        let a = limits.admit_websocket(peer("192.0.2.1:1")).unwrap();
        let _b = limits.admit_websocket(peer("192.0.2.1:2")).unwrap();
        assert!(matches!(
            limits.admit_websocket(peer("192.0.2.1:3")),
            Err(LimitError::TooManyConnections { max: 2 })
        ));
        assert!(limits.admit_websocket(peer("192.0.2.9:1")).is_ok());
        drop(a);
        assert!(limits.admit_websocket(peer("192.0.2.1:4")).is_ok());
    }
}
