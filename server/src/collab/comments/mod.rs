//! Comment threads anchored to ranges of files: `/api/rooms/{room}/comments…`.
//!
//! A thread is anchored with Yjs relative positions, so its range follows the text through
//! everyone's edits; once everything it covered is deleted (or its file is) it is *orphaned*:
//! still listed with the text it quoted, never lost. Threads live in the database; each change
//! is mirrored into the document's root map `comments` so connected clients see it live over
//! the ordinary sync protocol (no extra message types).
//!
//! [`routes`] extract, call and map; [`service`] holds the rules and the database work;
//! [`mirror`] writes the `comments` root, one write at a time per room; [`thread`] is what a
//! thread looks like, stored and answered.

mod mirror;
pub(crate) mod routes;
mod service;
mod thread;

pub use mirror::CommentMirror;
