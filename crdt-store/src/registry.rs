//! The room registry: every room in memory, each loaded exactly once.
//!
//! A room's slot is a `OnceCell` in a `DashMap`. The first joiner inserts the empty cell
//! (under the map's shard lock, so two joiners cannot insert two cells) and runs the load;
//! everyone else arriving meanwhile awaits the same cell. A failed load leaves the cell empty
//! and removes it, so the next join tries again: no joiner is ever handed a blank document
//! standing in for one that failed to load.
//!
//! Eviction closes a room (no new lease), flushes its pending writes, then removes its slot and
//! signals `evicted`; a joiner that found the closed room waits for that signal and loads the
//! room afresh, so it never reads the database before the old copy's last writes landed.
//!
//! The registry also owns what follows a commit: the writer reports each update's outcome to
//! its `CommitDelivery`, which fans out what waited for the commit, answers the senders,
//! announces the commit, schedules compaction, and takes out a room whose update the
//! database refused.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use dashmap::DashMap;
use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, Transact};

use crate::bus::{BusReplicas, RoomBus};
use crate::config::{Durability, StoreConfig};
use crate::events::StoreEvent;
use crate::guard::ApplyError;
use crate::ids::RoomId;
use crate::metrics::StoreMetrics;
use crate::persist::{Append, BatchLimits, CommitListener, Outcome, PersistCommand, run_writer};
use crate::room::{
    Discard, JoinRefused, PendingAppend, Replicas, Room, RoomConnection, RoomContext, RoomLease,
};
use crate::storage::{Storage, StorageError, rebuild_doc};
use crate::version::VersionKind;

/// What follows a commit, on the writer's task: the writer reports each append's outcome
/// here, and this fans out the frames that waited for it, answers their senders, counts the
/// logged updates toward compaction and announces them, and takes out of memory a room whose
/// update the database refused.
#[derive(Clone)]
struct CommitDelivery {
    /// The registry's rooms. Weak: the writer outlives no registry on its account (rooms
    /// hold the writer's queue, so a strong handle here would keep the writer waiting on
    /// itself).
    rooms: Weak<DashMap<RoomId, Slot>>,
    /// Replicas on other nodes, when clustered: a discarded room leaves them.
    bus: Option<Arc<dyn RoomBus>>,
    /// Where compactions run (the registry's background work).
    tasks: TaskTracker,
}

impl CommitListener for CommitDelivery {
    type Ticket = PendingAppend;

    fn withdrawn(&self, append: &PendingAppend) -> bool {
        append.room.is_deleted()
    }

    fn refused(&self, append: &PendingAppend) {
        self.discard(&append.room, "an update the database refused");
    }

    fn settled(&self, appends: Vec<(Append<PendingAppend>, Outcome)>) {
        let mut last_room: Option<(Room, u64)> = None;
        for (append, outcome) in appends {
            let PendingAppend { room, fanout, ack } = append.ticket;
            let result = match outcome {
                Outcome::Committed => Ok(()),
                Outcome::Refused(reason) => Err(ApplyError::NotPersisted(reason)),
                Outcome::Withdrawn => Err(ApplyError::RoomDeleted),
            };
            if result.is_ok() {
                if let Some((outbound, reach)) = fanout {
                    room.deliver(outbound, &append.update, reach);
                }
                // Count per room run; consecutive updates of one room are common.
                match &mut last_room {
                    Some((previous, count)) if previous.id() == room.id() => *count += 1,
                    _ => {
                        if let Some((previous, count)) = last_room.take() {
                            self.note_logged(&previous, count);
                        }
                        last_room = Some((room, 1));
                    }
                }
            }
            if let Some(ack) = ack {
                // The sender may have given up waiting (its socket closed).
                let _ = ack.send(result);
            }
        }
        if let Some((room, count)) = last_room {
            self.note_logged(&room, count);
        }
    }
}

