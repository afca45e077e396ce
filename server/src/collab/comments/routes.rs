//! `/api/rooms/{room}/comments…`: extract, call the [service](super::service), map.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::service::{self, Commenter};
use super::thread::{CommentBody, NewThread, ThreadFilter, ThreadList, ThreadStatus, ThreadView};
use crate::app::AppState;
use crate::http::{ApiError, AuthorizedRoom, BadRequestIfInvalid, Loaded, RoomParam, Viewer};

/// Every comment route: any participant, on the loaded room (threads are located in its
/// text), 400 for a name that is no room id.
type CommentRoom = AuthorizedRoom<Viewer, Loaded, BadRequestIfInvalid>;

/// The caller as a commenter (403 for a share link).
fn commenter(room: &CommentRoom) -> Result<Commenter, ApiError> {
    Commenter::new(&room.principal, room.role, &room.identity)
}

/// The `{thread}` of a thread's routes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ThreadParam {
    thread: String,
}

/// The `{thread}` and `{comment}` of a comment's routes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CommentParam {
    thread: String,
    comment: String,
}

/// The room's comment threads, with where each range is now (viewers).
#[utoipa::path(get, path = "/api/rooms/{room}/comments", tag = "comments", params(ThreadFilter, RoomParam),
    responses((status = 200, body = ThreadList), (status = 403), (status = 404)))]
pub async fn list_threads(
    state: web::Data<AppState>,
    room: CommentRoom,
    filter: web::Query<ThreadFilter>,
) -> Result<HttpResponse, ApiError> {
    let (file, status) = (filter.file.as_deref(), filter.status.as_deref());
    let threads = service::list_threads(&state, room.room(), file, status).await?;
    Ok(HttpResponse::Ok().json(ThreadList { threads }))
}

/// One thread (viewers).
#[utoipa::path(get, path = "/api/rooms/{room}/comments/{thread}", tag = "comments",
    params(RoomParam, ThreadParam),
    responses((status = 200, body = ThreadView), (status = 403), (status = 404)))]
pub async fn get_thread(
    state: web::Data<AppState>,
    room: CommentRoom,
    path: web::Path<ThreadParam>,
) -> Result<HttpResponse, ApiError> {
    let view = service::get_thread(&state, room.room(), &path.thread).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Opens a thread on a range of a file (participants with an account, viewers included).
#[utoipa::path(post, path = "/api/rooms/{room}/comments", tag = "comments", request_body = NewThread,
    params(RoomParam),
    responses((status = 201, body = ThreadView), (status = 403), (status = 404), (status = 422)))]
pub async fn create_thread(
    state: web::Data<AppState>,
    room: CommentRoom,
    body: web::Json<NewThread>,
) -> Result<HttpResponse, ApiError> {
    let author = commenter(&room)?;
    let view = service::create_thread(&state, room.room(), author, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Adds a reply to a thread (participants with an account).
#[utoipa::path(post, path = "/api/rooms/{room}/comments/{thread}/replies", tag = "comments",
    request_body = CommentBody, params(RoomParam, ThreadParam),
    responses((status = 201, body = ThreadView), (status = 403), (status = 404), (status = 422)))]
pub async fn reply(
    state: web::Data<AppState>,
    room: CommentRoom,
    path: web::Path<ThreadParam>,
    body: web::Json<CommentBody>,
) -> Result<HttpResponse, ApiError> {
    let author = commenter(&room)?;
    let view = service::reply(&state, room.room(), author, &path.thread, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Edits one's own comment; participants newly mentioned are notified.
#[utoipa::path(patch, path = "/api/rooms/{room}/comments/{thread}/replies/{comment}", tag = "comments",
    request_body = CommentBody, params(RoomParam, CommentParam),
    responses((status = 200, body = ThreadView), (status = 403), (status = 404), (status = 422)))]
pub async fn edit_comment(
    state: web::Data<AppState>,
    room: CommentRoom,
    path: web::Path<CommentParam>,
    body: web::Json<CommentBody>,
) -> Result<HttpResponse, ApiError> {
    let author = commenter(&room)?;
    let CommentParam { thread, comment } = path.into_inner();
    let request = body.into_inner();
    let view =
        service::edit_comment(&state, room.room(), author, &thread, &comment, request).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Deletes a comment (its author or the room's owner); a thread left without comments goes
/// with it.
#[utoipa::path(delete, path = "/api/rooms/{room}/comments/{thread}/replies/{comment}", tag = "comments",
    params(RoomParam, CommentParam),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete_comment(
    state: web::Data<AppState>,
    room: CommentRoom,
    path: web::Path<CommentParam>,
) -> Result<HttpResponse, ApiError> {
    let author = commenter(&room)?;
    service::delete_comment(&state, room.room(), author, &path.thread, &path.comment).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes a whole thread (its author or the room's owner).
#[utoipa::path(delete, path = "/api/rooms/{room}/comments/{thread}", tag = "comments",
    params(RoomParam, ThreadParam),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete_thread(
    state: web::Data<AppState>,
    room: CommentRoom,
    path: web::Path<ThreadParam>,
) -> Result<HttpResponse, ApiError> {
    let author = commenter(&room)?;
    service::delete_thread(&state, room.room(), author, &path.thread).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn set_status(
    state: &AppState,
    room: CommentRoom,
    thread: &str,
    status: ThreadStatus,
) -> Result<HttpResponse, ApiError> {
    let author = commenter(&room)?;
    let view = service::set_status(state, room.room(), author, thread, status).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Marks a thread resolved (editors, or the thread's author).
#[utoipa::path(post, path = "/api/rooms/{room}/comments/{thread}/resolve", tag = "comments",
    params(RoomParam, ThreadParam),
    responses((status = 200, body = ThreadView), (status = 403), (status = 404)))]
pub async fn resolve(
    state: web::Data<AppState>,
    room: CommentRoom,
    path: web::Path<ThreadParam>,
) -> Result<HttpResponse, ApiError> {
    set_status(&state, room, &path.thread, ThreadStatus::Resolved).await
}

/// Reopens a resolved thread (editors, or the thread's author).
#[utoipa::path(post, path = "/api/rooms/{room}/comments/{thread}/reopen", tag = "comments",
    params(RoomParam, ThreadParam),
    responses((status = 200, body = ThreadView), (status = 403), (status = 404)))]
pub async fn reopen(
    state: web::Data<AppState>,
    room: CommentRoom,
    path: web::Path<ThreadParam>,
) -> Result<HttpResponse, ApiError> {
    set_status(&state, room, &path.thread, ThreadStatus::Open).await
}
