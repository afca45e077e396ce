//! `/api/rooms/{room}/files…`, `/api/rooms/{room}/export` and `/api/import`: a room's files
//! over REST.
//!
//! Every change goes through the room's CRDT (one server transaction each), so connected
//! clients see files appear, change, move and disappear live. Uploads and imports take text
//! only: a body that is not UTF-8, or holds a NUL byte, is refused as binary.

use std::io::{Cursor, Read, Write};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpRequest, HttpResponse, web};
use crdt_store::files::{self, FilePath};
use crdt_store::new_doc;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use yrs::{ReadTxn, StateVector, Transact};

use crate::accounts::auth::Role;
use crate::accounts::routes::check_name;
use crate::app::AppState;
use crate::collab::activity::{EventKind, RoomEvent};
use crate::config::FileLimits;
use crate::http::caller::{AuthorizedRoom, Caller, SessionUser, authorized_room};
use crate::http::error::ApiError;
use crate::rooms::room::{create_room_with_content, new_room_id};
use crate::rooms::validated;

/// Most entries an imported zip may hold.
const MAX_IMPORT_ENTRIES: usize = 10_000;

/// A file as listed.
#[derive(Serialize, ToSchema)]
pub struct FileView {
    /// Its path.
    path: String,
    /// Its size in bytes (UTF-8).
    size_bytes: usize,
    /// `true` for a root `Y.Text` of the document (rewritable, not renamable or deletable).
    root_text: bool,
}

fn file_view(path: String, content: &str, root_text: bool) -> FileView {
    FileView {
        path,
        size_bytes: content.len(),
        root_text,
    }
}

fn parse_path(path: &str) -> Result<FilePath, ApiError> {
    FilePath::parse(path).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_path",
            e.to_string(),
        )
    })
}

fn file_event(state: &AppState, room: AuthorizedRoom, kind: EventKind, data: serde_json::Value) {
    state.activity.emit(RoomEvent::new(
        room.id.as_str(),
        kind,
        Some(room.identity),
        data,
    ));
}

/// Whether a path names a root text (not an entry of the `files` map) in `room`.
fn is_root_text(room: &crdt_store::Room, path: &str) -> bool {
    room.read(|txn| {
        txn.get_map(crdt_store::document::FILES_ROOT)
            .is_none_or(|files| yrs::Map::get(&files, txn, path).is_none())
    })
}

/// The room's files, sorted by path.
#[utoipa::path(get, path = "/api/rooms/{room}/files", tag = "files",
    responses((status = 200, body = [FileView]), (status = 403), (status = 404)))]
pub async fn list_files(
    state: web::Data<AppState>,
    caller: Caller,
    room: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let authorized = authorized_room(&state, &caller.0, &room, Role::Viewer).await?;
    let room = authorized.room();
    let views: Vec<FileView> = room
        .files()
        .into_iter()
        .map(|(path, content)| {
            let root = is_root_text(room, &path);
            file_view(path, &content, root)
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "files": views })))
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
    responses((status = 201, body = FileView), (status = 403), (status = 409), (status = 413), (status = 422)))]
pub async fn create_file(
    state: web::Data<AppState>,
    caller: Caller,
    room: web::Path<String>,
    body: web::Json<CreateFileRequest>,
) -> Result<HttpResponse, ApiError> {
    let authorized = authorized_room(&state, &caller.0, &room, Role::Editor).await?;
    let CreateFileRequest { path, content } = body.into_inner();
    let path = parse_path(&path)?;
    check_text_size(&state, content.len())?;
    authorized
        .room()
        .edit_checked(|txn| files::create_file(txn, &path, &content).map_err(ApiError::from))
        .await?;
    file_event(
        &state,
        authorized,
        EventKind::FileCreated,
        json!({ "path": path.as_str() }),
    );
    Ok(HttpResponse::Created().json(file_view(path.to_string(), &content, false)))
}

fn check_text_size(state: &AppState, size: usize) -> Result<(), ApiError> {
    let max = state.file_limits.max_file_size;
    if size > max {
        return Err(too_large(format!(
            "the file is {size} bytes; the limit is {max} bytes"
        )));
    }
    Ok(())
}

fn too_large(message: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "file_too_large", message)
}

