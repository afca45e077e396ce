//! Reading documents by Tandem's convention, and restoring them.
//!
//! The server syncs any Yjs document without looking inside. Features that read text follow
//! one convention: a root `Y.Map` named [`FILES_ROOT`] maps a path to a `Y.Text`; any other
//! root `Y.Text` is treated as a file named after the root.
//!
//! Every document the store makes starts here ([`new_doc`]), configured the one way every
//! Tandem document is.
//!
//! A document decoded from bytes does not know the types of its roots (Yjs does not encode
//! them); [`classify_root`] infers them from their content.

use dissimilar::Chunk;
use serde_json::{Map as JsonMap, Value};
use yrs::types::ToJson;
use yrs::types::text::YChange;
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Array, ArrayRef, Doc, GetString, Map, MapRef, OffsetKind, Options, Out, ReadTxn,
    StateVector, Text, TextPrelim, TextRef, Transact, TransactionMut, Update, WriteTxn, Xml,
    XmlFragment,
};

/// A new, empty document configured the way every Tandem document is (see [`doc_options`]).
pub fn new_doc() -> Doc {
    Doc::with_options(doc_options())
}

/// How every Tandem document is configured: text offsets in UTF-16 code units, as JavaScript
/// counts them, so positions mean the same on both sides; a random client id.
pub fn doc_options() -> Options {
    Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    }
}

/// `doc` as one v1 update of what it shows: everything integrated, without the updates still
/// waiting for a dependency. yrs's `encode_state_as_update` appends those, but integrating
/// such an encoding again does not always give back the same document; they stay where they
/// are (the log, the live document) until their dependency arrives.
pub(crate) fn encode_integrated(doc: &Doc) -> Vec<u8> {
    doc.transact().encode_diff_v1(&StateVector::default())
}

/// The root map holding a multi-file room's files.
pub const FILES_ROOT: &str = "files";

/// What a root type turned out to be.
pub enum RootKind {
    /// A `Y.Text`.
    Text(TextRef),
    /// A `Y.Map`.
    Map(MapRef),
    /// A `Y.Array` (or anything else with sequence content that is not text).
    Array(ArrayRef),
    /// XML types and subdocuments: reported, never edited by the server.
    Other(Out),
}

/// Infers a root's type. A root of unknown type whose map part has entries is a map; one
/// whose sequence is all text is a text; anything else with sequence content is an array.
/// An empty root of unknown type reads as an empty text.
pub fn classify_root<T: ReadTxn>(txn: &T, root: Out) -> RootKind {
    match root {
        Out::YText(text) => RootKind::Text(text),
        Out::YMap(map) => RootKind::Map(map),
        Out::YArray(array) => RootKind::Array(array),
        Out::UndefinedRef(branch) => {
            let map = MapRef::from(branch);
            if map.len(txn) > 0 {
                return RootKind::Map(map);
            }
            // Any text makes it a text (embeds and all): yrs's array reader never ends on
            // text, so a sequence holding some is never read as an array.
            let text = TextRef::from(branch);
            let array = ArrayRef::from(branch);
            if array.len(txn) == 0 || !text.get_string(txn).is_empty() {
                RootKind::Text(text)
            } else {
                RootKind::Array(array)
            }
        }
        other => RootKind::Other(other),
    }
}

/// Every root of `doc` with its inferred kind, sorted by name.
fn roots<T: ReadTxn>(txn: &T) -> Vec<(String, RootKind)> {
    let mut roots: Vec<(String, RootKind)> = txn
        .root_refs()
        .map(|(name, out)| (name.to_owned(), classify_root(txn, out)))
        .collect();
    roots.sort_by(|a, b| a.0.cmp(&b.0));
    roots
}

