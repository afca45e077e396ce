//! `/api/rooms/{room}/document` and `/api/rooms/{room}/versions`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use crdt_store::{RoomId, VersionKind};
use serde::Deserialize;
use serde_json::json;

use crate::accounts::auth::Role;
use crate::app::AppState;
use crate::collab::activity::{EventKind, RoomEvent, version_data};
use crate::http::caller::{Caller, authorized_room, require_role};
use crate::http::error::ApiError;

/// Longest checkpoint label, in characters.
const MAX_LABEL_CHARS: usize = 200;

/// `?format=json` (default) or `?format=yjs` (one v1 Yjs update, binary).
#[derive(Deserialize, utoipa::IntoParams)]
pub struct FormatQuery {
    /// `json` (default) or `yjs`.
    format: Option<String>,
}

enum Format {
    Json,
    Yjs,
}

impl FormatQuery {
    fn parse(&self) -> Result<Format, ApiError> {
        match self.format.as_deref() {
            None | Some("json") => Ok(Format::Json),
            Some("yjs") => Ok(Format::Yjs),
            Some(other) => Err(ApiError::invalid(format!(
                "unknown format {other:?}; use \"json\" or \"yjs\""
            ))),
        }
    }
}

fn yjs_response(update: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(update)
}

/// The current document: JSON of its root types, or (`?format=yjs`) one Yjs v1 update.
#[utoipa::path(get, path = "/api/rooms/{room}/document", tag = "documents", params(FormatQuery),
    responses((status = 200), (status = 403), (status = 404)))]
pub async fn document(
    state: web::Data<AppState>,
    caller: Caller,
    room: web::Path<String>,
    query: web::Query<FormatQuery>,
) -> Result<HttpResponse, ApiError> {
    let format = query.parse()?;
    let authorized = authorized_room(&state, &caller.0, &room, Role::Viewer).await?;
    let room = authorized.room().clone();
    Ok(match format {
        Format::Json => HttpResponse::Ok().json(
            web::block(move || room.to_json())
                .await
                .map_err(|e| ApiError::internal(&e))??,
        ),
        Format::Yjs => yjs_response(
            web::block(move || room.encode_state())
                .await
                .map_err(|e| ApiError::internal(&e))?,
        ),
    })
}

/// Versions of the room, newest first.
#[utoipa::path(get, path = "/api/rooms/{room}/versions", tag = "documents",
    responses((status = 200), (status = 403), (status = 404)))]
pub async fn list_versions(
    state: web::Data<AppState>,
    caller: Caller,
    room: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room_id = RoomId::parse(&room)?;
    require_role(&state, &caller.0, &room_id, Role::Viewer).await?;
    let versions = state.registry.storage().list_versions(&room_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "versions": versions })))
}

/// Body of `POST /api/rooms/{room}/versions`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    label: String,
}

/// A named checkpoint of the current state (editors).
#[utoipa::path(post, path = "/api/rooms/{room}/versions", tag = "documents", request_body = CreateVersion,
    responses((status = 201), (status = 403), (status = 404)))]
pub async fn create_version(
    state: web::Data<AppState>,
    caller: Caller,
    room: web::Path<String>,
    body: web::Json<CreateVersion>,
) -> Result<HttpResponse, ApiError> {
    let authorized = authorized_room(&state, &caller.0, &room, Role::Editor).await?;
    let label = body.into_inner().label.trim().to_owned();
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
        return Err(ApiError::invalid(format!(
            "label must be 1 to {MAX_LABEL_CHARS} characters"
        )));
    }
    let version = authorized
        .room()
        .create_version(VersionKind::Named, Some(label))
        .await?;
    state.activity.emit(RoomEvent::new(
        authorized.id.as_str(),
        EventKind::VersionCreated,
        Some(authorized.identity),
        version_data(&version),
    ));
    Ok(HttpResponse::build(StatusCode::CREATED).json(version))
}

/// A version's content (JSON, or `?format=yjs`).
#[utoipa::path(get, path = "/api/rooms/{room}/versions/{id}", tag = "documents", params(FormatQuery),
    responses((status = 200), (status = 403), (status = 404)))]
pub async fn get_version(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, i64)>,
    query: web::Query<FormatQuery>,
) -> Result<HttpResponse, ApiError> {
    let format = query.parse()?;
    let (room, id) = path.into_inner();
    let room_id = RoomId::parse(&room)?;
    require_role(&state, &caller.0, &room_id, Role::Viewer).await?;
    let (info, data) = state
        .registry
        .storage()
        .get_version(&room_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("room {room_id} has no version {id}")))?;
    match format {
        Format::Yjs => Ok(yjs_response(data)),
        Format::Json => {
            let limit = state.registry.config().update_limits.max_depth;
            let content = web::block(move || {
                let doc = crdt_store::document::decode_stored(&data, limit)?;
                Ok::<_, crdt_store::document::StoredDocumentError>(crdt_store::document::to_json(
                    &doc,
                )?)
            })
            .await
            .map_err(|e| ApiError::internal(&e))??;
            Ok(HttpResponse::Ok().json(json!({ "version": info, "content": content })))
        }
    }
}

/// Brings the document back to a version as a forward edit every connected client sees live
/// (editors).
#[utoipa::path(post, path = "/api/rooms/{room}/versions/{id}/restore", tag = "documents",
    responses((status = 200), (status = 403), (status = 404)))]
pub async fn restore_version(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (room, id) = path.into_inner();
    let room_id = RoomId::parse(&room)?;
    let (_, identity) = require_role(&state, &caller.0, &room_id, Role::Editor).await?;
    let (_, data) = state
        .registry
        .storage()
        .get_version(&room_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("room {room_id} has no version {id}")))?;
    let lease = state.registry.lease(&room_id).await?;
    let version = lease
        .room()
        .restore(&data, format!("Restored from version {id}"))
        .await?;
    let mut data = version_data(&version);
    data["restored_from"] = json!(id);
    state.activity.emit(RoomEvent::new(
        room_id.as_str(),
        EventKind::VersionRestored,
        Some(identity),
        data,
    ));
    Ok(HttpResponse::Ok().json(json!({ "restored_from": id, "version": version })))
}