impl Discard for CommitDelivery {
    /// Takes `room` out of memory because its document holds what its storage does not (`why`:
    /// an update the database refused, or part of one `yrs` refused midway): from now on it
    /// refuses edits, every connection is told to resync ([`crate::Delivery::Lagged`]), and
    /// the next joiner loads the room afresh from what is stored, without that update.
    fn discard(&self, room: &Room, why: &str) {
        if room.0.discarded.is_cancelled() || room.is_deleted() {
            return;
        }
        room.0.discarded.cancel();
        room.activity().closed = true;
        let removed = self.rooms.upgrade().is_some_and(|rooms| {
            rooms
                .remove_if(room.id(), |_, slot| {
                    slot.get().is_some_and(|r| Arc::ptr_eq(&r.0, &room.0))
                })
                .is_some()
        });
        if removed {
            if let Some(bus) = &self.bus {
                bus.leave(room.id());
            }
            room.0.context.metrics.rooms_in_memory.decrement(1.0);
        }
        room.0.evicted.cancel();
        warn!(room = %room.id(), "room reloads from storage: it held {why}");
    }
}

impl CommitDelivery {
    /// `count` updates of `room` were committed: announces them, and starts a compaction
    /// when the log has grown past the threshold and none is running.
    fn note_logged(&self, room: &Room, count: u64) {
        let context = &room.0.context;
        let logged = room.0.logged_updates.fetch_add(count, Ordering::Relaxed) + count;
        // Nobody listening is not an error.
        let _ = context.events.send(StoreEvent::DocumentChanged {
            room: room.id().clone(),
            updates: count,
        });
        if logged < context.config.compact_after_updates {
            return;
        }
        {
            let mut activity = room.activity();
            if activity.compacting {
                return;
            }
            activity.compacting = true;
        }
        let room = room.clone();
        self.tasks.spawn(async move {
            // A deletion waits for this guard; a deleted room is not compacted back to life.
            let writes = room.0.storage_writes.read().await;
            let result = if room.is_deleted() {
                Ok(false)
            } else {
                room.0.context.storage.compact(room.id()).await
            };
            drop(writes);
            match result {
                Ok(compacted) => {
                    if compacted {
                        room.0.context.metrics.compactions.increment(1);
                    }
                    // Everything counted so far was merged (or merged by another node).
                    let _ = room.0.logged_updates.fetch_update(
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                        |n| Some(n.saturating_sub(logged)),
                    );
                }
                Err(err) => warn!(room = %room.id(), error = %err, "compaction failed"),
            }
            room.activity().compacting = false;
        });
    }
}

/// Why a room could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Loading the room failed; nothing of it is served.
    #[error("room could not be loaded: {0}")]
    Load(#[from] StorageError),
    /// `max_rooms` rooms are in memory already.
    #[error("too many rooms in memory")]
    TooManyRooms,
    /// The room has `max_connections_per_room` connections already.
    #[error("room is full")]
    RoomFull,
}

type Slot = Arc<OnceCell<Room>>;

/// How long awareness from another node lives without renewal: the y-protocols timeout
/// (clients renew every 15 s; a dead node's clients vanish after this).
pub const REMOTE_AWARENESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

struct RegistryInner {
    rooms: Arc<DashMap<RoomId, Slot>>,
    /// What every room shares (the rooms' own handle on the store).
    context: Arc<RoomContext>,
    /// Replicas on other nodes, when clustered.
    bus: Option<Arc<dyn RoomBus>>,
    /// Background work (the writer, compactions, maintenance), tracked so it can be closed
    /// and inspected; compactions in flight at exit roll back whole (one transaction each).
    tasks: TaskTracker,
    stop_maintenance: CancellationToken,
}

/// All rooms of this process. Cheap to clone; build it once and share it.
#[derive(Clone)]
pub struct RoomRegistry {
    inner: Arc<RegistryInner>,
}

impl RoomRegistry {
    /// Starts the persistence writer and the maintenance pass over `storage`, on one node.
    pub fn start(config: StoreConfig, storage: Storage) -> Self {
        Self::start_with_bus(config, storage, None)
    }

