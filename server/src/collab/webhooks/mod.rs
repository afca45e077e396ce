//! Webhooks: room events delivered, signed, to endpoints that room owners register.
//!
//! Two tasks do the work:
//! - the *collector* listens to room events ([`crate::collab::activity::Activity::subscribe`]),
//!   folds bursts of `document_changed` per room into one event (debounced), and writes one
//!   delivery row per webhook that wants the event;
//! - the *dispatcher* claims due deliveries, POSTs them, and records each attempt's outcome.
//!   A failed attempt is retried with exponential backoff until `max_attempts`, then the
//!   delivery is `failed`. Claiming takes a lease on the row, so nodes sharing one database
//!   never send one delivery at the same time, and a node that dies mid-attempt leaves the
//!   delivery to be retried when its lease runs out.
//!
//! Every delivery carries `X-Tandem-Signature: sha256=<hex>`, the HMAC-SHA256 of
//! `"{X-Tandem-Timestamp}.{body}"` under the webhook's secret.
//!
//! Endpoints are other people's servers, so they are hostile input too: an endpoint on a
//! special-purpose address ([`special_purpose`]: loopback, private, link-local, …) is refused
//! at registration and never connected to, whatever its name resolves to; at most
//! [`WebhookConfig::max_response_bytes`] of an answer are read; redirects are not followed;
//! and no proxy is used unless one is configured, since a proxy would connect on the
//! server's behalf past these checks.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::collab::activity::{EventKind, RoomEvent};
use crate::entity::{webhook, webhook_delivery};

mod registrations;
pub(crate) mod routes;

/// Webhook settings.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Quiet time after a room's last committed change before `document_changed` is sent.
    pub debounce: Duration,
    /// Attempts per delivery before it is `failed`.
    pub max_attempts: u32,
    /// Wait before the first retry; each further retry waits twice as long (up to
    /// [`MAX_BACKOFF`]).
    pub retry_base: Duration,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// Whether endpoints on special-purpose addresses (loopback, private, link-local, …;
    /// see [`special_purpose`]) are allowed.
    pub allow_private_targets: bool,
    /// Most bytes of a response body read (the rest is never read: the connection is
    /// closed), so an endpoint answering without end costs no memory.
    pub max_response_bytes: usize,
    /// The HTTP proxy deliveries go through. Without one, deliveries connect directly:
    /// `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` in the environment are ignored, since a
    /// proxy resolves and connects on its own, out of reach of the address checks here.
    pub proxy: Option<reqwest::Url>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written out so that no secret reaches a log line: see `crate::redact`.
        f.debug_struct("WebhookConfig")
            .field("debounce", &self.debounce)
            .field("max_attempts", &self.max_attempts)
            .field("retry_base", &self.retry_base)
            .field("timeout", &self.timeout)
            .field("allow_private_targets", &self.allow_private_targets)
            .field("max_response_bytes", &self.max_response_bytes)
            .field(
                "proxy",
                &self
                    .proxy
                    .as_ref()
                    .map(|url| crate::redact::Url(url.as_str())),
            )
            .finish()
    }
}

/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// A busy room's `document_changed` is sent at least this often, however steady the edits.
const MAX_DEBOUNCE_FACTOR: u32 = 10;
/// Deliveries attempted at once by one node.
const CONCURRENT_ATTEMPTS: usize = 8;
/// How often the dispatcher looks for due deliveries it was not told about (retries, and
/// deliveries another node created).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Longest error text or response excerpt recorded for an attempt.
const MAX_ERROR_CHARS: usize = 500;

/// Events a webhook gets when it names none.
pub const DEFAULT_EVENTS: [EventKind; 3] = [
    EventKind::DocumentChanged,
    EventKind::VersionCreated,
    EventKind::CommentCreated,
];

/// Delivery states.
pub mod status {
    /// Waiting for its next attempt.
    pub const PENDING: &str = "pending";
    /// An attempt got a 2xx answer.
    pub const DELIVERED: &str = "delivered";
    /// Every attempt failed (or the webhook was removed).
    pub const FAILED: &str = "failed";
}

