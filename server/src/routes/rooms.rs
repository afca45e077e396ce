//! `/api/rooms`: rooms, participants and roles, invites and share links.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use crdt_store::RoomId;
use crdt_store::storage::LogEntry;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::accounts::access::AccessEvent;
use crate::accounts::auth::secrets::{
    INVITE_TOKEN_PREFIX, SHARE_TOKEN_PREFIX, random_id, random_token, token_hash,
};
use crate::accounts::auth::{Principal, Role};
use crate::accounts::routes::check_name;
use crate::app::AppState;
use crate::entity::{
    activity, ai_conversation, ai_message, comment, comment_thread, invite, notification, room,
    room_member, share_link, user, webhook, webhook_delivery,
};
use crate::http::caller::{Caller, SessionUser, require_role};
use crate::http::error::ApiError;
use crate::notifications::{NotificationKind, notify};

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

pub(crate) fn validated(fields: BTreeMap<&'static str, String>) -> Result<(), ApiError> {
    if fields.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(fields))
    }
}

fn parse_room(room: &str) -> Result<RoomId, ApiError> {
    Ok(RoomId::parse(room)?)
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

async fn members(state: &AppState, room_id: &str) -> Result<Vec<MemberView>, ApiError> {
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

/// Metadata, participants and who is online.
#[utoipa::path(get, path = "/api/rooms/{room}", tag = "rooms", responses((status = 200, body = RoomDetail), (status = 403), (status = 404)))]
pub async fn get_room(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (role, _) = require_role(&state, &caller.0, &room_id, Role::Viewer).await?;
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
    let (role, _) = require_role(&state, &caller.0, &room_id, Role::Owner).await?;
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
    require_role(&state, &caller.0, &room_id, Role::Owner).await?;
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
    require_role(&state, &principal, &room_id, Role::Viewer).await?;
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

/// Participants of a room.
#[utoipa::path(get, path = "/api/rooms/{room}/members", tag = "rooms", responses((status = 200, body = [MemberView]), (status = 403), (status = 404)))]
pub async fn list_members(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&state, &caller.0, &room_id, Role::Viewer).await?;
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
    require_role(&state, &caller.0, &room_id, Role::Owner).await?;
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
    let (_, inviter) = require_role(&state, &caller.0, &room_id, Role::Owner).await?;
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
    require_role(&state, &caller.0, &room_id, min).await?;
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
    require_role(&state, &principal, &room_id, Role::Owner).await?;
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

/// Parses `"7d"`, `"30d"`, `"12h"` (any humantime duration) or `"never"`.
fn parse_expiry(expires_in: Option<&str>, default: Duration) -> Result<Option<Duration>, ApiError> {
    match expires_in {
        None => Ok(Some(default)),
        Some("never") => Ok(None),
        Some(text) => humantime::parse_duration(text).map(Some).map_err(|_| {
            ApiError::validation(BTreeMap::from([(
                "expires_in",
                "use a duration such as \"7d\", \"30d\", \"12h\", or \"never\"".to_owned(),
            )]))
        }),
    }
}

fn expiry_ms(now: i64, expiry: Option<Duration>) -> Option<i64> {
    expiry.map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

/// `POST /api/rooms/{room}/invites` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteRequest {
    /// Role granted on acceptance (`editor` or `viewer`; `owner` is given by transfer).
    role: Role,
    /// `"7d"` (default), `"30d"`, any duration, or `"never"`.
    expires_in: Option<String>,
    /// Most acceptances; unlimited when absent.
    max_uses: Option<u32>,
}

/// An invite as listed.
#[derive(Serialize, ToSchema)]
pub struct InviteView {
    /// Invite id.
    pub id: String,
    /// Role granted.
    pub role: Role,
    /// Milliseconds since the epoch; absent when it never expires.
    pub expires_at_ms: Option<i64>,
    /// Most acceptances.
    pub max_uses: Option<i32>,
    /// Acceptances so far.
    pub uses: i32,
    /// Set once revoked.
    pub revoked_at_ms: Option<i64>,
    /// Milliseconds since the epoch.
    pub created_at_ms: i64,
}

impl From<invite::Model> for InviteView {
    fn from(i: invite::Model) -> Self {
        Self {
            id: i.id,
            role: Role::parse(&i.role).unwrap_or(Role::Viewer),
            expires_at_ms: i.expires_at,
            max_uses: i.max_uses,
            uses: i.uses,
            revoked_at_ms: i.revoked_at,
            created_at_ms: i.created_at,
        }
    }
}

/// A new invite or share link: the only time its token is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedLink<T: Serialize> {
    /// The secret token.
    pub token: String,
    /// A path to hand out (the web client opens it).
    pub url: String,
    /// The stored description.
    #[serde(flatten)]
    pub link: T,
}

/// Creates an invite link (owners).
#[utoipa::path(post, path = "/api/rooms/{room}/invites", tag = "invites", request_body = CreateInviteRequest,
    responses((status = 201), (status = 403), (status = 404), (status = 422)))]
