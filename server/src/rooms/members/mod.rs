//! Participants of a room and their roles: listing, adding by email, changing a role,
//! removing, and moving ownership. A room always keeps at least one owner, and every change
//! is announced on [`AccessEvents`](crate::accounts::AccessEvents) once committed.

pub(crate) mod routes;

use crdt_store::RoomId;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, TransactionTrait,
};
use serde_json::json;

use super::room::room_name;
use crate::accounts::{AccessEvent, Identity, Role};
use crate::app::AppState;
use crate::collab::{NotificationKind, notify};
use crate::entity::{room_member, user};
use crate::http::ApiError;

/// A participant as stored: their membership and display name.
pub(crate) struct Member {
    /// The membership.
    pub row: room_member::Model,
    /// The account's display name.
    pub display_name: String,
}

/// The room's participants, in the order they joined.
pub(crate) async fn members(db: &DatabaseConnection, id: &RoomId) -> Result<Vec<Member>, ApiError> {
    let rows = room_member::Entity::find()
        .filter(room_member::Column::RoomId.eq(id.as_str()))
        .order_by_asc(room_member::Column::CreatedAt)
        .all(db)
        .await?;
    let users = user::Entity::find()
        .filter(user::Column::Id.is_in(rows.iter().map(|m| m.user_id.clone())))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let account = users.iter().find(|u| u.id == row.user_id)?;
            Some(Member {
                display_name: account.display_name.clone(),
                row,
            })
        })
        .collect())
}

/// 409 `last_owner`.
fn last_owner() -> ApiError {
    ApiError::conflict(
        "last_owner",
        "a room always has an owner; transfer ownership first",
    )
}

async fn membership(
    db: &DatabaseConnection,
    id: &RoomId,
    user_id: &str,
) -> Result<room_member::Model, ApiError> {
    room_member::Entity::find_by_id((id.as_str().to_owned(), user_id.to_owned()))
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found("not a participant"))
}

async fn owner_count(db: &DatabaseConnection, id: &RoomId) -> Result<usize, ApiError> {
    Ok(room_member::Entity::find()
        .filter(room_member::Column::RoomId.eq(id.as_str()))
        .filter(room_member::Column::Role.eq(Role::Owner.as_str()))
        .all(db)
        .await?
        .len())
}

fn members_changed(state: &AppState, id: &RoomId) {
    state.events.publish(AccessEvent::MembersChanged {
        room_id: id.as_str().to_owned(),
    });
}

/// Gives participant `user_id` the role `role`; the last owner cannot step down.
pub(crate) async fn set_role(
    state: &AppState,
    id: &RoomId,
    user_id: &str,
    role: Role,
) -> Result<(), ApiError> {
    let current = membership(state.db(), id, user_id).await?;
    if current.role == Role::Owner.as_str()
        && role != Role::Owner
        && owner_count(state.db(), id).await? <= 1
    {
        return Err(last_owner());
    }
    room_member::Entity::update_many()
        .col_expr(room_member::Column::Role, Expr::value(role.as_str()))
        .filter(room_member::Column::RoomId.eq(id.as_str()))
        .filter(room_member::Column::UserId.eq(user_id))
        .exec(state.db())
        .await?;
    members_changed(state, id);
    Ok(())
}

/// Adds the account with `email` as a participant with `role` (not owner), notifying them
/// (`invited`) in the same transaction; answers their account id.
pub(crate) async fn add_member(
    state: &AppState,
    id: &RoomId,
    inviter: &Identity,
    email: &str,
    role: Role,
) -> Result<String, ApiError> {
    let account = user::Entity::find()
        .filter(user::Column::Email.eq(email.trim().to_lowercase()))
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found("no account has that email"))?;
    if room_member::Entity::find_by_id((id.as_str().to_owned(), account.id.clone()))
        .one(state.db())
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(
            "already_participant",
            "that account already takes part in this room",
        ));
    }
    let room_name = room_name(state.db(), id).await?;
    let txn = state.db().begin().await?;
    room_member::ActiveModel {
        room_id: Set(id.as_str().to_owned()),
        user_id: Set(account.id.clone()),
        role: Set(role.as_str().to_owned()),
        created_at: Set(state.auth.now()),
    }
    .insert(&txn)
    .await?;
    notify(
        &txn,
        &account.id,
        NotificationKind::Invited,
        Some(id.as_str()),
        Some(inviter),
        json!({"room_name": room_name, "role": role.as_str()}),
        state.now(),
    )
    .await?;
    txn.commit().await?;
    members_changed(state, id);
    Ok(account.id)
}

/// Removes participant `user_id`; the last owner cannot leave.
pub(crate) async fn remove_member(
    state: &AppState,
    id: &RoomId,
    user_id: &str,
) -> Result<(), ApiError> {
    let current = membership(state.db(), id, user_id).await?;
    if current.role == Role::Owner.as_str() && owner_count(state.db(), id).await? <= 1 {
        return Err(last_owner());
    }
    room_member::Entity::delete_by_id((id.as_str().to_owned(), user_id.to_owned()))
        .exec(state.db())
        .await?;
    members_changed(state, id);
    Ok(())
}

/// Makes participant `to` an owner and owner `from` an editor, in one transaction.
pub(crate) async fn transfer_ownership(
    state: &AppState,
    id: &RoomId,
    from: &str,
    to: &str,
) -> Result<(), ApiError> {
    let txn = state.db().begin().await?;
    let promoted = room_member::Entity::update_many()
        .col_expr(room_member::Column::Role, Expr::value(Role::Owner.as_str()))
        .filter(room_member::Column::RoomId.eq(id.as_str()))
        .filter(room_member::Column::UserId.eq(to))
        .exec(&txn)
        .await?;
    if promoted.rows_affected == 0 {
        return Err(ApiError::not_found("the new owner must be a participant"));
    }
    room_member::Entity::update_many()
        .col_expr(
            room_member::Column::Role,
            Expr::value(Role::Editor.as_str()),
        )
        .filter(room_member::Column::RoomId.eq(id.as_str()))
        .filter(room_member::Column::UserId.eq(from))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    members_changed(state, id);
    Ok(())
}
