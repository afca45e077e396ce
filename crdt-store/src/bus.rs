//! The cluster bus seen from the store: how rooms on several nodes stay in step.
//!
//! The store does not know what carries the messages (the server implements [`RoomBus`] on
//! Redis). It calls the bus at three points: when a room loads (to subscribe and catch up
//! with peers), when a local client's update or awareness change is ready to fan out (to
//! publish it), and when a room leaves memory. The bus, in turn, hands peers' messages to
//! [`crate::Room::apply_remote_update`] and [`crate::Room::apply_remote_awareness`].

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use yrs::{ReadTxn, Transact};

use crate::ids::RoomId;
use crate::room::{Replicas, Room};

/// A boxed future the bus returns from [`RoomBus::join`].
pub type BusFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Connects rooms to their replicas on other nodes.
pub trait RoomBus: Send + Sync + 'static {
    /// A room is loading: subscribe to its traffic, then return the updates peers hold that
    /// `state_vector` (v1) lacks, plus any heard meanwhile. Never fails: a bus that is down
    /// returns nothing and the room is served from storage alone.
    fn join(&self, room: &RoomId, state_vector: Vec<u8>) -> BusFuture<'_, Vec<Vec<u8>>>;

    /// The room finished loading and is about to be served: route peers' messages to it
    /// from now on (including any heard while it loaded).
    fn attach(&self, room: &Room);

    /// The room left memory; stop listening to it.
    fn leave(&self, room: &RoomId);

    /// A local client's update, ready to fan out (after its commit in durable mode).
    fn publish_update(&self, room: &RoomId, update: Bytes);

    /// A local client's awareness change (a v1-encoded awareness update).
    fn publish_awareness(&self, room: &RoomId, update: Bytes);
}

/// A bus as rooms see it: only where they publish (rooms never join, attach or leave).
pub(crate) struct BusReplicas(pub(crate) Arc<dyn RoomBus>);

impl Replicas for BusReplicas {
    fn publish_update(&self, room: &RoomId, update: Bytes) {
        self.0.publish_update(room, update);
    }

    fn publish_awareness(&self, room: &RoomId, update: Bytes) {
        self.0.publish_awareness(room, update);
    }
}

/// A digest of what a document contains (its state vector and delete set), equal on two
/// replicas exactly when neither has something the other lacks. Deletions do not show in a
/// state vector, so comparing state vectors alone would miss them.
pub fn document_digest(room: &Room) -> u64 {
    let txn = room.doc().transact();
    let snapshot = txn.snapshot();
    let mut clocks: Vec<(u64, u32)> = snapshot
        .state_map
        .iter()
        .map(|(client, clock)| (client.get(), *clock))
        .collect();
    clocks.sort_unstable();
    // `DefaultHasher::new()` uses fixed keys, so every node computes the same digest.
    let mut hasher = std::hash::DefaultHasher::new();
    clocks.hash(&mut hasher);
    for (client, ranges) in snapshot.delete_set.iter() {
        client.get().hash(&mut hasher);
        for range in ranges.iter() {
            (range.start, range.end).hash(&mut hasher);
        }
    }
    hasher.finish()
}
