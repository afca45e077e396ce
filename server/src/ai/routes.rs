//! `/api/rooms/{room}/ai/*`, `/api/rooms/{room}/suggestions/*`, `/api/usage`, and the
//! control WebSocket of the `tandem ai-peer` process (`/api/ai/peer`).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use bytes::Bytes;
use futures_util::StreamExt;
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};
use utoipa::ToSchema;

use crate::accounts::auth::{Principal, Role};
use crate::ai::command::{PeerCommand, Status};
use crate::ai::control::{FromPeer, ToPeer};
use crate::ai::remote::ControlLink;
use crate::ai::suggestion::{
    AcceptOutcome, GateRefusal, NewSuggestion, SuggestionStatus, check_and_checkpoint,
};
use crate::ai::{Action, Ai, AiError, PeerMode, split_answer};
use crate::app::AppState;
use crate::entity::{ai_conversation, ai_message};
use crate::http::caller::{Caller, RoomScope, existing_room_id, require_role};
use crate::http::error::ApiError;
use crate::sync::keepalive::{Keepalive, KeepaliveTick};

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
            AiError::BadRange(message) => {
                Self::validation(BTreeMap::from([("selection", message)]))
            }
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

fn ai(state: &AppState) -> Result<&Ai, ApiError> {
    state
        .ai
        .as_ref()
        .ok_or_else(|| AiError::NotConfigured.into())
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

fn sse(event: &str, data: serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

fn principal_user(principal: &Principal) -> Result<String, ApiError> {
    principal
        .user_id()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::forbidden("the assistant needs an account"))
}

/// Asks the assistant. The answer streams back as Server-Sent Events: `token` events with
/// each piece of text, then `done` with the conversation, message and suggestion ids and the
/// token usage (or `error`).
#[utoipa::path(post, path = "/api/rooms/{room}/ai/chat", tag = "ai", request_body = ChatRequest,
    responses((status = 200, description = "text/event-stream"), (status = 403), (status = 413), (status = 429), (status = 503)))]
pub async fn chat(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
    body: web::Json<ChatRequest>,
) -> Result<HttpResponse, ApiError> {
    require_role(
        &state,
        &caller.0,
        &existing_room_id(&room_id)?,
        Role::Editor,
    )
    .await?;
    let user_id = principal_user(&caller.0)?;
    let body = body.into_inner();
    if body.message.trim().is_empty() || body.message.chars().count() > 20_000 {
        return Err(ApiError::validation(BTreeMap::from([(
            "message",
            "must be 1 to 20000 characters".to_owned(),
        )])));
    }
    // Only looked up here: nothing is written before every check of `start_turn` passed.
    let conversation = match body.conversation_id {
        Some(id) => {
            existing_conversation(&state, &room_id, &id).await?;
            Conversation::Existing(id)
        }
        None => Conversation::New {
            title: body.message.chars().take(80).collect(),
        },
    };
    let selection = body
        .selection
        .map(|s| (s.start, s.end))
        .or(body.cursor.map(|c| (c, c)));
    let request = ChatTurn {
        room: room_id.into_inner(),
        user_id,
        conversation,
        message: body.message,
        action: body.action.unwrap_or(Action::Free),
        file: body.file,
        selection,
    };
    start_turn(&state, request).await
}

/// Fails with 404 unless `room` has conversation `id`.
async fn existing_conversation(state: &AppState, room: &str, id: &str) -> Result<(), ApiError> {
    ai_conversation::Entity::find_by_id(id)
        .filter(ai_conversation::Column::RoomId.eq(room))
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found("no such conversation in this room"))
        .map(drop)
}

/// The conversation a question belongs to.
enum Conversation {
    /// One of the room's, checked to exist.
    Existing(String),
    /// One to start, once the question is accepted.
    New {
        /// Its title: the start of the first question.
        title: String,
    },
}

/// One question to answer.
struct ChatTurn {
    room: String,
    user_id: String,
    conversation: Conversation,
    message: String,
    action: Action,
    file: Option<String>,
    selection: Option<(u32, u32)>,
}

/// A question that passed every check and is stored.
struct AcceptedTurn {
    room: String,
    user_id: String,
    conversation_id: String,
    action: Action,
}

