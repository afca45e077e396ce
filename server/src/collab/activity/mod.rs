//! Room events: what happened in a room, recorded in its activity feed and offered to
//! listeners (webhooks).
//!
//! Handlers [`Activity::emit`] events as they happen; the store's own events (commits,
//! automatic versions) join them here. Each event is dated by the server's clock as it is
//! emitted (a store event, as the recording task takes it). One task records every feed
//! event in the `activity` table, in order, and then passes each event to every
//! [`Activity::subscribe`]r.

use std::sync::Arc;

use crdt_store::RoomId;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, warn};

use crate::accounts::Identity;
use crate::clock::Clock;
use crate::entity::{activity, room};

pub(crate) mod routes;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Someone opened their first connection to the room.
    Joined,
    /// Someone closed their last connection to the room.
    Left,
    /// A version was stored (automatic or named checkpoint).
    VersionCreated,
    /// The document was restored to a version.
    VersionRestored,
    /// A comment thread was opened.
    CommentCreated,
    /// A reply was added to a thread.
    CommentReplied,
    /// A thread was resolved.
    CommentResolved,
    /// A resolved thread was reopened.
    CommentReopened,
    /// A comment or a whole thread was deleted.
    CommentDeleted,
    /// The assistant proposed a change.
    SuggestionMade,
    /// A suggestion was applied.
    SuggestionAccepted,
    /// A suggestion was rejected.
    SuggestionRejected,
    /// A file was created (REST, upload or import).
    FileCreated,
    /// A file was renamed.
    FileRenamed,
    /// A file was deleted.
    FileDeleted,
    /// Updates to the document were committed (for webhooks; not in the feed).
    DocumentChanged,
}

impl EventKind {
    /// The name stored and sent (`comment_created`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::Left => "left",
            Self::VersionCreated => "version_created",
            Self::VersionRestored => "version_restored",
            Self::CommentCreated => "comment_created",
            Self::CommentReplied => "comment_replied",
            Self::CommentResolved => "comment_resolved",
            Self::CommentReopened => "comment_reopened",
            Self::CommentDeleted => "comment_deleted",
            Self::SuggestionMade => "suggestion_made",
            Self::SuggestionAccepted => "suggestion_accepted",
            Self::SuggestionRejected => "suggestion_rejected",
            Self::FileCreated => "file_created",
            Self::FileRenamed => "file_renamed",
            Self::FileDeleted => "file_deleted",
            Self::DocumentChanged => "document_changed",
        }
    }

    /// Whether the event belongs in the room's activity feed.
    pub fn in_feed(self) -> bool {
        self != Self::DocumentChanged
    }
}

/// One event in one room.
#[derive(Clone, Debug)]
pub struct RoomEvent {
    /// The room.
    pub room: String,
    /// What happened.
    pub kind: EventKind,
    /// Who did it (none for the server's own work, such as automatic versions).
    pub actor: Option<Identity>,
    /// Details (a JSON object).
    pub data: serde_json::Value,
    /// When, in milliseconds since the Unix epoch by the server's clock: set as the event is
    /// emitted ([`Activity::emit`]), 0 before.
    pub at_ms: i64,
}

impl RoomEvent {
    /// An event happening now, dated when it is emitted.
    pub fn new(
        room: impl Into<String>,
        kind: EventKind,
        actor: Option<Identity>,
        data: serde_json::Value,
    ) -> Self {
        Self {
            room: room.into(),
            kind,
            actor,
            data,
            at_ms: 0,
        }
    }
}

/// Events waiting to be recorded; beyond this, [`Activity::emit`] drops (and logs) them.
const QUEUE: usize = 16 * 1024;
/// Events a slow listener may fall behind before it misses some.
const LISTENER_CAPACITY: usize = 4096;

/// Records room events and hands them to listeners. Cheap to clone.
#[derive(Clone)]
pub struct Activity {
    queue: mpsc::Sender<Queued>,
    listeners: broadcast::Sender<Arc<RoomEvent>>,
    /// Dates the events.
    clock: Clock,
}

/// What the recording task is handed.
enum Queued {
    /// An event to record and pass on.
    Event(RoomEvent),
    /// Answered once everything queued before it, and every store event announced before
    /// it, has been passed to the listeners.
    Sync(tokio::sync::oneshot::Sender<()>),
}

impl Activity {
    /// Starts the recording task: it runs until every handle is dropped and the store stops
    /// announcing events.
    /// Events are dated by `clock`.
    pub fn start(db: DatabaseConnection, clock: Clock, store: &crdt_store::RoomRegistry) -> Self {
        let (queue, events) = mpsc::channel(QUEUE);
        let listeners = broadcast::Sender::new(LISTENER_CAPACITY);
        let activity = Self {
            queue,
            listeners: listeners.clone(),
            clock: clock.clone(),
        };
        tokio::spawn(run(db, clock, events, store.subscribe(), listeners));
        activity
    }

    /// Dates `event` now and records it (without waiting). Events are notifications; if the
    /// queue is full (the database is stuck) the event is dropped and logged, never the
    /// caller blocked.
    pub fn emit(&self, mut event: RoomEvent) {
        event.at_ms = (self.clock)();
        if let Err(err) = self.queue.try_send(Queued::Event(event)) {
            warn!(error = %err, "activity queue full; event dropped");
        }
    }

