//! `/api/rooms/{room}/comments`: comment threads anchored to ranges of files.
//!
//! A thread is anchored with Yjs relative positions, so its range follows the text through
//! everyone's edits; once everything it covered is deleted (or its file is) it is *orphaned*:
//! still listed with the text it quoted, never lost. Threads live in the database; each change
//! is mirrored into the document's root map `comments` so connected clients see it live over
//! the ordinary sync protocol (no extra message types).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use crdt_store::document::{COMMENTS_ROOT, put_map_entry, remove_map_entry};
use crdt_store::{Room, RoomId};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use yrs::Any;

use crate::accounts::access::Identity;
use crate::accounts::auth::secrets::random_id;
use crate::accounts::auth::{Principal, Role};
use crate::app::AppState;
use crate::collab::activity::{EventKind, RoomEvent};
use crate::collab::notifications::{NotificationKind, notify};
use crate::entity::{comment, comment_thread, room_member, user};
use crate::http::caller::{Caller, require_role};
use crate::http::error::ApiError;

/// Longest comment, in characters.
const MAX_BODY_CHARS: usize = 10_000;
/// Most threads one room may hold.
const MAX_THREADS_PER_ROOM: u64 = 10_000;
/// Characters of a comment quoted in notifications and events.
const EXCERPT_CHARS: usize = 200;

/// Mirror writes are read-then-write: serialised so an older state never overwrites a newer.
static MIRROR: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(Default::default);

/// A new thread on `[start, end)` (UTF-16 offsets, as editors count) of `file`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewThread {
    /// The file (document convention).
    pub file: String,
    /// Start of the range.
    pub start: u32,
    /// End of the range (after `start`: a comment covers some text).
    pub end: u32,
    /// The first comment.
    pub body: String,
    /// Participants mentioned (user ids), besides any `@email` in the body.
    #[serde(default)]
    pub mentions: Vec<String>,
}

/// A comment's text.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CommentBody {
    /// 1 to 10 000 characters; `@email` of a participant mentions them.
    pub body: String,
    /// Participants mentioned (user ids), besides any `@email` in the body.
    #[serde(default)]
    pub mentions: Vec<String>,
}

/// Which threads to list.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ThreadFilter {
    /// Only threads on this file.
    pub file: Option<String>,
    /// `open` or `resolved`.
    pub status: Option<String>,
}

/// Someone, by id and name.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct PersonView {
    /// The account.
    pub id: String,
    /// Their display name.
    pub name: String,
}

/// One comment.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CommentView {
    /// Its id.
    pub id: String,
    /// Who wrote it.
    pub author: PersonView,
    /// The text.
    pub body: String,
    /// Who it mentions.
    pub mentions: Vec<PersonView>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// When last edited, if ever.
    pub edited_at_ms: Option<i64>,
}

/// A thread with its comments, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ThreadView {
    /// Its id (also its key in the document's `comments` map).
    pub id: String,
    /// The file it is on.
    pub file: String,
    /// Where the range starts now (UTF-16); absent when orphaned.
    pub start: Option<u32>,
    /// Where the range ends now (UTF-16); absent when orphaned.
    pub end: Option<u32>,
    /// The text the range covers now; absent when orphaned.
    pub text: Option<String>,
    /// Everything the range covered was deleted (or its file was).
    pub orphaned: bool,
    /// The text the range covered when the thread was opened.
    pub quote: String,
    /// `open` or `resolved`.
    pub status: String,
    /// Who opened it.
    pub author: PersonView,
    /// Who resolved it, while resolved.
    pub resolved_by: Option<PersonView>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Last change to the thread or its comments.
    pub updated_at_ms: i64,
    /// Oldest first.
    pub comments: Vec<CommentView>,
}

/// Threads of a room.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ThreadList {
    /// Oldest first.
    pub threads: Vec<ThreadView>,
}

