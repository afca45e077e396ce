//! Per-user notifications: someone mentioned you, added you to a room, or the assistant
//! answered your request with a suggestion.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select, Set,
};
use serde::Serialize;

use crate::accounts::Identity;
use crate::entity::notification;
use crate::http::RoomScope;

pub(crate) mod routes;

/// Why a user is notified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Mentioned in a comment.
    Mentioned,
    /// Added to a room by its owner.
    Invited,
    /// The assistant made a suggestion on the selection the user asked about.
    SuggestionMade,
}

impl NotificationKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mentioned => "mentioned",
            Self::Invited => "invited",
            Self::SuggestionMade => "suggestion_made",
        }
    }
}

/// Stores one notification for `user_id`, dated `at_ms` (ms since the Unix epoch).
pub async fn notify<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    kind: NotificationKind,
    room_id: Option<&str>,
    actor: Option<&Identity>,
    data: serde_json::Value,
    at_ms: i64,
) -> Result<(), DbErr> {
    notification::ActiveModel {
        user_id: Set(user_id.to_owned()),
        kind: Set(kind.as_str().to_owned()),
        room_id: Set(room_id.map(str::to_owned)),
        actor_id: Set(actor.and_then(|a| a.user_id.clone())),
        actor_name: Set(actor.map(|a| a.name.clone())),
        data: Set(data.to_string()),
        read_at: Set(None),
        created_at: Set(at_ms),
        ..Default::default()
    }
    .insert(db)
    .await
    .map(drop)
}

/// The notifications of `user_id` about the rooms of `scope` (everything a caller may see).
fn visible(user_id: &str, scope: &RoomScope) -> Select<notification::Entity> {
    notification::Entity::find()
        .filter(notification::Column::UserId.eq(user_id))
        .filter(scope.condition(notification::Column::RoomId))
}

/// One page of what [`visible`] holds, newest first.
pub(crate) struct Page {
    /// At most the asked-for number.
    pub rows: Vec<notification::Model>,
    /// Whether older ones remain.
    pub more: bool,
    /// Unread notifications in all.
    pub unread_count: u64,
}

/// At most `limit` of the notifications `user_id` sees in `scope` (only unread ones if
/// `unread`), older than `before`.
pub(crate) async fn page(
    db: &DatabaseConnection,
    user_id: &str,
    scope: &RoomScope,
    unread: bool,
    limit: u64,
    before: Option<i64>,
) -> Result<Page, DbErr> {
    let mine = visible(user_id, scope);
    let unread_count = mine
        .clone()
        .filter(notification::Column::ReadAt.is_null())
        .count(db)
        .await?;
    let mut select = mine;
    if unread {
        select = select.filter(notification::Column::ReadAt.is_null());
    }
    if let Some(before) = before {
        select = select.filter(notification::Column::Id.lt(before));
    }
    let mut rows = select
        .order_by_desc(notification::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    Ok(Page {
        rows,
        more,
        unread_count,
    })
}

/// Marks notification `id` read at `at_ms` if `user_id` sees it in `scope`; false when they
/// see none such.
pub(crate) async fn mark_read(
    db: &DatabaseConnection,
    user_id: &str,
    scope: &RoomScope,
    id: i64,
    at_ms: i64,
) -> Result<bool, DbErr> {
    let found = visible(user_id, scope)
        .filter(notification::Column::Id.eq(id))
        .one(db)
        .await?;
    if found.is_none() {
        return Ok(false);
    }
    notification::Entity::update_many()
        .col_expr(notification::Column::ReadAt, Expr::value(at_ms))
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::ReadAt.is_null())
        .exec(db)
        .await?;
    Ok(true)
}

/// Marks every notification `user_id` sees in `scope` read at `at_ms` (the others stay
/// unread).
pub(crate) async fn mark_all_read(
    db: &DatabaseConnection,
    user_id: &str,
    scope: &RoomScope,
    at_ms: i64,
) -> Result<(), DbErr> {
    notification::Entity::update_many()
        .col_expr(notification::Column::ReadAt, Expr::value(at_ms))
        .filter(notification::Column::UserId.eq(user_id))
        .filter(scope.condition(notification::Column::RoomId))
        .filter(notification::Column::ReadAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}
