//! `/api/rooms`, `/api/rooms/{room}` and `/api/import`: creating, listing, renaming, deleting
//! and forking rooms, and creating one from a zip of files.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{create_room_with_content, find_room, insert_room, new_room_id};
use crate::accounts::Role;
use crate::app::AppState;
use crate::collab;
use crate::entity::room;
use crate::http::{
    ApiError, AuthorizedRoom, FieldErrors, Loaded, Owner, RoomParam, Session, SessionUser, Viewer,
    check_name, validated,
};
use crate::rooms::members::routes::{MemberView, member_views};

/// A room as listed.
#[derive(Serialize, ToSchema)]
pub struct RoomView {
    /// The id used in `/ws/{id}` and `/api/rooms/{id}`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The caller's role.
    pub role: Role,
    /// Open connections right now.
    pub online: usize,
    /// Milliseconds since the epoch.
    pub created_at_ms: i64,
}

impl RoomView {
    /// A room just created, owned by the caller, with nobody connected yet.
    pub fn created(model: room::Model) -> Self {
        Self {
            id: model.id,
            name: model.name,
            role: Role::Owner,
            online: 0,
            created_at_ms: model.created_at,
        }
    }

    /// The room `model` as someone with `role` sees it now.
    pub fn new(state: &AppState, model: room::Model, role: Role) -> Self {
        Self {
            online: state.presence.connections(&model.id),
            id: model.id,
            name: model.name,
            role,
            created_at_ms: model.created_at,
        }
    }
}

/// Someone connected right now.
#[derive(Serialize, ToSchema)]
pub struct OnlineView {
    /// Account id (absent for share-link guests).
    pub user_id: Option<String>,
    /// Name shown to others.
    pub name: String,
    /// Their open connections.
    pub connections: usize,
}

/// A room with its participants and presence.
#[derive(Serialize, ToSchema)]
pub struct RoomDetail {
    /// The room.
    #[serde(flatten)]
    pub room: RoomView,
    /// Everyone with a role.
    pub participants: Vec<MemberView>,
    /// Everyone connected.
    pub online_now: Vec<OnlineView>,
}

/// `POST /api/rooms` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoomRequest {
    /// Display name.
    name: String,
    /// Optional id; a random one is chosen otherwise.
    id: Option<String>,
}

/// `PATCH /api/rooms/{room}` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRoomRequest {
    name: String,
}

/// `POST /api/rooms/{room}/fork` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkRoomRequest {
    name: Option<String>,
    id: Option<String>,
}

/// 422 unless `name` is a room name.
fn check_room_name(name: &str) -> Result<(), ApiError> {
    let mut fields = FieldErrors::new();
    check_name(&mut fields, "name", name, 200);
    validated(fields)
}

/// Creates a room; the caller becomes its owner.
#[utoipa::path(post, path = "/api/rooms", tag = "rooms", request_body = CreateRoomRequest,
    responses((status = 201, body = RoomView), (status = 409), (status = 422)))]
pub async fn create_room(
    state: web::Data<AppState>,
    caller: SessionUser,
    body: web::Json<CreateRoomRequest>,
) -> Result<HttpResponse, ApiError> {
    check_room_name(&body.name)?;
    let id = new_room_id(body.id.as_deref())?;
    let model = insert_room(&state, &id, &body.name, &caller.user_id).await?;
    Ok(HttpResponse::Created().json(RoomView::created(model)))
}

/// The caller's rooms with their role and how many connections each has now.
#[utoipa::path(get, path = "/api/rooms", tag = "rooms", responses((status = 200, body = [RoomView])))]
pub async fn list_rooms(
    state: web::Data<AppState>,
    caller: SessionUser,
) -> Result<HttpResponse, ApiError> {
    let views: Vec<RoomView> = super::rooms_of(state.db(), &caller.user_id)
        .await?
        .into_iter()
        .map(|(model, role)| RoomView::new(&state, model, role))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "rooms": views })))
}

/// Metadata, participants and who is online.
#[utoipa::path(get, path = "/api/rooms/{room}", tag = "rooms", params(RoomParam),
    responses((status = 200, body = RoomDetail), (status = 403), (status = 404)))]
