//! Collaboration: comment threads anchored in documents, per-user notifications, and each
//! room's activity feed.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum CommentThreads {
    Table,
    Id,
    RoomId,
    File,
    AnchorStart,
    AnchorEnd,
    Quote,
    Status,
    AuthorId,
    ResolvedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum Comments {
    Table,
    Id,
    ThreadId,
    RoomId,
    AuthorId,
    Body,
    Mentions,
    CreatedAt,
    EditedAt,
}

#[derive(Iden)]
enum Notifications {
    Table,
    Id,
    UserId,
    Kind,
    RoomId,
    ActorId,
    ActorName,
    Data,
    ReadAt,
    CreatedAt,
}

#[derive(Iden)]
enum Activity {
    Table,
    Id,
    RoomId,
    Kind,
    ActorId,
    ActorName,
    Data,
    CreatedAt,
}

fn id_column<T: Iden + 'static>(column: T) -> ColumnDef {
    ColumnDef::new(column)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

fn string_column<T: Iden + 'static>(column: T, length: u32) -> ColumnDef {
    ColumnDef::new(column)
        .string_len(length)
        .not_null()
        .to_owned()
}

fn time_column<T: Iden + 'static>(column: T) -> ColumnDef {
    ColumnDef::new(column).big_integer().not_null().to_owned()
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CommentThreads::Table)
                    .col(string_column(CommentThreads::Id, 64).primary_key())
                    .col(string_column(CommentThreads::RoomId, 255))
                    .col(string_column(CommentThreads::File, 1024))
                    .col(
                        ColumnDef::new(CommentThreads::AnchorStart)
                            .binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CommentThreads::AnchorEnd)
                            .binary()
                            .not_null(),
                    )
                    .col(ColumnDef::new(CommentThreads::Quote).text().not_null())
                    .col(string_column(CommentThreads::Status, 16))
                    .col(string_column(CommentThreads::AuthorId, 64))
                    .col(
                        ColumnDef::new(CommentThreads::ResolvedBy)
                            .string_len(64)
                            .null(),
                    )
                    .col(time_column(CommentThreads::CreatedAt))
                    .col(time_column(CommentThreads::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_comment_threads_room_id")
                    .table(CommentThreads::Table)
                    .col(CommentThreads::RoomId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Comments::Table)
                    .col(string_column(Comments::Id, 64).primary_key())
                    .col(string_column(Comments::ThreadId, 64))
                    .col(string_column(Comments::RoomId, 255))
                    .col(string_column(Comments::AuthorId, 64))
                    .col(ColumnDef::new(Comments::Body).text().not_null())
                    .col(ColumnDef::new(Comments::Mentions).text().not_null())
                    .col(time_column(Comments::CreatedAt))
                    .col(ColumnDef::new(Comments::EditedAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_comments_thread_id")
                    .table(Comments::Table)
                    .col(Comments::ThreadId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_comments_room_id")
                    .table(Comments::Table)
                    .col(Comments::RoomId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(id_column(Notifications::Id))
                    .col(string_column(Notifications::UserId, 64))
                    .col(string_column(Notifications::Kind, 32))
                    .col(ColumnDef::new(Notifications::RoomId).string_len(255).null())
                    .col(ColumnDef::new(Notifications::ActorId).string_len(64).null())
                    .col(
                        ColumnDef::new(Notifications::ActorName)
                            .string_len(200)
                            .null(),
                    )
                    .col(ColumnDef::new(Notifications::Data).text().not_null())
                    .col(ColumnDef::new(Notifications::ReadAt).big_integer().null())
                    .col(time_column(Notifications::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_notifications_user_id_id")
                    .table(Notifications::Table)
                    .col(Notifications::UserId)
                    .col(Notifications::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Activity::Table)
                    .col(id_column(Activity::Id))
                    .col(string_column(Activity::RoomId, 255))
                    .col(string_column(Activity::Kind, 48))
                    .col(ColumnDef::new(Activity::ActorId).string_len(64).null())
                    .col(ColumnDef::new(Activity::ActorName).string_len(200).null())
                    .col(ColumnDef::new(Activity::Data).text().not_null())
                    .col(time_column(Activity::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_activity_room_id_id")
                    .table(Activity::Table)
                    .col(Activity::RoomId)
                    .col(Activity::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Activity::Table.into_iden(),
            Notifications::Table.into_iden(),
            Comments::Table.into_iden(),
            CommentThreads::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