/// The webhook service. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    config: WebhookConfig,
    db: DatabaseConnection,
    /// Dates deliveries, attempts and signatures.
    clock: Clock,
    http: reqwest::Client,
    /// Signalled by the collector when it wrote deliveries, so they go out at once.
    new_deliveries: Notify,
    /// Cancelled at shutdown; the tasks stop claiming and return.
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Webhooks {
    /// Starts the collector (on `events`) and the dispatcher, which tell time by `clock`.
    pub fn start(
        config: WebhookConfig,
        db: DatabaseConnection,
        clock: Clock,
        events: broadcast::Receiver<Arc<RoomEvent>>,
    ) -> Self {
        let mut http = reqwest::Client::builder();
        match &config.proxy {
            // The proxy's own address is the operator's choice, so it is not filtered; the
            // names of targets are resolved by the proxy, which must apply its own rules.
            Some(proxy) => {
                http = http
                    .proxy(reqwest::Proxy::all(proxy.clone()).expect("an http or https proxy URL"));
            }
            None => {
                http = http.no_proxy();
                if !config.allow_private_targets {
                    http = http.dns_resolver(Arc::new(PublicAddressesOnly));
                }
            }
        }
        let http = http
            .timeout(config.timeout)
            // A redirect could lead the delivery to an address the target check refused.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Tandem-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with default TLS settings");
        let webhooks = Self {
            inner: Arc::new(Inner {
                config,
                db,
                clock,
                http,
                new_deliveries: Notify::new(),
                stop: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        };
        webhooks.inner.tasks.spawn(webhooks.clone().collect(events));
        webhooks.inner.tasks.spawn(webhooks.clone().dispatch());
        webhooks
    }

    /// Stops both tasks and waits for them (an attempt in flight is abandoned; its lease
    /// runs out and it is retried later, here or on another node).
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Now, in milliseconds since the Unix epoch, by the server's clock.
    fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    /// Whether `url` may be registered: `http` or `https`, with a host, and (unless private
    /// targets are allowed) neither a special-purpose address ([`special_purpose`]) nor a
    /// `localhost` name. Other names are checked when an attempt resolves them
    /// ([`PublicAddressesOnly`]).
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("the URL must be http or https".into());
        }
        let Some(host) = parsed.host() else {
            return Err("the URL has no host".into());
        };
        if !self.inner.config.allow_private_targets {
            let refused = match host {
                url::Host::Domain(name) => is_localhost_name(name).then_some("loopback"),
                url::Host::Ipv4(ip) => special_purpose(IpAddr::V4(ip)),
                url::Host::Ipv6(ip) => special_purpose(IpAddr::V6(ip)),
            };
            if let Some(range) = refused {
                return Err(format!(
                    "the URL points to a special-purpose address ({range}), not a public one"
                ));
            }
        }
        Ok(parsed)
    }

    async fn collect(self, mut events: broadcast::Receiver<Arc<RoomEvent>>) {
        let debounce = self.inner.config.debounce;
        // Rooms with uncommunicated changes: (first change, last change, updates).
        let mut changed: HashMap<String, (Instant, Instant, u64)> = HashMap::new();
        loop {
            let next_due = changed
                .values()
                .map(|(first, last, _)| {
                    (*last + debounce).min(*first + debounce * MAX_DEBOUNCE_FACTOR)
                })
                .min();
            tokio::select! {
                _ = self.inner.stop.cancelled() => {
                    // Shutting down: what already happened is still delivered (from the
                    // database, by whichever node runs next).
                    while let Ok(event) = events.try_recv() {
                        self.take(&mut changed, &event).await;
                    }
                    for (room, (_, _, updates)) in std::mem::take(&mut changed) {
                        self.enqueue(&changed_event(room, updates, self.now())).await;
                    }
                    break;
                }
                event = events.recv() => match event {
                    Ok(event) => self.take(&mut changed, &event).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(missed, "webhooks fell behind the room events; some were not delivered");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = sleep_until(next_due) => {
                    let now = Instant::now();
                    let due: Vec<String> = changed
                        .iter()
                        .filter(|(_, (first, last, _))| {
                            *last + debounce <= now || *first + debounce * MAX_DEBOUNCE_FACTOR <= now
                        })
                        .map(|(room, _)| room.clone())
                        .collect();
                    for room in due {
                        if let Some((_, _, updates)) = changed.remove(&room) {
                            self.enqueue(&changed_event(room, updates, self.now())).await;
                        }
                    }
                }
            }
        }
    }

    /// Queues `event`'s deliveries, or (for `document_changed`) adds it to its room's
    /// debounced change.
    async fn take(
        &self,
        changed: &mut HashMap<String, (Instant, Instant, u64)>,
        event: &RoomEvent,
    ) {
        if event.kind != EventKind::DocumentChanged {
            self.enqueue(event).await;
            return;
        }
        let updates = event.data["updates"].as_u64().unwrap_or(1);
        let now = Instant::now();
        let entry = changed.entry(event.room.clone()).or_insert((now, now, 0));
        entry.1 = now;
        entry.2 += updates;
    }

    /// Writes a delivery of `event` for every webhook of its room that wants it.
    async fn enqueue(&self, event: &RoomEvent) {
        let result = async {
            let hooks = webhook::Entity::find()
                .filter(webhook::Column::RoomId.eq(event.room.as_str()))
                .all(&self.inner.db)
                .await?;
            let mut written = 0;
            for hook in hooks {
                if !wants(&hook, event.kind) {
                    continue;
                }
                let now = self.now();
                let payload = json!({
                    "event": event.kind.as_str(),
                    "event_id": crate::accounts::random_id(),
                    "webhook_id": hook.id,
                    "room": event.room,
                    "at_ms": event.at_ms,
                    "actor": event.actor.as_ref().map(|a| json!({ "user_id": a.user_id, "name": a.name })),
                    "data": event.data,
                });
                webhook_delivery::ActiveModel {
                    webhook_id: Set(hook.id.clone()),
                    room_id: Set(event.room.clone()),
                    event: Set(event.kind.as_str().to_owned()),
                    payload: Set(payload.to_string()),
                    status: Set(status::PENDING.to_owned()),
                    attempts: Set(0),
                    next_attempt_at: Set(now),
                    lease_until: Set(0),
                    last_status_code: Set(None),
                    last_error: Set(None),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                }
                .insert(&self.inner.db)
                .await?;
                written += 1;
            }
            Ok::<_, DbErr>(written)
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(_) => self.inner.new_deliveries.notify_one(),
            Err(err) => {
                warn!(room = %event.room, error = %err, "queueing webhook deliveries failed")
            }
        }
    }

    async fn dispatch(self) {
        let attempts = TaskTracker::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_ATTEMPTS));
        loop {
            if self.inner.stop.is_cancelled() {
                break;
            }
            let wait = match self.claim_due(&slots, &attempts).await {
                Ok(next_due_in) => next_due_in.min(POLL_INTERVAL),
                Err(err) => {
                    warn!(error = %err, "claiming webhook deliveries failed");
                    POLL_INTERVAL
                }
            };
            tokio::select! {
                _ = self.inner.stop.cancelled() => break,
                _ = self.inner.new_deliveries.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        attempts.close();
        // Attempts in flight are bounded by the request timeout.
        attempts.wait().await;
    }

    /// Starts an attempt for every due delivery this node can claim; answers how long until
    /// the next pending delivery is due.
    async fn claim_due(
        &self,
        slots: &Arc<tokio::sync::Semaphore>,
        attempts: &TaskTracker,
    ) -> Result<Duration, DbErr> {
        let db = &self.inner.db;
        let now = self.now();
        let due = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::Status.eq(status::PENDING))
            .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
            .filter(webhook_delivery::Column::LeaseUntil.lte(now))
            .order_by_asc(webhook_delivery::Column::NextAttemptAt)
            .limit(slots.available_permits() as u64)
            .all(db)
            .await?;
        let lease = (self.inner.config.timeout + Duration::from_secs(30)).as_millis() as i64;
        for delivery in due {
            // Only the node whose update changes the row holds the delivery.
            let claimed = webhook_delivery::Entity::update_many()
                .col_expr(
                    webhook_delivery::Column::LeaseUntil,
                    Expr::value(now + lease),
                )
                .filter(webhook_delivery::Column::Id.eq(delivery.id))
                .filter(webhook_delivery::Column::Status.eq(status::PENDING))
                .filter(webhook_delivery::Column::LeaseUntil.lte(now))
                .exec(db)
                .await?
                .rows_affected
                == 1;
            if !claimed {
                continue;
            }
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                break;
            };
            let this = self.clone();
            attempts.spawn(async move {
                this.attempt(delivery).await;
                drop(slot);
            });
        }
        let next = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::Status.eq(status::PENDING))
            .filter(webhook_delivery::Column::LeaseUntil.lte(now))
            .order_by_asc(webhook_delivery::Column::NextAttemptAt)
            .one(db)
            .await?;
        Ok(next.map_or(POLL_INTERVAL, |next| {
            Duration::from_millis((next.next_attempt_at - now).max(0) as u64)
        }))
    }

    /// One attempt of one claimed delivery, and its outcome recorded.
    async fn attempt(&self, delivery: webhook_delivery::Model) {
        let hook = match webhook::Entity::find_by_id(delivery.webhook_id.as_str())
            .one(&self.inner.db)
            .await
        {
            Ok(hook) => hook,
            Err(err) => {
                warn!(error = %err, "loading a webhook failed");
                return;
            }
        };
        let outcome = match &hook {
            Some(hook) => self.send(hook, &delivery).await,
            None => Outcome::Final("the webhook was removed".into()),
        };
        let attempts = delivery.attempts + 1;
        let now = self.now();
        let (state, status_code, error, next_attempt_at) = match outcome {
            Outcome::Delivered(code) => (status::DELIVERED, Some(code), None, now),
            Outcome::Failed(code, error) if (attempts as u32) < self.inner.config.max_attempts => {
                let wait = backoff(self.inner.config.retry_base, attempts as u32);
                (
                    status::PENDING,
                    code,
                    Some(error),
                    now + wait.as_millis() as i64,
                )
            }
            Outcome::Failed(code, error) => (status::FAILED, code, Some(error), now),
            Outcome::Final(error) => (status::FAILED, None, Some(error), now),
        };
        debug!(delivery = delivery.id, state, attempts, "webhook attempt");
        let update = webhook_delivery::ActiveModel {
            id: Set(delivery.id),
            status: Set(state.to_owned()),
            attempts: Set(attempts),
            next_attempt_at: Set(next_attempt_at),
            lease_until: Set(0),
            last_status_code: Set(status_code.map(i32::from)),
            last_error: Set(error),
            updated_at: Set(now),
            ..Default::default()
        };
        if let Err(err) = update.update(&self.inner.db).await {
            warn!(delivery = delivery.id, error = %err, "recording a webhook attempt failed");
        }
        if state == status::PENDING {
            self.inner.new_deliveries.notify_one();
        }
    }

    async fn send(&self, hook: &webhook::Model, delivery: &webhook_delivery::Model) -> Outcome {
        let url = match self.check_url(&hook.url) {
            Ok(url) => url,
            Err(reason) => return Outcome::Final(reason),
        };
        let timestamp = (self.now() / 1000).to_string();
        let signature = sign(&hook.secret, &timestamp, delivery.payload.as_bytes());
        let response = self
            .inner
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-tandem-event", &delivery.event)
            .header("x-tandem-delivery", delivery.id.to_string())
            .header("x-tandem-webhook", &hook.id)
            .header("x-tandem-timestamp", &timestamp)
            .header("x-tandem-signature", signature)
            .body(delivery.payload.clone())
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(err) => return Outcome::Failed(None, truncate(error_chain(&err))),
        };
        let code = response.status().as_u16();
        let success = response.status().is_success();
        let body = read_capped(response, self.inner.config.max_response_bytes).await;
        if success {
            // The answer is all that counts; the body is read (up to the cap) only so a short
            // one leaves the connection reusable.
            return Outcome::Delivered(code);
        }
        let mut error = truncate(format!(
            "HTTP {code}: {}",
            String::from_utf8_lossy(&body.bytes)
        ));
        match body.end {
            BodyEnd::Complete => {}
            BodyEnd::Longer => error.push_str(&format!(
                " (response body longer than {} bytes; the rest was not read)",
                self.inner.config.max_response_bytes
            )),
            BodyEnd::Broken(reason) => {
                error.push_str(&truncate(format!(" (reading the body failed: {reason})")));
            }
        }
        Outcome::Failed(Some(code), error)
    }
}

