//! Every refresh token a session has rotated away from, so presenting any of them again (not
//! only the latest) is recognised as reuse.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum RotatedRefreshTokens {
    Table,
    TokenHash,
    SessionId,
    RotatedAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RotatedRefreshTokens::Table)
                    .col(
                        ColumnDef::new(RotatedRefreshTokens::TokenHash)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RotatedRefreshTokens::SessionId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RotatedRefreshTokens::RotatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RotatedRefreshTokens::Table).to_owned())
            .await
    }
}