pub async fn create_invite(
    state: web::Data<AppState>,
    caller: SessionUser,
    room_id: web::Path<String>,
    body: web::Json<CreateInviteRequest>,
) -> Result<HttpResponse, ApiError> {
    let principal = caller.principal();
    require_role(&state, &principal, &room_id, Role::Owner).await?;
    let mut fields = BTreeMap::new();
    if body.role == Role::Owner {
        fields.insert(
            "role",
            "invite as editor or viewer; transfer ownership separately".to_owned(),
        );
    }
    if body.max_uses == Some(0) || body.max_uses.is_some_and(|n| n > 10_000) {
        fields.insert("max_uses", "must be 1 to 10000".to_owned());
    }
    validated(fields)?;
    let expiry = parse_expiry(body.expires_in.as_deref(), Duration::from_secs(7 * 86_400))?;
    let token = random_token(INVITE_TOKEN_PREFIX);
    let now = state.auth.now();
    let model = invite::ActiveModel {
        id: Set(random_id()),
        room_id: Set(room_id.to_string()),
        token_hash: Set(token_hash(&token)),
        role: Set(body.role.as_str().to_owned()),
        created_by: Set(caller.user_id),
        created_at: Set(now),
        expires_at: Set(expiry_ms(now, expiry)),
        max_uses: Set(body.max_uses.map(|n| n as i32)),
        uses: Set(0),
        revoked_at: Set(None),
    }
    .insert(state.db())
    .await?;
    Ok(HttpResponse::Created().json(CreatedLink {
        url: format!("/invite/{token}"),
        token,
        link: InviteView::from(model),
    }))
}

/// Invites of a room (owners).
#[utoipa::path(get, path = "/api/rooms/{room}/invites", tag = "invites", responses((status = 200, body = [InviteView]), (status = 403)))]
pub async fn list_invites(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&state, &caller.0, &room_id, Role::Owner).await?;
    let invites: Vec<InviteView> = invite::Entity::find()
        .filter(invite::Column::RoomId.eq(room_id.as_str()))
        .order_by_asc(invite::Column::CreatedAt)
        .all(state.db())
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "invites": invites })))
}

