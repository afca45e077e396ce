//! What a comment thread is: as requested, as stored, and as answered.

use std::collections::HashMap;

use crdt_store::Room;
use serde::{Deserialize, Serialize};

use crate::entity::{comment, comment_thread};

/// A new thread on `[start, end)` (UTF-16 offsets, as editors count) of `file`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewThread {
    /// The file (document convention).
    pub file: String,
    /// Start of the range.
    pub start: u32,
    /// End of the range (after `start`: a comment covers some text).
    pub end: u32,
    /// The first comment.
    pub body: String,
    /// Participants mentioned (user ids), besides any `@email` in the body.
    #[serde(default)]
    pub mentions: Vec<String>,
}

/// A comment's text.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CommentBody {
    /// 1 to 10 000 characters; `@email` of a participant mentions them.
    pub body: String,
    /// Participants mentioned (user ids), besides any `@email` in the body.
    #[serde(default)]
    pub mentions: Vec<String>,
}

/// Which threads to list.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ThreadFilter {
    /// Only threads on this file.
    pub file: Option<String>,
    /// `open` or `resolved`.
    pub status: Option<String>,
}

/// Where a thread stands, as stored in its `status` column and mirrored into the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadStatus {
    /// Under discussion.
    Open,
    /// Settled.
    Resolved,
}

impl ThreadStatus {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
        }
    }

    /// From the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Open, Self::Resolved]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// Someone, by id and name.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct PersonView {
    /// The account.
    pub id: String,
    /// Their display name.
    pub name: String,
}

/// One comment.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CommentView {
    /// Its id.
    pub id: String,
    /// Who wrote it.
    pub author: PersonView,
    /// The text.
    pub body: String,
    /// Who it mentions.
    pub mentions: Vec<PersonView>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// When last edited, if ever.
    pub edited_at_ms: Option<i64>,
}

/// A thread with its comments, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ThreadView {
    /// Its id (also its key in the document's `comments` map).
    pub id: String,
    /// The file it is on.
    pub file: String,
    /// Where the range starts now (UTF-16); absent when orphaned.
    pub start: Option<u32>,
    /// Where the range ends now (UTF-16); absent when orphaned.
    pub end: Option<u32>,
    /// The text the range covers now; absent when orphaned.
    pub text: Option<String>,
    /// Everything the range covered was deleted (or its file was).
    pub orphaned: bool,
    /// The text the range covered when the thread was opened.
    pub quote: String,
    /// `open` or `resolved`.
    pub status: String,
    /// Who opened it.
    pub author: PersonView,
    /// Who resolved it, while resolved.
    pub resolved_by: Option<PersonView>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Last change to the thread or its comments.
    pub updated_at_ms: i64,
    /// Oldest first.
    pub comments: Vec<CommentView>,
}

/// Threads of a room.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ThreadList {
    /// Oldest first.
    pub threads: Vec<ThreadView>,
}

/// The user ids a comment mentions, as stored (a JSON array).
pub(super) fn stored_mentions(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// `id` with their display name from `names`.
pub(super) fn person(names: &HashMap<String, String>, id: &str) -> PersonView {
    PersonView {
        id: id.to_owned(),
        name: names
            .get(id)
            .cloned()
            .unwrap_or_else(|| "Former participant".to_owned()),
    }
}

/// A thread and its comments as stored.
pub(super) struct Stored {
    pub thread: comment_thread::Model,
    pub comments: Vec<comment::Model>,
}

impl Stored {
    /// Everyone the thread names: its author, who resolved it, comment authors and mentions.
    pub fn people(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.thread.author_id.clone())
            .chain(self.thread.resolved_by.clone())
            .chain(self.comments.iter().flat_map(|c| {
                std::iter::once(c.author_id.clone()).chain(stored_mentions(&c.mentions))
            }))
    }

    /// The thread as answered, with where its range is now in `room`.
    pub fn view(&self, room: &Room, names: &HashMap<String, String>) -> ThreadView {
        let t = &self.thread;
        let located = room
            .locate(&t.file, &t.anchor_start, &t.anchor_end)
            .filter(|(_, _, covered)| !covered.is_empty());
        ThreadView {
            id: t.id.clone(),
            file: t.file.clone(),
            start: located.as_ref().map(|l| l.0),
            end: located.as_ref().map(|l| l.1),
            orphaned: located.is_none(),
            text: located.map(|l| l.2),
            quote: t.quote.clone(),
            status: t.status.clone(),
            author: person(names, &t.author_id),
            resolved_by: t.resolved_by.as_deref().map(|id| person(names, id)),
            created_at_ms: t.created_at,
            updated_at_ms: t.updated_at,
            comments: self
                .comments
                .iter()
                .map(|c| CommentView {
                    id: c.id.clone(),
                    author: person(names, &c.author_id),
                    body: c.body.clone(),
                    mentions: stored_mentions(&c.mentions)
                        .iter()
                        .map(|id| person(names, id))
                        .collect(),
                    created_at_ms: c.created_at,
                    edited_at_ms: c.edited_at,
                })
                .collect(),
        }
    }
}