/// The start of a response body.
struct BodyExcerpt {
    /// At most the cap's worth of bytes.
    bytes: Vec<u8>,
    /// Whether that was all of it.
    end: BodyEnd,
}

/// How the reading of a body ended.
enum BodyEnd {
    /// The body was read to its end.
    Complete,
    /// The body went on past the cap; the rest was not read.
    Longer,
    /// The body broke off (timeout, connection reset); why.
    Broken(String),
}

/// Reads at most `cap` bytes of `response`'s body, chunk by chunk as they arrive; the rest is
/// never read, and dropping the response closes the connection. A chunk is bounded by the
/// HTTP client's read buffer, so memory stays bounded however long the body is.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> BodyExcerpt {
    let mut bytes = Vec::new();
    let end = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - bytes.len();
                if chunk.len() > room {
                    bytes.extend_from_slice(&chunk[..room]);
                    break BodyEnd::Longer;
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break BodyEnd::Complete,
            // What arrived before the body broke off is still worth showing.
            Err(err) => break BodyEnd::Broken(error_chain(&err)),
        }
    };
    BodyExcerpt { bytes, end }
}

enum Outcome {
    /// A 2xx answer.
    Delivered(u16),
    /// A failure worth retrying: the status code, if any, and what went wrong.
    Failed(Option<u16>, String),
    /// A failure no retry can mend.
    Final(String),
}

