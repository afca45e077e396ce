//! `/api/rooms/{room}/ai/*`, `/api/rooms/{room}/suggestions/*`, `/api/usage`, and the
//! control WebSocket of the `tandem ai-peer` process (`/api/ai/peer`): extract, call, map.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::chat::{ChatTurn, start_turn};
use super::conversations::{self, Conversation};
use super::decisions::{self, ai};
use super::suggestion::{AcceptOutcome, SuggestionStatus};
use super::{Action, Ai, AiError, PeerMode, control_socket};
use crate::accounts::Principal;
use crate::app::AppState;
use crate::http::{
    ApiError, AuthorizedRoom, Caller, Editor, Loaded, RoomParam, RoomScope, Viewer, field_error,
};

impl From<AiError> for ApiError {
    fn from(err: AiError) -> Self {
        match err {
            AiError::NotConfigured => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ai_not_configured",
                "AI assistant not configured",
            ),
            AiError::RateLimited(retry) => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ai_rate_limited",
                err.to_string(),
            )
            .with_retry_after(retry),
            AiError::SelectionTooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "selection_too_large",
                err.to_string(),
            ),
            AiError::BadRange(message) => field_error("selection", message),
            AiError::PeerUnavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ai_unavailable",
                err.to_string(),
            ),
            AiError::PeerNotConnected => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ai_peer_unavailable",
                err.to_string(),
            ),
            AiError::Database(_) => Self::internal(&err),
        }
    }
}

/// A selection in a file, in UTF-16 offsets.
#[derive(Deserialize, ToSchema, Clone, Copy)]
pub struct Selection {
    start: u32,
    end: u32,
}

/// `POST /api/rooms/{room}/ai/chat` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The question or instruction.
    message: String,
    /// What to do; `free` by default.
    action: Option<Action>,
    /// The file the selection is in (see the document convention).
    file: Option<String>,
    /// The selected range.
    selection: Option<Selection>,
    /// A cursor position (an empty selection).
    cursor: Option<u32>,
    /// Continue this conversation; a new one is started otherwise.
    conversation_id: Option<String>,
}

/// The `{conversation_id}` of a conversation's routes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConversationParam {
    conversation_id: String,
}

/// The `{suggestion_id}` of a suggestion's routes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SuggestionParam {
    suggestion_id: String,
}

fn principal_user(principal: &Principal) -> Result<String, ApiError> {
    principal
        .user_id()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::forbidden("the assistant needs an account"))
}

/// The answer's events as a `text/event-stream` response.
fn event_stream(events: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> HttpResponse {
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        events
            .recv()
            .await
            .map(|chunk| (Ok::<_, actix_web::Error>(chunk), events))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

/// Asks the assistant. The answer streams back as Server-Sent Events: `token` events with
/// each piece of text, then `done` with the conversation, message and suggestion ids and the
/// token usage (or `error`).
#[utoipa::path(post, path = "/api/rooms/{room}/ai/chat", tag = "ai", request_body = ChatRequest,
    params(RoomParam),
    responses((status = 200, description = "text/event-stream"), (status = 403), (status = 413), (status = 429), (status = 503)))]
pub async fn chat(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Editor, Loaded>,
    body: web::Json<ChatRequest>,
) -> Result<HttpResponse, ApiError> {
    let user_id = principal_user(&room.principal)?;
    let body = body.into_inner();
    if body.message.trim().is_empty() || body.message.chars().count() > 20_000 {
        return Err(field_error("message", "must be 1 to 20000 characters"));
    }
    // Only looked up here: nothing is written before every check of `start_turn` passed.
    let conversation = match body.conversation_id {
        Some(id) => {
            conversations::conversation(state.db(), &room.id, &id).await?;
            Conversation::Existing(id)
        }
        None => Conversation::New {
            title: body.message.chars().take(80).collect(),
        },
    };
    let selection = body.selection.map(|s| (s.start, s.end));
    let turn = ChatTurn {
        user_id,
        conversation,
        message: body.message,
        action: body.action.unwrap_or(Action::Free),
        file: body.file,
        selection: selection.or(body.cursor.map(|c| (c, c))),
    };
    Ok(event_stream(start_turn(&state, room.room(), turn).await?))
}

