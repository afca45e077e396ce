//! One room in memory: its document, its awareness, and the channel its updates fan out on.
//!
//! Who holds what:
//! - `doc` is the `yrs` document. Its own lock serialises transactions; each transaction
//!   here is short (apply one update, or encode one diff) and none is held across `.await`.
//! - `awareness` is behind a `std::sync::Mutex` on purpose: every use is a few map
//!   operations with no `.await` inside.
//! - `fanout` carries each update frame, encoded once, to every subscriber as a shared
//!   [`Bytes`]. A subscriber that falls more than `subscriber_queue` frames behind gets
//!   [`Delivery::Lagged`] and must be disconnected so its client resyncs.
//! - `activity` is the bookkeeping the registry's maintenance pass reads (connections,
//!   idleness, pending versions and compaction).
//!
//! A room reaches the rest of the store only through its `RoomContext` (configuration,
//! storage, the writer's queue, metrics, events, its replicas), which the registry builds; it
//! never imports the registry. Its updates go to the writer with a `PendingAppend`, which
//! the registry acts on once the writer reports the commit.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use yrs::sync::awareness::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, ReadTxn, StateVector, Transact, Update};

use crate::config::{Durability, StoreConfig};
use crate::document::{self, STORED_DEPTH_GUARD, encode_integrated};
use crate::events::StoreEvent;
use crate::guard::{self, ApplyError};
use crate::ids::{ConnectionId, RoomId};
use crate::metrics::StoreMetrics;
use crate::persist::{Append, PersistCommand, PersistQueue};
use crate::storage::{Storage, StorageError};
use crate::version::{VersionInfo, VersionKind};
use crate::writes::{self, LocationIndex, WriteGrant};

/// What every room of one registry shares. The registry builds it and hands it to each room
/// it loads; a room reaches nothing of the registry beyond this.
pub(crate) struct RoomContext {
    pub(crate) config: StoreConfig,
    pub(crate) storage: Storage,
    /// Sends to the persistence writer. The writer stops once every clone is dropped.
    pub(crate) persist: PersistQueue<PendingAppend>,
    pub(crate) metrics: StoreMetrics,
    /// The rooms' replicas on other nodes, when clustered.
    pub(crate) replicas: Option<Arc<dyn Replicas>>,
    /// Announces [`StoreEvent`]s.
    pub(crate) events: broadcast::Sender<StoreEvent>,
    /// Takes a room whose document holds what its storage does not out of memory.
    pub(crate) discard: Arc<dyn Discard>,
    next_connection: AtomicU64,
}

impl RoomContext {
    pub(crate) fn new(
        config: StoreConfig,
        storage: Storage,
        persist: PersistQueue<PendingAppend>,
        metrics: StoreMetrics,
        replicas: Option<Arc<dyn Replicas>>,
        discard: Arc<dyn Discard>,
    ) -> Self {
        Self {
            config,
            storage,
            persist,
            metrics,
            replicas,
            discard,
            events: broadcast::Sender::new(crate::events::EVENT_CAPACITY),
            next_connection: AtomicU64::new(1),
        }
    }

    fn next_connection_id(&self) -> ConnectionId {
        ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed))
    }
}

/// How a room whose document holds what its storage does not leaves memory (the registry's,
/// which owns the map of rooms): `why` says what it holds.
pub(crate) trait Discard: Send + Sync {
    fn discard(&self, room: &Room, why: &str);
}

/// What a room tells its replicas on other nodes: the publishing half of the cluster bus
/// (`bus::RoomBus`, which the registry hands its rooms through `bus::BusReplicas`).
pub(crate) trait Replicas: Send + Sync {
    /// A local client's update, ready to fan out (after its commit in durable mode).
    fn publish_update(&self, room: &RoomId, update: Bytes);
    /// A local client's awareness change (a v1-encoded awareness update).
    fn publish_awareness(&self, room: &RoomId, update: Bytes);
}

