//! Rooms themselves: creating one (empty, forked or imported) with its first owner, listing
//! a user's, renaming, and deleting one with every row that names it.

pub(crate) mod routes;

use std::time::Duration;

use crdt_store::RoomId;
use crdt_store::storage::LogEntry;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use crate::accounts::{AccessEvent, Role, random_id};
use crate::app::AppState;
use crate::entity::{
    activity, ai_conversation, ai_message, comment, comment_thread, invite, notification, room,
    room_member, share_link, webhook, webhook_delivery,
};
use crate::http::ApiError;

/// The id of a new room: the one asked for (400 `invalid_room` if it is none), or a random
/// one.
pub(crate) fn new_room_id(requested: Option<&str>) -> Result<RoomId, ApiError> {
    match requested {
        Some(id) => Ok(RoomId::parse(id)?),
        None => Ok(RoomId::parse(&random_id()).expect("random ids are valid room ids")),
    }
}

/// Creates a room row and its owner membership in one transaction.
pub(crate) async fn insert_room(
    state: &AppState,
    id: &RoomId,
    name: &str,
    owner: &str,
) -> Result<room::Model, ApiError> {
    // A deletion of a room under this id may still be finishing: what it leaves behind as
    // it ends (its sockets' "left" events) must not land in the new room.
    state.registry.wait_for_deletion(id).await;
    let now = state.auth.now();
    // Write first: on SQLite a transaction that reads before writing can fail to upgrade
    // when another writer committed meanwhile; a first write just waits for the lock.
    let txn = state.db().begin().await?;
    // Anything a write that lost its race with a deletion of an earlier room under this id
    // left behind (a comment, an AI conversation, an event) goes before the room exists.
    // A room row here means the id is taken: nothing is deleted, as the insert then fails.
    // (A no-op update of that row is the first write, and tells whether it is there.)
    let taken = room::Entity::update_many()
        .col_expr(room::Column::Name, Expr::col(room::Column::Name))
        .filter(room::Column::Id.eq(id.as_str()))
        .exec(&txn)
        .await?
        .rows_affected
        > 0;
    if !taken {
        delete_room_rows_in(&txn, id).await?;
    }
    let model = room::ActiveModel {
        id: Set(id.as_str().to_owned()),
        name: Set(name.trim().to_owned()),
        created_by: Set(owner.to_owned()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| match e.sql_err() {
        // Two creators raced for the same id; the other one won.
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
            ApiError::conflict("room_exists", format!("room {id} exists"))
        }
        _ => e.into(),
    })?;
    room_member::ActiveModel {
        room_id: Set(id.as_str().to_owned()),
        user_id: Set(owner.to_owned()),
        role: Set(Role::Owner.as_str().to_owned()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(model)
}

/// Creates a room owned by `owner` whose document starts as `content` (one Yjs v1 update),
/// for forks and imports.
pub(crate) async fn create_room_with_content(
    state: &AppState,
    id: &RoomId,
    name: &str,
    owner: &str,
    content: &[u8],
) -> Result<room::Model, ApiError> {
    let model = insert_room(state, id, name, owner).await?;
    state
        .registry
        .storage()
        .append(&[LogEntry {
            room: id,
            update: content,
        }])
        .await?;
    Ok(model)
}

/// The rooms `user_id` takes part in, oldest first, with their role in each.
pub(crate) async fn rooms_of(
    db: &DatabaseConnection,
    user_id: &str,
) -> Result<Vec<(room::Model, Role)>, ApiError> {
    let memberships = room_member::Entity::find()
        .filter(room_member::Column::UserId.eq(user_id))
        .all(db)
        .await?;
    let ids: Vec<String> = memberships.iter().map(|m| m.room_id.clone()).collect();
    let rooms = room::Entity::find()
        .filter(room::Column::Id.is_in(ids))
        .order_by_asc(room::Column::CreatedAt)
        .all(db)
        .await?;
    Ok(rooms
        .into_iter()
        .filter_map(|r| {
            let role = memberships
                .iter()
                .find(|m| m.room_id == r.id)
                .and_then(|m| Role::parse(&m.role))?;
            Some((r, role))
        })
        .collect())
}

/// The room's row; `missing` is the 404's message when there is none.
pub(crate) async fn find_room(
    db: &DatabaseConnection,
    id: &RoomId,
    missing: &str,
) -> Result<room::Model, ApiError> {
    room::Entity::find_by_id(id.as_str())
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found(missing))
}

/// The room's display name (empty if it has no row).
pub(crate) async fn room_name(db: &DatabaseConnection, id: &RoomId) -> Result<String, ApiError> {
    Ok(room::Entity::find_by_id(id.as_str())
        .one(db)
        .await?
        .map(|r| r.name)
        .unwrap_or_default())
}

/// Renames the room; answers its row as it is now.
pub(crate) async fn rename_room(
    db: &DatabaseConnection,
    id: &RoomId,
    name: &str,
) -> Result<room::Model, ApiError> {
    room::Entity::update_many()
        .col_expr(room::Column::Name, Expr::value(name.trim()))
        .filter(room::Column::Id.eq(id.as_str()))
        .exec(db)
        .await?;
    find_room(db, id, "no such room").await
}

/// How long a deletion waits for the room's sockets to close after telling them (4404).
const SOCKETS_CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// Deletes room `id` with everything of it (see `routes::delete_room`).
pub(crate) async fn delete_room(state: &AppState, id: &RoomId) -> Result<(), ApiError> {
    let deletion = state.registry.begin_delete(id).await;
    let txn = state.db().begin().await?;
    delete_room_rows_in(&txn, id).await?;
    txn.commit().await?;
    // Sockets re-check their access on this event, find no room and close with 4404.
    state.events.publish(AccessEvent::RoomDeleted {
        room_id: id.as_str().to_owned(),
    });
    // Their "left" events are handled (and dropped for want of a room) before the id is
    // released: a room created again under it waits for that (see `insert_room`). A socket
    // slower to close than this wait leaves a "left" event that may land in that room.
    let deadline = tokio::time::Instant::now() + SOCKETS_CLOSE_WITHIN;
    while state.presence.connections(id.as_str()) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    state.activity.sync().await;
    deletion.finish();
    Ok(())
}

/// Deletes every row of room `id` (the room's own row first) through `txn`.
async fn delete_room_rows_in(txn: &DatabaseTransaction, id: &RoomId) -> Result<(), ApiError> {
    let room_id = id.as_str();
    // Write first (see `insert_room`): the room row goes before anything is read.
    room::Entity::delete_by_id(room_id).exec(txn).await?;
    let conversations = ai_conversation::Entity::find()
        .select_only()
        .column(ai_conversation::Column::Id)
        .filter(ai_conversation::Column::RoomId.eq(room_id))
        .into_tuple::<String>()
        .all(txn)
        .await?;
    for chunk in conversations.chunks(500) {
        ai_message::Entity::delete_many()
            .filter(ai_message::Column::ConversationId.is_in(chunk.iter().cloned()))
            .exec(txn)
            .await?;
    }
    ai_conversation::Entity::delete_many()
        .filter(ai_conversation::Column::RoomId.eq(room_id))
        .exec(txn)
        .await?;
    room_member::Entity::delete_many()
        .filter(room_member::Column::RoomId.eq(room_id))
        .exec(txn)
        .await?;
    invite::Entity::delete_many()
        .filter(invite::Column::RoomId.eq(room_id))
        .exec(txn)
        .await?;
    share_link::Entity::delete_many()
        .filter(share_link::Column::RoomId.eq(room_id))
        .exec(txn)
        .await?;
    activity::Entity::delete_many()
        .filter(activity::Column::RoomId.eq(room_id))
        .exec(txn)
        .await?;
    comment::Entity::delete_many()
        .filter(comment::Column::RoomId.eq(room_id))
        .exec(txn)
        .await?;
    comment_thread::Entity::delete_many()
        .filter(comment_thread::Column::RoomId.eq(room_id))
        .exec(txn)
        .await?;
    notification::Entity::delete_many()
        .filter(notification::Column::RoomId.eq(room_id))
        .exec(txn)
        .await?;
    webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::RoomId.eq(room_id))
        .exec(txn)
        .await?;
    webhook::Entity::delete_many()
        .filter(webhook::Column::RoomId.eq(room_id))
        .exec(txn)
        .await?;
    crdt_store::Storage::delete_room_in(txn, id).await?;
    Ok(())
}
