//! [`AuthorizedRoom`]: the one extractor of every REST route under `/api/rooms/{room}`, for
//! "this caller may do this in this room".
//!
//! Its type says what the route needs, so the check cannot be forgotten or done twice:
//! - the least role, [`Viewer`], [`Editor`] or [`Owner`], or [`Session<R>`] when the route also
//!   needs a logged-in user (not an API key or share link);
//! - whether the route works on the room's document ([`Loaded`]: the room is leased, kept in
//!   memory for the request) or only on its rows ([`Unloaded`], the default);
//! - what a `{room}` that is no valid room id answers: 404 like any unknown room
//!   ([`NotFoundIfInvalid`], the default, the rooms wing's and most routes'), or 400
//!   `invalid_room` ([`BadRequestIfInvalid`], the document, file, comment and activity
//!   routes').
//!
//! In order, as each route did by hand before: the caller is authenticated (401), must be a
//! session user if asked (403), the room id is parsed (404 or 400), the role is checked
//! (404 for no room, 403 for too small a role), and for [`Loaded`] the room is leased and the
//! role checked again with the room held.

use std::future::Future;
use std::marker::PhantomData;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use crdt_store::{Room, RoomId, RoomLease};
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;

use crate::accounts::{Identity, Principal, Role};
use crate::app::AppState;
use crate::http::caller::{Caller, SessionUser, existing_room_id, require_role, role_too_small};
use crate::http::error::ApiError;

/// A room the caller may act in with at least the role `R` asks for, parsed from the path's
/// `{room}`; with `L = Loaded`, also leased (kept loaded) for the request.
pub struct AuthorizedRoom<R: MinRole, L: Load = Unloaded, N: InvalidName = NotFoundIfInvalid> {
    /// The room.
    pub id: RoomId,
    /// The caller's role there (at least `R`'s).
    pub role: Role,
    /// The caller as others see them.
    pub identity: Identity,
    /// Who is asking.
    pub principal: Principal,
    /// The session user, for [`Session<R>`]; `()` otherwise.
    pub session: R::SessionInfo,
    lease: L::Lease,
    name: PhantomData<N>,
}

impl<R: MinRole, L: Load, N: InvalidName> AuthorizedRoom<R, L, N> {
    /// The user behind the caller, if any (share links have none).
    pub fn user_id(&self) -> Option<&str> {
        self.principal.user_id()
    }

    /// Checks a least role that depends on the request (a route whose rule is "owners, or
    /// anyone on their own behalf"), with the same 403 as the extractor's.
    pub fn require(&self, min: Role) -> Result<(), ApiError> {
        if self.role >= min {
            Ok(())
        } else {
            Err(role_too_small(self.role, min))
        }
    }
}

impl<R: MinRole, N: InvalidName> AuthorizedRoom<R, Loaded, N> {
    /// The room's document.
    pub fn room(&self) -> &Room {
        self.lease.room()
    }
}

impl<R: MinRole, L: Load, N: InvalidName> FromRequest for AuthorizedRoom<R, L, N> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        // Decoded like any `web::Path`, so the name is the one the route's own `Path` sees.
        let name = web::Path::<RoomSegment>::extract(req).into_inner();
        let state = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .expect("AppState is registered");
        Box::pin(async move {
            let Caller(principal) = caller.await?;
            let session = R::session(&principal)?;
            let id = N::parse(&name?.room)?;
            Ok(authorize(&state, principal, session, id).await?)
        })
    }
}

async fn authorize<R: MinRole, L: Load, N: InvalidName>(
    state: &AppState,
    principal: Principal,
    session: R::SessionInfo,
    id: RoomId,
) -> Result<AuthorizedRoom<R, L, N>, ApiError> {
    let (role, identity) = require_role(state, &principal, &id, R::ROLE).await?;
    let (lease, role, identity) =
        L::take(state, &principal, &id, R::ROLE, (role, identity)).await?;
    Ok(AuthorizedRoom {
        id,
        role,
        identity,
        principal,
        session,
        lease,
        name: PhantomData,
    })
}

