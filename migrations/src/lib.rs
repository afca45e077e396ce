//! Tandem's schema history, applied at start-up by [`Migrator`].
//!
//! Each migration is self-contained (its own identifiers, no reference to the store's
//! entities) and immutable once landed: schema changes are new migrations.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_room_storage;
mod m20261122_000002_accounts_and_access;
mod m20261122_000003_rotated_refresh_tokens;
mod m20261122_000004_ai_conversations;
mod m20261122_000005_collaboration;
mod m20261201_000006_webhooks;
mod m20261204_000007_snapshot_pending;

/// Every migration, oldest first.
pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_room_storage::Migration),
            Box::new(m20261122_000002_accounts_and_access::Migration),
            Box::new(m20261122_000003_rotated_refresh_tokens::Migration),
            Box::new(m20261122_000004_ai_conversations::Migration),
            Box::new(m20261122_000005_collaboration::Migration),
            Box::new(m20261201_000006_webhooks::Migration),
            Box::new(m20261204_000007_snapshot_pending::Migration),
        ]
    }
}