    /// [`RoomRegistry::start`] for a node of a cluster: rooms catch up with and publish to
    /// their replicas on other nodes through `bus`.
    pub fn start_with_bus(
        config: StoreConfig,
        storage: Storage,
        bus: Option<Arc<dyn RoomBus>>,
    ) -> Self {
        let metrics = StoreMetrics::register();
        let (persist, queue) = mpsc::channel(config.persist_queue);
        let tasks = TaskTracker::new();
        let rooms = Arc::new(DashMap::new());
        let delivery = CommitDelivery {
            rooms: Arc::downgrade(&rooms),
            bus: bus.clone(),
            tasks: tasks.clone(),
        };
        tasks.spawn(run_writer(
            storage.clone(),
            queue,
            BatchLimits {
                max_rows: config.max_batch.max(1),
                max_bytes: config.max_batch_bytes.max(1),
            },
            metrics.clone(),
            delivery.clone(),
        ));
        let replicas = bus
            .clone()
            .map(|bus| Arc::new(BusReplicas(bus)) as Arc<dyn Replicas>);
        let registry = Self {
            inner: Arc::new(RegistryInner {
                rooms,
                context: Arc::new(RoomContext::new(
                    config,
                    storage,
                    persist,
                    metrics,
                    replicas,
                    Arc::new(delivery),
                )),
                bus,
                tasks,
                stop_maintenance: CancellationToken::new(),
            }),
        };
        let maintenance = registry.clone();
        registry
            .inner
            .tasks
            .spawn(async move { maintenance.run_maintenance().await });
        registry
    }

