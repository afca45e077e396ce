//! `/api/rooms/{room}/document` and `/api/rooms/{room}/versions`: extract, call, map.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::http::{
    ApiError, AuthorizedRoom, BadRequestIfInvalid, Editor, Loaded, RoomParam, Unloaded, Viewer,
};

/// A document route's room: 400 for a name that is no room id.
type DocumentRoom<R, L> = AuthorizedRoom<R, L, BadRequestIfInvalid>;

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

/// The `{id}` of a version's routes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VersionParam {
    id: i64,
}

fn yjs_response(update: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(update)
}

/// The current document: JSON of its root types, or (`?format=yjs`) one Yjs v1 update.
#[utoipa::path(get, path = "/api/rooms/{room}/document", tag = "documents", params(FormatQuery, RoomParam),
    responses((status = 200), (status = 403), (status = 404)))]
pub async fn document(
    query: web::Query<FormatQuery>,
    room: DocumentRoom<Viewer, Loaded>,
) -> Result<HttpResponse, ApiError> {
    Ok(match query.parse()? {
        Format::Json => HttpResponse::Ok().json(super::document_json(room.room()).await?),
        Format::Yjs => yjs_response(super::encoded_state(room.room()).await?),
    })
}

/// Versions of the room, newest first.
#[utoipa::path(get, path = "/api/rooms/{room}/versions", tag = "documents", params(RoomParam),
    responses((status = 200), (status = 403), (status = 404)))]
pub async fn list_versions(
    state: web::Data<AppState>,
    room: DocumentRoom<Viewer, Unloaded>,
) -> Result<HttpResponse, ApiError> {
    let versions = state.registry.storage().list_versions(&room.id).await?;
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
    params(RoomParam),
    responses((status = 201), (status = 403), (status = 404)))]
pub async fn create_version(
    state: web::Data<AppState>,
    room: DocumentRoom<Editor, Loaded>,
    body: web::Json<CreateVersion>,
) -> Result<HttpResponse, ApiError> {
    let actor = room.identity.clone();
    let version = super::create_version(&state, room.room(), actor, &body.label).await?;
    Ok(HttpResponse::Created().json(version))
}

/// A version's content (JSON, or `?format=yjs`).
#[utoipa::path(get, path = "/api/rooms/{room}/versions/{id}", tag = "documents",
    params(FormatQuery, RoomParam, VersionParam),
    responses((status = 200), (status = 403), (status = 404)))]
pub async fn get_version(
    state: web::Data<AppState>,
    query: web::Query<FormatQuery>,
    room: DocumentRoom<Viewer, Unloaded>,
    path: web::Path<VersionParam>,
) -> Result<HttpResponse, ApiError> {
    let format = query.parse()?;
    let (info, data) = super::version(&state, &room.id, path.id).await?;
    Ok(match format {
        Format::Yjs => yjs_response(data),
        Format::Json => {
            let content = super::version_json(&state, data).await?;
            HttpResponse::Ok().json(json!({ "version": info, "content": content }))
        }
    })
}

/// Brings the document back to a version as a forward edit every connected client sees live
/// (editors).
#[utoipa::path(post, path = "/api/rooms/{room}/versions/{id}/restore", tag = "documents",
    params(RoomParam, VersionParam),
    responses((status = 200), (status = 403), (status = 404)))]
pub async fn restore_version(
    state: web::Data<AppState>,
    room: DocumentRoom<Editor, Loaded>,
    path: web::Path<VersionParam>,
) -> Result<HttpResponse, ApiError> {
    let actor = room.identity.clone();
    let version = super::restore_version(&state, room.room(), actor, path.id).await?;
    Ok(HttpResponse::Ok().json(json!({ "restored_from": path.id, "version": version })))
}
