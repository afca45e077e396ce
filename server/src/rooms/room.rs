//! `/api/rooms` and `/api/rooms/{room}`: creating, listing, renaming, deleting and forking
//! rooms.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use crdt_store::RoomId;
use crdt_store::storage::LogEntry;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::members::{MemberView, members};
use super::{parse_room, validated};
use crate::accounts::access::AccessEvent;
use crate::accounts::auth::Role;
use crate::accounts::auth::secrets::random_id;
use crate::accounts::routes::check_name;
use crate::app::AppState;
use crate::entity::{
    activity, ai_conversation, ai_message, comment, comment_thread, invite, notification, room,
    room_member, share_link, webhook, webhook_delivery,
};
use crate::http::caller::{Caller, SessionUser, existing_room_id, require_role};
use crate::http::error::ApiError;

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

/// Creates a room row and its owner membership in one transaction.
async fn insert_room(
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

pub(crate) fn new_room_id(requested: Option<&str>) -> Result<RoomId, ApiError> {
    match requested {
        Some(id) => parse_room(id),
        None => Ok(RoomId::parse(&random_id()).expect("random ids are valid room ids")),
    }
}

/// Creates a room; the caller becomes its owner.
#[utoipa::path(post, path = "/api/rooms", tag = "rooms", request_body = CreateRoomRequest,
    responses((status = 201, body = RoomView), (status = 409), (status = 422)))]
pub async fn create_room(
    state: web::Data<AppState>,
    caller: SessionUser,
    body: web::Json<CreateRoomRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = BTreeMap::new();
    check_name(&mut fields, "name", &body.name, 200);
    validated(fields)?;
    let id = new_room_id(body.id.as_deref())?;
    let model = insert_room(&state, &id, &body.name, &caller.user_id).await?;
    Ok(HttpResponse::Created().json(RoomView {
        id: model.id,
        name: model.name,
        role: Role::Owner,
        online: 0,
        created_at_ms: model.created_at,
    }))
}

/// The caller's rooms with their role and how many connections each has now.
#[utoipa::path(get, path = "/api/rooms", tag = "rooms", responses((status = 200, body = [RoomView])))]
pub async fn list_rooms(
    state: web::Data<AppState>,
    caller: SessionUser,
) -> Result<HttpResponse, ApiError> {
    let memberships = room_member::Entity::find()
        .filter(room_member::Column::UserId.eq(&caller.user_id))
        .all(state.db())
        .await?;
    let ids: Vec<String> = memberships.iter().map(|m| m.room_id.clone()).collect();
    let rooms = room::Entity::find()
        .filter(room::Column::Id.is_in(ids))
        .order_by_asc(room::Column::CreatedAt)
        .all(state.db())
        .await?;
    let views: Vec<RoomView> = rooms
        .into_iter()
        .filter_map(|r| {
            let role = memberships
                .iter()
                .find(|m| m.room_id == r.id)
                .and_then(|m| Role::parse(&m.role))?;
            Some(RoomView {
                online: state.presence.connections(&r.id),
                id: r.id,
                name: r.name,
                role,
                created_at_ms: r.created_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "rooms": views })))
}

/// Metadata, participants and who is online.
#[utoipa::path(get, path = "/api/rooms/{room}", tag = "rooms", responses((status = 200, body = RoomDetail), (status = 403), (status = 404)))]
pub async fn get_room(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (role, _) = require_role(
        &state,
        &caller.0,
        &existing_room_id(&room_id)?,
        Role::Viewer,
    )
    .await?;
    let model = room::Entity::find_by_id(room_id.as_str())
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found("no such room"))?;
    let participants = members(&state, &room_id).await?;
    let online_now = state
        .presence
        .online(&room_id)
        .into_iter()
        .map(|(who, connections)| OnlineView {
            user_id: who.user_id,
            name: who.name,
            connections,
        })
        .collect();
    Ok(HttpResponse::Ok().json(RoomDetail {
        room: RoomView {
            online: state.presence.connections(&room_id),
            id: model.id,
            name: model.name,
            role,
            created_at_ms: model.created_at,
        },
        participants,
        online_now,
    }))
}