/// A stored message.
#[derive(Serialize, ToSchema)]
pub struct MessageView {
    id: i64,
    role: String,
    action: String,
    content: String,
    prompt_tokens: i64,
    completion_tokens: i64,
    suggestion_ids: Vec<String>,
    created_at_ms: i64,
}

/// The room's conversations, newest first.
#[utoipa::path(get, path = "/api/rooms/{room}/ai/conversations", tag = "ai", params(RoomParam),
    responses((status = 200), (status = 403)))]
pub async fn list_conversations(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Viewer>,
) -> Result<HttpResponse, ApiError> {
    let conversations: Vec<serde_json::Value> = conversations::conversations(state.db(), &room.id)
        .await?
        .into_iter()
        .map(|c| json!({"id": c.id, "title": c.title, "user_id": c.user_id, "created_at_ms": c.created_at}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "conversations": conversations })))
}

/// One conversation with every message and its token usage.
#[utoipa::path(get, path = "/api/rooms/{room}/ai/conversations/{conversation_id}", tag = "ai",
    params(RoomParam, ConversationParam),
    responses((status = 200), (status = 403), (status = 404)))]
pub async fn get_conversation(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Viewer>,
    path: web::Path<ConversationParam>,
) -> Result<HttpResponse, ApiError> {
    let id = &path.conversation_id;
    let conversation = conversations::conversation(state.db(), &room.id, id).await?;
    let messages: Vec<MessageView> = conversations::messages(state.db(), id)
        .await?
        .into_iter()
        .map(|m| MessageView {
            id: m.id,
            role: m.role,
            action: m.action,
            content: m.content,
            prompt_tokens: m.prompt_tokens,
            completion_tokens: m.completion_tokens,
            suggestion_ids: serde_json::from_str(&m.suggestion_ids).unwrap_or_default(),
            created_at_ms: m.created_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "id": conversation.id,
        "title": conversation.title,
        "messages": messages,
    })))
}

/// Answers the conversation's last question again (streams like `chat`).
#[utoipa::path(post, path = "/api/rooms/{room}/ai/conversations/{conversation_id}/regenerate", tag = "ai",
    params(RoomParam, ConversationParam),
    responses((status = 200, description = "text/event-stream"), (status = 403), (status = 404), (status = 429)))]
pub async fn regenerate(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Editor, Loaded>,
    path: web::Path<ConversationParam>,
) -> Result<HttpResponse, ApiError> {
    let user_id = principal_user(&room.principal)?;
    let id = path.into_inner().conversation_id;
    let (message, action) = conversations::last_question(state.db(), &room.id, &id).await?;
    let turn = ChatTurn {
        user_id,
        conversation: Conversation::Existing(id),
        message,
        action,
        file: None,
        selection: None,
    };
    Ok(event_stream(start_turn(&state, room.room(), turn).await?))
}

/// Whether the assistant is generating in this room and how many requests wait.
#[utoipa::path(get, path = "/api/rooms/{room}/ai/status", tag = "ai", params(RoomParam),
    responses((status = 200), (status = 403)))]
pub async fn status(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Viewer>,
) -> Result<HttpResponse, ApiError> {
    let (generating, queued) = state
        .ai
        .as_ref()
        .map_or((false, 0), |ai| ai.room_status(room.id.as_str()));
    let (peer_mode, peer_connected) = match state.ai.as_ref().map(Ai::peer_mode) {
        Some(PeerMode::External(_)) => ("external", ai(&state)?.peer_reachable().is_ok()),
        _ => ("in_process", true),
    };
    Ok(HttpResponse::Ok().json(json!({
        "configured": state.ai.as_ref().is_some_and(|ai| ai.provider().is_ok()),
        "generating": generating,
        "queued": queued,
        "peer_mode": peer_mode,
        "peer_connected": peer_connected,
    })))
}