/// How deeply a document nests, measured without recursion: the most shared types enclosing
/// one another on any path (a map in a root map is one), and the most levels of plain values
/// (an array in an array is two). Each stops counting once past `cap`, so a document stored
/// before the limit existed costs no more to refuse than to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nesting {
    /// Shared types in shared types.
    pub types: u32,
    /// Values in values.
    pub values: u32,
    /// A sequence other than a text (an array, an XML element or fragment) holds text.
    /// Yjs never writes that, and `yrs`'s sequence readers (`to_json`, iterating an array or
    /// an element's children) loop forever over it: such a document is refused like one
    /// nested too deep.
    pub text_in_sequence: bool,
}

impl Nesting {
    /// The larger of the two depths; past any limit when a sequence holds text.
    pub fn deepest(&self) -> u32 {
        if self.text_in_sequence {
            return u32::MAX;
        }
        self.types.max(self.values)
    }
}

/// Whether the sequence part of `branch` holds text (string items), which only a text may.
fn holds_text<T: ReadTxn>(txn: &T, branch: &yrs::branch::Branch) -> bool {
    !TextRef::from(yrs::branch::BranchPtr::from(branch))
        .get_string(txn)
        .is_empty()
}

/// Measures how deeply `txn`'s document nests (see [`Nesting`]), stopping at `cap`.
///
/// `yrs` reads nested types and values recursively (`to_json`, deleting a type, encoding a
/// value); a document refused here is never handed to those.
pub fn nesting<T: ReadTxn>(txn: &T, cap: u32) -> Nesting {
    let mut deepest = Nesting::default();
    // Shared values still to look at, each with how many shared types enclose it.
    let mut pending: Vec<(Out, u32)> = Vec::new();
    for (_, root) in txn.root_refs() {
        push_children(txn, root, 0, &mut pending, &mut deepest, cap);
    }
    while let Some((out, enclosing)) = pending.pop() {
        if deepest.deepest() > cap {
            break;
        }
        match out {
            Out::Any(any) => deepest.values = deepest.values.max(any_depth(&any, cap)),
            Out::YDoc(_) => {}
            nested => {
                let depth = enclosing + 1;
                deepest.types = deepest.types.max(depth);
                push_children(txn, nested, depth, &mut pending, &mut deepest, cap);
            }
        }
    }
    deepest
}

/// Queues what the shared type `out` (enclosed by `depth` types) holds.
fn push_children<T: ReadTxn>(
    txn: &T,
    out: Out,
    depth: u32,
    pending: &mut Vec<(Out, u32)>,
    deepest: &mut Nesting,
    cap: u32,
) {
    let mut text_chunks = |diff: Vec<yrs::types::text::Diff<YChange>>,
                           pending: &mut Vec<(Out, u32)>| {
        for chunk in diff {
            if let Some(attributes) = chunk.attributes {
                for value in attributes.values() {
                    deepest.values = deepest.values.max(any_depth(value, cap));
                }
            }
            if !matches!(&chunk.insert, Out::Any(Any::String(_))) {
                pending.push((chunk.insert, depth));
            }
        }
    };
    // Sequences that are not texts are read through yrs's sequence iterator, which never
    // ends on text: looked at first.
    let unreadable = match &out {
        Out::YArray(array) => holds_text(txn, array.as_ref()),
        Out::YXmlElement(element) => holds_text(txn, element.as_ref()),
        Out::YXmlFragment(fragment) => holds_text(txn, fragment.as_ref()),
        _ => false,
    };
    if unreadable {
        deepest.text_in_sequence = true;
        return;
    }
    match out {
        Out::YMap(map) => pending.extend(map.iter(txn).map(|(_, v)| (v, depth))),
        Out::YArray(array) => pending.extend(array.iter(txn).map(|v| (v, depth))),
        Out::YText(text) => text_chunks(text.diff(txn, YChange::identity), pending),
        Out::YXmlText(text) => {
            pending.extend(text.attributes(txn).map(|(_, v)| (v, depth)));
            text_chunks(text.diff(txn, YChange::identity), pending);
        }
        Out::YXmlElement(element) => {
            pending.extend(element.attributes(txn).map(|(_, v)| (v, depth)));
            pending.extend(element.children(txn).map(|c| (Out::from(c), depth)));
        }
        Out::YXmlFragment(fragment) => {
            pending.extend(fragment.children(txn).map(|c| (Out::from(c), depth)));
        }
        Out::UndefinedRef(branch) => match classify_root(txn, Out::UndefinedRef(branch)) {
            RootKind::Map(map) => push_children(txn, Out::YMap(map), depth, pending, deepest, cap),
            RootKind::Text(text) => {
                push_children(txn, Out::YText(text), depth, pending, deepest, cap)
            }
            RootKind::Array(array) => {
                push_children(txn, Out::YArray(array), depth, pending, deepest, cap)
            }
            RootKind::Other(_) => {}
        },
        Out::Any(_) | Out::YDoc(_) => {}
    }
}