/// Revokes an invite (owners).
#[utoipa::path(delete, path = "/api/rooms/{room}/invites/{invite_id}", tag = "invites", responses((status = 204), (status = 403), (status = 404)))]
pub async fn revoke_invite(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, invite_id) = path.into_inner();
    require_role(&state, &caller.0, &room_id, Role::Owner).await?;
    let result = invite::Entity::update_many()
        .col_expr(invite::Column::RevokedAt, Expr::value(state.auth.now()))
        .filter(invite::Column::Id.eq(invite_id))
        .filter(invite::Column::RoomId.eq(&room_id))
        .filter(invite::Column::RevokedAt.is_null())
        .exec(state.db())
        .await?;
    if result.rows_affected == 0 {
        return Err(ApiError::not_found("no such active invite"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Accepts an invite: the caller becomes a participant with the invite's role (an existing
/// participant keeps the higher of the two roles).
#[utoipa::path(post, path = "/api/invites/{token}/accept", tag = "invites",
    responses((status = 200, body = RoomView), (status = 404), (status = 410)))]
pub async fn accept_invite(
    state: web::Data<AppState>,
    caller: SessionUser,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let now = state.auth.now();
    let gone = |why: &str| {
        ApiError::new(
            actix_web::http::StatusCode::GONE,
            "invite_unusable",
            why.to_owned(),
        )
    };
    let found = invite::Entity::find()
        .filter(invite::Column::TokenHash.eq(token_hash(&token)))
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found("no such invite"))?;
    if found.revoked_at.is_some() {
        return Err(gone("this invite was revoked"));
    }
    if found.expires_at.is_some_and(|at| at <= now) {
        return Err(gone("this invite has expired"));
    }
    // Count the use with a guarded update, the transaction's first statement, so concurrent
    // acceptances (and a revocation racing this one) cannot exceed what the invite allows.
    let txn = state.db().begin().await?;
    let mut counted = invite::Entity::update_many()
        .col_expr(
            invite::Column::Uses,
            Expr::col(invite::Column::Uses).add(Expr::value(1)),
        )
        .filter(invite::Column::Id.eq(&found.id))
        .filter(invite::Column::RevokedAt.is_null());
    if let Some(max) = found.max_uses {
        counted = counted.filter(invite::Column::Uses.lt(max));
    }
    if counted.exec(&txn).await?.rows_affected == 0 {
        return Err(gone("this invite has been used up or revoked"));
    }
    let role = Role::parse(&found.role).unwrap_or(Role::Viewer);
    let existing = room_member::Entity::find_by_id((found.room_id.clone(), caller.user_id.clone()))
        .one(&txn)
        .await?;
    let final_role = match existing.as_ref().and_then(|m| Role::parse(&m.role)) {
        Some(current) if current >= role => current,
        Some(_) => {
            room_member::Entity::update_many()
                .col_expr(room_member::Column::Role, Expr::value(role.as_str()))
                .filter(room_member::Column::RoomId.eq(&found.room_id))
                .filter(room_member::Column::UserId.eq(&caller.user_id))
                .exec(&txn)
                .await?;
            role
        }
        None => {
            room_member::ActiveModel {
                room_id: Set(found.room_id.clone()),
                user_id: Set(caller.user_id.clone()),
                role: Set(role.as_str().to_owned()),
                created_at: Set(now),
            }
            .insert(&txn)
            .await?;
            role
        }
    };
    let model = room::Entity::find_by_id(&found.room_id)
        .one(&txn)
        .await?
        .ok_or_else(|| ApiError::not_found("the room no longer exists"))?;
    txn.commit().await?;
    state.events.publish(AccessEvent::MembersChanged {
        room_id: found.room_id.clone(),
    });
    Ok(HttpResponse::Ok().json(RoomView {
        online: state.presence.connections(&model.id),
        id: model.id,
        name: model.name,
        role: final_role,
        created_at_ms: model.created_at,
    }))
}

/// `POST /api/rooms/{room}/share-links` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShareLinkRequest {
    /// `"30d"` (default), any duration, or `"never"`.
    expires_in: Option<String>,
}

/// A share link as listed.
#[derive(Serialize, ToSchema)]
pub struct ShareLinkView {
    /// Link id.
    pub id: String,
    /// Milliseconds since the epoch; absent when it never expires.
    pub expires_at_ms: Option<i64>,
    /// Set once revoked.
    pub revoked_at_ms: Option<i64>,
    /// Milliseconds since the epoch.
    pub created_at_ms: i64,
}

impl From<share_link::Model> for ShareLinkView {
    fn from(l: share_link::Model) -> Self {
        Self {
            id: l.id,
            expires_at_ms: l.expires_at,
            revoked_at_ms: l.revoked_at,
            created_at_ms: l.created_at,
        }
    }
}

