//! How the store behaves: limits, timings and the durability promise.

use std::time::Duration;

/// When an update counts as safe relative to other clients seeing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// An update is committed to the database before any other client receives it. Updates
    /// from all rooms are group-committed, so one write covers many.
    Durable,
    /// An update is fanned out at once and committed by the next group commit; a crash can
    /// lose the last few milliseconds of edits that other clients already saw (the clients
    /// still hold them and send them again when they reconnect).
    Relaxed,
}

/// Everything the store can be tuned with. Built once by the binary from flags and environment.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// See [`Durability`].
    pub durability: Durability,
    /// Most updates written by one group commit.
    pub max_batch: usize,
    /// Most bytes of update data written by one group commit; an update larger than this is
    /// written alone. Keeps every statement far below the database's message limit
    /// (PostgreSQL's is 1 GiB).
    pub max_batch_bytes: usize,
    /// Capacity of the queue in front of the writer; senders wait when it is full.
    pub persist_queue: usize,
    /// Frames a subscriber may be behind before it is disconnected to resync.
    pub subscriber_queue: usize,
    /// Logged updates after which a room's log is compacted into its snapshot.
    pub compact_after_updates: u64,
    /// A room with no connection for this long is flushed and dropped from memory.
    pub idle_timeout: Duration,
    /// An automatic version is taken this long after the first unversioned edit.
    pub auto_version_interval: Duration,
    /// How often the maintenance pass (eviction, automatic versions) runs.
    pub maintenance_interval: Duration,
    /// Most rooms held in memory at once; joining another is refused.
    pub max_rooms: usize,
    /// Most simultaneous connections to one room.
    pub max_connections_per_room: usize,
    /// What a client's update may hold (nesting depth of values and shared types).
    pub update_limits: protocol::UpdateLimits,
    /// Largest awareness state (its JSON, in bytes) a connection may announce.
    pub max_awareness_state: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Durable,
            max_batch: 512,
            max_batch_bytes: 64 * 1024 * 1024,
            persist_queue: 16 * 1024,
            subscriber_queue: 1024,
            compact_after_updates: 1000,
            idle_timeout: Duration::from_secs(60),
            auto_version_interval: Duration::from_secs(600),
            maintenance_interval: Duration::from_secs(1),
            max_rooms: 10_000,
            max_connections_per_room: 1000,
            update_limits: protocol::UpdateLimits::default(),
            max_awareness_state: 64 * 1024,
        }
    }
}
