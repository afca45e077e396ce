//! The document itself and its named versions: the current state as JSON or one Yjs update,
//! versions listed, read, taken and restored.

pub(crate) mod routes;

use crdt_store::{Room, RoomId, VersionInfo, VersionKind};
use serde_json::json;

use crate::accounts::Identity;
use crate::app::AppState;
use crate::collab::activity::{EventKind, RoomEvent, version_data};
use crate::http::ApiError;

/// Longest checkpoint label, in characters.
const MAX_LABEL_CHARS: usize = 200;

/// The room's whole state as one Yjs v1 update (encoded off the async workers).
pub async fn encoded_state(room: &Room) -> Result<Vec<u8>, ApiError> {
    let room = room.clone();
    actix_web::web::block(move || room.encode_state())
        .await
        .map_err(|e| ApiError::internal(&e))
}

/// The room's root types as JSON (built off the async workers).
pub(crate) async fn document_json(room: &Room) -> Result<serde_json::Value, ApiError> {
    let room = room.clone();
    Ok(actix_web::web::block(move || room.to_json())
        .await
        .map_err(|e| ApiError::internal(&e))??)
}

/// Version `version` of the room, with its stored state; 404 when it has none such.
pub(crate) async fn version(
    state: &AppState,
    id: &RoomId,
    version: i64,
) -> Result<(VersionInfo, Vec<u8>), ApiError> {
    state
        .registry
        .storage()
        .get_version(id, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("room {id} has no version {version}")))
}

/// A version's stored state as JSON of its root types (within the nesting limit).
pub(crate) async fn version_json(
    state: &AppState,
    data: Vec<u8>,
) -> Result<serde_json::Value, ApiError> {
    let limit = state.registry.config().update_limits.max_depth;
    Ok(actix_web::web::block(move || {
        let doc = crdt_store::document::decode_stored(&data, limit)?;
        Ok::<_, crdt_store::document::StoredDocumentError>(crdt_store::document::to_json(&doc)?)
    })
    .await
    .map_err(|e| ApiError::internal(&e))??)
}

/// Takes a named checkpoint of the room (a label of 1 to 200 characters, else 400).
pub(crate) async fn create_version(
    state: &AppState,
    room: &Room,
    actor: Identity,
    label: &str,
) -> Result<VersionInfo, ApiError> {
    let label = label.trim().to_owned();
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
        return Err(ApiError::invalid(format!(
            "label must be 1 to {MAX_LABEL_CHARS} characters"
        )));
    }
    let version = room.create_version(VersionKind::Named, Some(label)).await?;
    state.activity.emit(RoomEvent::new(
        room.id().as_str(),
        EventKind::VersionCreated,
        Some(actor),
        version_data(&version),
    ));
    Ok(version)
}

/// Brings the room back to version `from` as a forward edit; answers the version the
/// restore itself took.
pub(crate) async fn restore_version(
    state: &AppState,
    room: &Room,
    actor: Identity,
    from: i64,
) -> Result<VersionInfo, ApiError> {
    let (_, data) = version(state, room.id(), from).await?;
    let version = room
        .restore(&data, format!("Restored from version {from}"))
        .await?;
    let mut data = version_data(&version);
    data["restored_from"] = json!(from);
    state.activity.emit(RoomEvent::new(
        room.id().as_str(),
        EventKind::VersionRestored,
        Some(actor),
        data,
    ));
    Ok(version)
}
