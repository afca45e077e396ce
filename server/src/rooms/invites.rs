//! `/api/rooms/{room}/invites` and `/api/invites/{token}/accept`: invite links.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::room::RoomView;
use super::{CreatedLink, expiry_ms, parse_expiry, validated};
use crate::accounts::access::AccessEvent;
use crate::accounts::auth::Role;
use crate::accounts::auth::secrets::{INVITE_TOKEN_PREFIX, random_id, random_token, token_hash};
use crate::app::AppState;
use crate::entity::{invite, room, room_member};
use crate::http::caller::{Caller, SessionUser, existing_room_id, require_role};
use crate::http::error::ApiError;

/// `POST /api/rooms/{room}/invites` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteRequest {
    /// Role granted on acceptance (`editor` or `viewer`; `owner` is given by transfer).
    role: Role,
    /// `"7d"` (default), `"30d"`, any duration, or `"never"`.
    expires_in: Option<String>,
    /// Most acceptances; unlimited when absent.
    max_uses: Option<u32>,
}

/// An invite as listed.
#[derive(Serialize, ToSchema)]
pub struct InviteView {
    /// Invite id.
    pub id: String,
    /// Role granted.
    pub role: Role,
    /// Milliseconds since the epoch; absent when it never expires.
    pub expires_at_ms: Option<i64>,
    /// Most acceptances.
    pub max_uses: Option<i32>,
    /// Acceptances so far.
    pub uses: i32,
    /// Set once revoked.
    pub revoked_at_ms: Option<i64>,
    /// Milliseconds since the epoch.
    pub created_at_ms: i64,
}

impl From<invite::Model> for InviteView {
    fn from(i: invite::Model) -> Self {
        Self {
            id: i.id,
            role: Role::parse(&i.role).unwrap_or(Role::Viewer),
            expires_at_ms: i.expires_at,
            max_uses: i.max_uses,
            uses: i.uses,
            revoked_at_ms: i.revoked_at,
            created_at_ms: i.created_at,
        }
    }
}

/// Creates an invite link (owners).
#[utoipa::path(post, path = "/api/rooms/{room}/invites", tag = "invites", request_body = CreateInviteRequest,
    responses((status = 201), (status = 403), (status = 404), (status = 422)))]
pub async fn create_invite(
    state: web::Data<AppState>,
    caller: SessionUser,
    room_id: web::Path<String>,
    body: web::Json<CreateInviteRequest>,
) -> Result<HttpResponse, ApiError> {
    let principal = caller.principal();
    require_role(
        &state,
        &principal,
        &existing_room_id(&room_id)?,
        Role::Owner,
    )
    .await?;
    let mut fields = BTreeMap::new();
    if body.role == Role::Owner {
        fields.insert(
            "role",
            "invite as editor or viewer; transfer ownership separately".to_owned(),
        );
    }
    if body.max_uses == Some(0) || body.max_uses.is_some_and(|n| n > 10_000) {
        fields.insert("max_uses", "must be 1 to 10000".to_owned());
    }
    validated(fields)?;
    let expiry = parse_expiry(body.expires_in.as_deref(), Duration::from_secs(7 * 86_400))?;
    let token = random_token(INVITE_TOKEN_PREFIX);
    let now = state.auth.now();
    let model = invite::ActiveModel {
        id: Set(random_id()),
        room_id: Set(room_id.to_string()),
        token_hash: Set(token_hash(&token)),
        role: Set(body.role.as_str().to_owned()),
        created_by: Set(caller.user_id),
        created_at: Set(now),
        expires_at: Set(expiry_ms(now, expiry)),
        max_uses: Set(body.max_uses.map(|n| n as i32)),
        uses: Set(0),
        revoked_at: Set(None),
    }
    .insert(state.db())
    .await?;
    Ok(HttpResponse::Created().json(CreatedLink {
        url: format!("/invite/{token}"),
        token,
        link: InviteView::from(model),
    }))
}

/// Invites of a room (owners).
#[utoipa::path(get, path = "/api/rooms/{room}/invites", tag = "invites", responses((status = 200, body = [InviteView]), (status = 403)))]
pub async fn list_invites(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&state, &caller.0, &existing_room_id(&room_id)?, Role::Owner).await?;
    let invites: Vec<InviteView> = invite::Entity::find()
        .filter(invite::Column::RoomId.eq(room_id.as_str()))
        .order_by_asc(invite::Column::CreatedAt)
        .all(state.db())
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "invites": invites })))
}

/// Revokes an invite (owners).
#[utoipa::path(delete, path = "/api/rooms/{room}/invites/{invite_id}", tag = "invites", responses((status = 204), (status = 403), (status = 404)))]
pub async fn revoke_invite(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, invite_id) = path.into_inner();
    require_role(&state, &caller.0, &existing_room_id(&room_id)?, Role::Owner).await?;
    let result = invite::Entity::update_many()
        .col_expr(invite::Column::RevokedAt, Expr::value(state.auth.now()))
        .filter(invite::Column::Id.eq(invite_id))
        .filter(invite::Column::RoomId.eq(&room_id))
        .filter(invite::Column::RevokedAt.is_null())
        .exec(state.db())
        .await?;
    if result.rows_affected == 0 {
        return Err(ApiError::not_found("no such active invite"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Accepts an invite: the caller becomes a participant with the invite's role (an existing
/// participant keeps the higher of the two roles).
#[utoipa::path(post, path = "/api/invites/{token}/accept", tag = "invites",
    responses((status = 200, body = RoomView), (status = 404), (status = 410)))]
pub async fn accept_invite(
    state: web::Data<AppState>,
    caller: SessionUser,
    token: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let now = state.auth.now();
    let gone = |why: &str| {
        ApiError::new(
            actix_web::http::StatusCode::GONE,
            "invite_unusable",
            why.to_owned(),
        )
    };
    let found = invite::Entity::find()
        .filter(invite::Column::TokenHash.eq(token_hash(&token)))
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
    let existing = room_member::Entity::find_by_id((found.room_id.clone(), caller.user_id.clone()))
        .one(&txn)
        .await?;
    let final_role = match existing.as_ref().and_then(|m| Role::parse(&m.role)) {
        Some(current) if current >= role => current,
        Some(_) => {
            room_member::Entity::update_many()
                .col_expr(room_member::Column::Role, Expr::value(role.as_str()))
                .filter(room_member::Column::RoomId.eq(&found.room_id))
                .filter(room_member::Column::UserId.eq(&caller.user_id))
                .exec(&txn)
                .await?;
            role
        }
        None => {
            room_member::ActiveModel {
                room_id: Set(found.room_id.clone()),
                user_id: Set(caller.user_id.clone()),
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
    Ok(HttpResponse::Ok().json(RoomView {
        online: state.presence.connections(&model.id),
        id: model.id,
        name: model.name,
        role: final_role,
        created_at_ms: model.created_at,
    }))
}