/// How deep stored bytes may nest values before `yrs` is allowed to decode them at all: far
/// above any configured limit, far below what overflows a thread's stack. Stored documents
/// are measured against the configured limit after decoding ([`check_nesting`]).
pub const STORED_DEPTH_GUARD: u32 = 1024;

/// Why a stored document (a room's state, a version) cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StoredDocumentError {
    /// The bytes do not decode or apply.
    #[error("stored document is corrupt: {0}")]
    Corrupt(String),
    /// The document nests deeper than the configured limit: it was stored before the limit
    /// existed (or under a higher one), and reading it could overflow the stack.
    #[error(transparent)]
    TooDeep(#[from] TooDeep),
}

/// A document nests deeper than the limit.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error(
    "the document nests more than {limit} levels deep (the limit is --max-nesting-depth), or \
     holds text inside an array, which cannot be read safely"
)]
pub struct TooDeep {
    /// The limit it exceeds.
    pub limit: u32,
}

/// Refuses a document that nests deeper than `limit` (see [`nesting`]).
pub fn check_nesting(doc: &Doc, limit: u32) -> Result<(), TooDeep> {
    if nesting(&doc.transact(), limit).deepest() > limit {
        return Err(TooDeep { limit });
    }
    Ok(())
}

/// Walks stored bytes before `yrs` decodes them, refusing values nested past
/// [`STORED_DEPTH_GUARD`]. Nesting past the guard is not corruption: an earlier release
/// stored it, and no limit opens it, so it is reported as [`TooDeep`] (with `limit`).
pub fn inspect_stored(bytes: &[u8], limit: u32) -> Result<(), StoredDocumentError> {
    let guard = protocol::UpdateLimits {
        max_depth: STORED_DEPTH_GUARD,
    };
    protocol::update::inspect(bytes, &guard).map_err(|e| match e {
        protocol::UpdateError::ValuesTooDeep(_) | protocol::UpdateError::TypesTooDeep(_) => {
            StoredDocumentError::TooDeep(TooDeep { limit })
        }
        other => StoredDocumentError::Corrupt(other.to_string()),
    })?;
    Ok(())
}

/// Decodes stored bytes (one v1 update) into a new document, refusing values deeper than
/// [`STORED_DEPTH_GUARD`] before `yrs` decodes them and a document deeper than `limit`
/// after.
pub fn decode_stored(bytes: &[u8], limit: u32) -> Result<Doc, StoredDocumentError> {
    let corrupt = |e: &dyn std::fmt::Display| StoredDocumentError::Corrupt(e.to_string());
    inspect_stored(bytes, limit)?;
    let update = Update::decode_v1(bytes).map_err(|e| corrupt(&e))?;
    let doc = new_doc();
    doc.transact_mut()
        .apply_update(update)
        .map_err(|e| corrupt(&e))?;
    check_nesting(&doc, limit)?;
    Ok(doc)
}

