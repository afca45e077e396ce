//! Handlers not yet moved into their wing; the router in [`crate::http`] mounts them.

pub(crate) mod ai;
