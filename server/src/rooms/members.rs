//! `/api/rooms/{room}/members` and `/transfer`: participants, their roles, and ownership.

use actix_web::{HttpResponse, web};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::accounts::access::AccessEvent;
use crate::accounts::auth::{Principal, Role};
use crate::app::AppState;
use crate::collab::notifications::{NotificationKind, notify};
use crate::entity::{room, room_member, user};
use crate::http::caller::{Caller, SessionUser, existing_room_id, require_role};
use crate::http::error::ApiError;

/// A participant.
#[derive(Serialize, ToSchema)]
pub struct MemberView {
    /// Account id.
    pub user_id: String,
    /// Name shown to others.
    pub display_name: String,
    /// Role in the room.
    pub role: Role,
    /// Connected right now.
    pub online: bool,
}

pub(super) async fn members(state: &AppState, room_id: &str) -> Result<Vec<MemberView>, ApiError> {
    let rows = room_member::Entity::find()
        .filter(room_member::Column::RoomId.eq(room_id))
        .order_by_asc(room_member::Column::CreatedAt)
        .all(state.db())
        .await?;
    let users = user::Entity::find()
        .filter(user::Column::Id.is_in(rows.iter().map(|m| m.user_id.clone())))
        .all(state.db())
        .await?;
    let online = state.presence.online(room_id);
    Ok(rows
        .into_iter()
        .filter_map(|m| {
            let account = users.iter().find(|u| u.id == m.user_id)?;
            Some(MemberView {
                online: online
                    .iter()
                    .any(|(who, _)| who.user_id.as_deref() == Some(m.user_id.as_str())),
                display_name: account.display_name.clone(),
                role: Role::parse(&m.role)?,
                user_id: m.user_id,
            })
        })
        .collect())
}

/// Participants of a room.
#[utoipa::path(get, path = "/api/rooms/{room}/members", tag = "rooms", responses((status = 200, body = [MemberView]), (status = 403), (status = 404)))]
pub async fn list_members(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(
        &state,
        &caller.0,
        &existing_room_id(&room_id)?,
        Role::Viewer,
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "members": members(&state, &room_id).await? })))
}

/// `PUT /api/rooms/{room}/members/{user}` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoleRequest {
    role: Role,
}

async fn owner_count(state: &AppState, room_id: &str) -> Result<usize, ApiError> {
    Ok(room_member::Entity::find()
        .filter(room_member::Column::RoomId.eq(room_id))
        .filter(room_member::Column::Role.eq(Role::Owner.as_str()))
        .all(state.db())
        .await?
        .len())
}

/// Changes a participant's role (owners). Takes effect on their open sockets at once. The
/// last owner cannot step down; transfer ownership instead.
#[utoipa::path(put, path = "/api/rooms/{room}/members/{user_id}", tag = "rooms", request_body = SetRoleRequest,
    responses((status = 200, body = MemberView), (status = 403), (status = 404), (status = 409)))]
pub async fn set_member_role(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<SetRoleRequest>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, user_id) = path.into_inner();
    require_role(&state, &caller.0, &existing_room_id(&room_id)?, Role::Owner).await?;
    let current = room_member::Entity::find_by_id((room_id.clone(), user_id.clone()))
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found("not a participant"))?;
    if current.role == Role::Owner.as_str()
        && body.role != Role::Owner
        && owner_count(&state, &room_id).await? <= 1
    {
        return Err(ApiError::conflict(
            "last_owner",
            "a room always has an owner; transfer ownership first",
        ));
    }
    room_member::Entity::update_many()
        .col_expr(room_member::Column::Role, Expr::value(body.role.as_str()))
        .filter(room_member::Column::RoomId.eq(&room_id))
        .filter(room_member::Column::UserId.eq(&user_id))
        .exec(state.db())
        .await?;
    state.events.publish(AccessEvent::MembersChanged {
        room_id: room_id.clone(),
    });
    let view = members(&state, &room_id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user_id)
        .ok_or_else(|| ApiError::not_found("not a participant"))?;
    Ok(HttpResponse::Ok().json(view))
}

/// Adding a participant by their account's email.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct AddMemberRequest {
    /// The account's email.
    email: String,
    /// `editor` or `viewer` (ownership moves with a transfer).
    role: Role,
}