fn wants(hook: &webhook::Model, kind: EventKind) -> bool {
    serde_json::from_str::<Vec<String>>(&hook.events)
        .is_ok_and(|events| events.iter().any(|e| e == kind.as_str()))
}

/// The `document_changed` event a debounced burst of commits becomes, dated `at_ms`.
fn changed_event(room: String, updates: u64, at_ms: i64) -> RoomEvent {
    RoomEvent {
        at_ms,
        ..RoomEvent::new(
            room,
            EventKind::DocumentChanged,
            None,
            json!({ "updates": updates }),
        )
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The wait before attempt `attempts + 1`: `base`, then twice as long each time.
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// `sha256=<hex>`: the HMAC-SHA256 of `"{timestamp}.{body}"` under `secret`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}

/// IPv4 ranges a webhook never reaches: every block of the IANA IPv4 Special-Purpose Address
/// Registry that is not globally reachable, plus multicast and the reserved class E (which
/// holds the limited broadcast address), each with the name a refusal gives it.
const SPECIAL_IPV4: [(Ipv4Addr, u8, &str); 15] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8, "\"this network\", RFC 791"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private-use, RFC 1918"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "carrier-grade NAT, RFC 6598",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private-use, RFC 1918"),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "IETF protocol assignments, RFC 6890",
    ),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation, RFC 5737"),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "6to4 relay anycast, RFC 7526",
    ),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private-use, RFC 1918"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking, RFC 2544"),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "documentation, RFC 5737",
    ),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation, RFC 5737"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        "reserved and broadcast, RFC 1112 and RFC 919",
    ),
];

