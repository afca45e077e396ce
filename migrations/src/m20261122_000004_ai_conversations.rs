//! The AI assistant's conversations per room, with every message and its token usage.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum AiConversations {
    Table,
    Id,
    RoomId,
    UserId,
    Title,
    CreatedAt,
}

#[derive(Iden)]
enum AiMessages {
    Table,
    Id,
    ConversationId,
    UserId,
    Role,
    Action,
    Content,
    PromptTokens,
    CompletionTokens,
    SuggestionIds,
    CreatedAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AiConversations::Table)
                    .col(
                        ColumnDef::new(AiConversations::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AiConversations::RoomId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AiConversations::UserId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AiConversations::Title)
                            .string_len(200)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AiConversations::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_ai_conversations_room_id")
                    .table(AiConversations::Table)
                    .col(AiConversations::RoomId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AiMessages::Table)
                    .col(
                        ColumnDef::new(AiMessages::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AiMessages::ConversationId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AiMessages::UserId).string_len(64).not_null())
                    .col(ColumnDef::new(AiMessages::Role).string_len(16).not_null())
                    .col(ColumnDef::new(AiMessages::Action).string_len(32).not_null())
                    .col(ColumnDef::new(AiMessages::Content).text().not_null())
                    .col(
                        ColumnDef::new(AiMessages::PromptTokens)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AiMessages::CompletionTokens)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AiMessages::SuggestionIds).text().not_null())
                    .col(
                        ColumnDef::new(AiMessages::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_ai_messages_conversation_id")
                    .table(AiMessages::Table)
                    .col(AiMessages::ConversationId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_ai_messages_user_id_created_at")
                    .table(AiMessages::Table)
                    .col(AiMessages::UserId)
                    .col(AiMessages::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AiMessages::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AiConversations::Table).to_owned())
            .await
    }
}