/// Checks that `bytes` are text (UTF-8 without NUL) and returns them as such.
fn text_of(bytes: Vec<u8>, what: &str) -> Result<String, ApiError> {
    let binary = || {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "binary_file",
            format!("{what} is not a text file (only UTF-8 text without NUL bytes is accepted)"),
        )
    };
    if bytes.contains(&0) {
        return Err(binary());
    }
    String::from_utf8(bytes).map_err(|_| binary())
}

/// Reads a request body of at most `limit` bytes; a larger one is refused before it is read
/// whole (at once when it announces its length).
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    too_big: impl Fn(String) -> ApiError,
) -> Result<Vec<u8>, ApiError> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(length) = announced
        && length > limit
    {
        return Err(too_big(format!(
            "the body is {length} bytes; the limit is {limit} bytes"
        )));
    }
    let mut body = Vec::with_capacity(announced.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_big(format!(
                "the body is larger than the limit of {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Downloads one file as it is, byte for byte (`text/plain; charset=utf-8`).
#[utoipa::path(get, path = "/api/rooms/{room}/files/{path}", tag = "files",
    responses((status = 200, content_type = "text/plain"), (status = 403), (status = 404)))]
pub async fn download_file(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room, file) = path.into_inner();
    let authorized = authorized_room(&state, &caller.0, &room, Role::Viewer).await?;
    let file = parse_path(&file)?;
    let content = authorized
        .room()
        .read(|txn| files::read_file(txn, &file))
        .ok_or_else(|| ApiError::from(files::FileError::NotFound(file.clone())))?;
    let name = file.as_str().rsplit('/').next().unwrap_or(file.as_str());
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(attachment(name))
        .body(content))
}

fn attachment(name: &str) -> ContentDisposition {
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(name.to_owned())],
    }
}

/// Uploads a file (editors): the raw body becomes the file's text, creating it (201) or
/// rewriting it with a minimal diff (200). Binary bodies get 415 `binary_file`, bodies over
/// `--max-file-size` 413 `file_too_large`.
#[utoipa::path(put, path = "/api/rooms/{room}/files/{path}", tag = "files",
    request_body(content = String, content_type = "text/plain"),
    responses((status = 200, body = FileView), (status = 201, body = FileView), (status = 403),
        (status = 413), (status = 415), (status = 422)))]
pub async fn upload_file(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (room, file) = path.into_inner();
    let authorized = authorized_room(&state, &caller.0, &room, Role::Editor).await?;
    let file = parse_path(&file)?;
    let body = read_body(&req, payload, state.file_limits.max_file_size, too_large).await?;
    let content = text_of(body, &format!("the upload for {file:?}"))?;
    let (created, _) = authorized
        .room()
        .edit_checked(|txn| files::write_file(txn, &file, &content).map_err(ApiError::from))
        .await?;
    let root = !created && is_root_text(authorized.room(), file.as_str());
    if created {
        file_event(
            &state,
            authorized,
            EventKind::FileCreated,
            json!({ "path": file.as_str() }),
        );
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(file_view(file.to_string(), &content, root)))
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
    responses((status = 200, body = FileView), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn rename_file(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<RenameFileRequest>,
) -> Result<HttpResponse, ApiError> {
    let (room, file) = path.into_inner();
    let authorized = authorized_room(&state, &caller.0, &room, Role::Editor).await?;
    let from = parse_path(&file)?;
    let to = parse_path(&body.path)?;
    let (content, _) = authorized
        .room()
        .edit_checked(|txn| {
            files::rename_file(txn, &from, &to)?;
            Ok::<_, ApiError>(files::read_file(txn, &to).unwrap_or_default())
        })
        .await?;
    let data = json!({ "from": from.as_str(), "path": to.as_str() });
    file_event(&state, authorized, EventKind::FileRenamed, data);
    Ok(HttpResponse::Ok().json(file_view(to.to_string(), &content, false)))
}

/// Deletes a file (editors).
#[utoipa::path(delete, path = "/api/rooms/{room}/files/{path}", tag = "files",
    responses((status = 204), (status = 403), (status = 404), (status = 409)))]
pub async fn delete_file(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room, file) = path.into_inner();
    let authorized = authorized_room(&state, &caller.0, &room, Role::Editor).await?;
    let file = parse_path(&file)?;
    authorized
        .room()
        .edit_checked(|txn| files::delete_file(txn, &file).map_err(ApiError::from))
        .await?;
    file_event(
        &state,
        authorized,
        EventKind::FileDeleted,
        json!({ "path": file.as_str() }),
    );
    Ok(HttpResponse::NoContent().finish())
}

