//! The wire formats Tandem speaks, without any I/O.
//!
//! # Layout
//! - [`message`]: the y-protocols messages a `y-websocket` client exchanges with the server
//!   (sync step 1/2, update, awareness, auth, query-awareness), decoded and encoded with
//!   `yrs`'s own lib0 encoders.
//! - [`frame`]: ready-to-send frames for the hot path, built once and shared by every
//!   subscriber.
//! - [`update`]: validation of v1 Yjs updates before `yrs` integrates them (bounded counts,
//!   bounded nesting of values and of shared types), which `yrs`'s recursive decoder lacks.
//! - [`cluster`]: the MessagePack envelope nodes exchange over the cluster bus.
//!
//! Everything here is a pure function of its input: no clock, no randomness, no sockets.
//! Bytes arriving from a client are hostile; decoding never panics and never allocates more
//! than the input justifies.

pub mod cluster;
pub mod frame;
pub mod message;
pub mod update;

pub use frame::{
    encode_awareness_frame, encode_permission_denied_frame, encode_query_awareness_frame,
    encode_sync_step1_frame, encode_sync_step2_frame, encode_update_frame,
};
pub use message::{
    DecodeError, Message, decode_awareness, decode_message, decode_state_vector, encode_message,
};
pub use update::{UpdateError, UpdateLimits, UpdateOutline};

/// Re-exported so callers name the same types the codec produces.
pub use yrs::StateVector;
pub use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
