//! `/api/rooms/{room}/members` and `/transfer`: participants, their roles, and ownership.

use actix_web::{HttpResponse, web};
use crdt_store::RoomId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::accounts::{Principal, Role};
use crate::app::AppState;
use crate::http::{ApiError, AuthorizedRoom, Owner, RoomParam, Session, Viewer, field_error};

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

/// The room's participants, with who is connected now.
pub(crate) async fn member_views(
    state: &AppState,
    id: &RoomId,
) -> Result<Vec<MemberView>, ApiError> {
    let online = state.presence.online(id.as_str());
    Ok(super::members(state.db(), id)
        .await?
        .into_iter()
        .filter_map(|m| {
            Some(MemberView {
                online: online
                    .iter()
                    .any(|(who, _)| who.user_id.as_deref() == Some(m.row.user_id.as_str())),
                display_name: m.display_name,
                role: Role::parse(&m.row.role)?,
                user_id: m.row.user_id,
            })
        })
        .collect())
}

/// One participant as listed; 404 when they are none.
async fn member_view(state: &AppState, id: &RoomId, user_id: &str) -> Result<MemberView, ApiError> {
    member_views(state, id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user_id)
        .ok_or_else(|| ApiError::not_found("not a participant"))
}

/// The `{user_id}` of a participant's routes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemberParam {
    user_id: String,
}

/// Participants of a room.
#[utoipa::path(get, path = "/api/rooms/{room}/members", tag = "rooms", params(RoomParam),
    responses((status = 200, body = [MemberView]), (status = 403), (status = 404)))]
pub async fn list_members(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Viewer>,
) -> Result<HttpResponse, ApiError> {
    let members = member_views(&state, &room.id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "members": members })))
}

/// `PUT /api/rooms/{room}/members/{user}` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoleRequest {
    role: Role,
}

/// Changes a participant's role (owners). Takes effect on their open sockets at once. The
/// last owner cannot step down; transfer ownership instead.
#[utoipa::path(put, path = "/api/rooms/{room}/members/{user_id}", tag = "rooms", request_body = SetRoleRequest,
    params(RoomParam, MemberParam),
    responses((status = 200, body = MemberView), (status = 403), (status = 404), (status = 409)))]
pub async fn set_member_role(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Owner>,
    member: web::Path<MemberParam>,
    body: web::Json<SetRoleRequest>,
) -> Result<HttpResponse, ApiError> {
    super::set_role(&state, &room.id, &member.user_id, body.role).await?;
    let view = member_view(&state, &room.id, &member.user_id).await?;
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
    params(RoomParam),
    responses((status = 201, body = MemberView), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn add_member(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Owner>,
    body: web::Json<AddMemberRequest>,
) -> Result<HttpResponse, ApiError> {
    let AddMemberRequest { email, role } = body.into_inner();
    if role == Role::Owner {
        return Err(field_error(
            "role",
            "editor or viewer; ownership moves with a transfer",
        ));
    }
    let added = super::add_member(&state, &room.id, &room.identity, &email, role).await?;
    let view = member_view(&state, &room.id, &added).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Removes a participant (owners; anyone may remove themselves). Their open sockets are
/// closed with 4403.
#[utoipa::path(delete, path = "/api/rooms/{room}/members/{user_id}", tag = "rooms",
    params(RoomParam, MemberParam),
    responses((status = 204), (status = 403), (status = 404), (status = 409)))]
pub async fn remove_member(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Viewer>,
    member: web::Path<MemberParam>,
) -> Result<HttpResponse, ApiError> {
    let leaving_self =
        matches!(&room.principal, Principal::User { user_id: me, .. } if *me == member.user_id);
    if !leaving_self {
        room.require(Role::Owner)?;
    }
    super::remove_member(&state, &room.id, &member.user_id).await?;
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
    params(RoomParam),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn transfer_ownership(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Session<Owner>>,
    body: web::Json<TransferRequest>,
) -> Result<HttpResponse, ApiError> {
    let me = &room.session.user_id;
    if body.user_id == *me {
        return Err(ApiError::invalid("you own this room already"));
    }
    super::transfer_ownership(&state, &room.id, me, &body.user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
