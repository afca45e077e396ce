//! Handlers not yet moved into their wing; the router in [`crate::http`] mounts them.

pub(crate) mod activity;
pub(crate) mod ai;
pub(crate) mod comments;
pub(crate) mod documents;
pub(crate) mod files;
pub(crate) mod notifications;
pub(crate) mod webhooks;

pub use files::FileLimits;
