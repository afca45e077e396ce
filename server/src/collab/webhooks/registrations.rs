//! The webhooks owners register on a room, and what was delivered to each: the database work
//! of [`routes`](super::routes).

use crdt_store::RoomId;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};

use crate::accounts::{random_id, random_token};
use crate::entity::{webhook, webhook_delivery};
use crate::http::ApiError;

/// Most webhooks one room may have.
const MAX_WEBHOOKS_PER_ROOM: u64 = 20;
/// Prefix of webhook signing secrets.
const SECRET_PREFIX: &str = "whsec_";

/// Registers a webhook of room `id` POSTing `events` to `url`, with a new signing secret,
/// created at `at_ms`; 409 `too_many_webhooks` past the room's limit.
pub(super) async fn create(
    db: &DatabaseConnection,
    id: &RoomId,
    url: &str,
    events: &[String],
    created_by: &str,
    at_ms: i64,
) -> Result<webhook::Model, ApiError> {
    // Counted outside a transaction: on SQLite a transaction that reads before it writes can
    // fail to upgrade when another writer commits meanwhile. Two registrations racing past
    // the limit together can exceed it by one; it bounds work, it is not a security limit.
    let existing = webhook::Entity::find()
        .filter(webhook::Column::RoomId.eq(id.as_str()))
        .count(db)
        .await?;
    if existing >= MAX_WEBHOOKS_PER_ROOM {
        return Err(ApiError::conflict(
            "too_many_webhooks",
            format!("a room has at most {MAX_WEBHOOKS_PER_ROOM} webhooks"),
        ));
    }
    Ok(webhook::ActiveModel {
        id: Set(random_id()),
        room_id: Set(id.as_str().to_owned()),
        url: Set(url.to_owned()),
        secret: Set(random_token(SECRET_PREFIX)),
        events: Set(serde_json::to_string(events).unwrap_or_else(|_| "[]".into())),
        created_by: Set(created_by.to_owned()),
        created_at: Set(at_ms),
    }
    .insert(db)
    .await?)
}

/// The room's webhooks, oldest first.
pub(super) async fn list(
    db: &DatabaseConnection,
    id: &RoomId,
) -> Result<Vec<webhook::Model>, ApiError> {
    Ok(webhook::Entity::find()
        .filter(webhook::Column::RoomId.eq(id.as_str()))
        .order_by_asc(webhook::Column::CreatedAt)
        .all(db)
        .await?)
}

/// Webhook `hook` of the room; 404 when it has none such.
async fn find(
    db: &DatabaseConnection,
    id: &RoomId,
    hook: &str,
) -> Result<webhook::Model, ApiError> {
    webhook::Entity::find_by_id(hook)
        .filter(webhook::Column::RoomId.eq(id.as_str()))
        .one(db)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("room {:?} has no webhook {hook:?}", id.as_str()))
        })
}

/// Removes webhook `hook` of the room with its delivery history, in one transaction.
pub(super) async fn delete(
    db: &DatabaseConnection,
    id: &RoomId,
    hook: &str,
) -> Result<(), ApiError> {
    find(db, id, hook).await?;
    let txn = db.begin().await?;
    webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::WebhookId.eq(hook))
        .exec(&txn)
        .await?;
    webhook::Entity::delete_by_id(hook).exec(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// At most `limit` deliveries of webhook `hook` of the room, newest first, older than
/// `before`; and the id to page on from, when older ones remain.
pub(super) async fn deliveries(
    db: &DatabaseConnection,
    id: &RoomId,
    hook: &str,
    limit: u64,
    before: Option<i64>,
) -> Result<(Vec<webhook_delivery::Model>, Option<i64>), ApiError> {
    find(db, id, hook).await?;
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 200"));
    }
    let mut select = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::WebhookId.eq(hook))
        .order_by_desc(webhook_delivery::Column::Id)
        .limit(limit + 1);
    if let Some(before) = before {
        select = select.filter(webhook_delivery::Column::Id.lt(before));
    }
    let mut rows = select.all(db).await?;
    let next_before = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok((rows, next_before))
}
