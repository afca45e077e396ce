//! The accounts wing: who someone is and what they may do. It owns accounts, sessions,
//! refresh tokens, API keys and login throttling ([`auth`]), the account routes (`/api/auth`,
//! `/api/me`, `/api/api-keys`), the per-room access decision and the access events that
//! reach open sockets ([`access`]), and who is connected where ([`presence`]). Invariant:
//! every credential is checked and every room role decided here, and any change that could
//! lower someone's access is announced on [`access::AccessEvents`] before it is answered.

pub mod access;
pub mod auth;
pub mod presence;
pub(crate) mod routes;