/// IPv6 ranges a webhook never reaches, inside the global unicast space `2000::/3` (nothing
/// outside it is reached either, see [`special_purpose`]): the blocks of the IANA IPv6
/// Special-Purpose Address Registry there.
const SPECIAL_IPV6: [(Ipv6Addr, u8, &str); 4] = [
    // Teredo (2001::/32), benchmarking (2001:2::/48), ORCHID and the rest of the block
    // reserved for IETF protocols: none is a place a webhook endpoint lives.
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignments, RFC 2928",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation, RFC 3849",
    ),
    // 6to4 is deprecated (RFC 7526), and a relay could carry the request to any IPv4 host,
    // private ones included.
    (
        Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0),
        16,
        "6to4, RFC 3056",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation, RFC 9637",
    ),
];

/// The special-purpose IPv6 blocks outside `2000::/3`, named so a refusal says what the
/// address is; every other address outside `2000::/3` is refused as "not global unicast".
const NAMED_IPV6: [(Ipv6Addr, u8, &str); 6] = [
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use NAT64, RFC 8215",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only, RFC 6666",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique local, RFC 4193",
    ),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "site-local, RFC 3879",
    ),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

fn in_v4(ip: Ipv4Addr, network: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(network) & mask
}

fn in_v6(ip: Ipv6Addr, network: Ipv6Addr, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
}

