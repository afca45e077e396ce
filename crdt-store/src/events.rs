//! What happened to rooms, for whoever listens (activity feeds, webhooks).
//!
//! The store announces events on a broadcast channel ([`crate::RoomRegistry::subscribe`]);
//! with nobody listening, announcing costs nothing. A listener that falls more than the
//! channel's capacity behind misses events (and learns it from the channel): these are
//! notifications about the data, never the data itself.

use crate::ids::RoomId;
use crate::version::VersionInfo;

/// Events the store announces.
#[derive(Clone, Debug)]
pub enum StoreEvent {
    /// Updates to the room's document were committed (once per group commit that held any).
    DocumentChanged {
        /// The room.
        room: RoomId,
        /// How many updates that commit held for the room.
        updates: u64,
    },
    /// A version of the room was stored (automatic, named or restore).
    VersionCreated {
        /// The room.
        room: RoomId,
        /// The new version.
        version: VersionInfo,
    },
}

/// Capacity of the event channel.
pub(crate) const EVENT_CAPACITY: usize = 4096;
