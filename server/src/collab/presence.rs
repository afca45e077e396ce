//! Who is connected to which room right now. Here beside the activity feed, not with access
//! in the accounts wing: arrivals and departures are room events of the feed, and access
//! itself never needs it.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;

use crate::accounts::Identity;
use crate::collab::activity::{Activity, EventKind, RoomEvent};

/// The people connected to one room: identity key → (identity, open connections).
type RoomPresence = HashMap<String, (Identity, usize)>;

/// Who is connected to which room right now (for listings). Cheap to clone. A person's
/// first connection to a room and their last disconnection are room events (`joined`,
/// `left`); reconnects and extra tabs are not.
#[derive(Clone)]
pub struct Presence {
    rooms: Arc<DashMap<String, RoomPresence>>,
    activity: Activity,
}

/// Removes its entry from [`Presence`] when dropped.
pub struct PresenceGuard {
    presence: Presence,
    room_id: String,
    key: String,
}

impl Presence {
    /// Empty presence, reporting arrivals and departures to `activity`.
    pub fn new(activity: Activity) -> Self {
        Self {
            rooms: Arc::default(),
            activity,
        }
    }

    /// Records one more connection of `identity` in `room_id`.
    pub fn join(&self, room_id: &str, identity: &Identity) -> PresenceGuard {
        let key = identity
            .user_id
            .clone()
            .unwrap_or_else(|| format!("guest:{}", identity.name));
        let first = {
            let mut room = self.rooms.entry(room_id.to_owned()).or_default();
            let entry = room
                .entry(key.clone())
                .or_insert_with(|| (identity.clone(), 0));
            entry.1 += 1;
            entry.1 == 1
        };
        if first {
            self.activity.emit(RoomEvent::new(
                room_id,
                EventKind::Joined,
                Some(identity.clone()),
                serde_json::json!({}),
            ));
        }
        PresenceGuard {
            presence: self.clone(),
            room_id: room_id.to_owned(),
            key,
        }
    }

    /// Who is online in `room_id`, with their connection counts.
    pub fn online(&self, room_id: &str) -> Vec<(Identity, usize)> {
        self.rooms
            .get(room_id)
            .map(|room| room.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of open connections in `room_id`.
    pub fn connections(&self, room_id: &str) -> usize {
        self.online(room_id).iter().map(|(_, n)| n).sum()
    }
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let mut emptied = false;
        let mut left = None;
        if let Some(mut room) = self.presence.rooms.get_mut(&self.room_id) {
            if let Some(entry) = room.get_mut(&self.key) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    left = room.remove(&self.key).map(|(identity, _)| identity);
                }
            }
            emptied = room.is_empty();
        }
        if emptied {
            self.presence
                .rooms
                .remove_if(&self.room_id, |_, room| room.is_empty());
        }
        if let Some(identity) = left {
            self.presence.activity.emit(RoomEvent::new(
                self.room_id.as_str(),
                EventKind::Left,
                Some(identity),
                serde_json::json!({}),
            ));
        }
    }
}
