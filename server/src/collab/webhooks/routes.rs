//! `/api/rooms/{room}/webhooks`: owners register endpoints for room events and read what
//! was delivered.

use actix_web::{HttpResponse, web};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::accounts::auth::Role;
use crate::accounts::auth::secrets::{random_id, random_token};
use crate::app::AppState;
use crate::collab::activity::EventKind;
use crate::collab::webhooks::DEFAULT_EVENTS;
use crate::entity::{webhook, webhook_delivery};
use crate::http::caller::{Caller, existing_room_id, require_role};
use crate::http::error::ApiError;

/// Most webhooks one room may have.
const MAX_WEBHOOKS_PER_ROOM: u64 = 20;
/// Prefix of webhook signing secrets.
const SECRET_PREFIX: &str = "whsec_";

/// Every event a webhook can ask for.
const EVENTS: [EventKind; 16] = [
    EventKind::DocumentChanged,
    EventKind::VersionCreated,
    EventKind::VersionRestored,
    EventKind::CommentCreated,
    EventKind::CommentReplied,
    EventKind::CommentResolved,
    EventKind::CommentReopened,
    EventKind::CommentDeleted,
    EventKind::SuggestionMade,
    EventKind::SuggestionAccepted,
    EventKind::SuggestionRejected,
    EventKind::FileCreated,
    EventKind::FileRenamed,
    EventKind::FileDeleted,
    EventKind::Joined,
    EventKind::Left,
];

/// `POST /api/rooms/{room}/webhooks` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where deliveries are POSTed (`http` or `https`).
    url: String,
    /// Event names; by default `document_changed`, `version_created` and `comment_created`.
    events: Option<Vec<String>>,
}

/// A webhook as listed (never with its secret).
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    id: String,
    url: String,
    events: Vec<String>,
    created_at_ms: i64,
}

/// A webhook just created, with its signing secret (shown this once).
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    webhook: WebhookView,
    /// The HMAC-SHA256 key of `X-Tandem-Signature`.
    secret: String,
}

fn view(model: &webhook::Model) -> WebhookView {
    WebhookView {
        id: model.id.clone(),
        url: model.url.clone(),
        events: serde_json::from_str(&model.events).unwrap_or_default(),
        created_at_ms: model.created_at,
    }
}

fn parse_events(requested: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let Some(requested) = requested else {
        return Ok(DEFAULT_EVENTS
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect());
    };
    if requested.is_empty() {
        return Err(ApiError::invalid("events must name at least one event"));
    }
    let mut events = Vec::new();
    for name in requested {
        if !EVENTS.iter().any(|e| e.as_str() == name) {
            let known: Vec<&str> = EVENTS.iter().map(|e| e.as_str()).collect();
            return Err(ApiError::invalid(format!(
                "unknown event {name:?}; known events: {}",
                known.join(", ")
            )));
        }
        if !events.contains(&name) {
            events.push(name);
        }
    }
    Ok(events)
}

fn webhooks(state: &AppState) -> &crate::collab::webhooks::Webhooks {
    &state.webhooks
}

/// Registers a webhook (owners); answers its signing secret once.
#[utoipa::path(post, path = "/api/rooms/{room}/webhooks", tag = "webhooks", request_body = CreateWebhookRequest,
    responses((status = 201, body = CreatedWebhook), (status = 400), (status = 403), (status = 409), (status = 422)))]
pub async fn create_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    room: web::Path<String>,
    body: web::Json<CreateWebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    require_role(&state, &caller.0, &existing_room_id(&room)?, Role::Owner).await?;
    let CreateWebhookRequest { url, events } = body.into_inner();
    let url = webhooks(&state)
        .check_url(url.trim())
        .map_err(|reason| ApiError::validation([("url", reason)].into_iter().collect()))?;
    let events = parse_events(events)?;
    // Counted outside a transaction: on SQLite a transaction that reads before it writes can
    // fail to upgrade when another writer commits meanwhile. Two registrations racing past
    // the limit together can exceed it by one; it bounds work, it is not a security limit.
    let existing = webhook::Entity::find()
        .filter(webhook::Column::RoomId.eq(room.as_str()))
        .count(state.db())
        .await?;
    if existing >= MAX_WEBHOOKS_PER_ROOM {
        return Err(ApiError::conflict(
            "too_many_webhooks",
            format!("a room has at most {MAX_WEBHOOKS_PER_ROOM} webhooks"),
        ));
    }
    let secret = random_token(SECRET_PREFIX);
    let model = webhook::ActiveModel {
        id: Set(random_id()),
        room_id: Set(room.to_string()),
        url: Set(url.to_string()),
        secret: Set(secret.clone()),
        events: Set(serde_json::to_string(&events).unwrap_or_else(|_| "[]".into())),
        created_by: Set(caller.0.user_id().unwrap_or_default().to_owned()),
        created_at: Set(state.now()),
    }
    .insert(state.db())
    .await?;
    Ok(HttpResponse::Created().json(CreatedWebhook {
        webhook: view(&model),
        secret,
    }))
}

