//! The document's `comments` root: a copy of each thread that connected clients read live,
//! written by the server only, one room at a time.

use std::collections::HashMap;
use std::sync::Arc;

use crdt_store::document::{COMMENTS_ROOT, put_map_entry, remove_map_entry};
use crdt_store::{Room, RoomId};
use dashmap::DashMap;
use serde_json::json;
use tokio::sync::{Mutex, OwnedMutexGuard};
use yrs::Any;

use super::thread::{Stored, person};
use crate::http::ApiError;

/// Serialises mirror writes per room. A write reads the thread from the database and then
/// writes it into the document; two of them in one room must not interleave, or an older
/// state could overwrite a newer one and the mirror would no longer match the database.
/// Rooms are independent: a write in one never waits for another room's. Cheap to clone.
#[derive(Clone, Default)]
pub struct CommentMirror {
    /// One lock per room with a write running or waiting; an entry goes when its last
    /// holder is done (see [`MirrorTurn`]'s `Drop`).
    turns: Arc<DashMap<RoomId, Arc<Mutex<()>>>>,
}

impl CommentMirror {
    /// Waits for room `id`'s turn: until it is dropped, no other mirror write of the room
    /// runs.
    pub(super) async fn turn(&self, id: &RoomId) -> MirrorTurn {
        let lock = self.turns.entry(id.clone()).or_default().clone();
        let guard = lock.lock_owned().await;
        MirrorTurn {
            guard: Some(guard),
            turns: self.turns.clone(),
            room: id.clone(),
        }
    }

    /// Rooms with a write running or waiting (for tests).
    #[cfg(test)]
    fn rooms(&self) -> usize {
        self.turns.len()
    }
}

/// A room's turn to write its mirror.
pub(super) struct MirrorTurn {
    guard: Option<OwnedMutexGuard<()>>,
    turns: Arc<DashMap<RoomId, Arc<Mutex<()>>>>,
    room: RoomId,
}

impl Drop for MirrorTurn {
    fn drop(&mut self) {
        drop(self.guard.take());
        // Only the map's own reference left: nobody holds or waits for the lock. Checked
        // under the map's shard lock, which a new writer's `entry` takes too, so a writer
        // either finds this lock before it goes or makes a fresh one after.
        self.turns
            .remove_if(&self.room, |_, lock| Arc::strong_count(lock) == 1);
    }
}

/// Writes the thread's current state (`Some`), or its absence, into the room's `comments`
/// map. Call with the room's [`MirrorTurn`] held, from the state just read.
pub(super) async fn write(
    _turn: &MirrorTurn,
    room: &Room,
    thread_id: &str,
    stored: Option<(&Stored, &HashMap<String, String>)>,
) -> Result<(), ApiError> {
    match stored {
        Some((stored, names)) => {
            let entry = entry(stored, names);
            room.edit(|txn| put_map_entry(txn, COMMENTS_ROOT, thread_id, entry))
                .await?;
        }
        None => {
            room.edit(|txn| remove_map_entry(txn, COMMENTS_ROOT, thread_id))
                .await?;
        }
    }
    Ok(())
}

/// The thread as an entry of the document's `comments` map.
fn entry(stored: &Stored, names: &HashMap<String, String>) -> Vec<(String, Any)> {
    let t = &stored.thread;
    let author = |id: &str| {
        Any::from_json(&json!({"id": id, "name": person(names, id).name}).to_string())
            .unwrap_or(Any::Null)
    };
    let comments: Vec<Any> = stored
        .comments
        .iter()
        .map(|c| {
            let value = json!({
                "id": c.id,
                "author": {"id": c.author_id, "name": person(names, &c.author_id).name},
                "body": c.body,
                "created_at_ms": c.created_at,
                "edited_at_ms": c.edited_at,
            });
            Any::from_json(&value.to_string()).unwrap_or(Any::Null)
        })
        .collect();
    vec![
        ("file".into(), Any::from(t.file.clone())),
        ("start".into(), Any::Buffer(t.anchor_start.clone().into())),
        ("end".into(), Any::Buffer(t.anchor_end.clone().into())),
        ("quote".into(), Any::from(t.quote.clone())),
        ("status".into(), Any::from(t.status.clone())),
        ("author".into(), author(&t.author_id)),
        ("comments".into(), Any::Array(comments.into())),
        ("updated_at_ms".into(), Any::from(t.updated_at as f64)),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn room(name: &str) -> RoomId {
        RoomId::parse(name).expect("a valid room id")
    }

    #[tokio::test]
    async fn one_room_waits_for_its_own_turn_only_and_forgets_finished_rooms() {
        let mirror = CommentMirror::default();
        let first = mirror.turn(&room("a")).await;
        // Another room goes ahead at once.
        let other = tokio::time::timeout(Duration::from_secs(1), mirror.turn(&room("b")))
            .await
            .expect("room b does not wait for room a");
        drop(other);
        // The same room waits until the first turn ends.
        let waiting = tokio::spawn({
            let mirror = mirror.clone();
            async move { mirror.turn(&room("a")).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "room a's second write waits");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("room a's second write runs once the first is done")
            .expect("the task ran");
        assert_eq!(mirror.rooms(), 1, "room b's entry is gone");
        drop(second);
        assert_eq!(mirror.rooms(), 0, "no entry outlives its last write");
    }
}