/// Levels of arrays and maps in a value, counted without recursion, stopping past `cap`.
fn any_depth(any: &Any, cap: u32) -> u32 {
    let mut deepest = 0;
    let mut pending: Vec<(&Any, u32)> = vec![(any, 0)];
    while let Some((value, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Any>> = match value {
            Any::Array(items) => Box::new(items.iter()),
            Any::Map(entries) => Box::new(entries.values()),
            _ => continue,
        };
        let depth = depth + 1;
        deepest = deepest.max(depth);
        if deepest > cap {
            break;
        }
        pending.extend(children.map(|child| (child, depth)));
    }
    deepest
}

fn any_to_json(any: Any) -> Value {
    serde_json::to_value(any).unwrap_or(Value::Null)
}

/// The document's root types as JSON: texts as strings, maps as objects, arrays as arrays.
/// A document `yrs` cannot read safely (see [`Nesting`]) is refused rather than read.
pub fn to_json(doc: &Doc) -> Result<Value, TooDeep> {
    check_nesting(doc, STORED_DEPTH_GUARD)?;
    let txn = doc.transact();
    let mut object = JsonMap::new();
    for (name, kind) in roots(&txn) {
        let value = match kind {
            RootKind::Text(text) => Value::String(text.get_string(&txn)),
            RootKind::Map(map) => any_to_json(map.to_json(&txn)),
            RootKind::Array(array) => any_to_json(array.to_json(&txn)),
            RootKind::Other(out) => any_to_json(out.to_json(&txn)),
        };
        object.insert(name, value);
    }
    Ok(Value::Object(object))
}

/// The text of `file` by the convention: an entry of the `files` map, else a root text.
pub fn file_text<T: ReadTxn>(txn: &T, file: &str) -> Option<TextRef> {
    if let Some(files) = txn.get_map(FILES_ROOT)
        && let Some(Out::YText(text)) = files.get(txn, file)
    {
        return Some(text);
    }
    txn.get_text(file)
}

/// A range of a file pinned to the text it covers: Yjs relative positions (v1-encoded), so
/// any replica can find where that text is after concurrent edits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextAnchor {
    /// Relative position of the start (sticks to the character after it).
    pub start: Vec<u8>,
    /// Relative position of the end (sticks to the character before it).
    pub end: Vec<u8>,
    /// The text covered when anchored.
    pub original: String,
}

/// Anchors `[start, end)` (UTF-16 offsets) of `file`.
pub fn anchor_range(doc: &Doc, file: &str, start: u32, end: u32) -> Result<TextAnchor, String> {
    use yrs::updates::encoder::Encode;
    use yrs::{Assoc, IndexedSequence};
    let txn = doc.transact();
    let text = file_text(&txn, file).ok_or_else(|| format!("no file {file:?}"))?;
    let original = utf16_slice(&text.get_string(&txn), start, end)
        .ok_or_else(|| format!("range {start}..{end} is outside {file:?}"))?;
    let (Some(start), Some(end)) = (
        text.sticky_index(&txn, start, Assoc::After),
        text.sticky_index(&txn, end, Assoc::Before),
    ) else {
        return Err("cannot anchor the range".into());
    };
    Ok(TextAnchor {
        start: start.encode_v1(),
        end: end.encode_v1(),
        original,
    })
}

/// The root map AI suggestions live in: id → map with `file`, `start` and `end` (encoded
/// relative positions), `original`, `replacement`, `explanation`, `author`, `status`.
pub const SUGGESTIONS_ROOT: &str = "suggestions";

/// The root map comment threads are mirrored in, so clients see them live: thread id → map
/// with `file`, `start` and `end` (encoded relative positions), `quote`, `status`, `author`,
/// `comments` and `updated_at_ms`. The server's database holds the threads; the map follows.
pub const COMMENTS_ROOT: &str = "comments";

/// Roots that annotate the content rather than being content: a restore leaves them alone.
const ANNOTATION_ROOTS: [&str; 2] = [SUGGESTIONS_ROOT, COMMENTS_ROOT];

/// Whether `name` is one of the convention's own roots (the files map, suggestions,
/// comments): never a file, even while empty (an empty root of unknown type reads as text).
pub fn is_reserved_root(name: &str) -> bool {
    name == FILES_ROOT || ANNOTATION_ROOTS.contains(&name)
}