/// The caller as a commenter: any participant with an account (viewers included; a share
/// link has no account to sign comments with).
async fn commenter(
    state: &AppState,
    principal: &Principal,
    room_id: &RoomId,
) -> Result<(Role, String, Identity), ApiError> {
    let (role, identity) = require_role(state, principal, room_id, Role::Viewer).await?;
    match identity.user_id.clone() {
        Some(user_id) if !matches!(principal, Principal::Share { .. }) => {
            Ok((role, user_id, identity))
        }
        _ => Err(ApiError::forbidden(
            "commenting needs an account; share links are read-only",
        )),
    }
}

fn check_body(body: &str) -> Result<String, ApiError> {
    let body = body.trim();
    if body.is_empty() || body.chars().count() > MAX_BODY_CHARS {
        return Err(field_error(
            "body",
            format!("must be 1 to {MAX_BODY_CHARS} characters"),
        ));
    }
    Ok(body.to_owned())
}

fn field_error(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::validation([(field, message.into())].into_iter().collect())
}

fn excerpt(body: &str) -> String {
    body.chars().take(EXCERPT_CHARS).collect()
}

/// Email addresses written as `@alice@example.com` in a comment, lower-cased.
fn mentioned_emails(body: &str) -> Vec<String> {
    body.split_whitespace()
        .filter_map(|word| word.strip_prefix('@'))
        .map(|word| word.trim_end_matches(|c: char| ".,;:!?)]}'\"".contains(c)))
        .filter(|word| {
            word.split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        })
        .map(str::to_lowercase)
        .collect()
}

/// The participants a comment mentions: `explicit` user ids plus `@email`s in `body`, each
/// once, in order. Mentioning someone who is not a participant of the room is refused.
async fn resolve_mentions(
    db: &DatabaseConnection,
    room_id: &RoomId,
    body: &str,
    explicit: &[String],
) -> Result<Vec<String>, ApiError> {
    let emails = mentioned_emails(body);
    if explicit.is_empty() && emails.is_empty() {
        return Ok(Vec::new());
    }
    let members: HashSet<String> = room_member::Entity::find()
        .filter(room_member::Column::RoomId.eq(room_id.as_str()))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    let by_email: HashMap<String, String> = user::Entity::find()
        .filter(user::Column::Id.is_in(members.iter().cloned()))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.email.to_lowercase(), u.id))
        .collect();
    let mut mentioned = Vec::new();
    for id in explicit {
        if !members.contains(id) {
            return Err(field_error(
                "mentions",
                format!("{id:?} is not a participant of this room"),
            ));
        }
        mentioned.push(id.clone());
    }
    for email in emails {
        let id = by_email.get(&email).ok_or_else(|| {
            field_error(
                "body",
                format!("@{email} is not a participant of this room"),
            )
        })?;
        mentioned.push(id.clone());
    }
    let mut seen = HashSet::new();
    mentioned.retain(|id| seen.insert(id.clone()));
    Ok(mentioned)
}

fn stored_mentions(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Display names of `ids`.
async fn names(
    db: &DatabaseConnection,
    ids: impl IntoIterator<Item = String>,
) -> Result<HashMap<String, String>, ApiError> {
    let ids: HashSet<String> = ids.into_iter().collect();
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.display_name))
        .collect())
}

fn person(names: &HashMap<String, String>, id: &str) -> PersonView {
    PersonView {
        id: id.to_owned(),
        name: names
            .get(id)
            .cloned()
            .unwrap_or_else(|| "Former participant".to_owned()),
    }
}

/// A thread and its comments as stored.
struct Stored {
    thread: comment_thread::Model,
    comments: Vec<comment::Model>,
}

