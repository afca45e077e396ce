//! The collab wing: everything people do around a document besides editing it. It owns
//! comment threads with their mentions and the document's `comments` mirror ([`comments`]),
//! files, export and import ([`files`]), the document snapshot and named versions
//! ([`documents`]), the activity feed ([`activity`]) with who is connected where
//! ([`presence`]), notifications ([`notifications`]) and webhooks ([`webhooks`]), each a
//! service with its tables and the routes on top. Invariant: every room event goes through
//! [`activity::Activity`], which records it in the feed before any listener (webhooks) sees
//! it; the `comments` root is written by the server only, one write at a time per room, from
//! the database's state. It imports `accounts` and `http`, never `rooms` or `ai`.

pub mod activity;
pub(crate) mod comments;
pub(crate) mod documents;
pub(crate) mod files;
pub mod notifications;
pub mod presence;
pub mod webhooks;

pub(crate) use activity::routes as activity_routes;
pub use activity::{Activity, EventKind, RoomEvent};
pub use comments::CommentMirror;
pub(crate) use comments::routes as comment_routes;
pub use documents::encoded_state;
pub(crate) use documents::routes as document_routes;
pub use files::document_from_upload;
pub(crate) use files::routes as file_routes;
pub(crate) use notifications::routes as notification_routes;
pub use notifications::{NotificationKind, notify};
pub use presence::Presence;
pub use webhooks::Webhooks;
pub(crate) use webhooks::routes as webhook_routes;