/// What deciding came to, as answered: the new status, or why not.
fn decided(outcome: AcceptOutcome, rejecting: bool) -> Result<HttpResponse, ApiError> {
    match outcome {
        AcceptOutcome::NotFound => Err(ApiError::not_found("no such suggestion")),
        AcceptOutcome::Accepted => Ok(decision(SuggestionStatus::Accepted)),
        AcceptOutcome::Conflict => Ok(suggestion_conflict()),
        // Rejecting twice is no conflict: it is rejected, as asked.
        AcceptOutcome::AlreadyDecided {
            status: Some(SuggestionStatus::Rejected),
        } if rejecting => Ok(decision(SuggestionStatus::Rejected)),
        AcceptOutcome::AlreadyDecided { status } => Err(ApiError::conflict(
            "suggestion_decided",
            format!(
                "the suggestion is already {}",
                status.map_or("decided", SuggestionStatus::as_str)
            ),
        )),
    }
}

fn decision(status: SuggestionStatus) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": status }))
}

/// The 409 of accepting a suggestion whose anchored text changed: the `ApiError` shape plus
/// the suggestion's new status, so a client can update its view without another request.
fn suggestion_conflict() -> HttpResponse {
    HttpResponse::Conflict().json(json!({
        "status": SuggestionStatus::Conflict,
        "error": {
            "code": "suggestion_conflict",
            "message": "the anchored text was changed or deleted; nothing was applied",
        },
    }))
}

/// Applies a suggestion at the range's current position, as the assistant's edit, after a
/// checkpoint; `409` with status `conflict` when the anchored text changed meanwhile.
#[utoipa::path(post, path = "/api/rooms/{room}/suggestions/{suggestion_id}/accept", tag = "ai",
    params(RoomParam, SuggestionParam),
    responses((status = 200), (status = 403), (status = 404), (status = 409)))]
pub async fn accept(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Editor, Loaded>,
    path: web::Path<SuggestionParam>,
) -> Result<HttpResponse, ApiError> {
    let outcome = decisions::accept(ai(&state)?, room.room(), &path.suggestion_id).await?;
    decided(outcome, false)
}

/// Marks a suggestion rejected.
#[utoipa::path(post, path = "/api/rooms/{room}/suggestions/{suggestion_id}/reject", tag = "ai",
    params(RoomParam, SuggestionParam),
    responses((status = 200), (status = 403), (status = 404), (status = 409)))]
pub async fn reject(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Editor>,
    path: web::Path<SuggestionParam>,
) -> Result<HttpResponse, ApiError> {
    let outcome = decisions::reject(ai(&state)?, &room.id, &path.suggestion_id).await?;
    decided(outcome, true)
}

/// `POST /api/rooms/{room}/ai/undo` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UndoRequest {
    /// Undo what the assistant applied since this version was taken.
    since_version: i64,
}

/// Undoes every suggestion the assistant applied in this room since a version.
#[utoipa::path(post, path = "/api/rooms/{room}/ai/undo", tag = "ai", request_body = UndoRequest,
    params(RoomParam),
    responses((status = 200), (status = 403), (status = 404)))]
pub async fn undo(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Editor>,
    body: web::Json<UndoRequest>,
) -> Result<HttpResponse, ApiError> {
    let undone = decisions::undo_since(&state, &room.id, body.since_version).await?;
    Ok(HttpResponse::Ok().json(json!({ "undone": undone })))
}

/// The caller's AI usage, totals per day (UTC). An API key sees the usage in the rooms it
/// was created for only.
#[utoipa::path(get, path = "/api/usage", tag = "ai", responses((status = 200), (status = 401), (status = 403)))]
pub async fn usage(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let user_id = principal_user(&caller.0)?;
    let scope = RoomScope::of(&caller.0);
    let days = conversations::usage_per_day(state.db(), &user_id, &scope).await?;
    Ok(HttpResponse::Ok().json(json!({ "days": days })))
}

/// `GET /api/ai/peer`: the control WebSocket of the `tandem ai-peer` process (external
/// mode only). The shared secret goes in `Authorization: Bearer …` (never in the URL, which
/// proxies log); a wrong one is 401, a second process while one is connected 409. Not in the
/// OpenAPI document: it is the server's own process talking to it, not an API for clients.
pub async fn peer_control(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    control_socket::connect(&req, body, state)
}
