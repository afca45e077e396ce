//! Who may write where in a document.
//!
//! Every struct a client's update writes, and every range it deletes, is located
//! ([`protocol::update::Location`]): its root, and under a root map, the entry and the entry's
//! field. Items the update creates are located through the update itself; items the document
//! already has, through a [`LocationIndex`] the room keeps beside its document (runs of
//! clocks per client, each with one place, so a long run of typing is one entry). A
//! connection's [`WriteGrant`] then decides, before anything is applied:
//! - the content (every root but the annotation roots) is written by whoever may edit;
//! - the `comments` mirror is written by the server only;
//! - in `suggestions`, whoever may suggest creates entries; an entry's content fields are
//!   written (and the entry withdrawn) by its author only; its server-owned fields
//!   ([`suggestion_field::SERVER_OWNED`]) by the server only. A new entry's author, status and
//!   time are stamped by the server in the transaction that applies it.
//!
//! What the index does not know is caught up from the document before each check (the
//! server's own edits, other nodes' updates, updates that waited for a dependency), so
//! no write path has to remember it.

use std::collections::HashMap;
use std::sync::Arc;

use protocol::update::{ItemId, Place, UpdateOutline};
use protocol::{UpdateError, UpdateLimits};
use yrs::updates::decoder::Decode;
use yrs::{Any, Map, MapRef, Out, ReadTxn, StateVector, TransactionMut, Update, WriteTxn};

use crate::document::{COMMENTS_ROOT, STORED_DEPTH_GUARD, SUGGESTIONS_ROOT};

/// The fields of a suggestion's map in [`SUGGESTIONS_ROOT`], as browsers read them.
pub mod suggestion_field {
    /// The file it applies to.
    pub const FILE: &str = "file";
    /// The start of its range, an encoded Yjs relative position.
    pub const START: &str = "start";
    /// The end of its range, an encoded Yjs relative position.
    pub const END: &str = "end";
    /// The text the range covered when it was made.
    pub const ORIGINAL: &str = "original";
    /// The proposed text.
    pub const REPLACEMENT: &str = "replacement";
    /// Why.
    pub const EXPLANATION: &str = "explanation";
    /// Who proposed it: a display name.
    pub const AUTHOR: &str = "author";
    /// Who proposed it: the identity only its author writes under (see `WriteGrant::author`).
    pub const AUTHOR_ID: &str = "author_id";
    /// Where it stands: `pending`, `accepted`, `rejected`, `conflict`, `undone` (the server's
    /// `SuggestionStatus`).
    pub const STATUS: &str = "status";
    /// The status a new suggestion is stamped with.
    pub const PENDING: &str = "pending";
    /// The conversation it came from.
    pub const CONVERSATION_ID: &str = "conversation_id";
    /// When it was made, ms since the epoch.
    pub const CREATED_AT_MS: &str = "created_at_ms";
    /// Where the applied text starts (relative position), once accepted.
    pub const APPLIED_START: &str = "applied_start";
    /// Where the applied text ends (relative position), once accepted.
    pub const APPLIED_END: &str = "applied_end";
    /// When it was applied, ms since the epoch.
    pub const APPLIED_AT_MS: &str = "applied_at_ms";
    /// Fields only the server writes: who, when, and where the suggestion stands (decisions
    /// go through the server's gate, whoever starts them).
    pub const SERVER_OWNED: [&str; 7] = [
        AUTHOR,
        AUTHOR_ID,
        STATUS,
        CREATED_AT_MS,
        APPLIED_START,
        APPLIED_END,
        APPLIED_AT_MS,
    ];
}

/// What one connection may write.
#[derive(Clone, Debug)]
pub struct WriteGrant {
    /// The content: files and every root but the annotation roots.
    pub content: bool,
    /// Suggestions: create them, and change or withdraw its own.
    pub suggest: bool,
    /// Decisions: the fields the server owns, of anyone's suggestion. Only for the
    /// server's own peer, which writes them after the server's gate let a decision through.
    pub decide: bool,
    /// Who writes, as suggestions record it (`suggestion_field::AUTHOR_ID`): stable across
    /// sessions, e.g. `user:<id>`, `key:<id>`.
    pub author: Arc<str>,
    /// Its display name (`suggestion_field::AUTHOR`).
    pub author_name: Arc<str>,
}