/// What a room attaches to each update it hands the writer, for when the writer is done
/// with it: the frame waiting for the commit and who waits for the verdict. The registry
/// acts on it (see `registry::CommitDelivery`).
pub(crate) struct PendingAppend {
    /// The room that applied the update (this copy of it, not whichever is loaded later).
    pub(crate) room: Room,
    /// What to fan out once committed (durable mode); `None` when it went out already.
    pub(crate) fanout: Option<(Outbound, Reach)>,
    /// Told whether the update was committed, if the sender waits for it.
    pub(crate) ack: Option<oneshot::Sender<Result<(), ApplyError>>>,
}

/// Where a committed update goes besides this node's subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// This node's subscribers only: the update came from a peer node, which has it.
    Node,
    /// This node's subscribers and, through the bus, every other node holding the room.
    Cluster,
}

/// A frame on its way to the subscribers of a room.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// The connection the change came from; it is not sent back there.
    pub origin: ConnectionId,
    /// One complete y-protocols message.
    pub frame: Bytes,
}

/// Why a connection could not join a room.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefused {
    /// The room was evicted between lookup and join; the registry retries with a fresh load.
    #[error("room was evicted")]
    Evicted,
    /// The room has `max_connections_per_room` connections already.
    #[error("room is full")]
    Full,
}

/// What one subscriber receives next.
pub enum Delivery {
    /// A frame to send.
    Frame(Bytes),
    /// The subscriber missed frames; it must be disconnected so its client resyncs.
    Lagged,
}

/// A room's awareness and which connection announced each client id.
struct AwarenessState {
    awareness: Awareness,
    /// Client id → the connection that announced it. A connection may only update or remove
    /// the client ids it announced, so nobody can overwrite or erase another's presence.
    owners: HashMap<ClientID, ConnectionId>,
    /// Client ids announced on other nodes, with when they were last heard of. Their node
    /// may die without saying goodbye, so they expire like y-protocols clients do.
    remote: HashMap<ClientID, Instant>,
}

/// Bookkeeping read by the maintenance pass.
pub(crate) struct Activity {
    /// Leases currently held (sockets plus in-flight REST operations).
    pub(crate) leases: usize,
    /// Set once by eviction; a closed room accepts no new lease.
    pub(crate) closed: bool,
    /// Last time a lease was released or an update applied.
    pub(crate) last_used: Instant,
    /// When the first edit not covered by a version was applied.
    pub(crate) unversioned_since: Option<Instant>,
    /// The same moment on the wall clock (ms since the epoch), comparable with versions
    /// other nodes took.
    pub(crate) unversioned_since_ms: i64,
    /// A compaction task is running for this room.
    pub(crate) compacting: bool,
}

pub(crate) struct RoomInner {
    pub(crate) id: RoomId,
    pub(crate) doc: Doc,
    awareness: Mutex<AwarenessState>,
    fanout: broadcast::Sender<Outbound>,
    pub(crate) activity: Mutex<Activity>,
    /// Updates in the log since the last snapshot (approximate; triggers compaction).
    pub(crate) logged_updates: AtomicU64,
    /// Cancelled once the room is evicted and its writes flushed: joiners that found it
    /// closed wait for this before loading a fresh copy.
    pub(crate) evicted: CancellationToken,
    /// Set once, by a deletion: from then on nothing of this room reaches the database (the
    /// writer drops its queued updates, edits are refused with [`ApplyError::RoomDeleted`]),
    /// so no write racing the deletion can land after it.
    pub(crate) deleted: AtomicBool,
    /// Held (shared) by the writes to storage made outside the writer task (versions,
    /// compaction) for as long as they run; a deletion takes it exclusively before setting
    /// `deleted`, so none of them is still in flight when the room's rows are deleted.
    pub(crate) storage_writes: tokio::sync::RwLock<()>,
    /// Cancelled when the room was taken out of memory because the database refused one of
    /// its updates (see `registry::CommitDelivery::discard`): the document here holds that
    /// update, storage does not, so edits are refused and every connection resyncs elsewhere.
    pub(crate) discarded: CancellationToken,
    /// Where everything in the document lives, for checking where clients write
    /// ([`writes`]); locked only inside the document's write lock.
    locations: Mutex<LocationIndex>,
    pub(crate) context: Arc<RoomContext>,
}

/// A loaded room. Cheap to clone.
#[derive(Clone)]
pub struct Room(pub(crate) Arc<RoomInner>);

