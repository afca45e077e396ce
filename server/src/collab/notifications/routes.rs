//! `/api/notifications`: the caller's notifications, newest first, with read/unread.
//!
//! A session sees all of its user's notifications. An API key sees only those about the
//! rooms it was created for, everywhere here: listing, the unread count, marking one read
//! (any other is "not found") and marking all read (the others stay unread).

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::collab::activity::routes::{ActorView, PageQuery, stored_json};
use crate::entity::notification;
use crate::http::{ApiError, Caller, RoomScope};

/// Which notifications to list.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct NotificationQuery {
    /// Only unread ones.
    #[serde(default)]
    pub unread: bool,
    /// Entries per page (1–200, default 50).
    pub limit: Option<u64>,
    /// Only entries older than this id (the previous page's `next_before`).
    pub before: Option<i64>,
}

/// One notification.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NotificationView {
    /// Its id.
    pub id: i64,
    /// `mentioned`, `invited` or `suggestion_made`.
    pub kind: String,
    /// The room it is about.
    pub room_id: Option<String>,
    /// Who caused it.
    pub actor: Option<ActorView>,
    /// Details, depending on `kind`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Whether it was marked read.
    pub read: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

impl From<notification::Model> for NotificationView {
    fn from(row: notification::Model) -> Self {
        Self {
            id: row.id,
            kind: row.kind,
            room_id: row.room_id,
            actor: row.actor_name.map(|name| ActorView {
                id: row.actor_id,
                name,
            }),
            data: stored_json(&row.data),
            read: row.read_at.is_some(),
            created_at_ms: row.created_at,
        }
    }
}

/// One page of notifications.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NotificationPage {
    /// Newest first.
    pub notifications: Vec<NotificationView>,
    /// Unread notifications in all.
    pub unread_count: u64,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// The user behind the caller (a session or an API key; share links have none).
fn user_of(caller: &Caller) -> Result<&str, ApiError> {
    caller.0.user_id().ok_or_else(|| {
        ApiError::forbidden("notifications belong to accounts; share links have none")
    })
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/api/notifications", tag = "collaboration", params(NotificationQuery),
    responses((status = 200, body = NotificationPage), (status = 401), (status = 403)))]
pub async fn list_notifications(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<NotificationQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_of(&caller)?;
    let limit = PageQuery {
        limit: query.limit,
        before: query.before,
    }
    .limit()?;
    let scope = RoomScope::of(&caller.0);
    let page = super::page(
        state.db(),
        user_id,
        &scope,
        query.unread,
        limit,
        query.before,
    )
    .await?;
    let notifications: Vec<NotificationView> = page.rows.into_iter().map(Into::into).collect();
    let next_before = page
        .more
        .then(|| notifications.last().map(|n| n.id))
        .flatten();
    Ok(HttpResponse::Ok().json(NotificationPage {
        notifications,
        unread_count: page.unread_count,
        next_before,
    }))
}

/// Marks one of the caller's notifications read.
#[utoipa::path(post, path = "/api/notifications/{id}/read", tag = "collaboration",
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
pub async fn mark_read(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_of(&caller)?;
    let scope = RoomScope::of(&caller.0);
    if !super::mark_read(state.db(), user_id, &scope, *id, state.now()).await? {
        return Err(ApiError::not_found("no such notification"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Marks every notification the caller sees read.
#[utoipa::path(post, path = "/api/notifications/read-all", tag = "collaboration",
    responses((status = 204), (status = 401), (status = 403)))]
pub async fn mark_all_read(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_of(&caller)?;
    super::mark_all_read(state.db(), user_id, &RoomScope::of(&caller.0), state.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}
