//! Webhooks: room events delivered, signed, to endpoints that room owners register.
//!
//! Two tasks do the work:
//! - the *collector* listens to room events ([`crate::activity::Activity::subscribe`]),
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

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
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

use crate::activity::{EventKind, RoomEvent};
use crate::entity::{webhook, webhook_delivery};

/// Webhook settings.
#[derive(Clone, Debug)]
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
    /// Whether endpoints on loopback, private or link-local addresses are allowed.
    pub allow_private_targets: bool,
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
    http: reqwest::Client,
    /// Signalled by the collector when it wrote deliveries, so they go out at once.
    new_deliveries: Notify,
    /// Cancelled at shutdown; the tasks stop claiming and return.
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Webhooks {
    /// Starts the collector (on `events`) and the dispatcher.
    pub fn start(
        config: WebhookConfig,
        db: DatabaseConnection,
        events: broadcast::Receiver<Arc<RoomEvent>>,
    ) -> Self {
        let mut http = reqwest::Client::builder();
        if !config.allow_private_targets {
            http = http.dns_resolver(Arc::new(PublicAddressesOnly));
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

    /// Whether `url` may be registered: `http` or `https`, with a host, and (unless private
    /// targets are allowed) not a loopback or private address. Names are checked when an
    /// attempt resolves them ([`PublicAddressesOnly`]).
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("the URL must be http or https".into());
        }
        let Some(host) = parsed.host() else {
            return Err("the URL has no host".into());
        };
        if !self.inner.config.allow_private_targets {
            let private = match host {
                url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
                url::Host::Ipv4(ip) => is_private(IpAddr::V4(ip)),
                url::Host::Ipv6(ip) => is_private(IpAddr::V6(ip)),
            };
            if private {
                return Err("the URL points to a loopback or private address".into());
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
                        self.enqueue(&changed_event(room, updates)).await;
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
                            self.enqueue(&changed_event(room, updates)).await;
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
                let now = crdt_store::storage::now_millis();
                let payload = json!({
                    "event": event.kind.as_str(),
                    "event_id": crate::auth::secrets::random_id(),
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
        let now = crdt_store::storage::now_millis();
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
        let now = crdt_store::storage::now_millis();
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
        let timestamp = (crdt_store::storage::now_millis() / 1000).to_string();
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
        match response {
            Ok(response) if response.status().is_success() => {
                Outcome::Delivered(response.status().as_u16())
            }
            Ok(response) => {
                let code = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                Outcome::Failed(Some(code), truncate(format!("HTTP {code}: {body}")))
            }
            Err(err) => Outcome::Failed(None, truncate(error_chain(&err))),
        }
    }
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

fn changed_event(room: String, updates: u64) -> RoomEvent {
    RoomEvent::new(
        room,
        EventKind::DocumentChanged,
        None,
        json!({ "updates": updates }),
    )
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

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                // fc00::/7 unique local, fe80::/10 link local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Resolves webhook hosts leaving out loopback and private addresses, so a name that points
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
                .filter(|address| !is_private(address.ip()))
                .collect();
            if public.is_empty() {
                return Err(
                    format!("{host} resolves only to loopback or private addresses").into(),
                );
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
            Some("localhost resolves only to loopback or private addresses")
        );
    }

    #[test]
    fn private_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }
}