    /// Listens to what happens to rooms from now on (commits, versions).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StoreEvent> {
        self.inner.context.events.subscribe()
    }

    /// The database behind the rooms.
    pub fn storage(&self) -> &Storage {
        &self.inner.context.storage
    }

    /// The configuration the registry runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.context.config
    }

    /// Number of rooms in memory.
    pub fn rooms_in_memory(&self) -> usize {
        self.inner.rooms.len()
    }

    /// Joins `id` as a subscriber, loading it if needed.
    pub async fn connect(&self, id: &RoomId) -> Result<RoomConnection, JoinError> {
        loop {
            let room = self.loaded(id).await?;
            match room.connect() {
                Ok(connection) => return Ok(connection),
                Err(JoinRefused::Full) => return Err(JoinError::RoomFull),
                Err(JoinRefused::Evicted) => room.0.evicted.cancelled().await,
            }
        }
    }

    /// Holds `id` in memory for the duration of a REST operation, loading it if needed.
    pub async fn lease(&self, id: &RoomId) -> Result<RoomLease, JoinError> {
        loop {
            let room = self.loaded(id).await?;
            match room.lease() {
                Ok(lease) => return Ok(lease),
                Err(JoinRefused::Full) => return Err(JoinError::RoomFull),
                Err(JoinRefused::Evicted) => room.0.evicted.cancelled().await,
            }
        }
    }

    async fn loaded(&self, id: &RoomId) -> Result<Room, JoinError> {
        let slot = match self.inner.rooms.get(id) {
            Some(slot) => slot.clone(),
            None => {
                if self.inner.rooms.len() >= self.inner.context.config.max_rooms {
                    return Err(JoinError::TooManyRooms);
                }
                self.inner.rooms.entry(id.clone()).or_default().clone()
            }
        };
        let result = slot.get_or_try_init(|| self.load(id)).await.cloned();
        if result.is_err() {
            self.inner
                .rooms
                .remove_if(id, |_, s| Arc::ptr_eq(s, &slot) && !s.initialized());
        }
        result
    }

    async fn load(&self, id: &RoomId) -> Result<Room, JoinError> {
        let context = &self.inner.context;
        let loaded = async {
            let stored = context.storage.load(id).await?;
            let logged = stored.updates.len() as u64;
            let room_id = id.clone();
            let limit = context.config.update_limits.max_depth;
            let doc = tokio::task::spawn_blocking(move || {
                let doc = rebuild_doc(&room_id, None, stored.pieces())?;
                // Stored before the limit existed (or under a higher one): not served, since
                // reading it could overflow the stack.
                crate::document::check_nesting(&doc, limit).map_err(|cause| {
                    StorageError::TooDeep {
                        room: room_id.clone(),
                        cause,
                    }
                })?;
                Ok::<_, StorageError>(doc)
            })
            .await??;
            // Peers may hold edits not yet in storage (relaxed durability, or in flight).
            let catch_up = match &self.inner.bus {
                Some(bus) => {
                    let state_vector = doc.transact().state_vector().encode_v1();
                    bus.join(id, state_vector).await
                }
                None => Vec::new(),
            };
            Ok::<_, StorageError>((doc, logged, catch_up))
        }
        .await;
        match loaded {
            Ok((doc, logged, catch_up)) => {
                context.metrics.room_loads.increment(1);
                context.metrics.rooms_in_memory.increment(1.0);
                info!(room = %id, logged_updates = logged, "room loaded");
                let room = Room::new(id.clone(), doc, logged, context.clone());
                let mut repaired = false;
                for update in catch_up {
                    match room.apply_repair(&update).await {
                        Ok(changed) => repaired |= changed,
                        Err(err) => {
                            warn!(room = %id, error = %err, "ignoring an invalid catch-up update from a peer");
                        }
                    }
                }
                if repaired {
                    // What peers had that storage lacked is logged before anyone is served it.
                    self.flush().await;
                }
                if let Some(bus) = &self.inner.bus {
                    bus.attach(&room);
                }
                Ok(room)
            }
            Err(err) => {
                context.metrics.room_load_failures.increment(1);
                warn!(room = %id, error = %err, "room load failed");
                Err(err.into())
            }
        }
    }

    /// Waits until every update handed to persistence so far is committed.
    pub async fn flush(&self) {
        let (done, committed) = oneshot::channel();
        if self
            .inner
            .context
            .persist
            .send(PersistCommand::Flush(done))
            .await
            .is_ok()
        {
            // An error means the writer is gone, and with it nothing left to wait for.
            let _ = committed.await;
        }
    }

    /// The room if it is in memory and loaded; never loads.
    pub fn loaded_room(&self, id: &RoomId) -> Option<Room> {
        self.inner
            .rooms
            .get(id)
            .and_then(|slot| slot.get().cloned())
    }

    /// Every room in memory.
    pub fn loaded_rooms(&self) -> Vec<Room> {
        self.inner
            .rooms
            .iter()
            .filter_map(|slot| slot.get().cloned())
            .collect()
    }

    async fn run_maintenance(&self) {
        let mut tick = tokio::time::interval(self.inner.context.config.maintenance_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.inner.stop_maintenance.cancelled() => return,
                _ = tick.tick() => self.maintain().await,
            }
        }
    }

    /// One maintenance pass: automatic versions and idle eviction.
    pub async fn maintain(&self) {
        let config = &self.inner.context.config;
        let now = Instant::now();
        for room in self.loaded_rooms() {
            let (evict, version_due) = {
                let mut activity = room.activity();
                if activity.closed {
                    // Another pass is evicting it, or it is being deleted: leave it to them.
                    continue;
                }
                let version_due = activity
                    .unversioned_since
                    .is_some_and(|since| now.duration_since(since) >= config.auto_version_interval);
                let evict = activity.leases == 0
                    && !activity.compacting
                    && now.duration_since(activity.last_used) >= config.idle_timeout;
                if evict {
                    activity.closed = true;
                }
                (evict, version_due)
            };
            if evict {
                self.evict(room).await;
                continue;
            }
            if version_due {
                self.auto_version(&room).await;
            }
            if self.inner.bus.is_some() {
                room.expire_remote_awareness(REMOTE_AWARENESS_TIMEOUT);
            }
        }
    }

    async fn auto_version(&self, room: &Room) {
        // Another node holding the room may have versioned the same activity already (its
        // clients' edits and ours reach both replicas): one version covers it.
        let since = room.activity().unversioned_since_ms;
        match self
            .inner
            .context
            .storage
            .latest_version_at(room.id())
            .await
        {
            // Strictly later: a version dated in the same millisecond as the edit may lack it.
            Ok(Some(latest)) if latest > since => {
                room.activity().unversioned_since = None;
                return;
            }
            Ok(_) => {}
            Err(err) => warn!(room = %room.id(), error = %err, "reading versions failed"),
        }
        if let Err(err) = room.create_version(VersionKind::Auto, None).await {
            warn!(room = %room.id(), error = %err, "automatic version failed");
        }
    }

    async fn evict(&self, room: Room) {
        if room.activity().unversioned_since.is_some() {
            self.auto_version(&room).await;
        }
        self.flush().await;
        self.inner.rooms.remove_if(room.id(), |_, slot| {
            slot.get().is_some_and(|r| Arc::ptr_eq(&r.0, &room.0))
        });
        room.0.evicted.cancel();
        if let Some(bus) = &self.inner.bus {
            bus.leave(room.id());
        }
        self.inner.context.metrics.rooms_in_memory.decrement(1.0);
        self.inner.context.metrics.room_evictions.increment(1);
        info!(room = %room.id(), "idle room evicted");
    }

    /// Deletes a room and everything stored for it (see [`RoomRegistry::begin_delete`]),
    /// with the store's tables only; a server deleting its own rows too uses
    /// `begin_delete` and [`Storage::delete_room_in`] inside its own transaction.
    pub async fn delete_room(&self, id: &RoomId) -> Result<(), StorageError> {
        let deletion = self.begin_delete(id).await;
        let deleted = self.inner.context.storage.delete_room(id).await;
        deletion.finish();
        deleted
    }

    /// Waits until no deletion of room `id` is in progress (see [`RoomRegistry::begin_delete`]).
    pub async fn wait_for_deletion(&self, id: &RoomId) {
        loop {
            let Some(room) = self.loaded_room(id) else {
                return;
            };
            if !room.is_deleted() {
                return;
            }
            room.0.evicted.cancelled().await;
        }
    }

    /// Starts deleting room `id`: answers once no write of the room can reach the database
    /// any more, with a guard that holds every join and lease of `id` back until it is
    /// finished (or dropped). In between, the caller deletes the room's rows.
    ///
    /// The room in memory (if any; otherwise an empty stand-in, so that a load racing the
    /// deletion cannot read the rows about to go) is closed and marked deleted: its edits are
    /// refused from then on, the writer drops what it still has queued of it, and the
    /// versions or compaction in flight finish first. Everything queued before the mark is
    /// committed before this returns, so the rows the caller deletes are all there are.
    /// Joiners arriving meanwhile wait and then load the id afresh from what is left: an
    /// empty document, which is what a re-created room starts from.
    pub async fn begin_delete(&self, id: &RoomId) -> RoomDeletion {
        loop {
            let stand_in = Room::new(
                id.clone(),
                crate::document::new_doc(),
                0,
                self.inner.context.clone(),
            );
            stand_in.activity().closed = true;
            stand_in.0.deleted.store(true, Ordering::Release);
            let slot = self.inner.rooms.entry(id.clone()).or_default().clone();
            let room = slot
                .get_or_init(|| async { stand_in.clone() })
                .await
                .clone();
            let loaded = !Arc::ptr_eq(&room.0, &stand_in.0);
            if loaded {
                let closed_already = {
                    let mut activity = room.activity();
                    std::mem::replace(&mut activity.closed, true)
                };
                if closed_already {
                    // Being evicted (or deleted) already: once that is done, start over.
                    room.0.evicted.cancelled().await;
                    continue;
                }
            }
            {
                let _no_writes_in_flight = room.0.storage_writes.write().await;
                room.0.deleted.store(true, Ordering::Release);
            }
            self.flush().await;
            return RoomDeletion {
                registry: self.clone(),
                room,
                loaded,
            };
        }
    }

    /// Stops background work and makes everything durable: pending writes are committed and
    /// rooms with unversioned edits get an automatic version. Connections should be closed
    /// first; edits arriving during shutdown are still persisted but may miss the version.
    pub async fn shutdown(&self) {
        self.inner.stop_maintenance.cancel();
        for room in self.loaded_rooms() {
            if room.activity().unversioned_since.is_some() {
                self.auto_version(&room).await;
            }
        }
        self.flush().await;
        if self.inner.context.config.durability == Durability::Relaxed {
            info!("relaxed durability: all fanned-out updates are now committed");
        }
        self.inner.tasks.close();
        // Compactions finish on their own; the writer only stops when the process does.
    }
}

