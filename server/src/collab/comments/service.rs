//! What each comment route does: the rules (who may edit, delete, resolve), the database
//! work, mentions and their notifications, the room events, and the mirror write that
//! follows every change.

use std::collections::{HashMap, HashSet};

use crdt_store::{Room, RoomId};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde_json::json;

use super::mirror;
use super::thread::{CommentBody, NewThread, Stored, ThreadStatus, ThreadView, stored_mentions};
use crate::accounts::{Identity, Principal, Role, random_id};
use crate::app::AppState;
use crate::collab::activity::{EventKind, RoomEvent};
use crate::collab::notifications::{NotificationKind, notify};
use crate::entity::{comment, comment_thread, room_member, user};
use crate::http::{ApiError, field_error};

/// Longest comment, in characters.
const MAX_BODY_CHARS: usize = 10_000;
/// Most threads one room may hold.
const MAX_THREADS_PER_ROOM: u64 = 10_000;
/// Characters of a comment quoted in notifications and events.
const EXCERPT_CHARS: usize = 200;

/// The caller as a commenter: any participant with an account (viewers included; a share
/// link has no account to sign comments with).
pub(crate) struct Commenter {
    /// Their role in the room.
    pub role: Role,
    /// Their account.
    pub user_id: String,
    /// Who they are to others.
    pub identity: Identity,
}