    /// Waits until every event emitted, and every store event announced, before this call
    /// has reached the listeners (for shutdown: listeners see everything that happened).
    pub async fn sync(&self) {
        let (done, synced) = tokio::sync::oneshot::channel();
        if self.queue.send(Queued::Sync(done)).await.is_ok() {
            // The task only stops when every handle is gone, so this is answered.
            let _ = synced.await;
        }
    }

    /// Listens to every event from now on, after it is recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RoomEvent>> {
        self.listeners.subscribe()
    }
}

async fn run(
    db: DatabaseConnection,
    clock: Clock,
    mut events: mpsc::Receiver<Queued>,
    mut store: broadcast::Receiver<crdt_store::StoreEvent>,
    listeners: broadcast::Sender<Arc<RoomEvent>>,
) {
    let mut store_open = true;
    loop {
        let event = tokio::select! {
            // Store events first: a sync is answered only once none is waiting.
            biased;
            event = store.recv(), if store_open => match event {
                Ok(event) => match from_store(event) {
                    Some(event) => RoomEvent { at_ms: clock(), ..event },
                    None => continue,
                },
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(missed, "activity fell behind the store's events");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    store_open = false;
                    continue;
                }
            },
            queued = events.recv() => match queued {
                Some(Queued::Event(event)) => event,
                Some(Queued::Sync(done)) => {
                    let _ = done.send(());
                    continue;
                }
                None => break,
            },
        };
        if event.kind.in_feed() {
            match record(&db, &event).await {
                Ok(true) => {}
                Ok(false) => {
                    // The room is gone: nobody is told about it either.
                    debug!(room = %event.room, kind = event.kind.as_str(), "event of a deleted room dropped");
                    continue;
                }
                Err(err) => warn!(room = %event.room, error = %err, "recording activity failed"),
            }
        }
        // Nobody listening is not an error.
        let _ = listeners.send(Arc::new(event));
    }
}

/// The store's events as room events. Named and restore versions are emitted by whoever
/// made them (with the actor), so only automatic versions come from here.
fn from_store(event: crdt_store::StoreEvent) -> Option<RoomEvent> {
    match event {
        crdt_store::StoreEvent::DocumentChanged { room, updates } => Some(RoomEvent::new(
            room.as_str(),
            EventKind::DocumentChanged,
            None,
            serde_json::json!({ "updates": updates }),
        )),
        crdt_store::StoreEvent::VersionCreated { room, version }
            if version.kind == crdt_store::VersionKind::Auto =>
        {
            Some(RoomEvent::new(
                room.as_str(),
                EventKind::VersionCreated,
                None,
                version_data(&version),
            ))
        }
        crdt_store::StoreEvent::VersionCreated { .. } => None,
    }
}

/// How a version appears in events.
pub fn version_data(version: &crdt_store::VersionInfo) -> serde_json::Value {
    serde_json::json!({
        "version_id": version.id,
        "kind": version.kind,
        "label": version.label,
    })
}

/// One page of room `id`'s feed, newest first: at most `limit` entries older than `before`,
/// and whether older ones remain.
pub(crate) async fn feed_page(
    db: &DatabaseConnection,
    id: &RoomId,
    limit: u64,
    before: Option<i64>,
) -> Result<(Vec<activity::Model>, bool), DbErr> {
    let mut select = activity::Entity::find().filter(activity::Column::RoomId.eq(id.as_str()));
    if let Some(before) = before {
        select = select.filter(activity::Column::Id.lt(before));
    }
    let mut rows = select
        .order_by_desc(activity::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

/// Records a feed event, in one statement and only while its room exists: an event of a
/// deleted room (a socket's "left" as the deletion closes it, a write that lost the race)
/// must not be left behind for whoever creates a room under the same id. Answers whether it
/// was recorded.
async fn record(db: &DatabaseConnection, event: &RoomEvent) -> Result<bool, sea_orm::DbErr> {
    let room_exists = Query::select()
        .expr(Expr::val(1))
        .from(room::Entity)
        .and_where(Expr::col((room::Entity, room::Column::Id)).eq(event.room.as_str()))
        .to_owned();
    let values = Query::select()
        .exprs([
            Expr::val(event.room.as_str()),
            Expr::val(event.kind.as_str()),
            Expr::val(event.actor.as_ref().and_then(|a| a.user_id.clone())),
            Expr::val(event.actor.as_ref().map(|a| a.name.clone())),
            Expr::val(event.data.to_string()),
            Expr::val(event.at_ms),
        ])
        .and_where(Expr::exists(room_exists))
        .to_owned();
    let insert = Query::insert()
        .into_table(activity::Entity)
        .columns([
            activity::Column::RoomId,
            activity::Column::Kind,
            activity::Column::ActorId,
            activity::Column::ActorName,
            activity::Column::Data,
            activity::Column::CreatedAt,
        ])
        .select_from(values)
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?
        .to_owned();
    let result = db.execute(&insert).await?;
    Ok(result.rows_affected() == 1)
}