/// A deletion in progress (see [`RoomRegistry::begin_delete`]). Finishing it, or dropping it
/// (the deletion failed), takes the deleted room out of memory and lets joiners load the id
/// afresh from the database.
pub struct RoomDeletion {
    registry: RoomRegistry,
    room: Room,
    /// Whether `room` was a loaded room (rather than the stand-in for one not in memory).
    loaded: bool,
}

impl RoomDeletion {
    /// The room's rows are deleted: releases the id.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for RoomDeletion {
    fn drop(&mut self) {
        let inner = &self.registry.inner;
        let id = self.room.id();
        inner.rooms.remove_if(id, |_, slot| {
            slot.get().is_some_and(|r| Arc::ptr_eq(&r.0, &self.room.0))
        });
        if self.loaded {
            if let Some(bus) = &inner.bus {
                bus.leave(id);
            }
            inner.context.metrics.rooms_in_memory.decrement(1.0);
        }
        self.room.0.evicted.cancel();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use migrations::MigratorTrait;
    use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};

    use super::*;
    use crate::room::Delivery;

    fn presence(client: u64, json: &str) -> AwarenessUpdate {
        AwarenessUpdate {
            clients: [(
                yrs::ClientID::new(client),
                AwarenessUpdateEntry {
                    clock: 1,
                    json: json.into(),
                },
            )]
            .into(),
        }
    }