/// Why an update was refused for where it writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteDenied {
    /// The content, without the right to edit.
    #[error("this connection may not edit the document's content")]
    Content,
    /// The comment mirror, which only the server writes.
    #[error("comments are written through the comments API, not the document")]
    Comments,
    /// Suggestions, without the right to suggest.
    #[error("this connection may not suggest")]
    Suggest,
    /// Another author's suggestion.
    #[error("suggestion {0} belongs to someone else")]
    NotTheAuthor(String),
    /// A field of a suggestion only the server writes.
    #[error("the {0} of a suggestion is written by the server (decide through the API)")]
    ServerOwned(String),
    /// Something in `suggestions` that is not a suggestion entry.
    #[error("suggestions holds entries only")]
    NotAnEntry,
    /// Something whose place cannot be known (it hangs off what the room does not have).
    #[error("the update builds on something this room does not have; resync")]
    Unknown,
}

/// One run of clocks of one client, all at one place.
#[derive(Clone, Debug)]
struct Run {
    start: u32,
    end: u32,
    place: Place,
}

/// Where every struct a document has lives, by id.
#[derive(Debug, Default)]
pub struct LocationIndex {
    runs: HashMap<u64, Vec<Run>>,
    /// How far the index covers the document.
    covered: StateVector,
}

impl LocationIndex {
    /// The place of the struct at `id`, if the index has it.
    fn lookup(&self, id: ItemId) -> Option<Place> {
        let runs = self.runs.get(&id.client)?;
        let after = runs.partition_point(|run| run.start <= id.clock);
        let run = runs.get(after.checked_sub(1)?)?;
        (id.clock < run.end).then(|| run.place.clone())
    }

    /// Records that `len` clocks from `id` are at `place` (what is already recorded stays).
    fn record(&mut self, id: ItemId, len: u32, place: Place) {
        if matches!(place, Place::Waiting(_)) {
            // Not integrated yet; caught up from the document once it is.
            return;
        }
        let runs = self.runs.entry(id.client).or_default();
        let (mut start, end) = (id.clock, id.clock.saturating_add(len));
        let at = runs.partition_point(|run| run.end <= start);
        // Skip what earlier runs cover; what later runs cover stays theirs.
        if let Some(run) = runs.get(at)
            && run.start <= start
        {
            start = run.end;
        }
        let end = runs
            .get(at)
            .filter(|run| run.start > start)
            .map_or(end, |run| end.min(run.start));
        if start >= end {
            return;
        }
        if let Some(previous) = at.checked_sub(1).and_then(|p| runs.get_mut(p))
            && previous.end == start
            && same_place(&previous.place, &place)
        {
            previous.end = end;
            return;
        }
        runs.insert(at, Run { start, end, place });
    }

    /// Brings the index up to what `txn`'s document has integrated.
    fn catch_up<T: ReadTxn>(&mut self, txn: &T) {
        let now = txn.state_vector();
        if now == self.covered {
            return;
        }
        let diff = txn.encode_diff_v1(&self.covered);
        let limits = UpdateLimits {
            max_depth: STORED_DEPTH_GUARD,
        };
        // The document's own encoding: it inspects, and every struct in it is placed by it
        // or by what the index has.
        if let Ok(located) = protocol::update::inspect(&diff, &limits)
            .and_then(|outline| outline.locate(|id| self.lookup(id)))
        {
            for (id, len, place) in located {
                self.record(id, len, place);
            }
        }
        self.covered = now;
    }

    /// Structs recorded: runs, for the metrics of a room's cost.
    pub fn runs(&self) -> usize {
        self.runs.values().map(Vec::len).sum()
    }
}

fn same_place(a: &Place, b: &Place) -> bool {
    match (a, b) {
        (Place::At(a), Place::At(b)) => Arc::ptr_eq(a, b) || a == b,
        (Place::Nowhere, Place::Nowhere) => true,
        _ => false,
    }
}

/// What applying a client's update under a grant needs done afterwards.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// Suggestions the update creates: stamped with their author in the same transaction.
    pub(crate) new_suggestions: Vec<Arc<str>>,
    /// Where each struct of the update lives, for the index once it is applied.
    located: protocol::update::Located,
}

