//! The suggestion schema: where suggestions live in the document, what a new one carries,
//! and what deciding one can come to. Shared by the in-process peer, the peer process's
//! control protocol, and the routes, so each is spelled once.

use serde::{Deserialize, Serialize};

/// The root map suggestions live in, as the store names it (it keeps that root out of the
/// files a document exposes).
pub use crdt_store::document::SUGGESTIONS_ROOT;

/// The fields of one suggestion's map in [`SUGGESTIONS_ROOT`], as browsers read them, and
/// which of them the server owns: the store's, which checks who writes them.
pub use crdt_store::writes::suggestion_field as field;

/// Where a suggestion stands, as stored in its [`field::STATUS`] (and as sent, in the same
/// spelling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionStatus {
    /// Waiting for someone to decide.
    Pending,
    /// Applied to the text.
    Accepted,
    /// Declined.
    Rejected,
    /// Its anchored text changed; it can no longer apply.
    Conflict,
    /// Applied, then undone.
    Undone,
}

impl SuggestionStatus {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => field::PENDING,
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Conflict => "conflict",
            Self::Undone => "undone",
        }
    }

    /// From the stored spelling; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Accepted,
            Self::Rejected,
            Self::Conflict,
            Self::Undone,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// A range of a file, in UTF-16 offsets as the editors count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileRange {
    /// The file (see the document convention).
    pub file: String,
    /// Start offset.
    pub start: u32,
    /// End offset (exclusive).
    pub end: u32,
}

/// A range pinned to the text it covered when the question was asked: it follows that text
/// through concurrent edits.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnchoredRange {
    /// The file.
    pub file: String,
    /// The start as an encoded Yjs relative position.
    pub start: Vec<u8>,
    /// The end as an encoded Yjs relative position.
    pub end: Vec<u8>,
    /// The text the range covered then.
    pub original: String,
}

impl AnchoredRange {
    /// From an anchor made on the server's copy of the document.
    pub fn new(file: &str, anchor: crdt_store::document::TextAnchor) -> Self {
        Self {
            file: file.to_owned(),
            start: anchor.start,
            end: anchor.end,
            original: anchor.original,
        }
    }
}

/// A suggestion to write into the document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewSuggestion {
    /// Where it applies (anchored when the question was asked).
    pub range: AnchoredRange,
    /// The proposed text.
    pub replacement: String,
    /// Why.
    pub explanation: String,
    /// The conversation it came from.
    pub conversation_id: String,
}

/// What happened to an accept request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcceptOutcome {
    /// Applied at the range's current position.
    Accepted,
    /// The anchored text was deleted or changed; nothing applied.
    Conflict,
    /// It was already decided.
    AlreadyDecided {
        /// Its status (`None` when what is stored is no status at all).
        status: Option<SuggestionStatus>,
    },
    /// No such suggestion.
    NotFound,
}

/// What an [`AcceptGate`](super::command::AcceptGate) found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    /// The anchored text is intact and the checkpoint is taken: apply.
    Apply,
    /// The anchored text changed on the server's copy: mark the suggestion
    /// [`SuggestionStatus::Conflict`].
    Conflict,
    /// The server could not be asked (the peer is losing its connection): leave the
    /// suggestion as the client left it, for the next peer to apply.
    Unreachable,
}

/// Why [`check_and_checkpoint`] refused a suggestion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GateRefusal {
    /// The document has no such suggestion.
    NotFound,
    /// Its anchored text was changed or deleted on the server's copy.
    Changed,
}

/// The suggestion gate, passed before any accepted suggestion changes the text, on both
/// accept paths (the accept route, and a client accepting through the document, which the
/// peer asks about): the anchored text must be intact on the server's authoritative copy
/// (the assistant's replica may not have heard of the latest edits yet), and a checkpoint
/// version is taken first, so accepting can always be undone by a restore.
pub(crate) async fn check_and_checkpoint(
    room: &crdt_store::Room,
    suggestion: &str,
) -> Result<Result<(), GateRefusal>, crdt_store::StorageError> {
    match room.suggestion_intact(suggestion) {
        None => return Ok(Err(GateRefusal::NotFound)),
        Some(false) => return Ok(Err(GateRefusal::Changed)),
        Some(true) => {}
    }
    room.create_version(
        crdt_store::VersionKind::Named,
        Some(format!("Before accepting AI suggestion {suggestion}")),
    )
    .await?;
    Ok(Ok(()))
}