impl Stored {
    fn people(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.thread.author_id.clone())
            .chain(self.thread.resolved_by.clone())
            .chain(self.comments.iter().flat_map(|c| {
                std::iter::once(c.author_id.clone()).chain(stored_mentions(&c.mentions))
            }))
    }

    fn view(&self, room: &Room, names: &HashMap<String, String>) -> ThreadView {
        let t = &self.thread;
        let located = room
            .locate(&t.file, &t.anchor_start, &t.anchor_end)
            .filter(|(_, _, covered)| !covered.is_empty());
        ThreadView {
            id: t.id.clone(),
            file: t.file.clone(),
            start: located.as_ref().map(|l| l.0),
            end: located.as_ref().map(|l| l.1),
            orphaned: located.is_none(),
            text: located.map(|l| l.2),
            quote: t.quote.clone(),
            status: t.status.clone(),
            author: person(names, &t.author_id),
            resolved_by: t.resolved_by.as_deref().map(|id| person(names, id)),
            created_at_ms: t.created_at,
            updated_at_ms: t.updated_at,
            comments: self
                .comments
                .iter()
                .map(|c| CommentView {
                    id: c.id.clone(),
                    author: person(names, &c.author_id),
                    body: c.body.clone(),
                    mentions: stored_mentions(&c.mentions)
                        .iter()
                        .map(|id| person(names, id))
                        .collect(),
                    created_at_ms: c.created_at,
                    edited_at_ms: c.edited_at,
                })
                .collect(),
        }
    }

    /// The thread as an entry of the document's `comments` map.
    fn mirror(&self, names: &HashMap<String, String>) -> Vec<(String, Any)> {
        let t = &self.thread;
        let author = |id: &str| {
            Any::from_json(&json!({"id": id, "name": person(names, id).name}).to_string())
                .unwrap_or(Any::Null)
        };
        let comments: Vec<Any> = self
            .comments
            .iter()
            .map(|c| {
                let value = json!({
                    "id": c.id,
                    "author": {"id": c.author_id, "name": person(names, &c.author_id).name},
                    "body": c.body,
                    "created_at_ms": c.created_at,
                    "edited_at_ms": c.edited_at,
                });
                Any::from_json(&value.to_string()).unwrap_or(Any::Null)
            })
            .collect();
        vec![
            ("file".into(), Any::from(t.file.clone())),
            ("start".into(), Any::Buffer(t.anchor_start.clone().into())),
            ("end".into(), Any::Buffer(t.anchor_end.clone().into())),
            ("quote".into(), Any::from(t.quote.clone())),
            ("status".into(), Any::from(t.status.clone())),
            ("author".into(), author(&t.author_id)),
            ("comments".into(), Any::Array(comments.into())),
            ("updated_at_ms".into(), Any::from(t.updated_at as f64)),
        ]
    }
}

async fn load(
    db: &DatabaseConnection,
    room_id: &RoomId,
    thread_id: &str,
) -> Result<Option<Stored>, ApiError> {
    let Some(thread) = comment_thread::Entity::find_by_id(thread_id)
        .filter(comment_thread::Column::RoomId.eq(room_id.as_str()))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let comments = comment::Entity::find()
        .filter(comment::Column::ThreadId.eq(thread_id))
        .order_by_asc(comment::Column::CreatedAt)
        .order_by_asc(comment::Column::Id)
        .all(db)
        .await?;
    Ok(Some(Stored { thread, comments }))
}