impl Room {
    pub(crate) fn new(
        id: RoomId,
        doc: Doc,
        logged_updates: u64,
        context: Arc<RoomContext>,
    ) -> Self {
        let (fanout, _) = broadcast::channel(context.config.subscriber_queue);
        Room(Arc::new(RoomInner {
            id,
            awareness: Mutex::new(AwarenessState {
                awareness: Awareness::new(doc.clone()),
                owners: HashMap::new(),
                remote: HashMap::new(),
            }),
            doc,
            fanout,
            activity: Mutex::new(Activity {
                leases: 0,
                closed: false,
                last_used: Instant::now(),
                unversioned_since: None,
                unversioned_since_ms: 0,
                compacting: false,
            }),
            logged_updates: AtomicU64::new(logged_updates),
            evicted: CancellationToken::new(),
            deleted: AtomicBool::new(false),
            storage_writes: tokio::sync::RwLock::new(()),
            locations: Mutex::new(LocationIndex::default()),
            discarded: CancellationToken::new(),
            context,
        }))
    }

    /// The room's name.
    pub fn id(&self) -> &RoomId {
        &self.0.id
    }

    /// Whether the room was deleted (see [`RoomInner::deleted`]).
    pub fn is_deleted(&self) -> bool {
        self.0.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn activity(&self) -> MutexGuard<'_, Activity> {
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        self.0.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn awareness(&self) -> MutexGuard<'_, AwarenessState> {
        self.0.awareness.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the room in memory while held, without receiving its frames (REST operations).
    pub fn lease(&self) -> Result<RoomLease, JoinRefused> {
        let mut activity = self.activity();
        if activity.closed {
            return Err(JoinRefused::Evicted);
        }
        activity.leases += 1;
        Ok(RoomLease { room: self.clone() })
    }

    /// Joins as a subscriber: receives every frame other connections produce from now on.
    pub fn connect(&self) -> Result<RoomConnection, JoinRefused> {
        {
            let activity = self.activity();
            if activity.leases >= self.0.context.config.max_connections_per_room {
                return Err(JoinRefused::Full);
            }
        }
        let lease = self.lease()?;
        // Subscribe after taking the lease so no frame published after the join is missed.
        let receiver = self.0.fanout.subscribe();
        Ok(RoomConnection {
            lease,
            id: self.0.context.next_connection_id(),
            receiver,
            awareness_clients: HashSet::new(),
        })
    }

    /// `[sync, step 1, state vector]` of the room's document: what a new connection is sent.
    pub fn sync_step1_frame(&self) -> Bytes {
        let sv = self.0.doc.transact().state_vector().encode_v1();
        protocol::encode_sync_step1_frame(&sv)
    }

    /// `[sync, step 2, diff]`: everything the holder of `remote` lacks.
    pub fn sync_step2_frame(&self, remote: &StateVector) -> Bytes {
        let diff = self.0.doc.transact().encode_diff_v1(remote);
        protocol::encode_sync_step2_frame(&diff)
    }

    /// Every known awareness state as one frame, or `None` when nobody has announced one.
    pub fn awareness_frame(&self) -> Option<Bytes> {
        let state = self.awareness();
        let update = state.awareness.update().ok()?;
        if update.clients.is_empty() {
            return None;
        }
        Some(protocol::encode_awareness_frame(&update))
    }

    /// The whole document as one v1 update (see [`document::encode_integrated`]).
    pub fn encode_state(&self) -> Vec<u8> {
        encode_integrated(&self.0.doc)
    }

    /// Runs `read` on a read transaction of the document. Keep it short: it holds the
    /// document lock.
    pub fn read<T>(&self, read: impl FnOnce(&yrs::Transaction<'_>) -> T) -> T {
        read(&self.0.doc.transact())
    }

    /// Every file by the document convention (see [`document::files`]).
    pub fn files(&self) -> Vec<(String, String)> {
        document::files(&self.0.doc)
    }

    /// Anchors a range of a file (see [`document::anchor_range`]).
    pub fn anchor(&self, file: &str, start: u32, end: u32) -> Result<document::TextAnchor, String> {
        document::anchor_range(&self.0.doc, file, start, end)
    }

    /// Where an anchored range of a file is now (see [`document::locate_range`]).
    pub fn locate(&self, file: &str, start: &[u8], end: &[u8]) -> Option<(u32, u32, String)> {
        document::locate_range(&self.0.doc, file, start, end)
    }

    /// Whether a suggestion's anchored text is unchanged (see [`document::suggestion_intact`]).
    pub fn suggestion_intact(&self, id: &str) -> Option<bool> {
        document::suggestion_intact(&self.0.doc, id)
    }

    /// The document's root types as JSON (see [`document::to_json`]).
    pub fn to_json(&self) -> Result<serde_json::Value, document::TooDeep> {
        document::to_json(&self.0.doc)
    }

    /// Applies a v1 update from `origin` and publishes it.
    ///
    /// `frame`, when given, is the `[sync, update, …]` frame the update arrived in, forwarded
    /// as is; otherwise one is encoded. Either way it is built once for all subscribers.
    ///
    /// With a `grant`, every write of the update is checked against it first ([`writes`]):
    /// an update writing anywhere the grant does not allow is refused whole
    /// ([`ApplyError::Denied`]), and suggestions it creates are stamped with the grant's
    /// author in the same transaction (what is published is then that transaction's update).
    pub async fn apply_update(
        &self,
        origin: ConnectionId,
        update: Bytes,
        frame: Option<Bytes>,
        grant: Option<&WriteGrant>,
    ) -> Result<(), ApplyError> {
        let limits = self.0.context.config.update_limits;
        let applied = {
            let mut txn = self.0.doc.transact_mut();
            guard::apply_client_update_with(&mut txn, &update, &limits, |txn, outline| {
                let Some(grant) = grant else {
                    txn.apply_update(yrs::Update::decode_v1(&update)?)?;
                    return Ok(None);
                };
                let mut index = self.0.locations.lock().expect("location index lock");
                let stamped = writes::apply_granted(
                    txn,
                    &mut index,
                    outline,
                    &update,
                    grant,
                    crate::storage::now_millis(),
                )?;
                Ok(stamped.then(|| Bytes::from(txn.encode_update_v1())))
            })
        };
        let (update, frame) = match applied {
            // y-websocket answers a step 1 with an empty step 2 when it has nothing new.
            Ok(None) => return Ok(()),
            Ok(Some(None)) => (update, frame),
            // Stamped: the others receive the client's update with the server's fields.
            Ok(Some(Some(stamped))) => (stamped, None),
            // `yrs` refused the update while integrating it (an item that waited for its
            // parent, which arrived as something no item can live in): what it integrated
            // before stays in the document and nowhere else, so the room reloads.
            Err(err @ ApplyError::Rejected(_)) => {
                (self.0.context.discard)
                    .discard(self, "an update yrs refused while integrating it");
                return Err(err);
            }
            Err(err) => return Err(err),
        };
        let frame = frame.unwrap_or_else(|| protocol::encode_update_frame(&update));
        self.publish(Outbound { origin, frame }, update).await
    }

    /// Makes a change on the server's behalf (restore, import) and publishes it to every
    /// connection. `change` runs inside one transaction; the update it produces is returned.
    pub async fn edit<F>(&self, change: F) -> Result<Bytes, ApplyError>
    where
        F: FnOnce(&mut yrs::TransactionMut<'_>),
    {
        self.edit_checked(|txn| {
            change(txn);
            Ok::<_, ApplyError>(())
        })
        .await
        .map(|((), update)| update)
    }

    /// Like [`Room::edit`] for a change that may be refused: `change` checks before it writes,
    /// and when it answers `Err` it must have left the document untouched; nothing is then
    /// published. Answers the change's result with the update it produced.
    pub async fn edit_checked<F, T, E>(&self, change: F) -> Result<(T, Bytes), E>
    where
        F: FnOnce(&mut yrs::TransactionMut<'_>) -> Result<T, E>,
        E: From<ApplyError>,
    {
        let (value, update) = {
            let mut txn = self.0.doc.transact_mut();
            let value = change(&mut txn)?;
            (value, Bytes::from(txn.encode_update_v1()))
        };
        let frame = protocol::encode_update_frame(&update);
        self.publish(
            Outbound {
                origin: ConnectionId::SERVER,
                frame,
            },
            update.clone(),
        )
        .await?;
        Ok((value, update))
    }

    /// Hands an applied update to persistence and subscribers in the order the durability
    /// mode promises.
    async fn publish(&self, outbound: Outbound, update: Bytes) -> Result<(), ApplyError> {
        self.log_and_deliver(outbound, update, Reach::Cluster).await
    }

    /// Logs an applied update and fans it out to `reach`: after the commit in durable mode,
    /// at once in relaxed mode.
    ///
    /// In durable mode this answers once the update is committed, with the writer's verdict:
    /// an update the database refuses for good, or one of a room deleted meanwhile, is an
    /// error (its sender's socket closes and its client resyncs), and nobody else got it.
    /// In relaxed mode it answers once the update is queued; a refusal is only logged.
    async fn log_and_deliver(
        &self,
        outbound: Outbound,
        update: Bytes,
        reach: Reach,
    ) -> Result<(), ApplyError> {
        if self.is_deleted() {
            return Err(ApplyError::RoomDeleted);
        }
        if self.0.discarded.is_cancelled() {
            return Err(ApplyError::NotPersisted(
                "the room is reloading from storage; resync".to_owned(),
            ));
        }
        {
            let mut activity = self.activity();
            activity.last_used = Instant::now();
            if activity.unversioned_since.is_none() {
                activity.unversioned_since = Some(Instant::now());
                activity.unversioned_since_ms = crate::storage::now_millis();
            }
        }
        self.0.context.metrics.updates_applied.increment(1);
        let (fanout_after_commit, ack, committed) = match self.0.context.config.durability {
            Durability::Durable => {
                let (ack, committed) = oneshot::channel();
                (Some((outbound, reach)), Some(ack), Some(committed))
            }
            Durability::Relaxed => {
                self.deliver(outbound, &update, reach);
                (None, None, None)
            }
        };
        self.0
            .context
            .persist
            .send(PersistCommand::Append(Append {
                room: self.0.id.clone(),
                update,
                ticket: PendingAppend {
                    room: self.clone(),
                    fanout: fanout_after_commit,
                    ack,
                },
            }))
            .await
            .map_err(|_| ApplyError::ShuttingDown)?;
        match committed {
            // The writer answers every append it takes; a dropped answer means it stopped.
            Some(committed) => committed.await.map_err(|_| ApplyError::ShuttingDown)?,
            None => Ok(()),
        }
    }

    /// Fans out a committed update: to this node's subscribers and, for [`Reach::Cluster`],
    /// through the bus to the other nodes holding the room.
    pub(crate) fn deliver(&self, outbound: Outbound, update: &Bytes, reach: Reach) {
        self.broadcast(outbound);
        if reach == Reach::Cluster
            && let Some(replicas) = &self.0.context.replicas
        {
            replicas.publish_update(&self.0.id, update.clone());
        }
    }

    /// The document (for digests and diffs).
    pub(crate) fn doc(&self) -> &Doc {
        &self.0.doc
    }

    /// The v1 state vector of the document.
    pub fn state_vector(&self) -> Vec<u8> {
        self.0.doc.transact().state_vector().encode_v1()
    }

    /// Everything the holder of the v1 state vector `remote` lacks, as one v1 update.
    pub fn diff(&self, remote: &[u8]) -> Result<Vec<u8>, ApplyError> {
        let remote = protocol::decode_state_vector(remote)?;
        Ok(self.0.doc.transact().encode_diff_v1(&remote))
    }

    /// Applies an update another node's client made and published: fanned out here, never
    /// persisted here (its node committed it before publishing) and never published again.
    pub fn apply_remote_update(&self, update: &[u8]) -> Result<(), ApplyError> {
        if self.integrate(update)? {
            self.broadcast(Outbound {
                origin: ConnectionId::SERVER,
                frame: protocol::encode_update_frame(update),
            });
        }
        Ok(())
    }

    /// Applies what a peer node answered a sync request with. A peer answers from memory, so
    /// the answer may hold edits its node has not committed yet (and may never, if it stops
    /// first): what changed here is logged here too before this node's clients see it, so
    /// that nothing a client builds on is missing from the log. Answers whether it changed
    /// anything.
    pub async fn apply_repair(&self, update: &[u8]) -> Result<bool, ApplyError> {
        if !self.integrate(update)? {
            return Ok(false);
        }
        let update = Bytes::copy_from_slice(update);
        let outbound = Outbound {
            origin: ConnectionId::SERVER,
            frame: protocol::encode_update_frame(&update),
        };
        self.log_and_deliver(outbound, update, Reach::Node).await?;
        Ok(true)
    }

    /// Integrates a peer's update; answers whether it changed the document. Catch-up and
    /// anti-entropy replies often repeat what live fan-out already brought; clients are only
    /// sent updates that changed something here.
    fn integrate(&self, update: &[u8]) -> Result<bool, ApplyError> {
        let decoded = Update::decode_v1(update)?;
        if decoded.is_empty() {
            return Ok(false);
        }
        let mut txn = self.0.doc.transact_mut();
        txn.apply_update(decoded)?;
        Ok(txn.state_vector() != *txn.before_state() || !txn.delete_set().is_empty())
    }

    /// Applies awareness from another node's clients and fans it out here. Entries for
    /// client ids a local connection announced are ignored.
    pub fn apply_remote_awareness(&self, mut update: AwarenessUpdate) {
        let frame = {
            let mut state = self.awareness();
            update
                .clients
                .retain(|client, _| !state.owners.contains_key(client));
            if update.clients.is_empty() {
                return;
            }
            let now = Instant::now();
            for (client, entry) in &update.clients {
                if &*entry.json == "null" {
                    state.remote.remove(client);
                } else {
                    state.remote.insert(*client, now);
                }
            }
            let frame = protocol::encode_awareness_frame(&update);
            let _ = state.awareness.apply_update(update);
            frame
        };
        self.broadcast(Outbound {
            origin: ConnectionId::SERVER,
            frame,
        });
    }

    /// The awareness states announced by this node's connections, for a peer that just
    /// loaded the room; `None` when there are none.
    pub fn local_awareness(&self) -> Option<AwarenessUpdate> {
        let state = self.awareness();
        let local: Vec<ClientID> = state.owners.keys().copied().collect();
        if local.is_empty() {
            return None;
        }
        state.awareness.update_with_clients(local).ok()
    }

    /// Removes awareness of remote clients not heard of for `timeout` (their node may be
    /// gone) and tells local subscribers.
    pub fn expire_remote_awareness(&self, timeout: std::time::Duration) {
        let update = {
            let mut state = self.awareness();
            let now = Instant::now();
            let expired: Vec<ClientID> = state
                .remote
                .iter()
                .filter(|(_, seen)| now.duration_since(**seen) >= timeout)
                .map(|(client, _)| *client)
                .collect();
            if expired.is_empty() {
                return;
            }
            for client in &expired {
                state.remote.remove(client);
                state.awareness.remove_state(*client);
            }
            state.awareness.update_with_clients(expired)
        };
        if let Ok(update) = update {
            self.broadcast(Outbound {
                origin: ConnectionId::SERVER,
                frame: protocol::encode_awareness_frame(&update),
            });
        }
    }

    /// Sends a frame to every subscriber. Never blocks: slow subscribers lag and are cut.
    pub(crate) fn broadcast(&self, outbound: Outbound) {
        // An error only means nobody is subscribed right now.
        let _ = self.0.fanout.send(outbound);
    }

    /// Takes a version of the current state.
    pub async fn create_version(
        &self,
        kind: VersionKind,
        label: Option<String>,
    ) -> Result<VersionInfo, StorageError> {
        // Everything applied so far is in the snapshot we encode, so activity up to here is
        // covered; a concurrent edit re-arms the timer after this point. The version is dated
        // before the encode, so an edit it lacks never looks older than it.
        let captured_at_ms = crate::storage::now_millis();
        // A deletion waits for this guard, and a deleted room takes no version.
        let writes = self.0.storage_writes.read().await;
        if self.is_deleted() {
            return Err(StorageError::RoomDeleted);
        }
        self.activity().unversioned_since = None;
        let doc = self.0.doc.clone();
        let data = tokio::task::spawn_blocking(move || encode_integrated(&doc)).await?;
        let info = self
            .0
            .context
            .storage
            .insert_version(&self.0.id, kind, label, data, captured_at_ms)
            .await?;
        drop(writes);
        self.0.context.metrics.versions_created.increment(1);
        let _ = self.0.context.events.send(StoreEvent::VersionCreated {
            room: self.0.id.clone(),
            version: info.clone(),
        });
        Ok(info)
    }

    /// Brings the document back to the content of `version_data` as a forward edit: a minimal
    /// text diff per file, so unchanged text (and the cursors in it) stays put. The restore is
    /// published like any edit and recorded as a version of its own.
    pub async fn restore(
        &self,
        version_data: &[u8],
        label: String,
    ) -> Result<VersionInfo, RestoreError> {
        let limit = self.0.context.config.update_limits.max_depth;
        let target = document::decode_stored(version_data, limit)?;
        // A restore reads the live document too (and writes nested shared types back as plain
        // values, whose levels then add up): tried on a copy first, so that neither what it
        // reads nor what it makes can be a document the server refuses to read.
        let copy = document::decode_stored(&encode_integrated(&self.0.doc), STORED_DEPTH_GUARD)?;
        document::restore_into(&mut copy.transact_mut(), &target);
        document::check_nesting(&copy, limit).map_err(document::StoredDocumentError::from)?;
        self.edit(|txn| document::restore_into(txn, &target))
            .await?;
        Ok(self
            .create_version(VersionKind::Restore, Some(label))
            .await?)
    }
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The stored version does not decode, or nests deeper than the limit.
    #[error("stored version cannot be read: {0}")]
    Version(#[from] document::StoredDocumentError),
    /// Publishing the restore failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Recording the restore version failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Keeps a room in memory while held. Dropping it releases the room for eviction.
pub struct RoomLease {
    room: Room,
}

impl RoomLease {
    /// The leased room.
    pub fn room(&self) -> &Room {
        &self.room
    }
}

impl Drop for RoomLease {
    fn drop(&mut self) {
        let mut activity = self.room.activity();
        activity.leases -= 1;
        activity.last_used = Instant::now();
    }
}

/// One subscriber of a room. Dropping it removes the awareness states it announced and
/// tells the others.
pub struct RoomConnection {
    lease: RoomLease,
    id: ConnectionId,
    receiver: broadcast::Receiver<Outbound>,
    /// Awareness client ids this connection announced and has not yet removed.
    awareness_clients: HashSet<ClientID>,
}

impl RoomConnection {
    /// The room joined.
    pub fn room(&self) -> &Room {
        self.lease.room()
    }

    /// This connection's id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Waits for the next frame from another connection. Returns `None` when the room is
    /// gone (never while this connection holds it).
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            let received = tokio::select! {
                biased;
                // This copy of the room is no longer the stored one: resync from a fresh load.
                _ = self.lease.room.0.discarded.cancelled() => return Some(Delivery::Lagged),
                received = self.receiver.recv() => received,
            };
            match received {
                Ok(out) if out.origin == self.id => continue,
                Ok(out) => return Some(Delivery::Frame(out.frame)),
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(Delivery::Lagged),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Applies an update sent by this connection, whatever it writes (the store's own tests
    /// and trusted peers; clients go through [`RoomConnection::apply_update_as`]).
    pub async fn apply_update(
        &self,
        update: Bytes,
        frame: Option<Bytes>,
    ) -> Result<(), ApplyError> {
        self.room().apply_update(self.id, update, frame, None).await
    }

    /// Applies an update sent by this connection if `grant` allows everything it writes.
    pub async fn apply_update_as(
        &self,
        update: Bytes,
        frame: Option<Bytes>,
        grant: &WriteGrant,
    ) -> Result<(), ApplyError> {
        self.room()
            .apply_update(self.id, update, frame, Some(grant))
            .await
    }

    /// Applies an awareness update sent by this connection and relays it to everyone.
    ///
    /// A connection speaks for exactly one awareness client id: the first one it announces
    /// that nobody else holds. Entries for any other id are dropped: `y-websocket` clients
    /// echo every state they hear, and nobody may overwrite or erase another's presence.
    /// When `identity` is given, its fields are written into the state's `user` object, so a
    /// client cannot present itself as someone else. `frame` (the message the update arrived
    /// in) is relayed as is when nothing had to change; otherwise the update is re-encoded.
    ///
    /// A state larger than the store's `max_awareness_state` is refused whole (nothing is
    /// applied or relayed); the caller closes the connection.
    pub fn apply_awareness(
        &mut self,
        mut update: AwarenessUpdate,
        frame: Bytes,
        identity: Option<&AwarenessStamp>,
    ) -> Result<(), AwarenessRefused> {
        let room = self.lease.room.clone();
        let limit = room.0.context.config.max_awareness_state;
        if let Some(size) = update
            .clients
            .values()
            .map(|entry| entry.json.len())
            .find(|&size| size > limit)
        {
            return Err(AwarenessRefused::TooLarge { size, limit });
        }
        let frame = {
            let mut state = room.awareness();
            let received = update.clients.len();
            if self.awareness_clients.is_empty() {
                let claim = update.clients.keys().copied().find(|client| {
                    !state.owners.contains_key(client) && !state.remote.contains_key(client)
                });
                if let Some(client) = claim {
                    self.awareness_clients.insert(client);
                    state.owners.insert(client, self.id);
                }
            }
            update
                .clients
                .retain(|client, _| self.awareness_clients.contains(client));
            let mut changed = update.clients.len() != received;
            if let Some(identity) = identity {
                for entry in update.clients.values_mut() {
                    if let Some(stamped) = stamp_identity(&entry.json, identity) {
                        entry.json = stamped.into();
                        changed = true;
                    }
                }
            }
            if update.clients.is_empty() {
                return Ok(());
            }
            let frame = if changed {
                protocol::encode_awareness_frame(&update)
            } else {
                frame
            };
            if let Some(replicas) = &room.0.context.replicas {
                replicas.publish_awareness(&room.0.id, Bytes::from(update.encode_v1()));
            }
            // Only serde errors are possible and the entries are raw JSON strings.
            let _ = state.awareness.apply_update(update);
            frame
        };
        // Echoed to the sender too, as the reference server does: a y-websocket client that
        // hears nothing for 30 s reconnects, and a client alone in a room only hears the
        // echo of its own 15 s awareness renewal.
        room.broadcast(Outbound {
            origin: ConnectionId::SERVER,
            frame,
        });
        Ok(())
    }
}

/// Why an awareness update was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AwarenessRefused {
    /// One state's JSON is larger than the limit.
    #[error("awareness state of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The state's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// What the server writes into, and removes from, every awareness state a connection sends:
/// fields others rely on to know who is who are the server's to set.
#[derive(Clone, Debug, Default)]
pub struct AwarenessStamp {
    /// Written into the state's `user` object: the connection's real identity.
    pub user: serde_json::Map<String, serde_json::Value>,
    /// Top-level fields removed from the state (say, `assistant` for anyone but the
    /// assistant).
    pub strip: Vec<&'static str>,
}

/// Writes `identity`'s fields into the `user` object of an awareness state and removes the
/// fields it strips. Returns `None` for a `null` state (a removal), which carries nothing to
/// stamp. Public so the awareness fuzz target exercises exactly what every connection's
/// states go through.
pub fn stamp_identity(json: &str, identity: &AwarenessStamp) -> Option<String> {
    use serde_json::Value;
    if json == "null" {
        return None;
    }
    let mut state = match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    for field in &identity.strip {
        state.remove(*field);
    }
    let user = state
        .entry("user")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !user.is_object() {
        *user = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(user) = user {
        for (key, value) in &identity.user {
            user.insert(key.clone(), value.clone());
        }
    }
    Some(Value::Object(state).to_string())
}

impl Drop for RoomConnection {
    fn drop(&mut self) {
        if self.awareness_clients.is_empty() {
            return;
        }
        let update = {
            let mut state = self.room().awareness();
            for client in &self.awareness_clients {
                state.owners.remove(client);
                state.awareness.remove_state(*client);
            }
            state
                .awareness
                .update_with_clients(self.awareness_clients.iter().copied())
        };
        if let Ok(update) = update {
            if let Some(replicas) = &self.room().0.context.replicas {
                replicas.publish_awareness(self.room().id(), Bytes::from(update.encode_v1()));
            }
            self.room().broadcast(Outbound {
                origin: self.id,
                frame: protocol::encode_awareness_frame(&update),
            });
        }
    }
}
