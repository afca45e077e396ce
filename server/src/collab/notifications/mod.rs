//! Per-user notifications: someone mentioned you, added you to a room, or the assistant
//! answered your request with a suggestion.

use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, Set};
use serde::Serialize;

use crate::accounts::access::Identity;
use crate::entity::notification;

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