async fn load_existing(
    db: &DatabaseConnection,
    room_id: &RoomId,
    thread_id: &str,
) -> Result<Stored, ApiError> {
    load(db, room_id, thread_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no comment thread {thread_id:?}")))
}

/// Writes the thread's current state (or its absence) into the document's `comments` map,
/// and answers with its view.
async fn publish(
    state: &AppState,
    room_id: &RoomId,
    thread_id: &str,
) -> Result<Option<ThreadView>, ApiError> {
    let lease = state.registry.lease(room_id).await?;
    let _serial = MIRROR.lock().await;
    let stored = load(state.db(), room_id, thread_id).await?;
    match stored {
        Some(stored) => {
            let names = names(state.db(), stored.people()).await?;
            let entry = stored.mirror(&names);
            lease
                .room()
                .edit(|txn| put_map_entry(txn, COMMENTS_ROOT, thread_id, entry))
                .await?;
            Ok(Some(stored.view(lease.room(), &names)))
        }
        None => {
            lease
                .room()
                .edit(|txn| remove_map_entry(txn, COMMENTS_ROOT, thread_id))
                .await?;
            Ok(None)
        }
    }
}

/// Notifies everyone `mentioned` in a comment of `thread` (but its author), dated `at_ms`.
async fn notify_mentions(
    db: &impl sea_orm::ConnectionTrait,
    author: &Identity,
    mentioned: &[String],
    thread: &comment_thread::Model,
    comment_id: &str,
    body: &str,
    at_ms: i64,
) -> Result<(), ApiError> {
    for user_id in mentioned {
        if Some(user_id) == author.user_id.as_ref() {
            continue;
        }
        notify(
            db,
            user_id,
            NotificationKind::Mentioned,
            Some(thread.room_id.as_str()),
            Some(author),
            json!({
                "thread_id": thread.id,
                "comment_id": comment_id,
                "file": thread.file,
                "excerpt": excerpt(body),
            }),
            at_ms,
        )
        .await?;
    }
    Ok(())
}

fn comment_event(
    room_id: &RoomId,
    kind: EventKind,
    actor: Identity,
    thread: &comment_thread::Model,
    data: serde_json::Value,
) -> RoomEvent {
    let mut details = json!({"thread_id": thread.id, "file": thread.file});
    if let (Some(details), serde_json::Value::Object(extra)) = (details.as_object_mut(), data) {
        details.extend(extra);
    }
    RoomEvent::new(room_id.as_str(), kind, Some(actor), details)
}

/// The room's comment threads, with where each range is now (viewers).
#[utoipa::path(get, path = "/api/rooms/{room}/comments", tag = "comments", params(ThreadFilter),
    responses((status = 200, body = ThreadList), (status = 403), (status = 404)))]
pub async fn list_threads(
    state: web::Data<AppState>,
    caller: Caller,
    room: web::Path<String>,
    filter: web::Query<ThreadFilter>,
) -> Result<HttpResponse, ApiError> {
    let room_id = RoomId::parse(&room)?;
    require_role(&state, &caller.0, &room_id, Role::Viewer).await?;
    let mut select =
        comment_thread::Entity::find().filter(comment_thread::Column::RoomId.eq(room_id.as_str()));
    if let Some(file) = &filter.file {
        select = select.filter(comment_thread::Column::File.eq(file.as_str()));
    }
    if let Some(status) = &filter.status {
        if status != "open" && status != "resolved" {
            return Err(ApiError::invalid("status must be \"open\" or \"resolved\""));
        }
        select = select.filter(comment_thread::Column::Status.eq(status.as_str()));
    }
    let threads = select
        .order_by_asc(comment_thread::Column::CreatedAt)
        .order_by_asc(comment_thread::Column::Id)
        .all(state.db())
        .await?;
    let mut comments: HashMap<String, Vec<comment::Model>> = HashMap::new();
    for c in comment::Entity::find()
        .filter(comment::Column::RoomId.eq(room_id.as_str()))
        .order_by_asc(comment::Column::CreatedAt)
        .order_by_asc(comment::Column::Id)
        .all(state.db())
        .await?
    {
        comments.entry(c.thread_id.clone()).or_default().push(c);
    }
    let stored: Vec<Stored> = threads
        .into_iter()
        .map(|thread| Stored {
            comments: comments.remove(&thread.id).unwrap_or_default(),
            thread,
        })
        .collect();
    let names = names(state.db(), stored.iter().flat_map(Stored::people)).await?;
    let lease = state.registry.lease(&room_id).await?;
    Ok(HttpResponse::Ok().json(ThreadList {
        threads: stored
            .iter()
            .map(|s| s.view(lease.room(), &names))
            .collect(),
    }))
}

/// One thread (viewers).
#[utoipa::path(get, path = "/api/rooms/{room}/comments/{thread}", tag = "comments",
    responses((status = 200, body = ThreadView), (status = 403), (status = 404)))]