#[derive(Deserialize)]
struct RoomSegment {
    room: String,
}

/// The `{room}` of a room route, for the OpenAPI document ([`AuthorizedRoom`] reads it).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RoomParam {
    pub room: String,
}

/// The least role a route needs, as a type.
pub trait MinRole {
    /// The role.
    const ROLE: Role;
    /// What the route knows of the caller besides the principal: the session user for
    /// [`Session<R>`], nothing otherwise.
    type SessionInfo;
    /// Refuses a caller of the wrong kind (403).
    fn session(principal: &Principal) -> Result<Self::SessionInfo, ApiError>;
}

/// Any participant.
pub enum Viewer {}
/// Participants who may edit.
pub enum Editor {}
/// The room's owners.
pub enum Owner {}
/// `R`, and only for a logged-in user acting through a session: routes that create
/// something in the user's name that outlives the request (invites, share links, rooms).
pub struct Session<R>(PhantomData<R>);

macro_rules! any_caller {
    ($marker:ty, $role:expr) => {
        impl MinRole for $marker {
            const ROLE: Role = $role;
            type SessionInfo = ();
            fn session(_: &Principal) -> Result<(), ApiError> {
                Ok(())
            }
        }
    };
}

any_caller!(Viewer, Role::Viewer);
any_caller!(Editor, Role::Editor);
any_caller!(Owner, Role::Owner);

impl<R: MinRole> MinRole for Session<R> {
    const ROLE: Role = R::ROLE;
    type SessionInfo = SessionUser;
    fn session(principal: &Principal) -> Result<SessionUser, ApiError> {
        SessionUser::of(principal.clone())
    }
}

/// Whether a route leases the room, as a type.
pub trait Load {
    /// What the extractor keeps for the request.
    type Lease;
    /// Takes what the route needs, given the first check's `(role, identity)`, and answers
    /// the role and identity to go on with.
    fn take(
        state: &AppState,
        principal: &Principal,
        id: &RoomId,
        min: Role,
        checked: (Role, Identity),
    ) -> impl Future<Output = Result<(Self::Lease, Role, Identity), ApiError>>;
}

/// The route works on the room's rows only; the room is not loaded.
pub enum Unloaded {}
/// The route works on the room's document: it is leased for the request.
pub enum Loaded {}

impl Load for Unloaded {
    type Lease = ();
    async fn take(
        _: &AppState,
        _: &Principal,
        _: &RoomId,
        _: Role,
        (role, identity): (Role, Identity),
    ) -> Result<((), Role, Identity), ApiError> {
        Ok(((), role, identity))
    }
}

impl Load for Loaded {
    type Lease = RoomLease;
    async fn take(
        state: &AppState,
        principal: &Principal,
        id: &RoomId,
        min: Role,
        _: (Role, Identity),
    ) -> Result<(RoomLease, Role, Identity), ApiError> {
        let lease = state.registry.lease(id).await?;
        // Checked again with the room held: a deletion between the first check and the lease
        // would otherwise hand this caller a room created afresh under the id, by someone
        // else. Held, the room is the one checked; if it is deleted later, its writes are
        // refused.
        let (role, identity) = require_role(state, principal, id, min).await?;
        Ok((lease, role, identity))
    }
}

/// What a route answers for a `{room}` that is no valid room id, as a type.
pub trait InvalidName {
    /// Parses the name.
    fn parse(name: &str) -> Result<RoomId, ApiError>;
}

/// 404, like any room that does not exist: no room can have such a name.
pub enum NotFoundIfInvalid {}
/// 400 `invalid_room`, saying why the name is no room id.
pub enum BadRequestIfInvalid {}

impl InvalidName for NotFoundIfInvalid {
    fn parse(name: &str) -> Result<RoomId, ApiError> {
        existing_room_id(name)
    }
}

impl InvalidName for BadRequestIfInvalid {
    fn parse(name: &str) -> Result<RoomId, ApiError> {
        Ok(RoomId::parse(name)?)
    }
}