/// Checks every write of the update outlined by `outline` against `grant`, in `txn`'s
/// document (whose index `index` is brought up to date first).
pub(crate) fn check(
    txn: &TransactionMut<'_>,
    index: &mut LocationIndex,
    outline: &UpdateOutline,
    grant: &WriteGrant,
) -> Result<Checked, WriteDenied> {
    index.catch_up(txn);
    let located = outline
        .locate(|id| index.lookup(id))
        .map_err(|_| WriteDenied::Unknown)?;
    let known = txn.state_vector();
    let suggestions = txn.get_map(SUGGESTIONS_ROOT);
    let doc_has_client = |client: u64| known.get(&yrs::ClientID::new(client)) > 0;
    let mut new_suggestions: Vec<Arc<str>> = Vec::new();
    let mut allow = |place: &Place, deleting: bool| -> Result<(), WriteDenied> {
        let location = match place {
            Place::At(location) => location,
            Place::Nowhere => return Ok(()),
            // Waiting for something of a client the room has never seen (an update that
            // arrived before its dependency): its place will be that of what arrives, whose
            // own place is checked then. Something of a client the room knows is refused:
            // the room's own next items (the server's comment mirror) are predictable, so a
            // child waiting for one could land where nobody may write.
            Place::Waiting(target) if grant.content && !doc_has_client(target.client) => {
                return Ok(());
            }
            Place::Waiting(_) => return Err(WriteDenied::Unknown),
        };
        match &*location.root {
            COMMENTS_ROOT => Err(WriteDenied::Comments),
            SUGGESTIONS_ROOT => {
                if !grant.suggest {
                    return Err(WriteDenied::Suggest);
                }
                let entry = location.entry.as_ref().ok_or(WriteDenied::NotAnEntry)?;
                let existing = suggestions
                    .as_ref()
                    .and_then(|map| author_of(txn, map, entry));
                match existing {
                    Some(_) if grant.decide => Ok(()),
                    // A suggestion the document has: its author's alone, server fields aside.
                    Some(author) => {
                        if let Some(field) = &location.field
                            && suggestion_field::SERVER_OWNED.contains(&&**field)
                        {
                            return Err(WriteDenied::ServerOwned(field.to_string()));
                        }
                        if *author != *grant.author {
                            return Err(WriteDenied::NotTheAuthor(entry.to_string()));
                        }
                        // Replacing one's suggestion whole would replace its server fields.
                        if location.field.is_none() && !deleting {
                            return Err(WriteDenied::ServerOwned("entry".to_owned()));
                        }
                        Ok(())
                    }
                    // A new one (its server fields are stamped over whatever it says), or one
                    // whose author the document lost: only a new entry may be written there.
                    None if deleting => Err(WriteDenied::NotTheAuthor(entry.to_string())),
                    None => {
                        if location.field.is_none() && !new_suggestions.contains(entry) {
                            new_suggestions.push(entry.clone());
                        }
                        Ok(())
                    }
                }
            }
            _ if grant.content => Ok(()),
            _ => Err(WriteDenied::Content),
        }
    };
    for (id, len, place) in &located {
        // What the document has already is not written again.
        if known.get(&yrs::ClientID::new(id.client)) >= id.clock.saturating_add(*len) {
            continue;
        }
        allow(place, false)?;
    }
    // Where every deleted range lies, first: deleting a suggestion deletes its fields too.
    let mut deleted: Vec<Place> = Vec::new();
    for &(client, clock, len) in outline.deletes() {
        let mut at = clock;
        let end = clock.saturating_add(len);
        while at < end {
            let id = ItemId { client, clock: at };
            if let Some((place, run_end)) = index.place_until(id) {
                deleted.push(place);
                at = run_end.min(end).max(at + 1);
                continue;
            }
            // Deleting what the update itself creates.
            let Some((item, len, place)) = located.iter().find(|(item, len, _)| {
                item.client == client && item.clock <= at && at - item.clock < *len
            }) else {
                // Deleting what the room does not have: nobody can know what it deletes.
                return Err(WriteDenied::Unknown);
            };
            deleted.push(place.clone());
            at = item.clock + len;
        }
    }
    let withdrawn: Vec<Arc<str>> = deleted
        .iter()
        .filter_map(|place| match place {
            Place::At(location)
                if &*location.root == SUGGESTIONS_ROOT && location.field.is_none() =>
            {
                location.entry.clone()
            }
            _ => None,
        })
        .collect();
    for place in &deleted {
        // The fields of a suggestion withdrawn whole go with it.
        if let Place::At(location) = place
            && location.field.is_some()
            && location
                .entry
                .as_ref()
                .is_some_and(|entry| withdrawn.contains(entry))
        {
            let whole = Place::At(Arc::new(protocol::update::Location {
                root: location.root.clone(),
                entry: location.entry.clone(),
                field: None,
            }));
            allow(&whole, true)?;
            continue;
        }
        allow(place, true)?;
    }
    Ok(Checked {
        new_suggestions,
        located,
    })
}