pub async fn get_thread(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room, thread_id) = path.into_inner();
    let room_id = RoomId::parse(&room)?;
    require_role(&state, &caller.0, &room_id, Role::Viewer).await?;
    let stored = load_existing(state.db(), &room_id, &thread_id).await?;
    let names = names(state.db(), stored.people()).await?;
    let lease = state.registry.lease(&room_id).await?;
    Ok(HttpResponse::Ok().json(stored.view(lease.room(), &names)))
}

/// Opens a thread on a range of a file (participants with an account, viewers included).
#[utoipa::path(post, path = "/api/rooms/{room}/comments", tag = "comments", request_body = NewThread,
    responses((status = 201, body = ThreadView), (status = 403), (status = 404), (status = 422)))]
pub async fn create_thread(
    state: web::Data<AppState>,
    caller: Caller,
    room: web::Path<String>,
    body: web::Json<NewThread>,
) -> Result<HttpResponse, ApiError> {
    let room_id = RoomId::parse(&room)?;
    let (_, author_id, identity) = commenter(&state, &caller.0, &room_id).await?;
    let request = body.into_inner();
    let text = check_body(&request.body)?;
    if request.start >= request.end {
        return Err(field_error(
            "end",
            "a comment covers some text: end must be after start",
        ));
    }
    let existing = comment_thread::Entity::find()
        .filter(comment_thread::Column::RoomId.eq(room_id.as_str()))
        .count(state.db())
        .await?;
    if existing >= MAX_THREADS_PER_ROOM {
        return Err(ApiError::conflict(
            "too_many_threads",
            format!("a room holds at most {MAX_THREADS_PER_ROOM} comment threads"),
        ));
    }
    let anchor = {
        let lease = state.registry.lease(&room_id).await?;
        lease
            .room()
            .anchor(&request.file, request.start, request.end)
            .map_err(|message| field_error("file", message))?
    };
    let mentioned = resolve_mentions(state.db(), &room_id, &text, &request.mentions).await?;
    let now = state.now();
    let thread = comment_thread::Model {
        id: random_id(),
        room_id: room_id.as_str().to_owned(),
        file: request.file,
        anchor_start: anchor.start,
        anchor_end: anchor.end,
        quote: anchor.original,
        status: "open".into(),
        author_id: author_id.clone(),
        resolved_by: None,
        created_at: now,
        updated_at: now,
    };
    let first = comment::Model {
        id: random_id(),
        thread_id: thread.id.clone(),
        room_id: room_id.as_str().to_owned(),
        author_id,
        body: text.clone(),
        mentions: json!(mentioned).to_string(),
        created_at: now,
        edited_at: None,
    };
    let txn = state.db().begin().await?;
    thread.clone().into_active_model().insert(&txn).await?;
    first.clone().into_active_model().insert(&txn).await?;
    notify_mentions(&txn, &identity, &mentioned, &thread, &first.id, &text, now).await?;
    txn.commit().await?;
    state.activity.emit(comment_event(
        &room_id,
        EventKind::CommentCreated,
        identity,
        &thread,
        json!({"comment_id": first.id, "body": text, "quote": thread.quote}),
    ));
    let view = publish(&state, &room_id, &thread.id).await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(view))
}

/// Adds a reply to a thread (participants with an account).
#[utoipa::path(post, path = "/api/rooms/{room}/comments/{thread}/replies", tag = "comments",
    request_body = CommentBody,
    responses((status = 201, body = ThreadView), (status = 403), (status = 404), (status = 422)))]
