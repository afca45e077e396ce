//! Request extractors for the caller's identity, and the room permission check that
//! [`AuthorizedRoom`](crate::http::AuthorizedRoom) and the WebSocket upgrade go through.

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::future::LocalBoxFuture;

use crate::accounts::{AuthError, Identity, Principal, Role, RoomAccess, room_access};
use crdt_store::RoomId;

use crate::app::AppState;
use crate::http::error::ApiError;

/// The bearer token of a request: `Authorization: Bearer …`, or `?token=…` (what
/// `y-websocket`'s `params` sends, and what a browser WebSocket can carry).
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    if let Some(header) = req.headers().get("authorization")
        && let Ok(value) = header.to_str()
        && let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
    {
        return Some(token.trim().to_owned());
    }
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("token").cloned())
        .filter(|t| !t.is_empty())
}

fn state(req: &HttpRequest) -> web::Data<AppState> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .expect("AppState is registered")
}

/// An authenticated caller of any kind (user, API key, share link).
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = state(req);
        Box::pin(async move {
            let token = token.ok_or(AuthError::Missing)?;
            Ok(Caller(state.auth.authenticate(&token).await?))
        })
    }
}

/// An authenticated user acting through a session (not an API key or share link): what
/// account management requires.
pub struct SessionUser {
    /// The account.
    pub user_id: String,
    /// The session used.
    pub session_id: String,
}

impl SessionUser {
    /// The session user behind `principal`; 403 for an API key or a share link.
    pub fn of(principal: Principal) -> Result<Self, ApiError> {
        match principal {
            Principal::User {
                user_id,
                session_id,
            } => Ok(SessionUser {
                user_id,
                session_id,
            }),
            _ => Err(ApiError::forbidden(
                "this endpoint needs a logged-in user, not an API key or share link",
            )),
        }
    }

    /// The same caller as a [`Principal`], for room permission checks.
    pub fn principal(&self) -> Principal {
        Principal::User {
            user_id: self.user_id.clone(),
            session_id: self.session_id.clone(),
        }
    }
}

impl FromRequest for SessionUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        Box::pin(async move { SessionUser::of(caller.await?.0) })
    }
}

/// The rooms whose data a caller may see on endpoints that gather it across rooms (the
/// caller's notifications, AI usage). Room endpoints check one room through
/// [`AuthorizedRoom`](crate::http::AuthorizedRoom); these apply the same limit to a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomScope {
    /// A user's session: every room of theirs.
    Every,
    /// An API key: the rooms it was created for, and nothing that is not about one of them.
    Only(Vec<String>),
}

impl RoomScope {
    /// The scope of `principal`. A share link opens one room, but these endpoints belong to
    /// accounts, which a share link has none of: they refuse it before asking.
    pub fn of(principal: &Principal) -> Self {
        match principal {
            Principal::User { .. } => RoomScope::Every,
            Principal::ApiKey { rooms, .. } => RoomScope::Only(rooms.clone()),
            Principal::Share { room_id, .. } => RoomScope::Only(vec![room_id.clone()]),
        }
    }

    /// The scope as a query condition on `column`, a (nullable) room id: a row about no room
    /// is outside any limited scope (`IN` is never true for `NULL`).
    pub fn condition(&self, column: impl sea_orm::ColumnTrait) -> sea_orm::Condition {
        match self {
            RoomScope::Every => sea_orm::Condition::all(),
            RoomScope::Only(rooms) => sea_orm::Condition::all().add(column.is_in(rooms.clone())),
        }
    }
}

/// Checks that `principal` holds at least `min` in `room_id`. Room routes check through
/// [`AuthorizedRoom`](crate::http::AuthorizedRoom); this is for what names its room
/// elsewhere (the WebSocket upgrade, a share token's own room).
pub async fn require_role(
    state: &AppState,
    principal: &Principal,
    room_id: &RoomId,
    min: Role,
) -> Result<(Role, Identity), ApiError> {
    match room_access(state.db(), principal, room_id).await? {
        RoomAccess::NoRoom => Err(no_room(room_id.as_str())),
        RoomAccess::Denied => Err(ApiError::forbidden(
            "you are not a participant of this room",
        )),
        RoomAccess::Granted { role, identity } if role >= min => Ok((role, identity)),
        RoomAccess::Granted { role, .. } => Err(role_too_small(role, min)),
    }
}

/// The 403 of a caller whose role in a room is below the one asked for.
pub fn role_too_small(role: Role, min: Role) -> ApiError {
    ApiError::forbidden(format!(
        "this needs the {} role; you are {}",
        min.as_str(),
        role.as_str()
    ))
}

/// The id of a room named in a path whose routes answer 404, not 400, for a name that is no
/// valid room id: no room can have such a name, so for those routes it is simply not found.
pub fn existing_room_id(room: &str) -> Result<RoomId, ApiError> {
    RoomId::parse(room).map_err(|_| no_room(room))
}

fn no_room(room: &str) -> ApiError {
    ApiError::not_found(format!("no room {room:?}"))
}
