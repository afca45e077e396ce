//! `/api/rooms/{room}/share-links` and `/api/share-links/current`: share links.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::room::RoomView;
use super::{CreatedLink, expiry_ms, parse_expiry};
use crate::accounts::access::AccessEvent;
use crate::accounts::auth::secrets::{SHARE_TOKEN_PREFIX, random_id, random_token, token_hash};
use crate::accounts::auth::{Principal, Role};
use crate::app::AppState;
use crate::entity::{room, share_link};
use crate::http::caller::{Caller, SessionUser, existing_room_id, require_role};
use crate::http::error::ApiError;

/// `POST /api/rooms/{room}/share-links` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShareLinkRequest {
    /// `"30d"` (default), any duration, or `"never"`.
    expires_in: Option<String>,
}

/// A share link as listed.
#[derive(Serialize, ToSchema)]
pub struct ShareLinkView {
    /// Link id.
    pub id: String,
    /// Milliseconds since the epoch; absent when it never expires.
    pub expires_at_ms: Option<i64>,
    /// Set once revoked.
    pub revoked_at_ms: Option<i64>,
    /// Milliseconds since the epoch.
    pub created_at_ms: i64,
}

impl From<share_link::Model> for ShareLinkView {
    fn from(l: share_link::Model) -> Self {
        Self {
            id: l.id,
            expires_at_ms: l.expires_at,
            revoked_at_ms: l.revoked_at,
            created_at_ms: l.created_at,
        }
    }
}

/// Creates a read-only share link (owners): anyone holding its token can view the room
/// without an account, until it expires or is revoked.
#[utoipa::path(post, path = "/api/rooms/{room}/share-links", tag = "share-links", request_body = CreateShareLinkRequest,
    responses((status = 201), (status = 403), (status = 404)))]
pub async fn create_share_link(
    state: web::Data<AppState>,
    caller: SessionUser,
    room_id: web::Path<String>,
    body: web::Json<CreateShareLinkRequest>,
) -> Result<HttpResponse, ApiError> {
    let principal = caller.principal();
    require_role(
        &state,
        &principal,
        &existing_room_id(&room_id)?,
        Role::Owner,
    )
    .await?;
    let expiry = parse_expiry(body.expires_in.as_deref(), Duration::from_secs(30 * 86_400))?;
    let token = random_token(SHARE_TOKEN_PREFIX);
    let now = state.auth.now();
    let model = share_link::ActiveModel {
        id: Set(random_id()),
        room_id: Set(room_id.to_string()),
        token_hash: Set(token_hash(&token)),
        created_by: Set(caller.user_id),
        created_at: Set(now),
        expires_at: Set(expiry_ms(now, expiry)),
        revoked_at: Set(None),
    }
    .insert(state.db())
    .await?;
    Ok(HttpResponse::Created().json(CreatedLink {
        url: format!("/share/{token}"),
        token,
        link: ShareLinkView::from(model),
    }))
}

/// Share links of a room (owners).
#[utoipa::path(get, path = "/api/rooms/{room}/share-links", tag = "share-links", responses((status = 200, body = [ShareLinkView]), (status = 403)))]
pub async fn list_share_links(
    state: web::Data<AppState>,
    caller: Caller,
    room_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_role(&state, &caller.0, &existing_room_id(&room_id)?, Role::Owner).await?;
    let links: Vec<ShareLinkView> = share_link::Entity::find()
        .filter(share_link::Column::RoomId.eq(room_id.as_str()))
        .order_by_asc(share_link::Column::CreatedAt)
        .all(state.db())
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "share_links": links })))
}

/// Revokes a share link (owners); sockets opened with it are closed.
#[utoipa::path(delete, path = "/api/rooms/{room}/share-links/{link_id}", tag = "share-links", responses((status = 204), (status = 403), (status = 404)))]
pub async fn revoke_share_link(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (room_id, link_id) = path.into_inner();
    require_role(&state, &caller.0, &existing_room_id(&room_id)?, Role::Owner).await?;
    let result = share_link::Entity::update_many()
        .col_expr(share_link::Column::RevokedAt, Expr::value(state.auth.now()))
        .filter(share_link::Column::Id.eq(&link_id))
        .filter(share_link::Column::RoomId.eq(&room_id))
        .filter(share_link::Column::RevokedAt.is_null())
        .exec(state.db())
        .await?;
    if result.rows_affected == 0 {
        return Err(ApiError::not_found("no such active share link"));
    }
    state
        .events
        .publish(AccessEvent::ShareLinkRevoked { link_id });
    Ok(HttpResponse::NoContent().finish())
}

/// The room a share token opens, for the web client's `/share/{token}` page: the token only
/// names itself, so its holder asks which room it is for.
#[utoipa::path(get, path = "/api/share-links/current", tag = "share-links",
    responses((status = 200, body = RoomView), (status = 401), (status = 403)))]
pub async fn current_share_link(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let Principal::Share { room_id, .. } = &caller.0 else {
        return Err(ApiError::forbidden(
            "this endpoint needs a share token (shr_…)",
        ));
    };
    let (role, _) =
        require_role(&state, &caller.0, &existing_room_id(room_id)?, Role::Viewer).await?;
    let model = room::Entity::find_by_id(room_id.as_str())
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::not_found("the room no longer exists"))?;
    Ok(HttpResponse::Ok().json(RoomView {
        online: state.presence.connections(room_id),
        id: model.id,
        name: model.name,
        role,
        created_at_ms: model.created_at,
    }))
}
