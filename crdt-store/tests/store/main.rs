//! Integration tests of the room store against a real SQLite database, through the public
//! API only. One binary (each test still gets a database of its own, see `support::TestDb`).
//!
//! - `persistence`: what is committed survives a restart; the durability modes' ordering.
//! - `compaction`: the log folds into the snapshot without losing or resurrecting anything.
//! - `rooms`: loading once, refusing corrupt data and malformed updates, lagging subscribers,
//!   awareness clean-up, idle eviction.
//! - `versions`: named, automatic and restore versions.
//! - `findings`: every input the fuzzers crashed on, replayed through what it broke.
//! - `writes`: each connection writes only where its grant allows.
//! - `lifetime`: storage that cannot stall (compaction past a missing dependency, byte-capped
//!   group commits, a refused update isolated) and deletion nothing racing it survives.

mod compaction;
mod findings;
mod lifetime;
mod persistence;
mod rooms;
mod support;
mod versions;
mod writes;
