//! The cluster wing: the Redis bridge, rooms on several nodes kept in step over Redis
//! pub/sub, and access events relayed between nodes. It owns every Redis connection and
//! channel name. Invariant: a node never re-applies its own messages (each envelope names
//! its node), and a node cut off from Redis asks every socket to re-check its access once
//! it is back, so a missed event cannot leave someone with access they lost.
//!
//! Each node subscribes to one channel per room it holds (`{prefix}:room:{room}`) and
//! publishes what its own clients produce there, in [`protocol::cluster::Envelope`]s naming
//! the node, so nobody re-applies its own messages. Three mechanisms keep replicas equal:
//!
//! 1. **Live fan-out**: every local update (after its commit in durable mode) and awareness
//!    change is published; peers apply it and fan it out to their clients.
//! 2. **Catch-up on load**: a node loading a room subscribes first, then asks the room's
//!    channel for what its state vector lacks and waits (bounded) for every other subscriber
//!    to answer, so a client joining here sees edits made elsewhere that are not yet stored.
//!    Messages heard while loading are buffered and applied once the room exists.
//! 3. **Anti-entropy**: every `sync_interval`, and at once after Redis comes back, each node
//!    publishes a digest of each room (state vector and delete set); a peer whose digest
//!    differs answers with what the asker lacks. Anything lost to a Redis outage or a full
//!    queue heals within one interval, without clients reconnecting.
//!
//! When Redis is unreachable every node keeps serving its own clients (`/readyz` reports
//! `degraded`) and reconnects with backoff.
//!
//! **Access events** (`{prefix}:access`) are not repaired by anti-entropy, so they never
//! share the room traffic's droppable queue: they have their own ([`AccessOutbox`]),
//! published ahead of room messages and kept until Redis accepts them, through outages. A
//! node that reconnects re-checks every open socket ([`AccessEvent::RecheckAll`]), because
//! whatever peers published while it was away is gone (pub/sub keeps nothing).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use crdt_store::bus::BusFuture;
use crdt_store::{Room, RoomBus, RoomId, document_digest};
use dashmap::DashMap;
use futures_util::StreamExt;
use metrics::{Counter, Gauge, counter, gauge};
use protocol::cluster::{ClusterMessage, Envelope, decode_envelope, encode_envelope};
use redis::aio::ConnectionManager;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use yrs::sync::awareness::AwarenessUpdate;
use yrs::updates::encoder::Encode;

use crate::accounts::{AccessEvent, AccessEvents};

/// Cluster settings.
#[derive(Clone)]
pub struct ClusterConfig {
    /// `redis://host:port/`.
    pub redis_url: String,
    /// This node's name in envelopes; unique per node.
    pub node_id: String,
    /// Channel name prefix, so several deployments can share one Redis.
    pub channel_prefix: String,
    /// Anti-entropy period.
    pub sync_interval: Duration,
    /// How long a loading room waits for its peers' catch-up answers.
    pub catch_up_timeout: Duration,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written out so that no secret reaches a log line: see `crate::redact`.
        f.debug_struct("ClusterConfig")
            .field("redis_url", &crate::redact::Url(&self.redis_url))
            .field("node_id", &self.node_id)
            .field("channel_prefix", &self.channel_prefix)
            .field("sync_interval", &self.sync_interval)
            .field("catch_up_timeout", &self.catch_up_timeout)
            .finish()
    }
}

/// What the subscriber task is asked to do.
enum Control {
    Subscribe(String, oneshot::Sender<bool>),
    Unsubscribe(String),
}

/// Messages heard for a room that is still loading.
#[derive(Default)]
struct Buffered {
    updates: Vec<Vec<u8>>,
    awareness: Vec<AwarenessUpdate>,
}

struct Metrics {
    connected: Gauge,
    published: Counter,
    received: Counter,
    dropped: Counter,
    access_overflows: Counter,
}

/// Access events waiting for Redis, oldest first, each with a sequence number so a
/// publish removes exactly what it sent. Bounded without ever losing what an event says:
/// when [`ACCESS_OUTBOX_CAPACITY`] events are waiting (Redis has been away a while), they
/// are replaced by one [`AccessEvent::RecheckAll`], which makes every peer re-check every
/// socket and so covers all of them.
#[derive(Default)]
struct AccessOutbox {
    queue: VecDeque<(u64, Vec<u8>)>,
    next_seq: u64,
}

