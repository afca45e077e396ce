//! Room storage: the append-only update log, the compacted snapshot, and versions.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum RoomUpdates {
    Table,
    Id,
    RoomId,
    Data,
    CreatedAt,
}

#[derive(Iden)]
enum RoomSnapshots {
    Table,
    RoomId,
    Data,
    LastUpdateId,
    UpdatedAt,
}

#[derive(Iden)]
enum RoomVersions {
    Table,
    Id,
    RoomId,
    Kind,
    Label,
    Data,
    CreatedAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RoomUpdates::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RoomUpdates::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RoomUpdates::RoomId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(RoomUpdates::Data).blob().not_null())
                    .col(
                        ColumnDef::new(RoomUpdates::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_room_updates_room_id_id")
                    .table(RoomUpdates::Table)
                    .col(RoomUpdates::RoomId)
                    .col(RoomUpdates::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoomSnapshots::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RoomSnapshots::RoomId)
                            .string_len(255)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RoomSnapshots::Data).blob().not_null())
                    .col(
                        ColumnDef::new(RoomSnapshots::LastUpdateId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RoomSnapshots::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoomVersions::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RoomVersions::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RoomVersions::RoomId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(RoomVersions::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(RoomVersions::Label).string_len(200).null())
                    .col(ColumnDef::new(RoomVersions::Data).blob().not_null())
                    .col(
                        ColumnDef::new(RoomVersions::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_room_versions_room_id_id")
                    .table(RoomVersions::Table)
                    .col(RoomVersions::RoomId)
                    .col(RoomVersions::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RoomVersions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RoomSnapshots::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RoomUpdates::Table).to_owned())
            .await
    }
}