/// Where a range anchored with [`anchor_range`] is now: its UTF-16 offsets and the text it
/// covers (empty once everything in it was deleted). `None` when the file is gone or the
/// anchor does not decode.
pub fn locate_range(doc: &Doc, file: &str, start: &[u8], end: &[u8]) -> Option<(u32, u32, String)> {
    let txn = doc.transact();
    match resolve_anchor(&txn, file, start, end) {
        Some((_, start, end, covered)) => Some((start, end, covered)),
        // Everything inside was deleted and the ends crossed: the range is empty.
        None => {
            use yrs::StickyIndex;
            use yrs::updates::decoder::Decode;
            file_text(&txn, file)?;
            let start = StickyIndex::decode_v1(start).ok()?.get_offset(&txn)?.index;
            Some((start, start, String::new()))
        }
    }
}

/// Writes `entry` as a map under `key` in the root map `root`, replacing what was there.
pub fn put_map_entry(
    txn: &mut TransactionMut<'_>,
    root: &str,
    key: &str,
    entry: Vec<(String, Any)>,
) {
    let map = txn.get_or_insert_map(root);
    map.insert(txn, key, entry.into_iter().collect::<yrs::MapPrelim>());
}

/// Removes `key` from the root map `root`.
pub fn remove_map_entry(txn: &mut TransactionMut<'_>, root: &str, key: &str) {
    let map = txn.get_or_insert_map(root);
    map.remove(txn, key);
}

/// `[start, end)` of `text` in UTF-16 offsets, when that range lies inside it.
pub fn utf16_slice(text: &str, start: u32, end: u32) -> Option<String> {
    let units: Vec<u16> = text.encode_utf16().collect();
    units
        .get(start as usize..end as usize)
        .map(String::from_utf16_lossy)
}

/// Where a range anchored with [`anchor_range`] is now: the file's text, the range's current
/// UTF-16 offsets, and the text it covers.
pub fn resolve_anchor<T: ReadTxn>(
    txn: &T,
    file: &str,
    start: &[u8],
    end: &[u8],
) -> Option<(TextRef, u32, u32, String)> {
    use yrs::StickyIndex;
    use yrs::updates::decoder::Decode;
    let text = file_text(txn, file)?;
    let start = StickyIndex::decode_v1(start).ok()?.get_offset(txn)?.index;
    let end = StickyIndex::decode_v1(end).ok()?.get_offset(txn)?.index;
    let covered = utf16_slice(&text.get_string(txn), start, end)?;
    Some((text, start, end, covered))
}

/// Whether the text a suggestion is anchored to is still exactly what it was (`None` when
/// there is no such suggestion).
pub fn suggestion_intact(doc: &Doc, id: &str) -> Option<bool> {
    let txn = doc.transact();
    let Out::YMap(entry) = txn.get_map(SUGGESTIONS_ROOT)?.get(&txn, id)? else {
        return None;
    };
    let bytes = |key: &str| match entry.get(&txn, key) {
        Some(Out::Any(Any::Buffer(b))) => Some(b.to_vec()),
        _ => None,
    };
    let string = |key: &str| match entry.get(&txn, key) {
        Some(Out::Any(Any::String(s))) => Some(s.to_string()),
        _ => None,
    };
    let check = || {
        let (_, _, _, covered) =
            resolve_anchor(&txn, &string("file")?, &bytes("start")?, &bytes("end")?)?;
        Some(covered == string("original")?)
    };
    Some(check().unwrap_or(false))
}

/// Every file of the document by the convention: `files/<path>` entries and root texts.
pub fn files(doc: &Doc) -> Vec<(String, String)> {
    let txn = doc.transact();
    let mut files = Vec::new();
    for (name, kind) in roots(&txn) {
        match kind {
            RootKind::Map(map) if name == FILES_ROOT => {
                for (path, value) in map.iter(&txn) {
                    if let Out::YText(text) = value {
                        files.push((path.to_owned(), text.get_string(&txn)));
                    }
                }
            }
            RootKind::Text(text) if !is_reserved_root(&name) => {
                files.push((name, text.get_string(&txn)))
            }
            _ => {}
        }
    }
    files.sort();
    files
}