impl AccessOutbox {
    /// Queues `payload`; returns whether the queue overflowed and was collapsed.
    fn push(&mut self, payload: Vec<u8>, recheck_all: impl FnOnce() -> Vec<u8>) -> bool {
        let overflowed = self.queue.len() >= ACCESS_OUTBOX_CAPACITY;
        let payload = if overflowed {
            self.queue.clear();
            recheck_all()
        } else {
            payload
        };
        self.next_seq += 1;
        self.queue.push_back((self.next_seq, payload));
        overflowed
    }

    /// Up to `n` of the oldest events, and the sequence number of the last one.
    fn front(&self, n: usize) -> Option<(u64, Vec<Vec<u8>>)> {
        let last = self.queue.iter().take(n).next_back()?.0;
        let payloads = self.queue.iter().take(n).map(|(_, p)| p.clone()).collect();
        Some((last, payloads))
    }

    /// Forgets every event up to `last`, once published.
    fn published(&mut self, last: u64) {
        while self.queue.front().is_some_and(|(seq, _)| *seq <= last) {
            self.queue.pop_front();
        }
    }
}

struct Inner {
    config: ClusterConfig,
    client: redis::Client,
    /// Rooms attached on this node, by id: where peers' messages go.
    rooms: DashMap<RoomId, Room>,
    /// Rooms loading on this node, with what was heard meanwhile.
    loading: DashMap<RoomId, Buffered>,
    /// Catch-up requests waiting for answers, by request id.
    waiting: DashMap<u64, mpsc::UnboundedSender<Vec<u8>>>,
    /// To the subscriber task.
    control: mpsc::UnboundedSender<Control>,
    /// To the publisher task: (channel, envelope bytes).
    outbox: mpsc::Sender<(String, Vec<u8>)>,
    /// A command connection for `PUBSUB NUMSUB`, once established.
    commands: Mutex<Option<ConnectionManager>>,
    /// Whether the subscriber connection is up.
    connected: AtomicBool,
    /// Where access events from other nodes go.
    access: OnceLock<AccessEvents>,
    /// This node's access events waiting for Redis; written by whoever publishes one, read
    /// by the publisher task (a `std` mutex: held for queue operations only, never across
    /// an `.await`).
    access_outbox: Mutex<AccessOutbox>,
    /// Wakes the publisher task when an access event is queued.
    access_ready: Notify,
    next_request: AtomicU64,
    metrics: Metrics,
}

/// The Redis implementation of [`RoomBus`]. Cheap to clone.
#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

/// Receivers the background tasks own; handed to [`RedisBus::run`].
pub struct BusTasks {
    control: mpsc::UnboundedReceiver<Control>,
    outbox: mpsc::Receiver<(String, Vec<u8>)>,
}