pub async fn reply(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<CommentBody>,
) -> Result<HttpResponse, ApiError> {
    let (room, thread_id) = path.into_inner();
    let room_id = RoomId::parse(&room)?;
    let (_, author_id, identity) = commenter(&state, &caller.0, &room_id).await?;
    let request = body.into_inner();
    let text = check_body(&request.body)?;
    let stored = load_existing(state.db(), &room_id, &thread_id).await?;
    let mentioned = resolve_mentions(state.db(), &room_id, &text, &request.mentions).await?;
    let now = state.now();
    let added = comment::Model {
        id: random_id(),
        thread_id: thread_id.clone(),
        room_id: room_id.as_str().to_owned(),
        author_id,
        body: text.clone(),
        mentions: json!(mentioned).to_string(),
        created_at: now,
        edited_at: None,
    };
    let txn = state.db().begin().await?;
    added.clone().into_active_model().insert(&txn).await?;
    touch(&txn, &stored.thread, now).await?;
    notify_mentions(
        &txn,
        &identity,
        &mentioned,
        &stored.thread,
        &added.id,
        &text,
        now,
    )
    .await?;
    txn.commit().await?;
    state.activity.emit(comment_event(
        &room_id,
        EventKind::CommentReplied,
        identity,
        &stored.thread,
        json!({"comment_id": added.id, "body": text}),
    ));
    let view = publish(&state, &room_id, &thread_id).await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(view))
}

async fn touch(
    db: &impl sea_orm::ConnectionTrait,
    thread: &comment_thread::Model,
    now: i64,
) -> Result<(), ApiError> {
    let mut active = thread.clone().into_active_model();
    active.updated_at = Set(now);
    active.update(db).await?;
    Ok(())
}

fn find_comment<'a>(stored: &'a Stored, comment_id: &str) -> Result<&'a comment::Model, ApiError> {
    stored
        .comments
        .iter()
        .find(|c| c.id == comment_id)
        .ok_or_else(|| ApiError::not_found(format!("no comment {comment_id:?} in this thread")))
}

/// Edits one's own comment; participants newly mentioned are notified.
#[utoipa::path(patch, path = "/api/rooms/{room}/comments/{thread}/replies/{comment}", tag = "comments",
    request_body = CommentBody,
    responses((status = 200, body = ThreadView), (status = 403), (status = 404), (status = 422)))]