/// The IPv4 address embedded in the IPv6 forms that stand for an IPv4 host: IPv4-mapped
/// (`::ffff:0:0/96`, which the socket layer connects over IPv4), IPv4-compatible (`::/96`,
/// deprecated) and the well-known NAT64 prefix (`64:ff9b::/96`, which a DNS64 resolver hands
/// out for IPv4-only names, and a NAT64 gateway translates to that IPv4 address).
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let prefixes = [
        Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0),
        Ipv6Addr::UNSPECIFIED,
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
    ];
    prefixes
        .iter()
        .any(|prefix| in_v6(ip, *prefix, 96))
        .then(|| Ipv4Addr::from(bits as u32))
}

/// Why a webhook may not connect to `ip`, or `None` when it is a public address: the
/// special-purpose ranges of IPv4 ([`SPECIAL_IPV4`]) and of IPv6 ([`SPECIAL_IPV6`],
/// [`NAMED_IPV6`], and anything outside global unicast `2000::/3`); an IPv6 address that
/// embeds an IPv4 one ([`embedded_ipv4`]) is judged by the IPv4 address. The one place this
/// is decided, for registration and for every address a delivery resolves.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => SPECIAL_IPV4
            .iter()
            .find(|(network, prefix, _)| in_v4(ip, *network, *prefix))
            .map(|(_, _, name)| *name),
        IpAddr::V6(ip) => {
            if ip.is_unspecified() || ip.is_loopback() {
                return Some(if ip.is_loopback() {
                    "loopback"
                } else {
                    "unspecified"
                });
            }
            if let Some(v4) = embedded_ipv4(ip) {
                return special_purpose(IpAddr::V4(v4));
            }
            let named = NAMED_IPV6
                .iter()
                .chain(&SPECIAL_IPV6)
                .find(|(network, prefix, _)| in_v6(ip, *network, *prefix))
                .map(|(_, _, name)| *name);
            let global_unicast = in_v6(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);
            named.or((!global_unicast).then_some("not global unicast"))
        }
    }
}

/// `localhost` and its subdomains (RFC 6761: resolvers may answer loopback for all of them),
/// with or without the final dot.
fn is_localhost_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Resolves webhook hosts leaving out special-purpose addresses ([`special_purpose`]), so a name that points
/// (or is pointed again, between a check and the connection) at one cannot reach it: the
/// addresses checked are the addresses connected to.
struct PublicAddressesOnly;

