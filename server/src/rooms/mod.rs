//! The rooms wing: rooms and who is in them. It owns the `rooms`, `room_members`, `invites`
//! and `share_links` tables, one folder per resource, each a service (`mod.rs`: the database
//! work) and its routes (`routes.rs`: extract, call, map): [`room`] (create, list, rename,
//! delete, fork, import), [`members`], [`invites`], [`share_links`]. Invariant: a room always
//! has at least one owner, every change that can lower someone's access is announced on
//! [`AccessEvents`](crate::accounts::AccessEvents) once committed, and deleting a room
//! removes every row that names it in one transaction.

pub(crate) mod invites;
pub(crate) mod members;
pub(crate) mod room;
pub(crate) mod share_links;

pub(crate) use invites::routes as invite_routes;
pub(crate) use members::routes as member_routes;
pub(crate) use room::routes as room_routes;
pub(crate) use share_links::routes as share_link_routes;

use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use crate::http::{ApiError, field_error};

/// Parses `"7d"`, `"30d"`, `"12h"` (any humantime duration) or `"never"`.
fn parse_expiry(expires_in: Option<&str>, default: Duration) -> Result<Option<Duration>, ApiError> {
    match expires_in {
        None => Ok(Some(default)),
        Some("never") => Ok(None),
        Some(text) => humantime::parse_duration(text).map(Some).map_err(|_| {
            field_error(
                "expires_in",
                "use a duration such as \"7d\", \"30d\", \"12h\", or \"never\"",
            )
        }),
    }
}

fn expiry_ms(now: i64, expiry: Option<Duration>) -> Option<i64> {
    expiry.map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

/// A new invite or share link: the only time its token is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedLink<T: Serialize> {
    /// The secret token.
    pub token: String,
    /// A path to hand out (the web client opens it).
    pub url: String,
    /// The stored description.
    #[serde(flatten)]
    pub link: T,
}
