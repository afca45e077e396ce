//! `/api/rooms/{room}/invites` and `/api/invites/{token}/accept`: invite links.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::NewInvite;
use crate::accounts::{INVITE_TOKEN_PREFIX, Role, random_token, token_hash};
use crate::app::AppState;
use crate::entity::invite;
use crate::http::{
    ApiError, AuthorizedRoom, FieldErrors, Owner, RoomParam, Session, SessionUser, validated,
};
use crate::rooms::room::routes::RoomView;
use crate::rooms::{CreatedLink, expiry_ms, parse_expiry};

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

/// The `{invite_id}` of an invite's route.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InviteParam {
    invite_id: String,
}

/// 422 unless an invite may grant `role` (not owner) and `max_uses` (1 to 10 000).
fn check_invite(role: Role, max_uses: Option<u32>) -> Result<(), ApiError> {
    let mut fields = FieldErrors::new();
    if role == Role::Owner {
        fields.insert(
            "role",
            "invite as editor or viewer; transfer ownership separately".to_owned(),
        );
    }
    if max_uses == Some(0) || max_uses.is_some_and(|n| n > 10_000) {
        fields.insert("max_uses", "must be 1 to 10000".to_owned());
    }
    validated(fields)
}

/// Creates an invite link (owners).
#[utoipa::path(post, path = "/api/rooms/{room}/invites", tag = "invites", request_body = CreateInviteRequest,
    params(RoomParam),
    responses((status = 201), (status = 403), (status = 404), (status = 422)))]
pub async fn create_invite(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Session<Owner>>,
    body: web::Json<CreateInviteRequest>,
) -> Result<HttpResponse, ApiError> {
    let CreateInviteRequest {
        role,
        expires_in,
        max_uses,
    } = body.into_inner();
    check_invite(role, max_uses)?;
    let expiry = parse_expiry(expires_in.as_deref(), Duration::from_secs(7 * 86_400))?;
    let token = random_token(INVITE_TOKEN_PREFIX);
    let now = state.auth.now();
    let invite = NewInvite {
        role,
        expires_at: expiry_ms(now, expiry),
        max_uses,
    };
    let creator = &room.session.user_id;
    let model = super::create_invite(
        state.db(),
        &room.id,
        creator,
        token_hash(&token),
        invite,
        now,
    )
    .await?;
    Ok(HttpResponse::Created().json(CreatedLink {
        url: format!("/invite/{token}"),
        token,
        link: InviteView::from(model),
    }))
}

/// Invites of a room (owners).
#[utoipa::path(get, path = "/api/rooms/{room}/invites", tag = "invites", params(RoomParam),
    responses((status = 200, body = [InviteView]), (status = 403)))]
pub async fn list_invites(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Owner>,
) -> Result<HttpResponse, ApiError> {
    let invites: Vec<InviteView> = super::invites(state.db(), &room.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "invites": invites })))
}

/// Revokes an invite (owners).
#[utoipa::path(delete, path = "/api/rooms/{room}/invites/{invite_id}", tag = "invites",
    params(RoomParam, InviteParam),
    responses((status = 204), (status = 403), (status = 404)))]
pub async fn revoke_invite(
    state: web::Data<AppState>,
    room: AuthorizedRoom<Owner>,
    invite: web::Path<InviteParam>,
) -> Result<HttpResponse, ApiError> {
    super::revoke_invite(state.db(), &room.id, &invite.invite_id, state.auth.now()).await?;
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
    let (model, role) = super::accept_invite(&state, &caller.user_id, &token).await?;
    Ok(HttpResponse::Ok().json(RoomView::new(&state, model, role)))
}
