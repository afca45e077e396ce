//! The part of a room's history still waiting for a dependency, kept beside its snapshot.
//!
//! Compaction folds every logged row into the snapshot and keeps the rows holding something
//! yrs holds back (structs and deletions whose dependencies have not been logged yet) in
//! `pending`, verbatim, instead of leaving the log unfolded from the first such row on: a
//! dependency that never arrives then costs the size of what waits for it, not an unbounded
//! log that every compaction reads again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum RoomSnapshots {
    Table,
    Pending,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A nullable blob: `BLOB` on SQLite, `bytea` on PostgreSQL; existing rows have
        // nothing pending.
        manager
            .alter_table(
                Table::alter()
                    .table(RoomSnapshots::Table)
                    .add_column(ColumnDef::new(RoomSnapshots::Pending).blob().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RoomSnapshots::Table)
                    .drop_column(RoomSnapshots::Pending)
                    .to_owned(),
            )
            .await
    }
}