/// Creates a read-only share link (owners): anyone holding its token can view the room
/// without an account, until it expires or is revoked.
#[utoipa::path(post, path = "/api/rooms/{room}/share-links", tag = "share-links", request_body = CreateShareLinkRequest,
    responses((status = 201), (status = 403), (status = 404)))]
pub async fn create_share_link(
    state: web::Data<AppState>,
    caller: SessionUser,
    room_id: web::Path<String>,
    body: web::Json<CreateShareLinkRequest>,
) -> Result<HttpResponse, ApiError> {
    let principal = caller.principal();
    require_role(&state, &principal, &room_id, Role::Owner).await?;
    let expiry = parse_expiry(body.expires_in.as_deref(), Duration::from_secs(30 * 86_400))?;
    let token = random_token(SHARE_TOKEN_PREFIX);
    let now = state.auth.now();
    let model = share_link::ActiveModel {
        id: Set(random_id()),
        room_id: Set(room_id.to_string()),
        token_hash: Set(token_hash(&token)),
        created_by: Set(caller.user_id),
        created_at: Set(now),
        expires_at: Set(expiry_ms(now, expiry)),
        revoked_at: Set(None),
    }
    .insert(state.db())
    .await?;
    Ok(HttpResponse::Created().json(CreatedLink {
        url: format!("/share/{token}"),
        token,
        link: ShareLinkView::from(model),
    }))
}

/// Share links of a room (owners).
#[utoipa::path(get, path = "/api/rooms/{room}/share-links", tag = "share-links", responses((status = 200, body = [ShareLinkView]), (status = 403)))]
pub async fn list_share_links(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&state, &caller.0, &room_id, Role::Owner).await?;
    let links: Vec<ShareLinkView> = share_link::Entity::find()
        .filter(share_link::Column::RoomId.eq(room_id.as_str()))
        .order_by_asc(share_link::Column::CreatedAt)
        .all(state.db())
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "share_links": links })))
}

/// Revokes a share link (owners); sockets opened with it are closed.
#[utoipa::path(delete, path = "/api/rooms/{room}/share-links/{link_id}", tag = "share-links", responses((status = 204), (status = 403), (status = 404)))]
pub async fn revoke_share_link(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, link_id) = path.into_inner();
    require_role(&state, &caller.0, &room_id, Role::Owner).await?;
    let result = share_link::Entity::update_many()
        .col_expr(share_link::Column::RevokedAt, Expr::value(state.auth.now()))
        .filter(share_link::Column::Id.eq(&link_id))
        .filter(share_link::Column::RoomId.eq(&room_id))
        .filter(share_link::Column::RevokedAt.is_null())
        .exec(state.db())
        .await?;
    if result.rows_affected == 0 {
        return Err(ApiError::not_found("no such active share link"));
    }
    state
        .events
        .publish(AccessEvent::ShareLinkRevoked { link_id });
    Ok(HttpResponse::NoContent().finish())
}

/// The room a share token opens, for the web client's `/share/{token}` page: the token only
/// names itself, so its holder asks which room it is for.
#[utoipa::path(get, path = "/api/share-links/current", tag = "share-links",
    responses((status = 200, body = RoomView), (status = 401), (status = 403)))]
pub async fn current_share_link(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let Principal::Share { room_id, .. } = &caller.0 else {
        return Err(ApiError::forbidden(
            "this endpoint needs a share token (shr_…)",
        ));
    };
    let (role, _) = require_role(&state, &caller.0, room_id, Role::Viewer).await?;
    let model = room::Entity::find_by_id(room_id.as_str())
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found("the room no longer exists"))?;
    Ok(HttpResponse::Ok().json(RoomView {
        online: state.presence.connections(room_id),
        id: model.id,
        name: model.name,
        role,
        created_at_ms: model.created_at,
    }))
}
