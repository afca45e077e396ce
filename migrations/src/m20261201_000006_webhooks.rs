//! Webhooks: endpoints room owners register for room events, and every delivery with its
//! attempts and outcome.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum Webhooks {
    Table,
    Id,
    RoomId,
    Url,
    Secret,
    Events,
    CreatedBy,
    CreatedAt,
}

#[derive(Iden)]
enum WebhookDeliveries {
    Table,
    Id,
    WebhookId,
    RoomId,
    Event,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    LastStatusCode,
    LastError,
    CreatedAt,
    UpdatedAt,
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
                    .table(Webhooks::Table)
                    .col(string_column(Webhooks::Id, 64).primary_key())
                    .col(string_column(Webhooks::RoomId, 255))
                    .col(string_column(Webhooks::Url, 2048))
                    .col(string_column(Webhooks::Secret, 128))
                    .col(ColumnDef::new(Webhooks::Events).text().not_null())
                    .col(string_column(Webhooks::CreatedBy, 64))
                    .col(time_column(Webhooks::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhooks_room_id")
                    .table(Webhooks::Table)
                    .col(Webhooks::RoomId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(
                        ColumnDef::new(WebhookDeliveries::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(string_column(WebhookDeliveries::WebhookId, 64))
                    .col(string_column(WebhookDeliveries::RoomId, 255))
                    .col(string_column(WebhookDeliveries::Event, 48))
                    .col(ColumnDef::new(WebhookDeliveries::Payload).text().not_null())
                    .col(string_column(WebhookDeliveries::Status, 16))
                    .col(
                        ColumnDef::new(WebhookDeliveries::Attempts)
                            .integer()
                            .not_null(),
                    )
                    .col(time_column(WebhookDeliveries::NextAttemptAt))
                    .col(time_column(WebhookDeliveries::LeaseUntil))
                    .col(
                        ColumnDef::new(WebhookDeliveries::LastStatusCode)
                            .integer()
                            .null(),
                    )
                    .col(ColumnDef::new(WebhookDeliveries::LastError).text().null())
                    .col(time_column(WebhookDeliveries::CreatedAt))
                    .col(time_column(WebhookDeliveries::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_webhook_id_id")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::WebhookId)
                    .col(WebhookDeliveries::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_status_next_attempt_at")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::Status)
                    .col(WebhookDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookDeliveries::Table.into_iden(),
            Webhooks::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