/// Adds someone who has an account as a participant (owners); they are notified (`invited`).
#[utoipa::path(post, path = "/api/rooms/{room}/members", tag = "rooms", request_body = AddMemberRequest,
    responses((status = 201, body = MemberView), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn add_member(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
    body: web::Json<AddMemberRequest>,
) -> Result<HttpResponse, ApiError> {
    let (_, inviter) =
        require_role(&state, &caller.0, &existing_room_id(&room_id)?, Role::Owner).await?;
    let AddMemberRequest { email, role } = body.into_inner();
    if role == Role::Owner {
        return Err(ApiError::validation(
            [(
                "role",
                "editor or viewer; ownership moves with a transfer".to_owned(),
            )]
            .into_iter()
            .collect(),
        ));
    }
    let account = user::Entity::find()
        .filter(user::Column::Email.eq(email.trim().to_lowercase()))
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found("no account has that email"))?;
    if room_member::Entity::find_by_id((room_id.to_string(), account.id.clone()))
        .one(state.db())
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(
            "already_participant",
            "that account already takes part in this room",
        ));
    }
    let room_name = room::Entity::find_by_id(room_id.as_str())
        .one(state.db())
        .await?
        .map(|r| r.name)
        .unwrap_or_default();
    let txn = state.db().begin().await?;
    room_member::ActiveModel {
        room_id: Set(room_id.to_string()),
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
        Some(&room_id),
        Some(&inviter),
        json!({"room_name": room_name, "role": role.as_str()}),
        state.now(),
    )
    .await?;
    txn.commit().await?;
    state.events.publish(AccessEvent::MembersChanged {
        room_id: room_id.to_string(),
    });
    let view = members(&state, &room_id)
        .await?
        .into_iter()
        .find(|m| m.user_id == account.id)
        .ok_or_else(|| ApiError::not_found("not a participant"))?;
    Ok(HttpResponse::Created().json(view))
}

/// Removes a participant (owners; anyone may remove themselves). Their open sockets are
/// closed with 4403.
#[utoipa::path(delete, path = "/api/rooms/{room}/members/{user_id}", tag = "rooms",
    responses((status = 204), (status = 403), (status = 404), (status = 409)))]
pub async fn remove_member(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, user_id) = path.into_inner();
    let leaving_self = matches!(&caller.0, Principal::User { user_id: me, .. } if *me == user_id);
    let min = if leaving_self {
        Role::Viewer
    } else {
        Role::Owner
    };
    require_role(&state, &caller.0, &existing_room_id(&room_id)?, min).await?;
    let current = room_member::Entity::find_by_id((room_id.clone(), user_id.clone()))
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found("not a participant"))?;
    if current.role == Role::Owner.as_str() && owner_count(&state, &room_id).await? <= 1 {
        return Err(ApiError::conflict(
            "last_owner",
            "a room always has an owner; transfer ownership first",
        ));
    }
    room_member::Entity::delete_by_id((room_id.clone(), user_id))
        .exec(state.db())
        .await?;
    state
        .events
        .publish(AccessEvent::MembersChanged { room_id });
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/rooms/{room}/transfer` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    user_id: String,
}

/// Makes another participant the owner; the caller becomes an editor.
#[utoipa::path(post, path = "/api/rooms/{room}/transfer", tag = "rooms", request_body = TransferRequest,
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn transfer_ownership(
    state: web::Data<AppState>,
    caller: SessionUser,
    room_id: web::Path<String>,
    body: web::Json<TransferRequest>,
) -> Result<HttpResponse, ApiError> {
    let principal = caller.principal();
    require_role(
        &state,
        &principal,
        &existing_room_id(&room_id)?,
        Role::Owner,
    )
    .await?;
    if body.user_id == caller.user_id {
        return Err(ApiError::invalid("you own this room already"));
    }
    let txn = state.db().begin().await?;
    let promoted = room_member::Entity::update_many()
        .col_expr(room_member::Column::Role, Expr::value(Role::Owner.as_str()))
        .filter(room_member::Column::RoomId.eq(room_id.as_str()))
        .filter(room_member::Column::UserId.eq(&body.user_id))
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
        .filter(room_member::Column::RoomId.eq(room_id.as_str()))
        .filter(room_member::Column::UserId.eq(&caller.user_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    state.events.publish(AccessEvent::MembersChanged {
        room_id: room_id.into_inner(),
    });
    Ok(HttpResponse::NoContent().finish())
}