pub async fn edit_comment(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    body: web::Json<CommentBody>,
) -> Result<HttpResponse, ApiError> {
    let (room, thread_id, comment_id) = path.into_inner();
    let room_id = RoomId::parse(&room)?;
    let (_, user_id, identity) = commenter(&state, &caller.0, &room_id).await?;
    let request = body.into_inner();
    let text = check_body(&request.body)?;
    let stored = load_existing(state.db(), &room_id, &thread_id).await?;
    let existing = find_comment(&stored, &comment_id)?;
    if existing.author_id != user_id {
        return Err(ApiError::forbidden("only its author can edit a comment"));
    }
    let mentioned = resolve_mentions(state.db(), &room_id, &text, &request.mentions).await?;
    let before: HashSet<String> = stored_mentions(&existing.mentions).into_iter().collect();
    let newly: Vec<String> = mentioned
        .iter()
        .filter(|id| !before.contains(*id))
        .cloned()
        .collect();
    let now = state.now();
    let txn = state.db().begin().await?;
    let mut active = existing.clone().into_active_model();
    active.body = Set(text.clone());
    active.mentions = Set(json!(mentioned).to_string());
    active.edited_at = Set(Some(now));
    active.update(&txn).await?;
    touch(&txn, &stored.thread, now).await?;
    notify_mentions(
        &txn,
        &identity,
        &newly,
        &stored.thread,
        &comment_id,
        &text,
        now,
    )
    .await?;
    txn.commit().await?;
    let view = publish(&state, &room_id, &thread_id).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Deletes a comment (its author or the room's owner); a thread left without comments goes
/// with it.
#[utoipa::path(delete, path = "/api/rooms/{room}/comments/{thread}/replies/{comment}", tag = "comments",
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete_comment(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room, thread_id, comment_id) = path.into_inner();
    let room_id = RoomId::parse(&room)?;
    let (role, user_id, identity) = commenter(&state, &caller.0, &room_id).await?;
    let stored = load_existing(state.db(), &room_id, &thread_id).await?;
    let existing = find_comment(&stored, &comment_id)?;
    if existing.author_id != user_id && role != Role::Owner {
        return Err(ApiError::forbidden(
            "only its author or the room's owner can delete a comment",
        ));
    }
    let txn = state.db().begin().await?;
    comment::Entity::delete_by_id(comment_id.as_str())
        .exec(&txn)
        .await?;
    let last = stored.comments.len() == 1;
    if last {
        comment_thread::Entity::delete_by_id(thread_id.as_str())
            .exec(&txn)
            .await?;
    } else {
        touch(&txn, &stored.thread, state.now()).await?;
    }
    txn.commit().await?;
    state.activity.emit(comment_event(
        &room_id,
        EventKind::CommentDeleted,
        identity,
        &stored.thread,
        json!({"comment_id": comment_id, "thread_deleted": last}),
    ));
    publish(&state, &room_id, &thread_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes a whole thread (its author or the room's owner).
#[utoipa::path(delete, path = "/api/rooms/{room}/comments/{thread}", tag = "comments",
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete_thread(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room, thread_id) = path.into_inner();
    let room_id = RoomId::parse(&room)?;
    let (role, user_id, identity) = commenter(&state, &caller.0, &room_id).await?;
    let stored = load_existing(state.db(), &room_id, &thread_id).await?;
    if stored.thread.author_id != user_id && role != Role::Owner {
        return Err(ApiError::forbidden(
            "only its author or the room's owner can delete a thread",
        ));
    }
    let txn = state.db().begin().await?;
    comment::Entity::delete_many()
        .filter(comment::Column::ThreadId.eq(thread_id.as_str()))
        .exec(&txn)
        .await?;
    comment_thread::Entity::delete_by_id(thread_id.as_str())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    state.activity.emit(comment_event(
        &room_id,
        EventKind::CommentDeleted,
        identity,
        &stored.thread,
        json!({"thread_deleted": true}),
    ));
    publish(&state, &room_id, &thread_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn set_status(
    state: &AppState,
    caller: &Caller,
    room: &str,
    thread_id: &str,
    resolved: bool,
) -> Result<HttpResponse, ApiError> {
    let room_id = RoomId::parse(room)?;
    let (role, user_id, identity) = commenter(state, &caller.0, &room_id).await?;
    let stored = load_existing(state.db(), &room_id, thread_id).await?;
    if role < Role::Editor && stored.thread.author_id != user_id {
        return Err(ApiError::forbidden(
            "resolving or reopening needs the editor role, or opening the thread yourself",
        ));
    }
    let (status, kind) = if resolved {
        ("resolved", EventKind::CommentResolved)
    } else {
        ("open", EventKind::CommentReopened)
    };
    if stored.thread.status != status {
        let mut active = stored.thread.clone().into_active_model();
        active.status = Set(status.to_owned());
        active.resolved_by = Set(resolved.then_some(user_id));
        active.updated_at = Set(state.now());
        active.update(state.db()).await?;
        state.activity.emit(comment_event(
            &room_id,
            kind,
            identity,
            &stored.thread,
            json!({}),
        ));
    }
    let view = publish(state, &room_id, thread_id).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Marks a thread resolved (editors, or the thread's author).
#[utoipa::path(post, path = "/api/rooms/{room}/comments/{thread}/resolve", tag = "comments",
    responses((status = 200, body = ThreadView), (status = 403), (status = 404)))]
pub async fn resolve(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room, thread_id) = path.into_inner();
    set_status(&state, &caller, &room, &thread_id, true).await
}

/// Reopens a resolved thread (editors, or the thread's author).
#[utoipa::path(post, path = "/api/rooms/{room}/comments/{thread}/reopen", tag = "comments",
    responses((status = 200, body = ThreadView), (status = 403), (status = 404)))]
pub async fn reopen(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room, thread_id) = path.into_inner();
    set_status(&state, &caller, &room, &thread_id, false).await
}

#[cfg(test)]
mod tests {
    use super::mentioned_emails;

    #[test]
    fn mentions_are_at_signs_before_an_email() {
        assert_eq!(
            mentioned_emails("hi @Ann@Example.com, see @bob@x.io. mail carl@x.io or @carl"),
            vec!["ann@example.com", "bob@x.io"]
        );
        assert!(mentioned_emails("@@ @a@b @x@.").is_empty());
    }
}
