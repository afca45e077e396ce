//! Deciding on a suggestion through the REST API: accepting (after the gate) and rejecting,
//! and undoing what the assistant applied since a version.

use crdt_store::{Room, RoomId};

use super::command::PeerCommand;
use super::suggestion::{AcceptOutcome, GateRefusal, check_and_checkpoint};
use super::{Ai, AiError};
use crate::app::AppState;
use crate::http::ApiError;

/// The assistant, or 503 `ai_not_configured` (for every AI route).
pub(crate) fn ai(state: &AppState) -> Result<&Ai, ApiError> {
    state
        .ai
        .as_ref()
        .ok_or_else(|| AiError::NotConfigured.into())
}

/// Accepts suggestion `id` in `room`: it passes the gate on the server's copy (intact
/// anchored text, then a checkpoint), and the room's peer applies it. A suggestion whose
/// text changed is marked `conflict` and comes to [`AcceptOutcome::Conflict`].
pub(crate) async fn accept(ai: &Ai, room: &Room, id: &str) -> Result<AcceptOutcome, ApiError> {
    let peer = ai.peer(room.id().as_str()).await?;
    match check_and_checkpoint(room, id).await? {
        Ok(()) => {}
        Err(GateRefusal::NotFound) => return Ok(AcceptOutcome::NotFound),
        Err(GateRefusal::Changed) => {
            peer.ask(|reply| PeerCommand::MarkConflict(id.to_owned(), reply))
                .await;
            return Ok(AcceptOutcome::Conflict);
        }
    }
    peer.ask(|reply| PeerCommand::Accept(id.to_owned(), reply))
        .await
        .ok_or_else(|| ai.peer_lost().into())
}

/// Rejects suggestion `id` in room `room` through its peer.
pub(crate) async fn reject(ai: &Ai, room: &RoomId, id: &str) -> Result<AcceptOutcome, ApiError> {
    let peer = ai.peer(room.as_str()).await?;
    peer.ask(|reply| PeerCommand::Reject(id.to_owned(), reply))
        .await
        .ok_or_else(|| ai.peer_lost().into())
}

/// Undoes every suggestion the assistant applied in room `room` since version `version`
/// was taken (404 when the room has no such version); answers the suggestions undone.
pub(crate) async fn undo_since(
    state: &AppState,
    room: &RoomId,
    version: i64,
) -> Result<Vec<String>, ApiError> {
    let (version, _) = state
        .registry
        .storage()
        .get_version(room, version)
        .await?
        .ok_or_else(|| ApiError::not_found("no such version"))?;
    let ai = ai(state)?;
    let peer = ai.peer(room.as_str()).await?;
    peer.ask(|reply| PeerCommand::UndoSince(version.created_at_ms, reply))
        .await
        .ok_or_else(|| ai.peer_lost().into())
}
