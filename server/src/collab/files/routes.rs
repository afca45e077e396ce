//! `/api/rooms/{room}/files…` and `/api/rooms/{room}/export`: extract, call, map.

use actix_web::http::StatusCode;
use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::FileView;
use crate::app::AppState;
use crate::http::{
    ApiError, AuthorizedRoom, BadRequestIfInvalid, Editor, Loaded, RoomParam, Viewer,
};

/// A file route's room: loaded (files are its document's), 400 for a name that is no room
/// id.
type FilesRoom<R> = AuthorizedRoom<R, Loaded, BadRequestIfInvalid>;

/// The `{path}` of a file's routes (the rest of the URL path).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PathParam {
    path: String,
}

fn attachment(name: &str) -> ContentDisposition {
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(name.to_owned())],
    }
}

/// The room's files, sorted by path.
#[utoipa::path(get, path = "/api/rooms/{room}/files", tag = "files", params(RoomParam),
    responses((status = 200, body = [FileView]), (status = 403), (status = 404)))]
pub async fn list_files(room: FilesRoom<Viewer>) -> Result<HttpResponse, ApiError> {
    let files = super::list_files(room.room());
    Ok(HttpResponse::Ok().json(json!({ "files": files })))
}

/// `POST /api/rooms/{room}/files` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFileRequest {
    /// The new file's path.
    path: String,
    /// Its text (empty by default).
    #[serde(default)]
    content: String,
}

/// Creates a file (editors); 409 `file_exists` when the path is taken.
#[utoipa::path(post, path = "/api/rooms/{room}/files", tag = "files", request_body = CreateFileRequest,
    params(RoomParam),
    responses((status = 201, body = FileView), (status = 403), (status = 409), (status = 413), (status = 422)))]
pub async fn create_file(
    state: web::Data<AppState>,
    room: FilesRoom<Editor>,
    body: web::Json<CreateFileRequest>,
) -> Result<HttpResponse, ApiError> {
    let CreateFileRequest { path, content } = body.into_inner();
    let actor = room.identity.clone();
    let view = super::create_file(&state, room.room(), actor, &path, content).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Downloads one file as it is, byte for byte (`text/plain; charset=utf-8`).
#[utoipa::path(get, path = "/api/rooms/{room}/files/{path}", tag = "files", params(RoomParam, PathParam),
    responses((status = 200, content_type = "text/plain"), (status = 403), (status = 404)))]
pub async fn download_file(
    room: FilesRoom<Viewer>,
    path: web::Path<PathParam>,
) -> Result<HttpResponse, ApiError> {
    let file = super::parse_path(&path.path)?;
    let content = super::read_file(room.room(), &file)?;
    let name = file.as_str().rsplit('/').next().unwrap_or(file.as_str());
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(attachment(name))
        .body(content))
}

/// Uploads a file (editors): the raw body becomes the file's text, creating it (201) or
/// rewriting it with a minimal diff (200). Binary bodies get 415 `binary_file`, bodies over
/// `--max-file-size` 413 `file_too_large`.
#[utoipa::path(put, path = "/api/rooms/{room}/files/{path}", tag = "files", params(RoomParam, PathParam),
    request_body(content = String, content_type = "text/plain"),
    responses((status = 200, body = FileView), (status = 201, body = FileView), (status = 403),
        (status = 413), (status = 415), (status = 422)))]
pub async fn upload_file(
    state: web::Data<AppState>,
    room: FilesRoom<Editor>,
    path: web::Path<PathParam>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = room.identity.clone();
    let (created, view) =
        super::upload_file(&state, room.room(), actor, &path.path, &req, payload).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(view))
}

/// `PATCH /api/rooms/{room}/files/{path}` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameFileRequest {
    /// The new path.
    path: String,
}

/// Renames (moves) a file (editors).
#[utoipa::path(patch, path = "/api/rooms/{room}/files/{path}", tag = "files", request_body = RenameFileRequest,
    params(RoomParam, PathParam),
    responses((status = 200, body = FileView), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn rename_file(
    state: web::Data<AppState>,
    room: FilesRoom<Editor>,
    path: web::Path<PathParam>,
    body: web::Json<RenameFileRequest>,
) -> Result<HttpResponse, ApiError> {
    let actor = room.identity.clone();
    let view = super::rename_file(&state, room.room(), actor, &path.path, &body.path).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Deletes a file (editors).
#[utoipa::path(delete, path = "/api/rooms/{room}/files/{path}", tag = "files", params(RoomParam, PathParam),
    responses((status = 204), (status = 403), (status = 404), (status = 409)))]
pub async fn delete_file(
    state: web::Data<AppState>,
    room: FilesRoom<Editor>,
    path: web::Path<PathParam>,
) -> Result<HttpResponse, ApiError> {
    let actor = room.identity.clone();
    super::delete_file(&state, room.room(), actor, &path.path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Every file of the room as a zip (`{room}.zip`), paths as in the room.
#[utoipa::path(get, path = "/api/rooms/{room}/export", tag = "files", params(RoomParam),
    responses((status = 200, content_type = "application/zip"), (status = 403), (status = 404)))]
pub async fn export_room(room: FilesRoom<Viewer>) -> Result<HttpResponse, ApiError> {
    let zip = super::export_zip(room.room()).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header(attachment(&format!("{}.zip", room.id)))
        .body(zip))
}