impl Commenter {
    /// `principal`, a participant with `role` and `identity`, as a commenter; 403 for a
    /// share link.
    pub(crate) fn new(
        principal: &Principal,
        role: Role,
        identity: &Identity,
    ) -> Result<Self, ApiError> {
        match identity.user_id.clone() {
            Some(user_id) if !matches!(principal, Principal::Share { .. }) => Ok(Self {
                role,
                user_id,
                identity: identity.clone(),
            }),
            _ => Err(ApiError::forbidden(
                "commenting needs an account; share links are read-only",
            )),
        }
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

/// Mirrors the thread's current state (or its absence) into the document's `comments` map,
/// and answers with its view. The read and the write happen in the room's mirror turn, so
/// the mirror ends up as the database is, whatever order concurrent changes commit in.
async fn publish(
    state: &AppState,
    room: &Room,
    thread_id: &str,
) -> Result<Option<ThreadView>, ApiError> {
    let turn = state.comments.turn(room.id()).await;
    match load(state.db(), room.id(), thread_id).await? {
        Some(stored) => {
            let names = names(state.db(), stored.people()).await?;
            mirror::write(&turn, room, thread_id, Some((&stored, &names))).await?;
            Ok(Some(stored.view(room, &names)))
        }
        None => {
            mirror::write(&turn, room, thread_id, None).await?;
            Ok(None)
        }
    }
}

/// Notifies everyone `mentioned` in a comment of `thread` (but its author), dated `at_ms`.
async fn notify_mentions(
    db: &impl ConnectionTrait,
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

/// The room's threads, oldest first, optionally only those on `file` or with `status`
/// (`open` or `resolved`; anything else is 400).
pub(crate) async fn list_threads(
    state: &AppState,
    room: &Room,
    file: Option<&str>,
    status: Option<&str>,
) -> Result<Vec<ThreadView>, ApiError> {
    let room_id = room.id();
    let mut select =
        comment_thread::Entity::find().filter(comment_thread::Column::RoomId.eq(room_id.as_str()));
    if let Some(file) = file {
        select = select.filter(comment_thread::Column::File.eq(file));
    }
    if let Some(status) = status {
        let status = ThreadStatus::parse(status)
            .ok_or_else(|| ApiError::invalid("status must be \"open\" or \"resolved\""))?;
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
    Ok(stored.iter().map(|s| s.view(room, &names)).collect())
}

/// One thread of the room; 404 when it has none such.
pub(crate) async fn get_thread(
    state: &AppState,
    room: &Room,
    thread_id: &str,
) -> Result<ThreadView, ApiError> {
    let stored = load_existing(state.db(), room.id(), thread_id).await?;
    let names = names(state.db(), stored.people()).await?;
    Ok(stored.view(room, &names))
}

/// Opens a thread on a range of a file, with its first comment.
pub(crate) async fn create_thread(
    state: &AppState,
    room: &Room,
    author: Commenter,
    request: NewThread,
) -> Result<Option<ThreadView>, ApiError> {
    let room_id = room.id();
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
    let anchor = room
        .anchor(&request.file, request.start, request.end)
        .map_err(|message| field_error("file", message))?;
    let mentioned = resolve_mentions(state.db(), room_id, &text, &request.mentions).await?;
    let now = state.now();
    let thread = comment_thread::Model {
        id: random_id(),
        room_id: room_id.as_str().to_owned(),
        file: request.file,
        anchor_start: anchor.start,
        anchor_end: anchor.end,
        quote: anchor.original,
        status: ThreadStatus::Open.as_str().into(),
        author_id: author.user_id.clone(),
        resolved_by: None,
        created_at: now,
        updated_at: now,
    };
    let first = comment::Model {
        id: random_id(),
        thread_id: thread.id.clone(),
        room_id: room_id.as_str().to_owned(),
        author_id: author.user_id,
        body: text.clone(),
        mentions: json!(mentioned).to_string(),
        created_at: now,
        edited_at: None,
    };
    let txn = state.db().begin().await?;
    thread.clone().into_active_model().insert(&txn).await?;
    first.clone().into_active_model().insert(&txn).await?;
    let identity = &author.identity;
    notify_mentions(&txn, identity, &mentioned, &thread, &first.id, &text, now).await?;
    txn.commit().await?;
    state.activity.emit(comment_event(
        room_id,
        EventKind::CommentCreated,
        author.identity,
        &thread,
        json!({"comment_id": first.id, "body": text, "quote": thread.quote}),
    ));
    publish(state, room, &thread.id).await
}

/// Adds a reply to a thread.
pub(crate) async fn reply(
    state: &AppState,
    room: &Room,
    author: Commenter,
    thread_id: &str,
    request: CommentBody,
) -> Result<Option<ThreadView>, ApiError> {
    let room_id = room.id();
    let text = check_body(&request.body)?;
    let stored = load_existing(state.db(), room_id, thread_id).await?;
    let mentioned = resolve_mentions(state.db(), room_id, &text, &request.mentions).await?;
    let now = state.now();
    let added = comment::Model {
        id: random_id(),
        thread_id: thread_id.to_owned(),
        room_id: room_id.as_str().to_owned(),
        author_id: author.user_id,
        body: text.clone(),
        mentions: json!(mentioned).to_string(),
        created_at: now,
        edited_at: None,
    };
    let txn = state.db().begin().await?;
    added.clone().into_active_model().insert(&txn).await?;
    touch(&txn, &stored.thread, now).await?;
    let identity = &author.identity;
    notify_mentions(
        &txn,
        identity,
        &mentioned,
        &stored.thread,
        &added.id,
        &text,
        now,
    )
    .await?;
    txn.commit().await?;
    state.activity.emit(comment_event(
        room_id,
        EventKind::CommentReplied,
        author.identity,
        &stored.thread,
        json!({"comment_id": added.id, "body": text}),
    ));
    publish(state, room, thread_id).await
}

async fn touch(
    db: &impl ConnectionTrait,
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
pub(crate) async fn edit_comment(
    state: &AppState,
    room: &Room,
    author: Commenter,
    thread_id: &str,
    comment_id: &str,
    request: CommentBody,
) -> Result<Option<ThreadView>, ApiError> {
    let room_id = room.id();
    let text = check_body(&request.body)?;
    let stored = load_existing(state.db(), room_id, thread_id).await?;
    let existing = find_comment(&stored, comment_id)?;
    if existing.author_id != author.user_id {
        return Err(ApiError::forbidden("only its author can edit a comment"));
    }
    let mentioned = resolve_mentions(state.db(), room_id, &text, &request.mentions).await?;
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
    let identity = &author.identity;
    notify_mentions(
        &txn,
        identity,
        &newly,
        &stored.thread,
        comment_id,
        &text,
        now,
    )
    .await?;
    txn.commit().await?;
    publish(state, room, thread_id).await
}

/// Deletes a comment (its author or the room's owner); a thread left without comments goes
/// with it.
pub(crate) async fn delete_comment(
    state: &AppState,
    room: &Room,
    author: Commenter,
    thread_id: &str,
    comment_id: &str,
) -> Result<(), ApiError> {
    let room_id = room.id();
    let stored = load_existing(state.db(), room_id, thread_id).await?;
    let existing = find_comment(&stored, comment_id)?;
    if existing.author_id != author.user_id && author.role != Role::Owner {
        return Err(ApiError::forbidden(
            "only its author or the room's owner can delete a comment",
        ));
    }
    let txn = state.db().begin().await?;
    comment::Entity::delete_by_id(comment_id).exec(&txn).await?;
    let last = stored.comments.len() == 1;
    if last {
        comment_thread::Entity::delete_by_id(thread_id)
            .exec(&txn)
            .await?;
    } else {
        touch(&txn, &stored.thread, state.now()).await?;
    }
    txn.commit().await?;
    state.activity.emit(comment_event(
        room_id,
        EventKind::CommentDeleted,
        author.identity,
        &stored.thread,
        json!({"comment_id": comment_id, "thread_deleted": last}),
    ));
    publish(state, room, thread_id).await?;
    Ok(())
}

/// Deletes a whole thread (its author or the room's owner).
pub(crate) async fn delete_thread(
    state: &AppState,
    room: &Room,
    author: Commenter,
    thread_id: &str,
) -> Result<(), ApiError> {
    let room_id = room.id();
    let stored = load_existing(state.db(), room_id, thread_id).await?;
    if stored.thread.author_id != author.user_id && author.role != Role::Owner {
        return Err(ApiError::forbidden(
            "only its author or the room's owner can delete a thread",
        ));
    }
    let txn = state.db().begin().await?;
    comment::Entity::delete_many()
        .filter(comment::Column::ThreadId.eq(thread_id))
        .exec(&txn)
        .await?;
    comment_thread::Entity::delete_by_id(thread_id)
        .exec(&txn)
        .await?;
    txn.commit().await?;
    state.activity.emit(comment_event(
        room_id,
        EventKind::CommentDeleted,
        author.identity,
        &stored.thread,
        json!({"thread_deleted": true}),
    ));
    publish(state, room, thread_id).await?;
    Ok(())
}

/// Resolves or reopens a thread (editors, or the thread's author).
pub(crate) async fn set_status(
    state: &AppState,
    room: &Room,
    author: Commenter,
    thread_id: &str,
    status: ThreadStatus,
) -> Result<Option<ThreadView>, ApiError> {
    let room_id = room.id();
    let stored = load_existing(state.db(), room_id, thread_id).await?;
    if author.role < Role::Editor && stored.thread.author_id != author.user_id {
        return Err(ApiError::forbidden(
            "resolving or reopening needs the editor role, or opening the thread yourself",
        ));
    }
    let kind = match status {
        ThreadStatus::Resolved => EventKind::CommentResolved,
        ThreadStatus::Open => EventKind::CommentReopened,
    };
    if stored.thread.status != status.as_str() {
        let resolved = status == ThreadStatus::Resolved;
        let mut active = stored.thread.clone().into_active_model();
        active.status = Set(status.as_str().to_owned());
        active.resolved_by = Set(resolved.then_some(author.user_id));
        active.updated_at = Set(state.now());
        active.update(state.db()).await?;
        state.activity.emit(comment_event(
            room_id,
            kind,
            author.identity,
            &stored.thread,
            json!({}),
        ));
    }
    publish(state, room, thread_id).await
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