/// The room's webhooks (owners).
#[utoipa::path(get, path = "/api/rooms/{room}/webhooks", tag = "webhooks",
    responses((status = 200, body = [WebhookView]), (status = 403)))]
pub async fn list_webhooks(
    state: web::Data<AppState>,
    caller: Caller,
    room: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&state, &caller.0, &existing_room_id(&room)?, Role::Owner).await?;
    let hooks = webhook::Entity::find()
        .filter(webhook::Column::RoomId.eq(room.as_str()))
        .order_by_asc(webhook::Column::CreatedAt)
        .all(state.db())
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "webhooks": hooks.iter().map(view).collect::<Vec<_>>() })))
}

async fn find_webhook(state: &AppState, room: &str, id: &str) -> Result<webhook::Model, ApiError> {
    webhook::Entity::find_by_id(id)
        .filter(webhook::Column::RoomId.eq(room))
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("room {room:?} has no webhook {id:?}")))
}

/// Removes a webhook and its delivery history (owners).
#[utoipa::path(delete, path = "/api/rooms/{room}/webhooks/{id}", tag = "webhooks",
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room, id) = path.into_inner();
    require_role(&state, &caller.0, &existing_room_id(&room)?, Role::Owner).await?;
    find_webhook(&state, &room, &id).await?;
    let txn = state.db().begin().await?;
    webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::WebhookId.eq(id.as_str()))
        .exec(&txn)
        .await?;
    webhook::Entity::delete_by_id(id.as_str())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET …/webhooks/{id}/deliveries` paging.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// 1 to 200 (default 50).
    limit: Option<u64>,
    /// Only deliveries older than this id.
    before: Option<i64>,
}

/// One delivery as listed.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    id: i64,
    event: String,
    /// `pending`, `delivered` or `failed`.
    status: String,
    attempts: i32,
    /// The last attempt's HTTP status, if it got an answer.
    last_status_code: Option<i32>,
    /// What went wrong last, if anything.
    last_error: Option<String>,
    /// When the next attempt is due (pending only).
    next_attempt_at_ms: Option<i64>,
    created_at_ms: i64,
    updated_at_ms: i64,
    /// The JSON body sent.
    payload: serde_json::Value,
}

/// A webhook's deliveries, newest first, with each one's outcome (owners).
#[utoipa::path(get, path = "/api/rooms/{room}/webhooks/{id}/deliveries", tag = "webhooks", params(DeliveriesQuery),
    responses((status = 200, body = [DeliveryView]), (status = 403), (status = 404)))]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let (room, id) = path.into_inner();
    require_role(&state, &caller.0, &existing_room_id(&room)?, Role::Owner).await?;
    find_webhook(&state, &room, &id).await?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 200"));
    }
    let mut select = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::WebhookId.eq(id.as_str()))
        .order_by_desc(webhook_delivery::Column::Id)
        .limit(limit + 1);
    if let Some(before) = query.before {
        select = select.filter(webhook_delivery::Column::Id.lt(before));
    }
    let mut rows = select.all(state.db()).await?;
    let next_before = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    let deliveries: Vec<DeliveryView> = rows
        .into_iter()
        .map(|row| DeliveryView {
            next_attempt_at_ms: (row.status == crate::collab::webhooks::status::PENDING)
                .then_some(row.next_attempt_at),
            id: row.id,
            event: row.event,
            status: row.status,
            attempts: row.attempts,
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            created_at_ms: row.created_at,
            updated_at_ms: row.updated_at,
            payload: serde_json::from_str(&row.payload).unwrap_or_default(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "deliveries": deliveries, "next_before": next_before })))
}