/// Stores the question, in a new conversation or an existing one, in one transaction (never
/// a conversation without its first question); answers the conversation's id.
async fn store_question(state: &AppState, turn: &ChatTurn) -> Result<String, ApiError> {
    let txn = state.db().begin().await?;
    let conversation_id = match &turn.conversation {
        Conversation::Existing(id) => id.clone(),
        Conversation::New { title } => {
            let id = crate::accounts::auth::secrets::random_id();
            ai_conversation::ActiveModel {
                id: Set(id.clone()),
                room_id: Set(turn.room.clone()),
                user_id: Set(turn.user_id.clone()),
                title: Set(title.clone()),
                created_at: Set(state.auth.now()),
            }
            .insert(&txn)
            .await?;
            id
        }
    };
    ai_message::ActiveModel {
        conversation_id: Set(conversation_id.clone()),
        user_id: Set(turn.user_id.clone()),
        role: Set("user".into()),
        action: Set(turn.action.as_str().into()),
        content: Set(turn.message.clone()),
        prompt_tokens: Set(0),
        completion_tokens: Set(0),
        suggestion_ids: Set("[]".into()),
        created_at: Set(state.auth.now()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(conversation_id)
}

/// Checks everything that can refuse the question, cheapest and least consuming first, then
/// stores it and starts the answer. A refused question leaves nothing behind: no
/// conversation, no message, and (unless refused by the limit itself or by a peer that could
/// not join) nothing counted against the caller's rate limit.
async fn start_turn(state: &web::Data<AppState>, turn: ChatTurn) -> Result<HttpResponse, ApiError> {
    let ai = ai(state)?.clone();
    ai.provider()?;
    // Before the rate limit: a request refused for want of a peer does not count.
    ai.peer_reachable()?;
    let room_id = crdt_store::RoomId::parse(&turn.room)?;
    let lease = state.registry.lease(&room_id).await?;
    // The file, the range and the selection's size: a request refused for them does not
    // count either.
    let prepared = ai
        .prepare(
            lease.room(),
            &turn.message,
            turn.action,
            turn.file.as_deref(),
            turn.selection,
        )
        .await?;
    drop(lease);
    ai.check_rate(&turn.user_id)?;
    let peer = ai.peer(&turn.room).await?;
    let conversation_id = store_question(state, &turn).await?;
    let turn = AcceptedTurn {
        room: turn.room,
        user_id: turn.user_id,
        conversation_id,
        action: turn.action,
    };

    let (events, receiver) = mpsc::channel::<Bytes>(256);
    let state = state.clone();
    let tasks = ai.tasks().clone();
    tasks.spawn_local(async move {
        let _turn = ai.room_turn(&turn.room).await;
        peer.send(PeerCommand::Status(
            Status::Thinking,
            prepared.selection.clone(),
        ))
        .await;
        let (tokens, mut pieces) = mpsc::channel::<String>(256);
        let provider = ai.provider().expect("checked above").clone();
        let prompt = prepared.prompt;
        let generation = ai
            .tasks()
            .spawn(async move { provider.stream(&prompt, &tokens).await });
        let mut writing = false;
        while let Some(piece) = pieces.recv().await {
            if !writing {
                writing = true;
                peer.send(PeerCommand::Status(
                    Status::Writing,
                    prepared.selection.clone(),
                ))
                .await;
            }
            let _ = events.send(sse("token", json!({ "text": piece }))).await;
        }
        let outcome = generation.await;
        let completion = match outcome {
            Ok(Ok(completion)) => completion,
            Ok(Err(err)) => {
                let _ = events
                    .send(sse(
                        "error",
                        json!({"code": "ai_failed", "message": err.to_string()}),
                    ))
                    .await;
                peer.send(PeerCommand::Status(Status::Idle, None)).await;
                return;
            }
            Err(err) => {
                let _ = events
                    .send(sse(
                        "error",
                        json!({"code": "internal", "message": err.to_string()}),
                    ))
                    .await;
                peer.send(PeerCommand::Status(Status::Idle, None)).await;
                return;
            }
        };
        let mut suggestion_ids = Vec::new();
        if prepared.action.proposes_edit()
            && let (Some(range), Some((code, explanation))) = (
                prepared.anchored.clone(),
                split_answer(&completion.text).or_else(|| {
                    // Small models often answer an edit request with bare code: for the
                    // actions whose whole answer is the new code, take it as the replacement.
                    matches!(prepared.action, Action::Refactor | Action::AddComments)
                        .then(|| (completion.text.trim().to_owned(), String::new()))
                        .filter(|(code, _)| !code.is_empty())
                }),
            )
        {
            let suggestion = NewSuggestion {
                range,
                replacement: code,
                explanation,
                conversation_id: turn.conversation_id.clone(),
            };
            if let Some(Ok(id)) = peer
                .ask(|reply| PeerCommand::Suggest(suggestion, reply))
                .await
            {
                suggestion_ids.push(id);
            }
        }
        peer.send(PeerCommand::Status(Status::Idle, None)).await;
        let stored = ai_message::ActiveModel {
            conversation_id: Set(turn.conversation_id.clone()),
            user_id: Set(turn.user_id.clone()),
            role: Set("assistant".into()),
            action: Set(turn.action.as_str().into()),
            content: Set(completion.text.clone()),
            prompt_tokens: Set(i64::from(completion.prompt_tokens)),
            completion_tokens: Set(i64::from(completion.completion_tokens)),
            suggestion_ids: Set(serde_json::to_string(&suggestion_ids).unwrap_or_default()),
            created_at: Set(state.auth.now()),
            ..Default::default()
        }
        .insert(state.db())
        .await;
        let message_id = stored.map(|m| m.id).ok();
        let _ = events
            .send(sse(
                "done",
                json!({
                    "conversation_id": turn.conversation_id,
                    "message_id": message_id,
                    "suggestion_ids": suggestion_ids,
                    "usage": {
                        "prompt_tokens": completion.prompt_tokens,
                        "completion_tokens": completion.completion_tokens,
                    },
                }),
            ))
            .await;
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|chunk| (Ok::<_, actix_web::Error>(chunk), receiver))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
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
#[utoipa::path(get, path = "/api/rooms/{room}/ai/conversations", tag = "ai", responses((status = 200), (status = 403)))]
pub async fn list_conversations(
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
    let conversations: Vec<serde_json::Value> = ai_conversation::Entity::find()
        .filter(ai_conversation::Column::RoomId.eq(room_id.as_str()))
        .order_by_desc(ai_conversation::Column::CreatedAt)
        .all(state.db())
        .await?
        .into_iter()
        .map(|c| json!({"id": c.id, "title": c.title, "user_id": c.user_id, "created_at_ms": c.created_at}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "conversations": conversations })))
}

async fn messages(
    state: &AppState,
    conversation: &str,
) -> Result<Vec<ai_message::Model>, ApiError> {
    Ok(ai_message::Entity::find()
        .filter(ai_message::Column::ConversationId.eq(conversation))
        .order_by_asc(ai_message::Column::Id)
        .all(state.db())
        .await?)
}

/// One conversation with every message and its token usage.
#[utoipa::path(get, path = "/api/rooms/{room}/ai/conversations/{conversation_id}", tag = "ai", responses((status = 200), (status = 403), (status = 404)))]
pub async fn get_conversation(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, conversation_id) = path.into_inner();
    require_role(
        &state,
        &caller.0,
        &existing_room_id(&room_id)?,
        Role::Viewer,
    )
    .await?;
    let conversation = ai_conversation::Entity::find_by_id(&conversation_id)
        .filter(ai_conversation::Column::RoomId.eq(&room_id))
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found("no such conversation in this room"))?;
    let messages: Vec<MessageView> = messages(&state, &conversation_id)
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
    responses((status = 200, description = "text/event-stream"), (status = 403), (status = 404), (status = 429)))]
