//! Measuring Tandem: codec benchmarks on a real editing trace and a WebSocket load generator.
//!
//! # Layout
//! - [`trace`]: the keystroke-level editing trace in `data/`, loaded and replayed into a
//!   `yrs` document one update per keystroke (used by `benches/codec.rs`).
//! - [`marker`]: the sequence number and send time a load-generator writer embeds in each
//!   edit, and how an observer reads them back from the raw frame without decoding it.
//! - [`process`]: resident memory and CPU time of another process, read from `/proc`.
//!
//! The `loadgen` binary (`src/bin/loadgen.rs`) drives a running server; `run-load.sh` starts
//! one and runs the standard scenarios. `RESULTS.md` records what they measured.

pub mod marker;
pub mod process;
pub mod trace;