const OUTBOX_CAPACITY: usize = 16 * 1024;
/// Access events kept while Redis is away before they collapse into one "re-check all".
const ACCESS_OUTBOX_CAPACITY: usize = 1024;
/// Access events per pipelined publish.
const ACCESS_BATCH: usize = 64;
/// Longest wait for Redis to accept a batch of access events before retrying.
const ACCESS_PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl RedisBus {
    /// Creates the bus (no connection yet: [`RedisBus::run`] connects and reconnects).
    pub fn new(config: ClusterConfig) -> anyhow::Result<(Self, BusTasks)> {
        let client = redis::Client::open(config.redis_url.as_str())?;
        let (control, control_rx) = mpsc::unbounded_channel();
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
        let bus = Self {
            inner: Arc::new(Inner {
                config,
                client,
                rooms: DashMap::new(),
                loading: DashMap::new(),
                waiting: DashMap::new(),
                control,
                outbox,
                commands: Mutex::new(None),
                connected: AtomicBool::new(false),
                access: OnceLock::new(),
                access_outbox: Mutex::default(),
                access_ready: Notify::new(),
                next_request: AtomicU64::new(1),
                metrics: Metrics {
                    connected: gauge!("tandem_cluster_connected"),
                    published: counter!("tandem_cluster_published_total"),
                    received: counter!("tandem_cluster_received_total"),
                    dropped: counter!("tandem_cluster_dropped_total"),
                    access_overflows: counter!("tandem_cluster_access_overflows_total"),
                },
            }),
        };
        Ok((
            bus,
            BusTasks {
                control: control_rx,
                outbox: outbox_rx,
            },
        ))
    }

    /// Whether the node currently hears its peers.
    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// Asks Redis whether it answers (within 500 ms): the check `/readyz` reports.
    pub async fn ping(&self) -> bool {
        if !self.connected() {
            return false;
        }
        let Some(mut connection) = self
            .inner
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return false;
        };
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        matches!(
            tokio::time::timeout(Duration::from_millis(500), ping).await,
            Ok(Ok(_))
        )
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    /// Carries access events (role changes, revocations) between nodes, so sockets on every
    /// node re-check at once.
    pub fn connect_access_events(&self, events: &AccessEvents) {
        let _ = self.inner.access.set(events.clone());
        let bus = self.clone();
        events.forward_with(Box::new(move |event| bus.queue_access(event)));
    }

    fn access_payload(&self, event: &AccessEvent) -> Vec<u8> {
        serde_json::json!({"origin": self.inner.config.node_id, "event": event})
            .to_string()
            .into_bytes()
    }

    /// Queues an access event for the other nodes; it waits for Redis as long as needed.
    fn queue_access(&self, event: &AccessEvent) {
        let overflowed = self
            .inner
            .access_outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.access_payload(event), || {
                self.access_payload(&AccessEvent::RecheckAll)
            });
        if overflowed {
            self.inner.metrics.access_overflows.increment(1);
            warn!(
                "access events piled up while redis was unreachable; peers will re-check every socket instead"
            );
        }
        self.inner.access_ready.notify_one();
    }

    /// Publishes every queued access event; false if Redis did not take them (they stay
    /// queued for the next attempt).
    async fn publish_access(&self, connection: &mut ConnectionManager) -> bool {
        loop {
            let front = self
                .inner
                .access_outbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .front(ACCESS_BATCH);
            let Some((last, payloads)) = front else {
                return true;
            };
            let mut pipe = redis::pipe();
            for payload in &payloads {
                pipe.cmd("PUBLISH")
                    .arg(self.access_channel())
                    .arg(payload)
                    .ignore();
            }
            let sent =
                tokio::time::timeout(ACCESS_PUBLISH_TIMEOUT, pipe.query_async::<()>(connection))
                    .await;
            match sent {
                Ok(Ok(())) => {
                    self.inner
                        .access_outbox
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .published(last);
                    self.inner
                        .metrics
                        .published
                        .increment(payloads.len() as u64);
                }
                // A batch that may have been half sent is sent again: re-checking twice is
                // harmless, missing one is not.
                Ok(Err(err)) => {
                    debug!(error = %err, "publishing access events failed; retrying");
                    return false;
                }
                Err(_) => {
                    debug!("publishing access events timed out; retrying");
                    return false;
                }
            }
        }
    }

    fn access_channel(&self) -> String {
        format!("{}:access", self.inner.config.channel_prefix)
    }

    fn handle_access(&self, payload: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Forwarded {
            origin: String,
            event: AccessEvent,
        }
        let Ok(forwarded) = serde_json::from_slice::<Forwarded>(payload) else {
            warn!("ignoring an undecodable access event");
            return;
        };
        if forwarded.origin != self.inner.config.node_id
            && let Some(events) = self.inner.access.get()
        {
            events.publish_local(forwarded.event);
        }
    }

    fn channel(&self, room: &RoomId) -> String {
        format!(
            "{}:room:{}",
            self.inner.config.channel_prefix,
            room.as_str()
        )
    }

    fn room_of(&self, channel: &str) -> Option<RoomId> {
        let prefix = format!("{}:room:", self.inner.config.channel_prefix);
        RoomId::parse(channel.strip_prefix(&prefix)?).ok()
    }

    fn send(&self, room: &RoomId, body: ClusterMessage) {
        let envelope = Envelope {
            origin: self.inner.config.node_id.clone(),
            body,
        };
        match self
            .inner
            .outbox
            .try_send((self.channel(room), encode_envelope(&envelope)))
        {
            Ok(()) => {}
            // Anti-entropy repairs what the bus could not carry.
            Err(_) => self.inner.metrics.dropped.increment(1),
        }
    }

    /// Runs the subscriber, publisher and anti-entropy tasks until `stop`.
    pub async fn run(self, tasks: BusTasks, stop: CancellationToken) {
        let publisher = tokio::spawn(self.clone().publish_loop(tasks.outbox, stop.clone()));
        let anti_entropy = tokio::spawn(self.clone().anti_entropy_loop(stop.clone()));
        self.subscribe_loop(tasks.control, stop).await;
        let _ = publisher.await;
        let _ = anti_entropy.await;
    }

    async fn publish_loop(
        self,
        mut outbox: mpsc::Receiver<(String, Vec<u8>)>,
        stop: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        let mut batch = Vec::with_capacity(256);
        loop {
            let connection = tokio::select! {
                _ = stop.cancelled() => return,
                connection = self.inner.client.get_connection_manager() => connection,
            };
            let mut connection = match connection {
                Ok(connection) => connection,
                Err(err) => {
                    debug!(error = %err, "redis publisher connection failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            *self
                .inner
                .commands
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(connection.clone());
            let mut access_retry = Duration::from_millis(100);
            loop {
                // Access events first: they are never dropped, and room traffic waits.
                if !self.publish_access(&mut connection).await {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(access_retry) => {}
                    }
                    access_retry = (access_retry * 2).min(MAX_BACKOFF);
                    continue;
                }
                access_retry = Duration::from_millis(100);
                let received = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    () = self.inner.access_ready.notified() => continue,
                    n = outbox.recv_many(&mut batch, 256) => n,
                };
                if received == 0 {
                    return;
                }
                let mut pipe = redis::pipe();
                for (channel, payload) in batch.drain(..) {
                    pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                }
                // The connection manager reconnects by itself; a failed batch is dropped and
                // repaired by anti-entropy.
                match pipe.query_async::<()>(&mut connection).await {
                    Ok(()) => self.inner.metrics.published.increment(received as u64),
                    Err(err) => {
                        self.inner.metrics.dropped.increment(received as u64);
                        debug!(error = %err, "publishing to redis failed");
                    }
                }
            }
        }
    }

    async fn subscribe_loop(
        self,
        mut control: mpsc::UnboundedReceiver<Control>,
        stop: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let pubsub = tokio::select! {
                _ = stop.cancelled() => return,
                pubsub = self.inner.client.get_async_pubsub() => pubsub,
            };
            match pubsub {
                Ok(pubsub) => {
                    backoff = Duration::from_millis(100);
                    let (mut sink, mut stream) = pubsub.split();
                    let mut subscribed = true;
                    let channels: Vec<String> = std::iter::once(self.access_channel())
                        .chain(self.inner.rooms.iter().map(|r| self.channel(r.key())))
                        .chain(self.inner.loading.iter().map(|r| self.channel(r.key())))
                        .collect();
                    for channel in channels {
                        subscribed &= sink.subscribe(channel).await.is_ok();
                    }
                    if subscribed {
                        self.inner.connected.store(true, Ordering::Relaxed);
                        self.inner.metrics.connected.set(1.0);
                        info!(node = %self.inner.config.node_id, "connected to redis");
                        // Whatever happened while we were away, reconverge now.
                        self.anti_entropy_round();
                        // Access events peers published meanwhile were never heard here:
                        // every socket re-checks (spread out, so not all at once).
                        if let Some(events) = self.inner.access.get() {
                            events.publish_local(AccessEvent::RecheckAll);
                        }
                        loop {
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                command = control.recv() => match command {
                                    Some(Control::Subscribe(channel, done)) => {
                                        let ok = sink.subscribe(channel).await.is_ok();
                                        let _ = done.send(ok);
                                        if !ok { break; }
                                    }
                                    Some(Control::Unsubscribe(channel)) => {
                                        if sink.unsubscribe(channel).await.is_err() { break; }
                                    }
                                    None => return,
                                },
                                message = stream.next() => match message {
                                    Some(message) => self.handle(message).await,
                                    None => break,
                                },
                            }
                        }
                    }
                    self.inner.connected.store(false, Ordering::Relaxed);
                    self.inner.metrics.connected.set(0.0);
                    warn!(node = %self.inner.config.node_id, "lost redis; serving local clients only until it returns");
                }
                Err(err) => debug!(error = %err, "redis subscriber connection failed; retrying"),
            }
            // Subscriptions asked for while disconnected are made on reconnect (from `rooms`
            // and `loading`); tell their askers not to wait.
            while let Ok(command) = control.try_recv() {
                if let Control::Subscribe(_, done) = command {
                    let _ = done.send(false);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn anti_entropy_loop(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.config.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.anti_entropy_round(),
            }
        }
    }

    /// Publishes every attached room's digest; peers that differ answer.
    fn anti_entropy_round(&self) {
        if !self.connected() {
            return;
        }
        let rooms: Vec<Room> = self.inner.rooms.iter().map(|r| r.value().clone()).collect();
        for room in rooms {
            self.send(
                room.id(),
                ClusterMessage::SyncRequest {
                    request: 0,
                    state_vector: room.state_vector(),
                    digest: document_digest(&room),
                },
            );
        }
    }

    async fn handle(&self, message: redis::Msg) {
        self.inner.metrics.received.increment(1);
        if message.get_channel_name() == self.access_channel() {
            self.handle_access(message.get_payload_bytes());
            return;
        }
        let Some(room_id) = self.room_of(message.get_channel_name()) else {
            return;
        };
        let envelope = match decode_envelope(message.get_payload_bytes()) {
            Ok(envelope) => envelope,
            Err(err) => {
                warn!(room = %room_id, error = %err, "ignoring an undecodable cluster message");
                return;
            }
        };
        if envelope.origin == self.inner.config.node_id {
            return;
        }
        let room = self.inner.rooms.get(&room_id).map(|r| r.value().clone());
        match envelope.body {
            ClusterMessage::Update(update) => match room {
                Some(room) => {
                    if let Err(err) = room.apply_remote_update(&update) {
                        warn!(room = %room_id, error = %err, "ignoring an invalid update from a peer");
                    }
                }
                None => {
                    if let Some(mut buffered) = self.inner.loading.get_mut(&room_id) {
                        buffered.updates.push(update);
                    }
                }
            },
            ClusterMessage::Awareness(bytes) => {
                let Ok(update) = protocol::decode_awareness(&bytes) else {
                    return;
                };
                match room {
                    Some(room) => room.apply_remote_awareness(update),
                    None => {
                        if let Some(mut buffered) = self.inner.loading.get_mut(&room_id) {
                            buffered.awareness.push(update);
                        }
                    }
                }
            }
            ClusterMessage::SyncRequest {
                request,
                state_vector,
                digest,
            } => {
                let Some(room) = room else { return };
                // Catch-up requests (non-zero) are always answered, so the asker can stop
                // waiting; anti-entropy ones only when the documents differ.
                if request != 0 || digest != document_digest(&room) {
                    let Ok(update) = room.diff(&state_vector) else {
                        return;
                    };
                    self.send(
                        &room_id,
                        ClusterMessage::SyncReply {
                            to: envelope.origin,
                            request,
                            update,
                        },
                    );
                }
                if request != 0
                    && let Some(local) = room.local_awareness()
                {
                    // The asker is loading the room: tell it who is here.
                    self.send(&room_id, ClusterMessage::Awareness(local.encode_v1()));
                }
            }
            ClusterMessage::SyncReply {
                to,
                request,
                update,
            } => {
                if to != self.inner.config.node_id {
                    return;
                }
                if let Some(waiter) = self.inner.waiting.get(&request) {
                    let _ = waiter.send(update);
                } else if let Some(room) = room
                    && let Err(err) = room.apply_repair(&update).await
                {
                    warn!(room = %room_id, error = %err, "ignoring an invalid sync reply");
                }
            }
        }
    }

    async fn subscribers(&self, channel: &str) -> Option<i64> {
        let connection = self
            .inner
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let mut connection = connection;
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut connection)
            .await
            .ok()?;
        counts.first().map(|(_, n)| *n)
    }

    async fn catch_up(&self, room: &RoomId, state_vector: Vec<u8>) -> Vec<Vec<u8>> {
        let timeout = self.inner.config.catch_up_timeout;
        let channel = self.channel(room);
        let (done, subscribed) = oneshot::channel();
        if self
            .inner
            .control
            .send(Control::Subscribe(channel.clone(), done))
            .is_err()
        {
            return Vec::new();
        }
        if !matches!(
            tokio::time::timeout(timeout, subscribed).await,
            Ok(Ok(true))
        ) {
            return Vec::new();
        }
        // Every subscriber but this node holds the room and will answer.
        let peers = self
            .subscribers(&channel)
            .await
            .unwrap_or(0)
            .saturating_sub(1);
        if peers <= 0 {
            return Vec::new();
        }
        let request = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let (answers, mut replies) = mpsc::unbounded_channel();
        self.inner.waiting.insert(request, answers);
        self.send(
            room,
            ClusterMessage::SyncRequest {
                request,
                state_vector,
                digest: 0,
            },
        );
        let mut updates = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while (updates.len() as i64) < peers {
            match tokio::time::timeout_at(deadline, replies.recv()).await {
                Ok(Some(update)) => updates.push(update),
                _ => break,
            }
        }
        self.inner.waiting.remove(&request);
        if (updates.len() as i64) < peers {
            debug!(room = %room, answered = updates.len(), peers, "catch-up timed out; anti-entropy will finish it");
        }
        updates
    }
}

