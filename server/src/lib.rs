//! The Tandem server: configuration, HTTP and WebSocket routes, start-up and shutdown.
//! Each wing below is a folder whose `mod.rs` says what it owns and its invariant, and
//! re-exports what the other wings may use; in each, routes extract, call its services and
//! map their outcome to HTTP.
//!
//! # Layout
//! - [`config`]: flags and environment variables (clap) turned into one [`config::Config`].
//! - [`app`]: connects the database and runs the migrations, builds shared state once,
//!   binds, runs, and shuts down gracefully.
//! - [`clock`]: the one clock every part reads the time of day from, passed in at start-up.
//! - [`http`]: the route table, OpenAPI, security headers, CORS, the [`http::ApiError`] shape
//!   every REST failure uses, the caller extractors and [`http::AuthorizedRoom`] (the one
//!   extractor of room routes), shared input checks, per-client limits, the slow-loris
//!   deadlines on every request's head and body, `/healthz`, `/readyz`, `/metrics` and the
//!   browser client.
//! - `sync`: `/ws/{room}`, the y-protocols session loop and its close codes, and the
//!   keepalive shared with the AI peer's control socket.
//! - [`ai`]: the assistant, its routes, the suggestion schema, and the peer (in this
//!   process or the `tandem ai-peer` process behind the control socket).
//! - `rooms`: rooms (with forks and imports), members, invites and share links, one folder
//!   per resource.
//! - [`collab`]: comments and mentions with the document's `comments` mirror, files, export,
//!   versions, the activity feed and presence, notifications and webhooks.
//! - [`accounts`]: accounts, sessions, tokens, API keys, login throttling, the account
//!   routes; who may do what in a room, access changes pushed to open sockets.
//! - [`cluster`]: the Redis bridge between nodes (fan-out, catch-up, anti-entropy).
//! - `entity`: sea-orm entities of the tables this crate owns, shared by the wings.
//! - `redact`: what a configuration's `Debug` shows in place of a secret.
//! - [`telemetry`]: logs and Prometheus metrics.
//!
//! This is the only crate that knows HTTP and actix; rooms live in `crdt-store`, the wire
//! format in `protocol`.

pub mod accounts;
pub mod ai;
pub mod app;
pub mod clock;
pub mod cluster;
pub mod collab;
pub mod config;
mod entity;
pub mod http;
mod redact;
mod rooms;
mod sync;
pub mod telemetry;
