//! Accounts, sessions, rooms, memberships, invites, share links and API keys.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum Users {
    Table,
    Id,
    Email,
    DisplayName,
    PasswordHash,
    CreatedAt,
    PasswordChangedAt,
}

#[derive(Iden)]
enum Sessions {
    Table,
    Id,
    UserId,
    RefreshHash,
    PreviousRefreshHash,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(Iden)]
enum LoginThrottle {
    Table,
    Email,
    Failures,
    FirstFailureAt,
    LockedUntil,
}

#[derive(Iden)]
enum Rooms {
    Table,
    Id,
    Name,
    CreatedBy,
    CreatedAt,
}

#[derive(Iden)]
enum RoomMembers {
    Table,
    RoomId,
    UserId,
    Role,
    CreatedAt,
}

#[derive(Iden)]
enum Invites {
    Table,
    Id,
    RoomId,
    TokenHash,
    Role,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    MaxUses,
    Uses,
    RevokedAt,
}

#[derive(Iden)]
enum ShareLinks {
    Table,
    Id,
    RoomId,
    TokenHash,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(Iden)]
enum ApiKeys {
    Table,
    Id,
    UserId,
    Name,
    KeyHash,
    Prefix,
    Role,
    Rooms,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(Iden)]
enum ServerSettings {
    Table,
    Key,
    Value,
}

fn id(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .string_len(64)
        .not_null()
        .primary_key()
        .to_owned()
}

fn text(column: impl IntoIden, len: u32) -> ColumnDef {
    ColumnDef::new(column).string_len(len).not_null().to_owned()
}

fn millis(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).big_integer().not_null().to_owned()
}

fn optional_millis(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).big_integer().null().to_owned()
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(id(Users::Id))
                    .col(text(Users::Email, 320).unique_key().to_owned())
                    .col(text(Users::DisplayName, 100))
                    .col(text(Users::PasswordHash, 200))
                    .col(millis(Users::CreatedAt))
                    .col(millis(Users::PasswordChangedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(id(Sessions::Id))
                    .col(text(Sessions::UserId, 64))
                    .col(text(Sessions::RefreshHash, 64).unique_key().to_owned())
                    .col(
                        ColumnDef::new(Sessions::PreviousRefreshHash)
                            .string_len(64)
                            .null(),
                    )
                    .col(millis(Sessions::CreatedAt))
                    .col(millis(Sessions::ExpiresAt))
                    .col(optional_millis(Sessions::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_user_id")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_previous_refresh_hash")
                    .table(Sessions::Table)
                    .col(Sessions::PreviousRefreshHash)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoginThrottle::Table)
                    .col(
                        ColumnDef::new(LoginThrottle::Email)
                            .string_len(320)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(LoginThrottle::Failures).integer().not_null())
                    .col(millis(LoginThrottle::FirstFailureAt))
                    .col(optional_millis(LoginThrottle::LockedUntil))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Rooms::Table)
                    .col(
                        ColumnDef::new(Rooms::Id)
                            .string_len(255)
                            .not_null()
                            .primary_key(),
                    )
                    .col(text(Rooms::Name, 200))
                    .col(text(Rooms::CreatedBy, 64))
                    .col(millis(Rooms::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoomMembers::Table)
                    .col(text(RoomMembers::RoomId, 255))
                    .col(text(RoomMembers::UserId, 64))
                    .col(text(RoomMembers::Role, 16))
                    .col(millis(RoomMembers::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(RoomMembers::RoomId)
                            .col(RoomMembers::UserId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_room_members_user_id")
                    .table(RoomMembers::Table)
                    .col(RoomMembers::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Invites::Table)
                    .col(id(Invites::Id))
                    .col(text(Invites::RoomId, 255))
                    .col(text(Invites::TokenHash, 64).unique_key().to_owned())
                    .col(text(Invites::Role, 16))
                    .col(text(Invites::CreatedBy, 64))
                    .col(millis(Invites::CreatedAt))
                    .col(optional_millis(Invites::ExpiresAt))
                    .col(ColumnDef::new(Invites::MaxUses).integer().null())
                    .col(ColumnDef::new(Invites::Uses).integer().not_null())
                    .col(optional_millis(Invites::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_invites_room_id")
                    .table(Invites::Table)
                    .col(Invites::RoomId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ShareLinks::Table)
                    .col(id(ShareLinks::Id))
                    .col(text(ShareLinks::RoomId, 255))
                    .col(text(ShareLinks::TokenHash, 64).unique_key().to_owned())
                    .col(text(ShareLinks::CreatedBy, 64))
                    .col(millis(ShareLinks::CreatedAt))
                    .col(optional_millis(ShareLinks::ExpiresAt))
                    .col(optional_millis(ShareLinks::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_share_links_room_id")
                    .table(ShareLinks::Table)
                    .col(ShareLinks::RoomId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(id(ApiKeys::Id))
                    .col(text(ApiKeys::UserId, 64))
                    .col(text(ApiKeys::Name, 100))
                    .col(text(ApiKeys::KeyHash, 64).unique_key().to_owned())
                    .col(text(ApiKeys::Prefix, 16))
                    .col(text(ApiKeys::Role, 16))
                    .col(ColumnDef::new(ApiKeys::Rooms).text().not_null())
                    .col(millis(ApiKeys::CreatedAt))
                    .col(optional_millis(ApiKeys::LastUsedAt))
                    .col(optional_millis(ApiKeys::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_keys_user_id")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ServerSettings::Table)
                    .col(
                        ColumnDef::new(ServerSettings::Key)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ServerSettings::Value).text().not_null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ServerSettings::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            ShareLinks::Table.into_iden(),
            Invites::Table.into_iden(),
            RoomMembers::Table.into_iden(),
            Rooms::Table.into_iden(),
            LoginThrottle::Table.into_iden(),
            Sessions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