impl RoomBus for RedisBus {
    fn join(&self, room: &RoomId, state_vector: Vec<u8>) -> BusFuture<'_, Vec<Vec<u8>>> {
        let room = room.clone();
        Box::pin(async move {
            self.inner.loading.entry(room.clone()).or_default();
            let mut updates = self.catch_up(&room, state_vector).await;
            // Updates heard while loading are applied with the catch-up; awareness waits for
            // `attach`, when the room exists.
            if let Some(mut buffered) = self.inner.loading.get_mut(&room) {
                updates.append(&mut buffered.updates);
            }
            updates
        })
    }

    fn attach(&self, room: &Room) {
        self.inner.rooms.insert(room.id().clone(), room.clone());
        if let Some((_, buffered)) = self.inner.loading.remove(room.id()) {
            for update in buffered.updates {
                let _ = room.apply_remote_update(&update);
            }
            for awareness in buffered.awareness {
                room.apply_remote_awareness(awareness);
            }
        }
    }

    fn leave(&self, room: &RoomId) {
        self.inner.rooms.remove(room);
        self.inner.loading.remove(room);
        let _ = self
            .inner
            .control
            .send(Control::Unsubscribe(self.channel(room)));
    }

    fn publish_update(&self, room: &RoomId, update: Bytes) {
        self.send(room, ClusterMessage::Update(update.to_vec()));
    }

    fn publish_awareness(&self, room: &RoomId, update: Bytes) {
        self.send(room, ClusterMessage::Awareness(update.to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: usize) -> Vec<u8> {
        format!("event {n}").into_bytes()
    }

    #[test]
    fn access_events_wait_until_published_and_an_overflow_becomes_one_recheck_of_everything() {
        let mut outbox = AccessOutbox::default();
        outbox.push(payload(0), || b"recheck all".to_vec());
        outbox.push(payload(1), || b"recheck all".to_vec());
        // A publish removes only what it sent, even if more arrived meanwhile.
        let (last, sent) = outbox.front(1).expect("queued");
        assert_eq!(sent, vec![payload(0)]);
        outbox.push(payload(2), || b"recheck all".to_vec());
        outbox.published(last);
        let (_, left) = outbox.front(ACCESS_BATCH).expect("queued");
        assert_eq!(left, vec![payload(1), payload(2)]);

        // Full: everything waiting is replaced by one event that stands for all of it.
        let mut overflows = 0;
        for n in 3..=ACCESS_OUTBOX_CAPACITY + 1 {
            overflows += usize::from(outbox.push(payload(n), || b"recheck all".to_vec()));
        }
        assert_eq!(overflows, 1);
        let (last, left) = outbox.front(ACCESS_BATCH).expect("queued");
        assert_eq!(left, vec![b"recheck all".to_vec()]);
        // Later events queue behind it as usual.
        outbox.push(payload(9999), || b"recheck all".to_vec());
        outbox.published(last);
        let (_, left) = outbox.front(ACCESS_BATCH).expect("queued");
        assert_eq!(left, vec![payload(9999)]);
    }
}
