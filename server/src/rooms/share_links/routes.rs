//! `/api/rooms/{room}/share-links` and `/api/share-links/current`: share links.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::accounts::{Principal, Role, SHARE_TOKEN_PREFIX, random_token, token_hash};
use crate::app::AppState;
use crate::entity::share_link;
use crate::http::{
    ApiError, AuthorizedRoom, Caller, Owner, RoomParam, Session, existing_room_id, require_role,
};
use crate::rooms::room::find_room;
use crate::rooms::room::routes::RoomView;
use crate::rooms::{CreatedLink, expiry_ms, parse_expiry};

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

/// The `{link_id}` of a share link's route.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LinkParam {
    link_id: String,
}

/// Creates a read-only share link (owners): anyone holding its token can view the room
/// without an account, until it expires or is revoked.
#[utoipa::path(post, path = "/api/rooms/{room}/share-links", tag = "share-links", request_body = CreateShareLinkRequest,
    params(RoomParam),
    responses((status = 201), (status = 403), (status = 404)))]
pub async fn create_share_link(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Session<Owner>>,
    body: web::Json<CreateShareLinkRequest>,
) -> Result<HttpResponse, ApiError> {
    let expiry = parse_expiry(body.expires_in.as_deref(), Duration::from_secs(30 * 86_400))?;
    let token = random_token(SHARE_TOKEN_PREFIX);
    let now = state.auth.now();
    let creator = &room.session.user_id;
    let expires_at = expiry_ms(now, expiry);
    let model = super::create_share_link(
        state.db(),
        &room.id,
        creator,
        token_hash(&token),
        now,
        expires_at,
    )
    .await?;
    Ok(HttpResponse::Created().json(CreatedLink {
        url: format!("/share/{token}"),
        token,
        link: ShareLinkView::from(model),
    }))
}

/// Share links of a room (owners).
#[utoipa::path(get, path = "/api/rooms/{room}/share-links", tag = "share-links", params(RoomParam),
    responses((status = 200, body = [ShareLinkView]), (status = 403)))]
pub async fn list_share_links(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Owner>,
) -> Result<HttpResponse, ApiError> {
    let links: Vec<ShareLinkView> = super::share_links(state.db(), &room.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "share_links": links })))
}

/// Revokes a share link (owners); sockets opened with it are closed.
#[utoipa::path(delete, path = "/api/rooms/{room}/share-links/{link_id}", tag = "share-links",
    params(RoomParam, LinkParam),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn revoke_share_link(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Owner>,
    link: web::Path<LinkParam>,
) -> Result<HttpResponse, ApiError> {
    super::revoke_share_link(&state, &room.id, &link.link_id).await?;
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
    // The room is the token's, not a path's: no `AuthorizedRoom` here.
    let id = existing_room_id(room_id)?;
    let (role, _) = require_role(&state, &caller.0, &id, Role::Viewer).await?;
    let model = find_room(state.db(), &id, "the room no longer exists").await?;
    Ok(HttpResponse::Ok().json(RoomView::new(&state, model, role)))
}