impl LocationIndex {
    /// The place of `id` and where its run ends.
    fn place_until(&self, id: ItemId) -> Option<(Place, u32)> {
        let runs = self.runs.get(&id.client)?;
        let after = runs.partition_point(|run| run.start <= id.clock);
        let run = runs.get(after.checked_sub(1)?)?;
        (id.clock < run.end).then(|| (run.place.clone(), run.end))
    }
}

/// The author id of suggestion `entry`, if the document has it.
fn author_of<T: ReadTxn>(txn: &T, suggestions: &MapRef, entry: &str) -> Option<Arc<str>> {
    match suggestions.get(txn, entry)? {
        Out::YMap(map) => match map.get(txn, suggestion_field::AUTHOR_ID) {
            Some(Out::Any(Any::String(author))) => Some(author),
            // An entry without an author (written before authors were recorded) belongs to
            // nobody a client can be: only the server changes it.
            _ => Some(Arc::from("")),
        },
        _ => Some(Arc::from("")),
    }
}

/// Stamps the suggestions an update created with the server's fields: who made them (from
/// the connection, not from what the client wrote), that they are pending, and when.
pub(crate) fn stamp_new_suggestions(
    txn: &mut TransactionMut<'_>,
    created: &[Arc<str>],
    grant: &WriteGrant,
    now_ms: i64,
) {
    let suggestions = txn.get_or_insert_map(SUGGESTIONS_ROOT);
    for entry in created {
        if let Some(Out::YMap(map)) = suggestions.get(txn, entry) {
            map.insert(txn, suggestion_field::AUTHOR_ID, &*grant.author);
            if grant.decide {
                // The server's own peer writes the server's fields itself (a suggestion it is
                // still writing says so).
                continue;
            }
            map.insert(txn, suggestion_field::AUTHOR, &*grant.author_name);
            map.insert(txn, suggestion_field::STATUS, suggestion_field::PENDING);
            map.insert(
                txn,
                suggestion_field::CREATED_AT_MS,
                Any::from(now_ms as f64),
            );
            for field in [
                suggestion_field::APPLIED_START,
                suggestion_field::APPLIED_END,
                suggestion_field::APPLIED_AT_MS,
            ] {
                map.remove(txn, field);
            }
        }
    }
}

/// Applies `update` (already inspected as `outline`) in `txn` if `grant` allows every write,
/// stamping the suggestions it creates. Answers whether it stamped (then the update others
/// receive is the transaction's, not the client's).
pub(crate) fn apply_granted(
    txn: &mut TransactionMut<'_>,
    index: &mut LocationIndex,
    outline: &UpdateOutline,
    update: &[u8],
    grant: &WriteGrant,
    now_ms: i64,
) -> Result<bool, crate::guard::ApplyError> {
    let checked = check(txn, index, outline, grant)?;
    // Nothing waited for a dependency: what this update integrates is exactly its own, so
    // the index learns it from the update and needs no catching up.
    let nothing_waited = txn.store().pending_update().is_none();
    txn.apply_update(Update::decode_v1(update)?)?;
    if nothing_waited {
        for (id, len, place) in checked.located {
            index.record(id, len, place);
        }
        index.covered = txn.state_vector();
    }
    if checked.new_suggestions.is_empty() {
        return Ok(false);
    }
    stamp_new_suggestions(txn, &checked.new_suggestions, grant, now_ms);
    Ok(true)
}

impl From<UpdateError> for WriteDenied {
    fn from(_: UpdateError) -> Self {
        WriteDenied::Unknown
    }
}