pub async fn regenerate(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, conversation_id) = path.into_inner();
    require_role(
        &state,
        &caller.0,
        &existing_room_id(&room_id)?,
        Role::Editor,
    )
    .await?;
    let user_id = principal_user(&caller.0)?;
    existing_conversation(&state, &room_id, &conversation_id).await?;
    let last = messages(&state, &conversation_id)
        .await?
        .into_iter()
        .rev()
        .find(|m| m.role == "user")
        .ok_or_else(|| ApiError::not_found("nothing to regenerate"))?;
    let action = serde_json::from_value(json!(last.action)).unwrap_or(Action::Free);
    start_turn(
        &state,
        ChatTurn {
            room: room_id,
            user_id,
            conversation: Conversation::Existing(conversation_id),
            message: last.content,
            action,
            file: None,
            selection: None,
        },
    )
    .await
}

/// Whether the assistant is generating in this room and how many requests wait.
#[utoipa::path(get, path = "/api/rooms/{room}/ai/status", tag = "ai", responses((status = 200), (status = 403)))]
pub async fn status(
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
    let (generating, queued) = state
        .ai
        .as_ref()
        .map_or((false, 0), |ai| ai.room_status(&room_id));
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

async fn decide(
    state: &web::Data<AppState>,
    caller: &Caller,
    room_id: &str,
    suggestion: &str,
    accept: bool,
) -> Result<HttpResponse, ApiError> {
    require_role(state, &caller.0, &existing_room_id(room_id)?, Role::Editor).await?;
    let ai = ai(state)?;
    let peer = ai.peer(room_id).await?;
    if accept {
        let id = crdt_store::RoomId::parse(room_id)?;
        let lease = state.registry.lease(&id).await?;
        match check_and_checkpoint(lease.room(), suggestion).await? {
            Ok(()) => {}
            Err(GateRefusal::NotFound) => return Err(ApiError::not_found("no such suggestion")),
            Err(GateRefusal::Changed) => {
                peer.ask(|reply| PeerCommand::MarkConflict(suggestion.to_owned(), reply))
                    .await;
                return Ok(suggestion_conflict());
            }
        }
    }
    let outcome = peer
        .ask(|reply| {
            if accept {
                PeerCommand::Accept(suggestion.to_owned(), reply)
            } else {
                PeerCommand::Reject(suggestion.to_owned(), reply)
            }
        })
        .await
        .ok_or_else(|| ApiError::from(ai.peer_lost()))?;
    match outcome {
        AcceptOutcome::NotFound => Err(ApiError::not_found("no such suggestion")),
        AcceptOutcome::Accepted => {
            Ok(HttpResponse::Ok().json(json!({"status": SuggestionStatus::Accepted.as_str()})))
        }
        AcceptOutcome::Conflict => Ok(suggestion_conflict()),
        AcceptOutcome::AlreadyDecided { status }
            if !accept && status == SuggestionStatus::Rejected.as_str() =>
        {
            Ok(HttpResponse::Ok().json(json!({"status": SuggestionStatus::Rejected.as_str()})))
        }
        AcceptOutcome::AlreadyDecided { status } => Err(ApiError::conflict(
            "suggestion_decided",
            format!("the suggestion is already {status}"),
        )),
    }
}

/// The 409 of accepting a suggestion whose anchored text changed: the `ApiError` shape plus
/// the suggestion's new status, so a client can update its view without another request.
fn suggestion_conflict() -> HttpResponse {
    HttpResponse::Conflict().json(json!({
        "status": SuggestionStatus::Conflict.as_str(),
        "error": {
            "code": "suggestion_conflict",
            "message": "the anchored text was changed or deleted; nothing was applied",
        },
    }))
}

/// Applies a suggestion at the range's current position, as the assistant's edit, after a
/// checkpoint; `409` with status `conflict` when the anchored text changed meanwhile.
#[utoipa::path(post, path = "/api/rooms/{room}/suggestions/{suggestion_id}/accept", tag = "ai",
    responses((status = 200), (status = 403), (status = 404), (status = 409)))]
