//! The Tandem server: configuration, HTTP and WebSocket routes, start-up and shutdown.
//!
//! # Layout
//! - [`config`]: flags and environment variables (clap) turned into one [`config::Config`].
//! - [`app`]: builds shared state once, binds, runs, and shuts down gracefully.
//! - `routes`: `/ws/{room}` (the y-protocols session loop), `/api/...` (REST),
//!   `/healthz`, `/readyz`, `/metrics`.
//! - [`error`]: the one JSON error shape every REST failure uses.
//! - [`telemetry`]: logs and Prometheus metrics.
//!
//! This is the only crate that knows HTTP and actix; rooms live in `crdt-store`, the wire
//! format in `protocol`.

pub mod app;
pub mod config;
pub mod error;
mod routes;
pub mod telemetry;