    fn decode_awareness(frame: Bytes) -> AwarenessUpdate {
        match protocol::decode_message(&frame).expect("valid frame") {
            protocol::Message::Awareness(update) => update,
            other => panic!("expected awareness, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn presence_from_another_node_expires_unless_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        // Opened and migrated as the binary does (see `tests/store/support.rs`).
        let db = sea_orm::Database::connect(Storage::connect_options(&url, false))
            .await
            .unwrap();
        migrations::Migrator::up(&db, None).await.unwrap();
        let registry = RoomRegistry::start(StoreConfig::default(), Storage::new(db));
        let id = RoomId::parse("r").unwrap();
        let mut local = registry.connect(&id).await.unwrap();
        let room = local.room().clone();

        room.apply_remote_awareness(presence(42, r#"{"user":{"name":"far away"}}"#));
        let Some(Delivery::Frame(frame)) = local.recv().await else {
            panic!("no awareness frame")
        };
        assert!(
            decode_awareness(frame)
                .clients
                .contains_key(&yrs::ClientID::new(42))
        );

        // Within the timeout nothing expires.
        room.expire_remote_awareness(Duration::from_secs(30));
        let known = decode_awareness(room.awareness_frame().expect("states"));
        assert!(known.clients.contains_key(&yrs::ClientID::new(42)));

        // Past it, the state is removed and local subscribers are told.
        room.expire_remote_awareness(Duration::ZERO);
        let Some(Delivery::Frame(frame)) = local.recv().await else {
            panic!("no removal frame")
        };
        let removal = decode_awareness(frame);
        assert_eq!(
            &*removal.clients[&yrs::ClientID::new(42)].json,
            "null",
            "removal carries a null state"
        );
        assert!(room.awareness_frame().is_none());
    }
}
