//! sea-orm entities for the tables created by the `migrations` crate.

pub mod room_snapshot;
pub mod room_update;
pub mod room_version;
