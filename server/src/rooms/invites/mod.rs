//! Invite links: an owner hands out a token that makes whoever accepts it a participant with
//! the invite's role, until it expires, is used up or is revoked.

pub(crate) mod routes;

use crdt_store::RoomId;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, TransactionTrait,
};

use crate::accounts::{AccessEvent, Role, random_id, token_hash};
use crate::app::AppState;
use crate::entity::{invite, room, room_member};
use crate::http::ApiError;

/// What a new invite grants.
pub(crate) struct NewInvite {
    /// The role given on acceptance.
    pub role: Role,
    /// When it stops working, ms since the epoch; never when absent.
    pub expires_at: Option<i64>,
    /// Most acceptances; unlimited when absent.
    pub max_uses: Option<u32>,
}

/// Stores an invite of room `id` made by `creator`, for the token whose hash is
/// `token_hash`.
pub(crate) async fn create_invite(
    db: &DatabaseConnection,
    id: &RoomId,
    creator: &str,
    token_hash: String,
    invite: NewInvite,
    now: i64,
) -> Result<invite::Model, ApiError> {
    Ok(invite::ActiveModel {
        id: Set(random_id()),
        room_id: Set(id.as_str().to_owned()),
        token_hash: Set(token_hash),
        role: Set(invite.role.as_str().to_owned()),
        created_by: Set(creator.to_owned()),
        created_at: Set(now),
        expires_at: Set(invite.expires_at),
        max_uses: Set(invite.max_uses.map(|n| n as i32)),
        uses: Set(0),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?)
}

/// The room's invites, oldest first.
pub(crate) async fn invites(
    db: &DatabaseConnection,
    id: &RoomId,
) -> Result<Vec<invite::Model>, ApiError> {
    Ok(invite::Entity::find()
        .filter(invite::Column::RoomId.eq(id.as_str()))
        .order_by_asc(invite::Column::CreatedAt)
        .all(db)
        .await?)
}

/// Revokes an active invite of the room; 404 when there is none.
pub(crate) async fn revoke_invite(
    db: &DatabaseConnection,
    id: &RoomId,
    invite_id: &str,
    now: i64,
) -> Result<(), ApiError> {
    let result = invite::Entity::update_many()
        .col_expr(invite::Column::RevokedAt, Expr::value(now))
        .filter(invite::Column::Id.eq(invite_id))
        .filter(invite::Column::RoomId.eq(id.as_str()))
        .filter(invite::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(ApiError::not_found("no such active invite"));
    }
    Ok(())
}

/// Accepts the invite with `token` for `user_id`: they become a participant with its role (an
/// existing participant keeps the higher of the two). Answers the room and the role now held.
pub(crate) async fn accept_invite(
    state: &AppState,
    user_id: &str,
    token: &str,
) -> Result<(room::Model, Role), ApiError> {
    let now = state.auth.now();
    let gone = |why: &str| {
        ApiError::new(
            actix_web::http::StatusCode::GONE,
            "invite_unusable",
            why.to_owned(),
        )
    };
    let found = invite::Entity::find()
        .filter(invite::Column::TokenHash.eq(token_hash(token)))
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found("no such invite"))?;
    if found.revoked_at.is_some() {
        return Err(gone("this invite was revoked"));
    }
    if found.expires_at.is_some_and(|at| at <= now) {
        return Err(gone("this invite has expired"));
    }
    // Count the use with a guarded update, the transaction's first statement, so concurrent
    // acceptances (and a revocation racing this one) cannot exceed what the invite allows.
    let txn = state.db().begin().await?;
    let mut counted = invite::Entity::update_many()
        .col_expr(
            invite::Column::Uses,
            Expr::col(invite::Column::Uses).add(Expr::value(1)),
        )
        .filter(invite::Column::Id.eq(&found.id))
        .filter(invite::Column::RevokedAt.is_null());
    if let Some(max) = found.max_uses {
        counted = counted.filter(invite::Column::Uses.lt(max));
    }
    if counted.exec(&txn).await?.rows_affected == 0 {
        return Err(gone("this invite has been used up or revoked"));
    }
    let role = Role::parse(&found.role).unwrap_or(Role::Viewer);
    let existing = room_member::Entity::find_by_id((found.room_id.clone(), user_id.to_owned()))
        .one(&txn)
        .await?;
    let final_role = match existing.as_ref().and_then(|m| Role::parse(&m.role)) {
        Some(current) if current >= role => current,
        Some(_) => {
            room_member::Entity::update_many()
                .col_expr(room_member::Column::Role, Expr::value(role.as_str()))
                .filter(room_member::Column::RoomId.eq(&found.room_id))
                .filter(room_member::Column::UserId.eq(user_id))
                .exec(&txn)
                .await?;
            role
        }
        None => {
            room_member::ActiveModel {
                room_id: Set(found.room_id.clone()),
                user_id: Set(user_id.to_owned()),
                role: Set(role.as_str().to_owned()),
                created_at: Set(now),
            }
            .insert(&txn)
            .await?;
            role
        }
    };
    let model = room::Entity::find_by_id(&found.room_id)
        .one(&txn)
        .await?
        .ok_or_else(|| ApiError::not_found("the room no longer exists"))?;
    txn.commit().await?;
    state.events.publish(AccessEvent::MembersChanged {
        room_id: found.room_id.clone(),
    });
    Ok((model, final_role))
}
