//! The announcements of access changes to open sockets ([`AccessEvent`] on [`AccessEvents`]):
//! apart from what a principal may do ([`crate::accounts::access`]), so that whatever
//! revokes access (sessions, keys, links) announces it without importing the access rules.

use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit, broadcast};

/// Something that may change what open sockets are allowed to do.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum AccessEvent {
    /// Roles or participants of a room changed.
    MembersChanged {
        /// The room.
        room_id: String,
    },
    /// A room was deleted.
    RoomDeleted {
        /// The room.
        room_id: String,
    },
    /// Sessions of a user were revoked (logout, password change).
    SessionsRevoked {
        /// The user.
        user_id: String,
    },
    /// An API key was revoked.
    ApiKeyRevoked {
        /// The key.
        key_id: String,
    },
    /// A share link was revoked.
    ShareLinkRevoked {
        /// The link.
        link_id: String,
    },
    /// Events may have been missed (a node was cut off from Redis, or a queue of events
    /// overflowed): every socket re-checks, spread over `--access-recheck-spread`.
    RecheckAll,
}

/// Sends access events to the other nodes of a cluster.
pub type AccessForwarder = Box<dyn Fn(&AccessEvent) + Send + Sync>;

/// The process-wide channel of [`AccessEvent`]s. Cheap to clone. In a cluster, events are
/// also forwarded to the other nodes, whose sockets re-check just the same.
#[derive(Clone)]
pub struct AccessEvents {
    local: broadcast::Sender<AccessEvent>,
    forward: Arc<std::sync::OnceLock<AccessForwarder>>,
    /// Taken by every socket's re-check for as long as it reads the database.
    rechecks: Arc<Semaphore>,
}

/// Most access re-checks that read the database at once on one node: half the pool, so
/// REST requests and the group-commit writer keep connections while every socket re-checks.
pub const RECHECKS_AT_ONCE: usize = 4;

impl AccessEvents {
    /// A channel buffering `capacity` events per listener.
    pub fn new(capacity: usize) -> Self {
        Self {
            local: broadcast::channel(capacity).0,
            forward: Arc::default(),
            rechecks: Arc::new(Semaphore::new(RECHECKS_AT_ONCE)),
        }
    }

    /// Waits for a turn to re-check a socket's access; the turn ends when the permit drops.
    pub async fn recheck_turn(&self) -> SemaphorePermit<'_> {
        // The semaphore is never closed.
        self.rechecks
            .acquire()
            .await
            .expect("the re-check semaphore stays open")
    }

    /// Forwards every event published here to the other nodes too.
    pub fn forward_with(&self, forward: AccessForwarder) {
        let _ = self.forward.set(forward);
    }

    /// Announces an event to every open socket, on every node.
    pub fn publish(&self, event: AccessEvent) {
        if let Some(forward) = self.forward.get() {
            forward(&event);
        }
        self.publish_local(event);
    }

    /// Announces an event that came from another node to this node's sockets.
    pub fn publish_local(&self, event: AccessEvent) {
        // An error only means no socket is open.
        let _ = self.local.send(event);
    }

    /// Listens for events.
    pub fn subscribe(&self) -> broadcast::Receiver<AccessEvent> {
        self.local.subscribe()
    }
}
