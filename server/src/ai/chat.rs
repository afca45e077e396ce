//! One question to the assistant, from the checks that may refuse it to the stored answer:
//! what `POST …/ai/chat` and `…/regenerate` start, streamed back as Server-Sent Events.

use bytes::Bytes;
use crdt_store::Room;
use serde_json::json;
use tokio::sync::mpsc;

use super::command::{PeerCommand, Status};
use super::conversations::{self, Conversation};
use super::suggestion::NewSuggestion;
use super::{Action, split_answer};
use crate::app::AppState;
use crate::http::ApiError;

/// One question to answer.
pub(crate) struct ChatTurn {
    /// Who asks.
    pub user_id: String,
    /// The conversation it belongs to.
    pub conversation: Conversation,
    /// The question or instruction.
    pub message: String,
    /// What to do.
    pub action: Action,
    /// The file the selection is in.
    pub file: Option<String>,
    /// The selected range (UTF-16), or a cursor as an empty one.
    pub selection: Option<(u32, u32)>,
}

/// A question that passed every check and is stored.
struct AcceptedTurn {
    room: String,
    user_id: String,
    conversation_id: String,
    action: Action,
}

/// One Server-Sent Event.
fn sse(event: &str, data: serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// Checks everything that can refuse the question, cheapest and least consuming first, then
/// stores it and starts the answer, whose events arrive on the receiver: `token` events with
/// each piece of text, then `done` (or `error`). A refused question leaves nothing behind:
/// no conversation, no message, and (unless refused by the limit itself or by a peer that
/// could not join) nothing counted against the caller's rate limit.
pub(crate) async fn start_turn(
    state: &AppState,
    room: &Room,
    turn: ChatTurn,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let ai = super::decisions::ai(state)?.clone();
    ai.provider()?;
    // Before the rate limit: a request refused for want of a peer does not count.
    ai.peer_reachable()?;
    // The file, the range and the selection's size: a request refused for them does not
    // count either.
    let prepared = ai
        .prepare(
            room,
            &turn.message,
            turn.action,
            turn.file.as_deref(),
            turn.selection,
        )
        .await?;
    ai.check_rate(&turn.user_id)?;
    let room_name = room.id().as_str().to_owned();
    let peer = ai.peer(&room_name).await?;
    let conversation_id = conversations::store_question(
        state.db(),
        room.id(),
        &turn.user_id,
        &turn.conversation,
        &turn.message,
        turn.action,
        state.auth.now(),
    )
    .await?;
    let turn = AcceptedTurn {
        room: room_name,
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
        let message_id = conversations::store_answer(
            state.db(),
            &turn.conversation_id,
            &turn.user_id,
            turn.action,
            &completion,
            &suggestion_ids,
            state.auth.now(),
        )
        .await;
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
    Ok(receiver)
}
