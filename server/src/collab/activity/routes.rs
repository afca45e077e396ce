//! `/api/rooms/{room}/activity`: a room's activity feed, newest first.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::http::{ApiError, AuthorizedRoom, BadRequestIfInvalid, RoomParam, Unloaded, Viewer};

/// Most entries one page may hold.
pub const MAX_PAGE: u64 = 200;
/// Entries per page unless `limit` says otherwise.
const DEFAULT_PAGE: u64 = 50;

/// Paging through a feed, newest first.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// Entries per page (1–200, default 50).
    pub limit: Option<u64>,
    /// Only entries older than this id (the previous page's `next_before`).
    pub before: Option<i64>,
}

impl PageQuery {
    /// The page size, validated.
    pub fn limit(&self) -> Result<u64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            ))),
        }
    }
}

/// Who did something.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActorView {
    /// Their account (none for share-link guests).
    pub id: Option<String>,
    /// Their display name.
    pub name: String,
}

/// One feed entry.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActivityView {
    /// Increasing in the order events were recorded.
    pub id: i64,
    /// `joined`, `left`, `version_created`, `version_restored`, `comment_created`,
    /// `comment_replied`, `comment_resolved`, `comment_reopened`, `comment_deleted`,
    /// `suggestion_made`, `suggestion_accepted`, `suggestion_rejected`, `file_created`,
    /// `file_renamed`, `file_deleted`.
    pub kind: String,
    /// Who did it; none for the server's own work (automatic versions).
    pub actor: Option<ActorView>,
    /// Details, depending on `kind`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// One page of a feed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActivityPage {
    /// Newest first.
    pub events: Vec<ActivityView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// Reads a JSON column written by the server; anything else reads as an empty object.
pub fn stored_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::json!({}))
}

/// The room's activity feed, newest first (viewers).
#[utoipa::path(get, path = "/api/rooms/{room}/activity", tag = "collaboration", params(PageQuery, RoomParam),
    responses((status = 200, body = ActivityPage), (status = 403), (status = 404)))]
pub async fn list_activity(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Viewer, Unloaded, BadRequestIfInvalid>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let (rows, more) = super::feed_page(state.db(), &room.id, limit, query.before).await?;
    let events: Vec<ActivityView> = rows
        .into_iter()
        .map(|row| ActivityView {
            id: row.id,
            kind: row.kind,
            actor: row.actor_name.map(|name| ActorView {
                id: row.actor_id,
                name,
            }),
            data: stored_json(&row.data),
            created_at_ms: row.created_at,
        })
        .collect();
    let next_before = if more {
        events.last().map(|e| e.id)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(ActivityPage {
        events,
        next_before,
    }))
}