/// Every file of the room as a zip (`{room}.zip`), paths as in the room.
#[utoipa::path(get, path = "/api/rooms/{room}/export", tag = "files",
    responses((status = 200, content_type = "application/zip"), (status = 403), (status = 404)))]
pub async fn export_room(
    state: web::Data<AppState>,
    caller: Caller,
    room: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let authorized = authorized_room(&state, &caller.0, &room, Role::Viewer).await?;
    let room = authorized.room().clone();
    let zip = web::block(move || zip_files(room.files()))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header(attachment(&format!("{}.zip", authorized.id)))
        .body(zip))
}

fn zip_files(files: Vec<(String, String)>) -> Result<Vec<u8>, zip::result::ZipError> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    for (path, content) in files {
        // A root text may have a name that is no safe path; it cannot go into an archive.
        if FilePath::parse(&path).is_err() {
            tracing::warn!(file = %path, "not exported: the name is not a safe path");
            continue;
        }
        writer.start_file(path, options)?;
        writer.write_all(content.as_bytes())?;
    }
    Ok(writer.finish()?.into_inner())
}

/// `POST /api/import` query.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The new room's display name.
    name: String,
    /// Optional id; a random one is chosen otherwise.
    id: Option<String>,
}

/// Creates a room from a zip of text files (the body); the caller becomes its owner. Each file
/// goes into the `files` map under its path in the archive. The whole import is refused, and
/// nothing created, when an entry's path is unsafe (`../`, absolute), a file is binary or too
/// large, or the archive is larger than `--max-import-size`.
#[utoipa::path(post, path = "/api/import", tag = "files", params(ImportQuery),
    request_body(content = Vec<u8>, content_type = "application/zip"),
    responses((status = 201, body = crate::rooms::room::RoomView), (status = 400), (status = 409),
        (status = 413), (status = 415), (status = 422)))]
pub async fn import_room(
    state: web::Data<AppState>,
    caller: SessionUser,
    query: web::Query<ImportQuery>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let mut fields = std::collections::BTreeMap::new();
    check_name(&mut fields, "name", &query.name, 200);
    validated(fields)?;
    let id = new_room_id(query.id.as_deref())?;
    let limits = state.file_limits;
    let body = read_body(&req, payload, limits.max_import_size, |message| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    })
    .await?;
    let content = web::block(move || document_from_zip(body, limits))
        .await
        .map_err(|e| ApiError::internal(&e))??;
    let view =
        create_room_with_content(&state, &id, &query.name, &caller.user_id, &content).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Reads a zip of text files into a new document (one Yjs v1 update).
fn document_from_zip(zip: Vec<u8>, limits: FileLimits) -> Result<Vec<u8>, ApiError> {
    let invalid_zip = |e: zip::result::ZipError| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_zip",
            format!("the body is not a readable zip archive: {e}"),
        )
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).map_err(invalid_zip)?;
    if archive.len() > MAX_IMPORT_ENTRIES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the archive has {} entries; the limit is {MAX_IMPORT_ENTRIES}",
                archive.len()
            ),
        ));
    }
    let doc = new_doc();
    let mut total = 0usize;
    {
        let mut txn = doc.transact_mut();
        for index in 0..archive.len() {
            let mut entry = archive.by_index(index).map_err(invalid_zip)?;
            let name = entry.name().map_err(invalid_zip)?.into_owned();
            if entry.is_dir() {
                continue;
            }
            let path = FilePath::parse(&name).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_path",
                    format!("archive entry {name:?} cannot be a file of the room: {e}"),
                )
            })?;
            if entry.is_symlink() {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "binary_file",
                    format!("archive entry {name:?} is a symbolic link, not a text file"),
                ));
            }
            // The declared size can lie; the read below is capped at the limit either way.
            let max = limits.max_file_size;
            let mut bytes = Vec::new();
            (&mut entry)
                .take(max as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| invalid_zip(zip::result::ZipError::Io(e)))?;
            if bytes.len() > max {
                return Err(too_large(format!(
                    "archive entry {name:?} is larger than the limit of {max} bytes"
                )));
            }
            total += bytes.len();
            if total > limits.max_import_size {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!(
                        "the archive's files hold more than the limit of {} bytes",
                        limits.max_import_size
                    ),
                ));
            }
            let text = text_of(bytes, &format!("archive entry {name:?}"))?;
            files::create_file(&mut txn, &path, &text).map_err(ApiError::from)?;
        }
    }
    Ok(doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default()))
}