/// Edits the live document (through `txn`) until its content equals `target`'s:
/// - root texts and texts inside root maps get a minimal character diff, so unchanged text
///   keeps its identity (and cursors anchored in it stay put);
/// - map entries missing from `target` are removed, missing texts are created, changed plain
///   values are overwritten;
/// - arrays are replaced whole when they differ;
/// - roots of other kinds are left alone, and so are the annotation roots (AI suggestions and
///   comment threads: they describe the content, a restore does not rewind them).
pub fn restore_into(txn: &mut TransactionMut<'_>, target: &Doc) {
    let target_txn = target.transact();
    let target_roots = roots(&target_txn);
    let live_roots: Vec<String> = roots(txn).into_iter().map(|(name, _)| name).collect();

    for (name, kind) in &target_roots {
        if ANNOTATION_ROOTS.contains(&name.as_str()) {
            continue;
        }
        match kind {
            RootKind::Text(target_text) => {
                let live = txn.get_or_insert_text(name.as_str());
                diff_text(txn, &live, &target_text.get_string(&target_txn));
            }
            RootKind::Map(target_map) => {
                let live = txn.get_or_insert_map(name.as_str());
                restore_map(txn, &live, target_map, &target_txn);
            }
            RootKind::Array(target_array) => {
                let live = txn.get_or_insert_array(name.as_str());
                let wanted = target_array.to_json(&target_txn);
                if live.to_json(txn) != wanted {
                    let len = live.len(txn);
                    live.remove_range(txn, 0, len);
                    if let Any::Array(items) = wanted {
                        live.insert_range(txn, 0, items.iter().cloned());
                    }
                }
            }
            RootKind::Other(_) => {}
        }
    }
    // Roots created after the version: texts are emptied, maps cleared, arrays emptied.
    for name in live_roots {
        if ANNOTATION_ROOTS.contains(&name.as_str()) || target_roots.iter().any(|(n, _)| *n == name)
        {
            continue;
        }
        let Some(root) = txn
            .root_refs()
            .find(|(n, _)| *n == name)
            .map(|(_, out)| out)
        else {
            continue;
        };
        match classify_root(txn, root) {
            RootKind::Text(text) => diff_text(txn, &text, ""),
            RootKind::Map(map) => {
                let keys: Vec<String> = map.keys(txn).map(str::to_owned).collect();
                for key in keys {
                    map.remove(txn, &key);
                }
            }
            RootKind::Array(array) => {
                let len = array.len(txn);
                array.remove_range(txn, 0, len);
            }
            RootKind::Other(_) => {}
        }
    }
}

fn restore_map<T: ReadTxn>(
    txn: &mut TransactionMut<'_>,
    live: &MapRef,
    target: &MapRef,
    target_txn: &T,
) {
    let live_keys: Vec<String> = live.keys(txn).map(str::to_owned).collect();
    for key in live_keys {
        if target.get(target_txn, &key).is_none() {
            live.remove(txn, &key);
        }
    }
    for (key, value) in target.iter(target_txn) {
        match value {
            Out::YText(target_text) => {
                let wanted = target_text.get_string(target_txn);
                match live.get(txn, key) {
                    Some(Out::YText(live_text)) => diff_text(txn, &live_text, &wanted),
                    _ => {
                        live.insert(txn, key, TextPrelim::new(wanted));
                    }
                }
            }
            Out::Any(any) => {
                if live.get(txn, key).map(|v| v.to_json(txn)) != Some(any.clone()) {
                    live.insert(txn, key, any);
                }
            }
            other => {
                // Nested maps and arrays are written back as plain values.
                let any = other.to_json(target_txn);
                if live.get(txn, key).map(|v| v.to_json(txn)) != Some(any.clone()) {
                    live.insert(txn, key, any);
                }
            }
        }
    }
}

