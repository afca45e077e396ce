//! `/api/rooms/{room}/webhooks`: owners register endpoints for room events and read what
//! was delivered.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::registrations;
use crate::app::AppState;
use crate::collab::activity::EventKind;
use crate::collab::webhooks::DEFAULT_EVENTS;
use crate::entity::webhook;
use crate::http::{ApiError, AuthorizedRoom, Owner, RoomParam, field_error};

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

/// The `{id}` of a webhook's routes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WebhookParam {
    id: String,
}

/// Registers a webhook (owners); answers its signing secret once.
#[utoipa::path(post, path = "/api/rooms/{room}/webhooks", tag = "webhooks", request_body = CreateWebhookRequest,
    params(RoomParam),
    responses((status = 201, body = CreatedWebhook), (status = 400), (status = 403), (status = 409), (status = 422)))]
pub async fn create_webhook(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Owner>,
    body: web::Json<CreateWebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let CreateWebhookRequest { url, events } = body.into_inner();
    let url = state
        .webhooks
        .check_url(url.trim())
        .map_err(|reason| field_error("url", reason))?;
    let events = parse_events(events)?;
    let creator = room.user_id().unwrap_or_default();
    let model = registrations::create(
        state.db(),
        &room.id,
        url.as_str(),
        &events,
        creator,
        state.now(),
    )
    .await?;
    Ok(HttpResponse::Created().json(CreatedWebhook {
        webhook: view(&model),
        secret: model.secret,
    }))
}

/// The room's webhooks (owners).
#[utoipa::path(get, path = "/api/rooms/{room}/webhooks", tag = "webhooks", params(RoomParam),
    responses((status = 200, body = [WebhookView]), (status = 403)))]
pub async fn list_webhooks(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Owner>,
) -> Result<HttpResponse, ApiError> {
    let hooks = registrations::list(state.db(), &room.id).await?;
    Ok(HttpResponse::Ok().json(json!({ "webhooks": hooks.iter().map(view).collect::<Vec<_>>() })))
}

/// Removes a webhook and its delivery history (owners).
#[utoipa::path(delete, path = "/api/rooms/{room}/webhooks/{id}", tag = "webhooks",
    params(RoomParam, WebhookParam),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete_webhook(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Owner>,
    path: web::Path<WebhookParam>,
) -> Result<HttpResponse, ApiError> {
    registrations::delete(state.db(), &room.id, &path.id).await?;
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
#[utoipa::path(get, path = "/api/rooms/{room}/webhooks/{id}/deliveries", tag = "webhooks",
    params(DeliveriesQuery, RoomParam, WebhookParam),
    responses((status = 200, body = [DeliveryView]), (status = 403), (status = 404)))]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Owner>,
    path: web::Path<WebhookParam>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50);
    let (rows, next_before) =
        registrations::deliveries(state.db(), &room.id, &path.id, limit, query.before).await?;
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
