//! The collab wing: everything people do around a document besides editing it. It owns
//! comment threads with their mentions ([`comments`]), files, export and import ([`files`]),
//! the document snapshot and named versions ([`documents`]), the activity feed
//! ([`activity`]), notifications ([`notifications`]) and webhooks ([`webhooks`]), each with
//! its tables and routes. Invariant: every room event goes through [`activity::Activity`],
//! which records it in the feed before any listener (webhooks) sees it.

pub mod activity;
pub(crate) mod comments;
pub(crate) mod documents;
pub(crate) mod files;
pub mod notifications;
pub mod presence;
pub mod webhooks;