pub async fn get_room(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Viewer>,
) -> Result<HttpResponse, ApiError> {
    let model = find_room(state.db(), &room.id, "no such room").await?;
    let participants = member_views(&state, &room.id).await?;
    let online_now = state
        .presence
        .online(room.id.as_str())
        .into_iter()
        .map(|(who, connections)| OnlineView {
            user_id: who.user_id,
            name: who.name,
            connections,
        })
        .collect();
    Ok(HttpResponse::Ok().json(RoomDetail {
        room: RoomView::new(&state, model, room.role),
        participants,
        online_now,
    }))
}

/// Renames a room (owners).
#[utoipa::path(patch, path = "/api/rooms/{room}", tag = "rooms", request_body = RenameRoomRequest,
    params(RoomParam),
    responses((status = 200, body = RoomView), (status = 403), (status = 404), (status = 422)))]
pub async fn rename_room(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Owner>,
    body: web::Json<RenameRoomRequest>,
) -> Result<HttpResponse, ApiError> {
    check_room_name(&body.name)?;
    let model = super::rename_room(state.db(), &room.id, &body.name).await?;
    Ok(HttpResponse::Ok().json(RoomView::new(&state, model, room.role)))
}

/// Deletes a room with everything of it (owners): its document (log, snapshot, versions),
/// participants, invites and links, comments, notifications, activity, webhooks with their
/// deliveries, and AI conversations with their messages, in one transaction. Open sockets
/// are closed with 4404.
///
/// Nothing racing the deletion survives it: the room in memory is closed and marked deleted
/// first (its edits are refused from then on, and what was queued is committed before the
/// rows go), joins of the id wait until the rows are gone, and activity is only recorded for
/// a room that exists (see `activity::record`). A room created again under the id starts
/// empty.
#[utoipa::path(delete, path = "/api/rooms/{room}", tag = "rooms", params(RoomParam),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete_room(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Owner>,
) -> Result<HttpResponse, ApiError> {
    super::delete_room(&state, &room.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A new room starting from the current content of one the caller can read; the caller owns
/// the copy.
#[utoipa::path(post, path = "/api/rooms/{room}/fork", tag = "rooms", request_body = ForkRoomRequest,
    params(RoomParam),
    responses((status = 201, body = RoomView), (status = 403), (status = 404)))]
pub async fn fork_room(
    state: web::Data<AppState>,
    source: AuthorizedRoom<Session<Viewer>, Loaded>,
    body: web::Json<ForkRoomRequest>,
) -> Result<HttpResponse, ApiError> {
    let name = match body.name.clone() {
        Some(name) => name,
        None => {
            let source_name = super::room_name(state.db(), &source.id).await?;
            format!("{source_name} (copy)").chars().take(200).collect()
        }
    };
    check_room_name(&name)?;
    let id = new_room_id(body.id.as_deref())?;
    let content = collab::encoded_state(source.room()).await?;
    let owner = &source.session.user_id;
    let model = create_room_with_content(&state, &id, &name, owner, &content).await?;
    Ok(HttpResponse::Created().json(RoomView::created(model)))
}

/// `POST /api/import` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The new room's display name.
    name: String,
    /// Optional id; a random one is chosen otherwise.
    id: Option<String>,
}

/// Creates a room from a zip of text files (the body); the caller becomes its owner. Each file
/// goes into the `files` map under its path in the archive. The whole import is refused, and
/// nothing created, when an entry's path is unsafe (`../`, absolute), a file is binary or too
/// large, or the archive is larger than `--max-import-size`.
#[utoipa::path(post, path = "/api/import", tag = "files", params(ImportQuery),
    request_body(content = Vec<u8>, content_type = "application/zip"),
    responses((status = 201, body = RoomView), (status = 400), (status = 409),
        (status = 413), (status = 415), (status = 422)))]
pub async fn import_room(
    state: web::Data<AppState>,
    caller: SessionUser,
    query: web::Query<ImportQuery>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    check_room_name(&query.name)?;
    let id = new_room_id(query.id.as_deref())?;
    let content = collab::document_from_upload(&req, payload, state.file_limits).await?;
    let model =
        create_room_with_content(&state, &id, &query.name, &caller.user_id, &content).await?;
    Ok(HttpResponse::Created().json(RoomView::created(model)))
}