pub async fn accept(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room, suggestion) = path.into_inner();
    decide(&state, &caller, &room, &suggestion, true).await
}

/// Marks a suggestion rejected.
#[utoipa::path(post, path = "/api/rooms/{room}/suggestions/{suggestion_id}/reject", tag = "ai",
    responses((status = 200), (status = 403), (status = 404), (status = 409)))]
pub async fn reject(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room, suggestion) = path.into_inner();
    decide(&state, &caller, &room, &suggestion, false).await
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
    responses((status = 200), (status = 403), (status = 404)))]
pub async fn undo(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
    body: web::Json<UndoRequest>,
) -> Result<HttpResponse, ApiError> {
    require_role(
        &state,
        &caller.0,
        &existing_room_id(&room_id)?,
        Role::Editor,
    )
    .await?;
    let id = crdt_store::RoomId::parse(&room_id)?;
    let (version, _) = state
        .registry
        .storage()
        .get_version(&id, body.since_version)
        .await?
        .ok_or_else(|| ApiError::not_found("no such version"))?;
    let ai = ai(&state)?;
    let peer = ai.peer(&room_id).await?;
    let undone = peer
        .ask(|reply| PeerCommand::UndoSince(version.created_at_ms, reply))
        .await
        .ok_or_else(|| ApiError::from(ai.peer_lost()))?;
    Ok(HttpResponse::Ok().json(json!({ "undone": undone })))
}

