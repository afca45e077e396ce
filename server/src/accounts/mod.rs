//! The accounts wing: who someone is and what they may do. It owns accounts, sessions,
//! refresh tokens, API keys and login throttling ([`auth`]), the account routes (`/api/auth`,
//! `/api/me`, `/api/api-keys`, in [`routes`], with their database work in [`store`]), and
//! the per-room access decision and the access events that reach open sockets ([`access`]).
//! Invariant: every credential is checked and every room role decided here, and any change
//! that could lower someone's access is announced on [`AccessEvents`] before it is answered.
//! It imports no other wing but `http` (for its routes' errors and extractors).

pub mod access;
pub mod access_events;
pub mod auth;
pub(crate) mod routes;
pub(crate) mod store;

pub use access::{AccessEvent, AccessEvents, Identity, RoomAccess, room_access};
pub use auth::secrets::{
    API_KEY_PREFIX, INVITE_TOKEN_PREFIX, SHARE_TOKEN_PREFIX, random_id, random_token, token_hash,
};
pub use auth::{Auth, AuthError, CredentialStatus, Principal, Role};

/// The account the built-in AI assistant acts as, in every room it works in.
pub const ASSISTANT_USER_ID: &str = "ai-assistant";

/// The assistant's display name, reserved: nobody else may register under it, so others can
/// tell the assistant by name as well as by its (server-owned) awareness flag.
pub const ASSISTANT_NAME: &str = "AI assistant";