/// Turns `text` into `wanted` with a minimal character diff (Myers, as in
/// diff-match-patch), applied front to back while tracking the UTF-16 offset Yjs counts in.
pub fn diff_text(txn: &mut TransactionMut<'_>, text: &TextRef, wanted: &str) {
    let current = text.get_string(txn);
    if current == wanted {
        return;
    }
    let mut offset = 0u32;
    for chunk in dissimilar::diff(&current, wanted) {
        match chunk {
            Chunk::Equal(same) => offset += utf16_len(same),
            Chunk::Delete(gone) => text.remove_range(txn, offset, utf16_len(gone)),
            Chunk::Insert(new) => {
                text.insert(txn, offset, new);
                offset += utf16_len(new);
            }
        }
    }
}

fn utf16_len(s: &str) -> u32 {
    s.encode_utf16().count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use yrs::updates::decoder::Decode;
    use yrs::{StateVector, Update};

    #[test]
    fn a_root_text_with_embeds_and_astral_characters_reads_as_text() {
        // Read as an array, yrs's sequence reader never ends on "🌍" (it counts the item in
        // UTF-16 units and reads it in characters).
        let doc = new_doc();
        let text = doc.get_or_insert_text("notes");
        {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, "é🌍 hi");
            text.insert_embed(&mut txn, 3, yrs::MapPrelim::default());
        }
        let copy = reloaded(&doc);
        assert_eq!(
            to_json(&copy).unwrap(),
            serde_json::json!({"notes": "é🌍 hi"})
        );
        assert!(!nesting(&copy.transact(), 64).text_in_sequence);
    }

    #[test]
    fn an_array_holding_text_is_refused_unread() {
        use yrs::encoding::write::Write;
        // Root map "m", key "a": an array (client 1, clock 0) holding the string "x🌍".
        let mut update = Vec::new();
        update.write_var(1u32); // one client
        update.write_var(2u32); // two structs
        update.write_var(1u32); // client 1
        update.write_var(0u32); // from clock 0
        update.write_u8(7 | 0b0010_0000); // a shared type with a key in its parent
        update.write_var(1u32); // parent: a root, by name
        update.write_string("m");
        update.write_string("a");
        update.write_u8(0); // an array
        update.write_u8(4); // a string, parent given by id
        update.write_var(0u32);
        update.write_var(1u32);
        update.write_var(0u32);
        update.write_string("x🌍");
        update.write_var(0u32); // no deletions
        let doc = new_doc();
        doc.transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        assert!(nesting(&doc.transact(), 64).text_in_sequence);
        assert!(to_json(&doc).is_err());
        assert!(check_nesting(&doc, 64).is_err());
        assert!(matches!(
            decode_stored(&update, 64),
            Err(StoredDocumentError::TooDeep(_))
        ));
    }

    /// A copy of `doc` decoded from its bytes, as the server sees documents it did not create.
    fn reloaded(doc: &Doc) -> Doc {
        let bytes = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let copy = new_doc();
        copy.transact_mut()
            .apply_update(Update::decode_v1(&bytes).unwrap())
            .unwrap();
        copy
    }

    #[test]
    fn restore_rewinds_content_but_leaves_comments_and_suggestions_alone() {
        let version = new_doc();
        {
            let mut txn = version.transact_mut();
            txn.get_or_insert_text("notes")
                .insert(&mut txn, 0, "old text");
            put_map_entry(
                &mut txn,
                SUGGESTIONS_ROOT,
                "s1",
                vec![("status".into(), Any::from("pending"))],
            );
        }
        let version = reloaded(&version);
        let live = new_doc();
        live.transact_mut()
            .apply_update(
                Update::decode_v1(
                    &version
                        .transact()
                        .encode_state_as_update_v1(&StateVector::default()),
                )
                .unwrap(),
            )
            .unwrap();
        {
            let mut txn = live.transact_mut();
            let notes = txn.get_or_insert_text("notes");
            notes.insert(&mut txn, 8, " and new");
            put_map_entry(
                &mut txn,
                SUGGESTIONS_ROOT,
                "s1",
                vec![("status".into(), Any::from("accepted"))],
            );
            put_map_entry(
                &mut txn,
                COMMENTS_ROOT,
                "t1",
                vec![("status".into(), Any::from("open"))],
            );
        }
        let live = reloaded(&live);
        let before = to_json(&live).unwrap();
        restore_into(&mut live.transact_mut(), &version);
        let after = to_json(&live).unwrap();
        assert_eq!(after["notes"], "old text");
        assert_eq!(after[SUGGESTIONS_ROOT], before[SUGGESTIONS_ROOT]);
        assert_eq!(after[COMMENTS_ROOT], before[COMMENTS_ROOT]);
        assert_eq!(after[COMMENTS_ROOT]["t1"]["status"], "open");
    }

    #[test]
    fn json_of_a_decoded_document_infers_root_types() {
        let doc = new_doc();
        {
            let mut txn = doc.transact_mut();
            txn.get_or_insert_text("notes")
                .insert(&mut txn, 0, "héllo 🌍");
            let files = txn.get_or_insert_map(FILES_ROOT);
            files.insert(&mut txn, "src/main.rs", TextPrelim::new("fn main() {}"));
            let list = txn.get_or_insert_array("list");
            list.insert(&mut txn, 0, 42);
        }
        let json = to_json(&reloaded(&doc)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "notes": "héllo 🌍",
                "files": {"src/main.rs": "fn main() {}"},
                "list": [42],
            })
        );
        assert_eq!(
            files(&reloaded(&doc)),
            vec![
                ("notes".to_owned(), "héllo 🌍".to_owned()),
                ("src/main.rs".to_owned(), "fn main() {}".to_owned()),
            ]
        );
    }

    #[test]
    fn restore_is_a_minimal_edit() {
        let live = new_doc();
        let text = live.get_or_insert_text("t");
        text.insert(&mut live.transact_mut(), 0, "the quick brown fox");
        let target = new_doc();
        target
            .get_or_insert_text("t")
            .insert(&mut target.transact_mut(), 0, "the slow brown dog");
        let before = live.transact().state_vector();
        restore_into(&mut live.transact_mut(), &reloaded(&target));
        assert_eq!(text.get_string(&live.transact()), "the slow brown dog");
        // Only the changed characters were inserted: far fewer than the whole text.
        let after = live.transact().state_vector();
        let inserted = after.get(&live.client_id()) - before.get(&live.client_id());
        assert!(inserted < 10, "inserted {inserted} characters");
    }

    #[test]
    fn restore_recreates_and_removes_files() {
        let live = new_doc();
        {
            let mut txn = live.transact_mut();
            let files = txn.get_or_insert_map(FILES_ROOT);
            files.insert(&mut txn, "keep.txt", TextPrelim::new("kept, edited"));
            files.insert(&mut txn, "new.txt", TextPrelim::new("created later"));
        }
        let target = new_doc();
        {
            let mut txn = target.transact_mut();
            let files = txn.get_or_insert_map(FILES_ROOT);
            files.insert(&mut txn, "keep.txt", TextPrelim::new("kept"));
            files.insert(&mut txn, "gone.txt", TextPrelim::new("deleted later"));
        }
        restore_into(&mut live.transact_mut(), &reloaded(&target));
        assert_eq!(
            files(&live),
            vec![
                ("gone.txt".to_owned(), "deleted later".to_owned()),
                ("keep.txt".to_owned(), "kept".to_owned()),
            ]
        );
    }

    #[test]
    fn utf16_slices() {
        assert_eq!(utf16_slice("a🌍b", 1, 3).as_deref(), Some("🌍"));
        assert_eq!(utf16_slice("abc", 2, 1), None);
        assert_eq!(utf16_slice("abc", 0, 4), None);
    }

    proptest! {
        #[test]
        fn diff_text_reaches_any_target(current in "[a-c🌍é \n]{0,40}", wanted in "[a-c🌍é \n]{0,40}") {
            let doc = new_doc();
            let text = doc.get_or_insert_text("t");
            text.insert(&mut doc.transact_mut(), 0, &current);
            diff_text(&mut doc.transact_mut(), &text, &wanted);
            prop_assert_eq!(text.get_string(&doc.transact()), wanted);
        }
    }
}
