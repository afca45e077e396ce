//! The database work of the account routes: the caller's account and their API keys.
//! (Sessions, passwords and tokens are [`auth`](super::auth)'s.)

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder,
};

use super::Role;
use super::auth::secrets::{random_id, token_hash};
use crate::entity::{api_key, room_member, user};

/// The account `user_id`, if it still exists.
pub(crate) async fn account(
    db: &DatabaseConnection,
    user_id: &str,
) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find_by_id(user_id).one(db).await
}

/// Whether `user_id` takes part in every room of `rooms`.
pub(crate) async fn takes_part_in_all(
    db: &DatabaseConnection,
    user_id: &str,
    rooms: &[String],
) -> Result<bool, DbErr> {
    let memberships = room_member::Entity::find()
        .filter(room_member::Column::UserId.eq(user_id))
        .filter(room_member::Column::RoomId.is_in(rooms.to_vec()))
        .all(db)
        .await?;
    Ok(rooms
        .iter()
        .all(|r| memberships.iter().any(|m| &m.room_id == r)))
}

/// What a new API key may do.
pub(crate) struct NewApiKey<'a> {
    /// Its label.
    pub name: &'a str,
    /// The most it may do.
    pub role: Role,
    /// The rooms it may touch.
    pub rooms: &'a [String],
}

/// Stores the API key `key` of `user_id` (only its hash and first characters).
pub(crate) async fn create_api_key(
    db: &DatabaseConnection,
    user_id: &str,
    key: &str,
    new: NewApiKey<'_>,
    now: i64,
) -> Result<api_key::Model, DbErr> {
    api_key::ActiveModel {
        id: Set(random_id()),
        user_id: Set(user_id.to_owned()),
        name: Set(new.name.trim().to_owned()),
        key_hash: Set(token_hash(key)),
        prefix: Set(key.chars().take(10).collect()),
        role: Set(new.role.as_str().to_owned()),
        rooms: Set(serde_json::to_string(new.rooms).unwrap_or_else(|_| "[]".into())),
        created_at: Set(now),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(db)
    .await
}

/// The API keys of `user_id`, oldest first.
pub(crate) async fn api_keys(
    db: &DatabaseConnection,
    user_id: &str,
) -> Result<Vec<api_key::Model>, DbErr> {
    api_key::Entity::find()
        .filter(api_key::Column::UserId.eq(user_id))
        .order_by_asc(api_key::Column::CreatedAt)
        .all(db)
        .await
}

/// Revokes the active key `key_id` of `user_id`; false when there is none.
pub(crate) async fn revoke_api_key(
    db: &DatabaseConnection,
    user_id: &str,
    key_id: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let result = api_key::Entity::update_many()
        .col_expr(api_key::Column::RevokedAt, Expr::value(now))
        .filter(api_key::Column::Id.eq(key_id))
        .filter(api_key::Column::UserId.eq(user_id))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}
