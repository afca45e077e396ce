//! The Tandem server: configuration, HTTP and WebSocket routes, start-up and shutdown.
//!
//! # Layout
//! - [`config`]: flags and environment variables (clap) turned into one [`config::Config`].
//! - [`app`]: builds shared state once, binds, runs, and shuts down gracefully.
//! - `routes`: `/ws/{room}` (the y-protocols session loop), `/api/...` (REST),
//!   `/healthz`, `/readyz`, `/metrics`.
//! - [`auth`]: accounts, sessions, tokens, API keys, login throttling.
//! - [`cluster`]: the Redis bridge between nodes (fan-out, catch-up, anti-entropy).
//! - [`access`]: who may do what in a room; access changes pushed to open sockets; presence.
//! - `entity`: sea-orm entities of the tables this crate owns (accounts and access).
//! - [`error`]: the one JSON error shape every REST failure uses.
//! - [`limits`]: per-client rate limits and WebSocket caps; `head_deadline` and
//!   `body_deadline`: the slow-loris guards on every request's head and body.
//! - [`telemetry`]: logs and Prometheus metrics.
//!
//! This is the only crate that knows HTTP and actix; rooms live in `crdt-store`, the wire
//! format in `protocol`.

pub mod access;
pub mod activity;
pub mod ai;
pub mod app;
pub mod auth;
mod body_deadline;
pub mod cluster;
pub mod config;
mod entity;
pub mod error;
mod head_deadline;
pub mod limits;
pub mod notifications;
mod routes;
pub mod telemetry;
pub mod webhooks;
