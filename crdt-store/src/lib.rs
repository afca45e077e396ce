//! Rooms: documents in memory, their fan-out, and their persistence.
//!
//! # Layout
//! - [`registry`]: every room of this process, each loaded exactly once; what follows a
//!   commit (fan-out, answers, compaction); idle eviction, automatic versions, shutdown.
//! - [`room`]: one room's `yrs` document and awareness, applying updates, fan-out to
//!   subscribers ([`RoomConnection`]), versions and restore.
//! - `persist`: the group-commit writer between rooms and the database; it reports each
//!   update's outcome to the registry and knows rooms only by id.
//! - [`storage`]: the update log, snapshot compaction and versions in SQL (sea-orm), on a
//!   connection the binary opened and migrated.
//! - [`guard`]: client updates validated (bounded counts and nesting) before `yrs` applies
//!   them.
//! - [`document`]: new documents configured the Tandem way; reading them by Tandem's file
//!   convention; JSON; minimal-diff restore; measuring a document's nesting without recursion.
//! - [`files`]: file paths and the file operations of multi-file rooms.
//! - [`events`]: what happened to rooms (commits, versions), for feeds and webhooks.
//! - [`bus`]: the interface to replicas on other nodes (implemented by the server on Redis).
//!
//! This crate knows nothing of HTTP, WebSocket framing or JSON DTOs: the server maps its
//! errors and types onto the wire.

pub mod bus;
pub mod config;
pub mod document;
mod entity;
pub mod events;
pub mod files;
pub mod guard;
pub mod ids;
pub mod metrics;
mod persist;
pub mod registry;
pub mod room;
pub mod storage;
pub mod version;
pub mod writes;

pub use bus::{RoomBus, document_digest};
pub use config::{Durability, StoreConfig};
pub use document::{doc_options, new_doc};
pub use events::StoreEvent;
pub use guard::ApplyError;
pub use ids::{ConnectionId, InvalidRoomId, RoomId};
pub use registry::{JoinError, RoomDeletion, RoomRegistry};
pub use room::{
    AwarenessRefused, AwarenessStamp, Delivery, JoinRefused, Outbound, RestoreError, Room,
    RoomConnection, RoomLease,
};
pub use storage::{Storage, StorageError};
pub use version::{VersionInfo, VersionKind};
