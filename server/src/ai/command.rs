//! What the server asks of a room's peer, wherever it runs (a task of this process or the
//! `tandem ai-peer` process behind the control socket).

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::suggestion::{AcceptOutcome, FileRange, GateVerdict, NewSuggestion};

/// What the assistant is doing, shown in its awareness state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for the model's first token.
    Thinking,
    /// Streaming an answer.
    Writing,
    /// Nothing to do.
    Idle,
}

/// Requests to the peer task.
pub enum PeerCommand {
    /// Show a status and optionally a selection.
    Status(Status, Option<FileRange>),
    /// Write a suggestion; answers its id.
    Suggest(NewSuggestion, oneshot::Sender<Result<String, String>>),
    /// Accept a suggestion.
    Accept(String, oneshot::Sender<AcceptOutcome>),
    /// Reject a suggestion.
    Reject(String, oneshot::Sender<AcceptOutcome>),
    /// Mark a pending suggestion as conflicting (the server found its text changed).
    MarkConflict(String, oneshot::Sender<AcceptOutcome>),
    /// Undo every suggestion applied at or after this time (ms since the epoch); answers the
    /// ids undone.
    UndoSince(i64, oneshot::Sender<Vec<String>>),
}

/// Asked before applying a suggestion a client accepted through the document: checks the
/// anchored text on the server's authoritative copy and takes the checkpoint version.
pub type AcceptGate = std::sync::Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = GateVerdict> + Send>>
        + Send
        + Sync,
>;