/// The caller's AI usage, totals per day (UTC). An API key sees the usage in the rooms it
/// was created for only.
#[utoipa::path(get, path = "/api/usage", tag = "ai", responses((status = 200), (status = 401), (status = 403)))]
pub async fn usage(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let user_id = principal_user(&caller.0)?;
    let mut select = ai_message::Entity::find().filter(ai_message::Column::UserId.eq(&user_id));
    let scope = RoomScope::of(&caller.0);
    if scope != RoomScope::Every {
        // Messages carry no room; their conversation does.
        let in_scope = Query::select()
            .column(ai_conversation::Column::Id)
            .from(ai_conversation::Entity)
            .cond_where(scope.condition(ai_conversation::Column::RoomId))
            .to_owned();
        select = select.filter(ai_message::Column::ConversationId.in_subquery(in_scope));
    }
    let rows = select.all(state.db()).await?;
    let mut days: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    for m in rows {
        let day = m.created_at.div_euclid(86_400_000);
        let entry = days.entry(day).or_default();
        if m.role == "user" {
            entry.2 += 1;
        }
        entry.0 += m.prompt_tokens;
        entry.1 += m.completion_tokens;
    }
    let days: Vec<serde_json::Value> = days
        .into_iter()
        .map(|(day, (prompt, completion, requests))| {
            json!({
                "day_start_ms": day * 86_400_000,
                "requests": requests,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            })
        })
        .collect();
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
    let ai = ai(&state)?.clone();
    let remote = ai.remote().ok_or_else(|| {
        ApiError::not_found(
            "the assistant runs inside the server (start it with --ai-peer external)",
        )
    })?;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !remote.secret().verify(presented) {
        warn!("refused an AI peer connection with a wrong secret");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_ai_peer_secret",
            "wrong AI peer secret",
        ));
    }
    let (link, outgoing) = remote
        .attach()
        .map_err(|err| ApiError::conflict("ai_peer_already_connected", err.to_string()))?;
    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(upgrade) => upgrade,
        Err(err) => {
            remote.detach(&link);
            return Err(ApiError::invalid(err.to_string()));
        }
    };
    let max = state.session.max_message_size;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    info!("AI peer process connected");
    let tasks = ai.tasks().clone();
    tasks.spawn_local(
        async move {
            let end = control_loop(session.clone(), stream, &link, outgoing, &ai, &state).await;
            if let Some(remote) = ai.remote() {
                remote.detach(&link);
            }
            info!(reason = %end.1, "AI peer process disconnected");
            if let Some(code) = end.0 {
                let _ = session
                    .close(Some(CloseReason {
                        code,
                        description: Some(end.1),
                    }))
                    .await;
            }
        }
        .instrument(info_span!("ai_peer")),
    );
    Ok(response)
}

/// Relays between the control socket and the link until either ends; returns the close
/// code to send (none when the peer process is gone) and why.
async fn control_loop(
    mut session: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
    link: &Arc<ControlLink>,
    mut outgoing: mpsc::Receiver<ToPeer>,
    ai: &Ai,
    state: &AppState,
) -> (Option<CloseCode>, String) {
    let mut keepalive = Keepalive::new(&state.session);
    loop {
        tokio::select! {
            biased;
            _ = ai.stopping().cancelled() => {
                return (Some(CloseCode::Away), "server shutting down".into());
            }
            incoming = stream.next() => {
                let message = match incoming {
                    None => return (None, "connection closed".into()),
                    Some(Ok(message)) => message,
                    // The process went away without a close (killed, network gone).
                    Some(Err(actix_ws::ProtocolError::Io(err))) => {
                        return (None, format!("connection lost: {err}"));
                    }
                    Some(Err(err)) => return (Some(CloseCode::Protocol), err.to_string()),
                };
                keepalive.heard();
                match message {
                    AggregatedMessage::Text(text) => match serde_json::from_str::<FromPeer>(&text) {
                        Ok(message) => {
                            if let Some((id, room, suggestion)) = link.receive(message) {
                                // Checking and versioning take a while; the loop goes on.
                                let (ai_for_gate, link) = (ai.clone(), link.clone());
                                ai.tasks().spawn(async move {
                                    let verdict = ai_for_gate.gate(&room, &suggestion).await;
                                    link.answer_gate(id, verdict).await;
                                });
                            }
                        }
                        Err(err) => {
                            return (Some(CloseCode::Invalid), format!("unreadable message: {err}"));
                        }
                    },
                    AggregatedMessage::Binary(_) => {
                        return (Some(CloseCode::Unsupported), "the control protocol is JSON text".into());
                    }
                    AggregatedMessage::Ping(payload) => {
                        if session.pong(&payload).await.is_err() {
                            return (None, "connection closed".into());
                        }
                    }
                    AggregatedMessage::Pong(_) => {}
                    AggregatedMessage::Close(_) => return (Some(CloseCode::Normal), "closed by the peer".into()),
                }
            }
            Some(message) = outgoing.recv() => {
                let Ok(text) = serde_json::to_string(&message) else { continue };
                if session.text(text).await.is_err() {
                    return (None, "connection closed".into());
                }
            }
            tick = keepalive.tick() => {
                if tick == KeepaliveTick::TimedOut {
                    return (Some(CloseCode::Normal), "keepalive timeout".into());
                }
                if session.ping(b"").await.is_err() {
                    return (None, "connection closed".into());
                }
            }
        }
    }
}