impl reqwest::dns::Resolve for PublicAddressesOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // The port is the URL's; reqwest sets it on the addresses it gets.
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| special_purpose(address.ip()).is_none())
                .collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to special-purpose (loopback, private, …) addresses"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn truncate(mut text: String) -> String {
    if let Some((index, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(index);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff(base, 1), Duration::from_secs(1));
        assert_eq!(backoff(base, 2), Duration::from_secs(2));
        assert_eq!(backoff(base, 4), Duration::from_secs(8));
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_and_body() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            sign("secret", "1700000000", br#"{"a":1}"#),
            "sha256=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[tokio::test]
    async fn names_of_private_addresses_do_not_resolve() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let refused = PublicAddressesOnly
            .resolve(name)
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("localhost resolves only to special-purpose (loopback, private, …) addresses")
        );
    }

    #[test]
    fn special_purpose_ranges_are_refused_and_public_addresses_are_not() {
        // One address per range, at its edges where an off-by-one would show, with the
        // range it must be reported as; `None` for public addresses beside them.
        let table: &[(&str, Option<&str>)] = &[
            ("0.0.0.0", Some("\"this network\", RFC 791")),
            ("0.255.255.255", Some("\"this network\", RFC 791")),
            ("10.0.0.1", Some("private-use, RFC 1918")),
            ("10.255.255.255", Some("private-use, RFC 1918")),
            ("100.64.0.1", Some("carrier-grade NAT, RFC 6598")),
            ("100.127.255.255", Some("carrier-grade NAT, RFC 6598")),
            ("127.0.0.1", Some("loopback")),
            ("127.255.0.1", Some("loopback")),
            ("169.254.169.254", Some("link-local")),
            ("172.16.0.1", Some("private-use, RFC 1918")),
            ("172.31.255.255", Some("private-use, RFC 1918")),
            ("192.0.0.8", Some("IETF protocol assignments, RFC 6890")),
            ("192.0.0.170", Some("IETF protocol assignments, RFC 6890")),
            ("192.0.2.1", Some("documentation, RFC 5737")),
            ("192.88.99.1", Some("6to4 relay anycast, RFC 7526")),
            ("192.168.1.1", Some("private-use, RFC 1918")),
            ("198.18.0.1", Some("benchmarking, RFC 2544")),
            ("198.19.255.255", Some("benchmarking, RFC 2544")),
            ("198.51.100.7", Some("documentation, RFC 5737")),
            ("203.0.113.9", Some("documentation, RFC 5737")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            (
                "240.0.0.1",
                Some("reserved and broadcast, RFC 1112 and RFC 919"),
            ),
            (
                "255.255.255.255",
                Some("reserved and broadcast, RFC 1112 and RFC 919"),
            ),
            ("1.1.1.1", None),
            ("9.255.255.255", None),
            ("11.0.0.0", None),
            ("93.184.216.34", None),
            ("100.63.255.255", None),
            ("100.128.0.1", None),
            ("126.255.255.255", None),
            ("128.0.0.1", None),
            ("169.253.255.255", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.0.1.1", None),
            ("192.0.3.1", None),
            ("192.167.255.255", None),
            ("198.17.255.255", None),
            ("198.20.0.0", None),
            ("223.255.255.255", None),
            // IPv6.
            // `::` and `::1` lie in `::/96` too, but are named for what they are.
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            // IPv4-mapped and IPv4-compatible: judged by the IPv4 address.
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.0.0.1", Some("private-use, RFC 1918")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("::127.0.0.1", Some("loopback")),
            ("::192.168.0.1", Some("private-use, RFC 1918")),
            ("::ffff:93.184.216.34", None),
            ("::93.184.216.34", None),
            // NAT64: the well-known prefix by its IPv4 address, the local-use one always.
            ("64:ff9b::7f00:1", Some("loopback")),
            ("64:ff9b::a00:1", Some("private-use, RFC 1918")),
            ("64:ff9b::5db8:d822", None),
            ("64:ff9b:1::5db8:d822", Some("local-use NAT64, RFC 8215")),
            ("100::1", Some("discard-only, RFC 6666")),
            ("100::ffff:ffff:ffff:ffff", Some("discard-only, RFC 6666")),
            ("2001::1", Some("IETF protocol assignments, RFC 2928")),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                Some("IETF protocol assignments, RFC 2928"),
            ),
            ("2001:2::1", Some("IETF protocol assignments, RFC 2928")),
            (
                "2001:1ff:ffff::1",
                Some("IETF protocol assignments, RFC 2928"),
            ),
            ("2001:db8::1", Some("documentation, RFC 3849")),
            ("2002:7f00:1::1", Some("6to4, RFC 3056")),
            ("2002:5db8:d822::1", Some("6to4, RFC 3056")),
            ("3fff::1", Some("documentation, RFC 9637")),
            ("5f00::1", Some("not global unicast")),
            ("fc00::1", Some("unique local, RFC 4193")),
            ("fd12:3456::1", Some("unique local, RFC 4193")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("fec0::1", Some("site-local, RFC 3879")),
            ("feff::1", Some("site-local, RFC 3879")),
            ("ff02::1", Some("multicast")),
            ("::2:0:0:1", Some("not global unicast")),
            ("1::1", Some("not global unicast")),
            ("4000::1", Some("not global unicast")),
            ("2001:200::1", None),
            ("2001:4860:4860::8888", None),
            ("2003::1", None),
            ("2606:4700::1111", None),
            ("2a00:1450:4001::1", None),
            ("3ffe::1", None),
        ];
        let wrong: Vec<String> = table
            .iter()
            .filter_map(|(address, expected)| {
                let got = special_purpose(address.parse().expect("a valid address"));
                (got != *expected).then(|| format!("{address}: {got:?}, expected {expected:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn localhost_names() {
        for name in ["localhost", "LocalHost.", "api.localhost", "a.b.localhost."] {
            assert!(is_localhost_name(name), "{name}");
        }
        for name in ["localhost.example.test", "notlocalhost", "example.test"] {
            assert!(!is_localhost_name(name), "{name}");
        }
    }
}
