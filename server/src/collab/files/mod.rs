//! A room's files over REST: listing, creating, reading, uploading, renaming and deleting
//! files, exporting them as a zip, and reading an imported zip into a new document.
//!
//! Every change goes through the room's CRDT (one server transaction each), so connected
//! clients see files appear, change, move and disappear live. Uploads and imports take text
//! only: a body that is not UTF-8, or holds a NUL byte, is refused as binary.

pub(crate) mod routes;

use std::io::{Cursor, Read, Write};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use crdt_store::files::{self, FilePath};
use crdt_store::{Room, new_doc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use yrs::{ReadTxn, StateVector, Transact};

use crate::accounts::Identity;
use crate::app::AppState;
use crate::collab::activity::{EventKind, RoomEvent};
use crate::config::FileLimits;
use crate::http::{ApiError, read_body};

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

/// A file path from a request; 422 `invalid_path` unless it is a safe one.
pub(crate) fn parse_path(path: &str) -> Result<FilePath, ApiError> {
    FilePath::parse(path).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_path",
            e.to_string(),
        )
    })
}

fn file_event(state: &AppState, room: &Room, actor: Identity, kind: EventKind, path: &FilePath) {
    file_event_with(state, room, actor, kind, json!({ "path": path.as_str() }));
}

fn file_event_with(
    state: &AppState,
    room: &Room,
    actor: Identity,
    kind: EventKind,
    data: serde_json::Value,
) {
    state
        .activity
        .emit(RoomEvent::new(room.id().as_str(), kind, Some(actor), data));
}

/// Whether a path names a root text (not an entry of the `files` map) in `room`.
fn is_root_text(room: &Room, path: &str) -> bool {
    room.read(|txn| {
        txn.get_map(crdt_store::document::FILES_ROOT)
            .is_none_or(|files| yrs::Map::get(&files, txn, path).is_none())
    })
}

/// The room's files, sorted by path.
pub(crate) fn list_files(room: &Room) -> Vec<FileView> {
    room.files()
        .into_iter()
        .map(|(path, content)| {
            let root = is_root_text(room, &path);
            file_view(path, &content, root)
        })
        .collect()
}

/// 413 `file_too_large` unless `size` bytes fit `--max-file-size`.
fn check_text_size(limits: FileLimits, size: usize) -> Result<(), ApiError> {
    let max = limits.max_file_size;
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

/// Creates a file with `content`; 409 `file_exists` when the path is taken.
pub(crate) async fn create_file(
    state: &AppState,
    room: &Room,
    actor: Identity,
    path: &str,
    content: String,
) -> Result<FileView, ApiError> {
    let path = parse_path(path)?;
    check_text_size(state.file_limits, content.len())?;
    room.edit_checked(|txn| files::create_file(txn, &path, &content).map_err(ApiError::from))
        .await?;
    file_event(state, room, actor, EventKind::FileCreated, &path);
    Ok(file_view(path.to_string(), &content, false))
}

/// The text of one file; 404 when there is none such.
pub(crate) fn read_file(room: &Room, path: &FilePath) -> Result<String, ApiError> {
    room.read(|txn| files::read_file(txn, path))
        .ok_or_else(|| ApiError::from(files::FileError::NotFound(path.clone())))
}

/// Reads an upload for `path` (at most `--max-file-size`, text only) and makes it the file's
/// text, creating the file or rewriting it with a minimal diff. Answers whether it was
/// created, and the file.
pub(crate) async fn upload_file(
    state: &AppState,
    room: &Room,
    actor: Identity,
    path: &str,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(bool, FileView), ApiError> {
    let file = parse_path(path)?;
    let body = read_body(req, payload, state.file_limits.max_file_size, too_large).await?;
    let content = text_of(body, &format!("the upload for {file:?}"))?;
    let (created, _) = room
        .edit_checked(|txn| files::write_file(txn, &file, &content).map_err(ApiError::from))
        .await?;
    let root = !created && is_root_text(room, file.as_str());
    if created {
        file_event(state, room, actor, EventKind::FileCreated, &file);
    }
    Ok((created, file_view(file.to_string(), &content, root)))
}

/// Renames (moves) a file in one transaction.
pub(crate) async fn rename_file(
    state: &AppState,
    room: &Room,
    actor: Identity,
    from: &str,
    to: &str,
) -> Result<FileView, ApiError> {
    let from = parse_path(from)?;
    let to = parse_path(to)?;
    let (content, _) = room
        .edit_checked(|txn| {
            files::rename_file(txn, &from, &to)?;
            Ok::<_, ApiError>(files::read_file(txn, &to).unwrap_or_default())
        })
        .await?;
    let data = json!({ "from": from.as_str(), "path": to.as_str() });
    file_event_with(state, room, actor, EventKind::FileRenamed, data);
    Ok(file_view(to.to_string(), &content, false))
}

/// Deletes a file.
pub(crate) async fn delete_file(
    state: &AppState,
    room: &Room,
    actor: Identity,
    path: &str,
) -> Result<(), ApiError> {
    let file = parse_path(path)?;
    room.edit_checked(|txn| files::delete_file(txn, &file).map_err(ApiError::from))
        .await?;
    file_event(state, room, actor, EventKind::FileDeleted, &file);
    Ok(())
}

/// Every file of the room as a zip archive, paths as in the room.
pub(crate) async fn export_zip(room: &Room) -> Result<Vec<u8>, ApiError> {
    let room = room.clone();
    web::block(move || zip_files(room.files()))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))
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

/// Reads the request body, a zip of text files of at most `--max-import-size`, into a new
/// document (one Yjs v1 update) with each file in the `files` map under its path in the
/// archive. Refused whole, with nothing made, when an entry's path is unsafe (`../`,
/// absolute), a file is binary or too large, or the archive holds too much.
pub async fn document_from_upload(
    req: &HttpRequest,
    payload: web::Payload,
    limits: FileLimits,
) -> Result<Vec<u8>, ApiError> {
    let body = read_body(req, payload, limits.max_import_size, |message| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    })
    .await?;
    web::block(move || document_from_zip(body, limits))
        .await
        .map_err(|e| ApiError::internal(&e))?
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
