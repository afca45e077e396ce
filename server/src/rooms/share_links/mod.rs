//! Share links: read-only access to one room for whoever holds the token, without an
//! account, until the link expires or is revoked (which closes the sockets opened with it).

pub(crate) mod routes;

use crdt_store::RoomId;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};

use crate::accounts::{AccessEvent, random_id};
use crate::app::AppState;
use crate::entity::share_link;
use crate::http::ApiError;

/// Stores a share link of room `id` made by `creator`, for the token whose hash is
/// `token_hash`, working until `expires_at` (ms since the epoch; for ever when absent).
pub(crate) async fn create_share_link(
    db: &DatabaseConnection,
    id: &RoomId,
    creator: &str,
    token_hash: String,
    now: i64,
    expires_at: Option<i64>,
) -> Result<share_link::Model, ApiError> {
    Ok(share_link::ActiveModel {
        id: Set(random_id()),
        room_id: Set(id.as_str().to_owned()),
        token_hash: Set(token_hash),
        created_by: Set(creator.to_owned()),
        created_at: Set(now),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?)
}

/// The room's share links, oldest first.
pub(crate) async fn share_links(
    db: &DatabaseConnection,
    id: &RoomId,
) -> Result<Vec<share_link::Model>, ApiError> {
    Ok(share_link::Entity::find()
        .filter(share_link::Column::RoomId.eq(id.as_str()))
        .order_by_asc(share_link::Column::CreatedAt)
        .all(db)
        .await?)
}

/// Revokes an active share link of the room (404 when there is none); its sockets close.
pub(crate) async fn revoke_share_link(
    state: &AppState,
    id: &RoomId,
    link_id: &str,
) -> Result<(), ApiError> {
    let result = share_link::Entity::update_many()
        .col_expr(share_link::Column::RevokedAt, Expr::value(state.auth.now()))
        .filter(share_link::Column::Id.eq(link_id))
        .filter(share_link::Column::RoomId.eq(id.as_str()))
        .filter(share_link::Column::RevokedAt.is_null())
        .exec(state.db())
        .await?;
    if result.rows_affected == 0 {
        return Err(ApiError::not_found("no such active share link"));
    }
    state.events.publish(AccessEvent::ShareLinkRevoked {
        link_id: link_id.to_owned(),
    });
    Ok(())
}