/// Renames a room (owners).
#[utoipa::path(patch, path = "/api/rooms/{room}", tag = "rooms", request_body = RenameRoomRequest,
    responses((status = 200, body = RoomView), (status = 403), (status = 404), (status = 422)))]
pub async fn rename_room(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
    body: web::Json<RenameRoomRequest>,
) -> Result<HttpResponse, ApiError> {
    let (role, _) =
        require_role(&state, &caller.0, &existing_room_id(&room_id)?, Role::Owner).await?;
    let mut fields = BTreeMap::new();
    check_name(&mut fields, "name", &body.name, 200);
    validated(fields)?;
    room::Entity::update_many()
        .col_expr(room::Column::Name, Expr::value(body.name.trim()))
        .filter(room::Column::Id.eq(room_id.as_str()))
        .exec(state.db())
        .await?;
    let model = room::Entity::find_by_id(room_id.as_str())
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found("no such room"))?;
    Ok(HttpResponse::Ok().json(RoomView {
        online: state.presence.connections(&model.id),
        id: model.id,
        name: model.name,
        role,
        created_at_ms: model.created_at,
    }))
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
#[utoipa::path(delete, path = "/api/rooms/{room}", tag = "rooms", responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete_room(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&state, &caller.0, &existing_room_id(&room_id)?, Role::Owner).await?;
    let id = parse_room(&room_id)?;
    let deletion = state.registry.begin_delete(&id).await;
    delete_room_rows(&state, &id).await?;
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
    Ok(HttpResponse::NoContent().finish())
}

/// How long a deletion waits for the room's sockets to close after telling them (4404).
const SOCKETS_CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// Deletes every row of room `id`, in every table that has them, in one transaction.
async fn delete_room_rows(state: &AppState, id: &RoomId) -> Result<(), ApiError> {
    let txn = state.db().begin().await?;
    delete_room_rows_in(&txn, id).await?;
    txn.commit().await?;
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

/// A new room starting from the current content of one the caller can read; the caller owns
/// the copy.
#[utoipa::path(post, path = "/api/rooms/{room}/fork", tag = "rooms", request_body = ForkRoomRequest,
    responses((status = 201, body = RoomView), (status = 403), (status = 404)))]
pub async fn fork_room(
    state: web::Data<AppState>,
    caller: SessionUser,
    room_id: web::Path<String>,
    body: web::Json<ForkRoomRequest>,
) -> Result<HttpResponse, ApiError> {
    let principal = caller.principal();
    require_role(
        &state,
        &principal,
        &existing_room_id(&room_id)?,
        Role::Viewer,
    )
    .await?;
    let source = parse_room(&room_id)?;
    let source_name = room::Entity::find_by_id(source.as_str())
        .one(state.db())
        .await?
        .map(|r| r.name)
        .unwrap_or_default();
    let name = body
        .name
        .clone()
        .unwrap_or_else(|| format!("{source_name} (copy)").chars().take(200).collect());
    let mut fields = BTreeMap::new();
    check_name(&mut fields, "name", &name, 200);
    validated(fields)?;
    let id = new_room_id(body.id.as_deref())?;
    let content = {
        let lease = state.registry.lease(&source).await?;
        let room = lease.room().clone();
        web::block(move || room.encode_state())
            .await
            .map_err(|e| ApiError::internal(&e))?
    };
    let view = create_room_with_content(&state, &id, &name, &caller.user_id, &content).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Creates a room owned by `owner` whose document starts as `content` (one Yjs v1 update),
/// for forks and imports.
pub(crate) async fn create_room_with_content(
    state: &AppState,
    id: &RoomId,
    name: &str,
    owner: &str,
    content: &[u8],
) -> Result<RoomView, ApiError> {
    let model = insert_room(state, id, name, owner).await?;
    state
        .registry
        .storage()
        .append(&[LogEntry {
            room: id,
            update: content,
        }])
        .await?;
    Ok(RoomView {
        id: model.id,
        name: model.name,
        role: Role::Owner,
        online: 0,
        created_at_ms: model.created_at,
    })
}
