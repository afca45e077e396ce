//! Validation of v1 Yjs updates before `yrs` sees them.
//!
//! `yrs` decodes nested values recursively, with no depth limit, and reserves room for the
//! counts an update claims before reading what they count. Bytes from a client are hostile,
//! so every update is walked here first, iteratively, with the same primitives `yrs` reads it
//! with (its lib0 [`Cursor`]):
//! - every count is checked against the bytes that remain before anything is read for it;
//! - every string is UTF-8, every content and value tag is one `yrs` knows;
//! - values (`Any`, and the JSON of embeds and formatting attributes) nest at most
//!   [`UpdateLimits::max_depth`] levels;
//! - shared types created by the update nest at most as deep, counting the types they are
//!   created in. Resolving where an item lives can need the document the update is applied
//!   to, which this crate does not have: [`inspect`] answers an [`UpdateOutline`], and
//!   [`UpdateOutline::check_nesting`] finishes the check with a lookup into that document.
//!
//! The walk allocates only what the input justifies: one small record per item, and a stack
//! no deeper than the limit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use yrs::encoding::read::{Cursor, Read};

/// Content reference numbers of the v1 item encoding (`yrs::block`).
const CONTENT_GC: u8 = 0;
const CONTENT_DELETED: u8 = 1;
const CONTENT_JSON: u8 = 2;
const CONTENT_BINARY: u8 = 3;
const CONTENT_STRING: u8 = 4;
const CONTENT_EMBED: u8 = 5;
const CONTENT_FORMAT: u8 = 6;
const CONTENT_TYPE: u8 = 7;
const CONTENT_ANY: u8 = 8;
const CONTENT_DOC: u8 = 9;
const CONTENT_SKIP: u8 = 10;

/// Info bits of an item.
const HAS_ORIGIN: u8 = 0b1000_0000;
const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
const HAS_PARENT_SUB: u8 = 0b0010_0000;

/// Shared type references (`yrs::types`). The weak link (7) needs a `yrs` feature Tandem
/// does not enable, so `yrs` refuses it too.
const TYPE_XML_ELEMENT: u8 = 3;
const KNOWN_TYPES: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 9, 15];

/// `Any` tags (lib0).
const ANY_UNDEFINED: u8 = 127;
const ANY_NULL: u8 = 126;
const ANY_INTEGER: u8 = 125;
const ANY_FLOAT32: u8 = 124;
const ANY_FLOAT64: u8 = 123;
const ANY_BIGINT: u8 = 122;
const ANY_FALSE: u8 = 121;
const ANY_TRUE: u8 = 120;
const ANY_STRING: u8 = 119;
const ANY_OBJECT: u8 = 118;
const ANY_ARRAY: u8 = 117;
const ANY_BUFFER: u8 = 116;

/// The default nesting limit of values and of shared types.
pub const DEFAULT_MAX_DEPTH: u32 = 64;

/// What an update may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateLimits {
    /// Most levels values may nest (an array in an array is two), and most levels of shared
    /// types (a map in a root map is one).
    pub max_depth: u32,
}

impl Default for UpdateLimits {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Why an update was refused. Each is the client's fault; the document is untouched.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UpdateError {
    /// The update ended early, or a length or count points past its end.
    #[error("malformed update: {0}")]
    Malformed(String),
    /// An item content type `yrs` does not accept (or legacy JSON content, which `yrs` does
    /// not decode the way Yjs encodes it).
    #[error("unsupported item content {0}")]
    UnsupportedContent(u8),
    /// A shared type reference `yrs` does not know.
    #[error("unsupported shared type {0}")]
    UnsupportedType(u8),
    /// An `Any` tag `yrs` does not know.
    #[error("unknown value tag {0}")]
    UnknownValue(u8),
    /// Values nested deeper than the limit.
    #[error("values nested deeper than {0} levels")]
    ValuesTooDeep(u32),
    /// Shared types nested deeper than the limit.
    #[error("shared types nested deeper than {0} levels")]
    TypesTooDeep(u32),
    /// A shared type created inside something the document does not have (yet): where it
    /// would land, and so how deep, cannot be known.
    #[error("a shared type whose parent is missing from the document")]
    UnknownParent,
    /// An item placed inside something that is not a shared type (text, a value...): `yrs`
    /// would refuse it only after integrating what came before it.
    #[error("an item whose parent {0:?} is not a shared type")]
    ParentNotAType(ItemId),
}

impl From<yrs::encoding::read::Error> for UpdateError {
    fn from(err: yrs::encoding::read::Error) -> Self {
        UpdateError::Malformed(err.to_string())
    }
}

/// An item id: client and clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ItemId {
    /// The client that created it.
    pub client: u64,
    /// Its clock within that client.
    pub clock: u32,
}

/// Where an item says it lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// Directly in a root type.
    Root,
    /// In the shared type created by this item.
    InType(ItemId),
    /// In the same type as this item (its origin or right origin).
    Beside(ItemId),
}

/// What an item holds, as far as being a parent is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holds {
    /// A shared type: other items can live in it.
    Type,
    /// Deleted content: `yrs` drops children placed in it.
    Deleted,
    /// Anything else (text, values, embeds...): no item can live in it.
    Other,
}

/// One item of an update, as far as nesting and placement are concerned.
#[derive(Clone, Debug)]
struct ItemRecord {
    id: ItemId,
    len: u32,
    placement: Placement,
    holds: Holds,
    /// The root's name, for an item placed directly in a root.
    root: Option<Arc<str>>,
    /// The map key it is written under, when its parent is named and it has one.
    key: Option<Arc<str>>,
}

impl ItemRecord {
    fn creates_type(&self) -> bool {
        self.holds == Holds::Type
    }
}

/// What the document an update is applied to holds at an item id, as far as being a parent
/// is concerned (see [`UpdateOutline::check_parents`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExistingItem {
    /// The document has no such item (yet): `yrs` keeps the child waiting for it.
    Missing,
    /// A shared type, or something deleted: a child can be placed there.
    CanParent,
    /// Text, a value, an embed...: no child can live there.
    CannotParent,
}

/// What [`inspect`] learned about an update: enough to finish the nesting check against the
/// document it is applied to.
#[derive(Debug, Default)]
pub struct UpdateOutline {
    /// Items in the order they were read (per client, ascending clocks).
    items: Vec<ItemRecord>,
    /// Whether any item creates a shared type.
    creates_types: bool,
    /// Delete-set ranges in the update: client, first clock, length.
    deletes: Vec<(u64, u32, u32)>,
    /// Garbage-collected runs in the update: first id, length.
    collected: Vec<(ItemId, u32)>,
}

/// Where an item lives, as far as who may write there is concerned: its root, and under a
/// root map, the entry (the key in the root) and the entry's field (the key in the entry's
/// own map). Whatever lives deeper is at the location of the field it lives in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// The root type's name.
    pub root: Arc<str>,
    /// The key in the root map, for an item that is (or lives in) a root map's value.
    pub entry: Option<Arc<str>>,
    /// The key in that entry's map, for an item that is (or lives in) one of its values.
    pub field: Option<Arc<str>>,
}

impl Location {
    /// Where a child of an item at `self` lives, written under `key` (if any).
    fn child(self: &Arc<Self>, key: Option<&Arc<str>>) -> Arc<Self> {
        match (&self.entry, &self.field, key) {
            (Some(_), None, Some(key)) => Arc::new(Location {
                root: self.root.clone(),
                entry: self.entry.clone(),
                field: Some(key.clone()),
            }),
            _ => self.clone(),
        }
    }
}

/// Where an item lands: at a [`Location`], or nowhere, because it hangs off something
/// garbage-collected (a type deleted with everything in it); `yrs` then drops it, as Yjs does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// Somewhere in the document.
    At(Arc<Location>),
    /// Nowhere: it is collected, or will be as it lands.
    Nowhere,
}

impl Place {
    fn child(&self, key: Option<&Arc<str>>) -> Place {
        match self {
            Place::At(location) => Place::At(location.child(key)),
            Place::Nowhere => Place::Nowhere,
        }
    }
}

/// An update's structs located: each one's first id, length and [`Place`] (collected runs
/// included, at [`Place::Nowhere`]).
pub type Located = Vec<(ItemId, u32, Place)>;

impl UpdateOutline {
    /// Whether the update holds nothing: no item and no deletion (what `y-websocket` sends
    /// in a step 2 when it has nothing new).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.deletes.is_empty()
    }

    /// The ranges the update deletes: client, first clock, length.
    pub fn deletes(&self) -> &[(u64, u32, u32)] {
        &self.deletes
    }

    /// Where each item of the update lives ([`Location`]), resolved through the update's own
    /// items and, for an item outside it, `existing(id)`: where the document has the item at
    /// `id`, or `None` if it has not. An item whose location cannot be known (it hangs off
    /// something neither the update nor the document has) is answered as
    /// [`UpdateError::UnknownParent`].
    pub fn locate(
        &self,
        mut existing: impl FnMut(ItemId) -> Option<Place>,
    ) -> Result<Located, UpdateError> {
        let index = ItemIndex::new(&self.items);
        let mut runs: Vec<(u64, u32, u32)> = self
            .collected
            .iter()
            .map(|&(id, len)| (id.client, id.clock, len))
            .collect();
        runs.sort_unstable();
        let collected = |id: ItemId| {
            let after = runs
                .partition_point(|&(client, clock, _)| (client, clock) <= (id.client, id.clock));
            after.checked_sub(1).is_some_and(|run| {
                let (client, clock, len) = runs[run];
                client == id.client && id.clock - clock < len
            })
        };
        let mut found: Vec<Option<Place>> = vec![None; self.items.len()];
        let mut visiting = vec![false; self.items.len()];
        let mut located = Vec::with_capacity(self.items.len());
        for start in 0..self.items.len() {
            // Follow the chain of "beside" and "in type" links onto an explicit path until a
            // known location, then unwind it.
            let mut path: Vec<usize> = Vec::new();
            let mut current = start;
            let mut base: Place = loop {
                if let Some(known) = &found[current] {
                    break known.clone();
                }
                if visiting[current] {
                    return Err(UpdateError::UnknownParent);
                }
                visiting[current] = true;
                path.push(current);
                let item = &self.items[current];
                let target = match item.placement {
                    Placement::Root => {
                        let root = item.root.clone().ok_or(UpdateError::UnknownParent)?;
                        let location = Place::At(Arc::new(Location {
                            root,
                            entry: item.key.clone(),
                            field: None,
                        }));
                        found[current] = Some(location.clone());
                        path.pop();
                        break location;
                    }
                    Placement::InType(parent) | Placement::Beside(parent) => parent,
                };
                match index.find(&self.items, target) {
                    Some(next) => current = next,
                    None if collected(target) => break Place::Nowhere,
                    None => break existing(target).ok_or(UpdateError::UnknownParent)?,
                }
            };
            for &item in path.iter().rev() {
                let record = &self.items[item];
                if let Placement::InType(_) = record.placement {
                    base = base.child(record.key.as_ref());
                }
                found[item] = Some(base.clone());
            }
            let item = &self.items[start];
            let location = found[start].clone().ok_or(UpdateError::UnknownParent)?;
            located.push((item.id, item.len, location));
        }
        located.extend(
            self.collected
                .iter()
                .map(|&(id, len)| (id, len, Place::Nowhere)),
        );
        Ok(located)
    }

    /// Whether the update creates shared types, so [`UpdateOutline::check_nesting`] has
    /// work to do. Typing never does.
    pub fn creates_types(&self) -> bool {
        self.creates_types
    }

    /// Whether some item names its parent by id (the first item put into a nested type, or
    /// an entry of a nested map), so [`UpdateOutline::check_parents`] has work to do. Typing
    /// into an existing text never does.
    pub fn names_parents(&self) -> bool {
        self.items
            .iter()
            .any(|item| matches!(item.placement, Placement::InType(_)))
    }

    /// Checks that every item naming its parent by id names something a child can live in.
    ///
    /// `yrs` refuses an update whose item lives in text or a value only once it reaches that
    /// item, after integrating everything before it, so such an update is refused here
    /// whole. `known(id)` answers whether the document already has the item at `id` (then
    /// `existing(id)` says what it holds, and the document's version wins over the update's,
    /// as in `yrs`); otherwise the update's own item at `id` decides, and a parent found
    /// nowhere is left for `yrs` to wait for.
    pub fn check_parents(
        &self,
        mut known: impl FnMut(ItemId) -> bool,
        mut existing: impl FnMut(ItemId) -> ExistingItem,
    ) -> Result<(), UpdateError> {
        let index = ItemIndex::new(&self.items);
        for item in &self.items {
            let Placement::InType(parent) = item.placement else {
                continue;
            };
            let can_parent = if known(parent) {
                existing(parent) != ExistingItem::CannotParent
            } else {
                index
                    .find(&self.items, parent)
                    .is_none_or(|found| self.items[found].holds != Holds::Other)
            };
            if !can_parent {
                return Err(UpdateError::ParentNotAType(parent));
            }
        }
        Ok(())
    }

    /// Checks that no shared type the update creates nests deeper than `max_depth`.
    ///
    /// `existing(id)` answers, for an item already in the document, how many shared types
    /// (not counting the root) enclose it, or `None` if the document does not have it.
    /// It is asked only about items outside the update that a type-creating item depends on.
    pub fn check_nesting(
        &self,
        max_depth: u32,
        mut existing: impl FnMut(ItemId) -> Option<u32>,
    ) -> Result<(), UpdateError> {
        if !self.creates_types {
            return Ok(());
        }
        let index = ItemIndex::new(&self.items);
        // Enclosing depth of each item, resolved lazily; `Pending` marks items whose
        // resolution is under way, so a cycle in a hostile update ends the walk.
        let mut depth: Vec<Resolution> = vec![Resolution::Unknown; self.items.len()];
        for (position, item) in self.items.iter().enumerate() {
            if !item.creates_type() {
                continue;
            }
            let enclosing = resolve(position, &self.items, &index, &mut depth, &mut existing)?;
            if enclosing + 1 > max_depth {
                return Err(UpdateError::TypesTooDeep(max_depth));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolution {
    Unknown,
    Pending,
    Known(u32),
}

/// Finds the item of the update that holds an id.
struct ItemIndex {
    /// Client → positions of its items in `items`, ascending clocks.
    by_client: HashMap<u64, Vec<usize>>,
}

impl ItemIndex {
    fn new(items: &[ItemRecord]) -> Self {
        let mut by_client: HashMap<u64, Vec<usize>> = HashMap::new();
        for (position, item) in items.iter().enumerate() {
            by_client.entry(item.id.client).or_default().push(position);
        }
        for positions in by_client.values_mut() {
            positions.sort_by_key(|&p| items[p].id.clock);
        }
        Self { by_client }
    }

    fn find(&self, items: &[ItemRecord], id: ItemId) -> Option<usize> {
        let positions = self.by_client.get(&id.client)?;
        let after = positions.partition_point(|&p| items[p].id.clock <= id.clock);
        let candidate = *positions.get(after.checked_sub(1)?)?;
        let item = &items[candidate];
        (id.clock - item.id.clock < item.len).then_some(candidate)
    }
}

/// The number of shared types enclosing `items[start]`, resolved without recursion: the chain
/// of "beside" and "in type" links is followed onto an explicit path, then unwound.
fn resolve(
    start: usize,
    items: &[ItemRecord],
    index: &ItemIndex,
    depth: &mut [Resolution],
    existing: &mut impl FnMut(ItemId) -> Option<u32>,
) -> Result<u32, UpdateError> {
    // Each step on the path: the item, and how much its parent link adds (1 for "in type").
    let mut path: Vec<(usize, u32)> = Vec::new();
    let mut current = start;
    let base = loop {
        match depth[current] {
            Resolution::Known(known) => break known,
            Resolution::Pending => return Err(UpdateError::UnknownParent),
            Resolution::Unknown => {}
        }
        depth[current] = Resolution::Pending;
        let (target, step) = match items[current].placement {
            Placement::Root => {
                path.push((current, 0));
                break 0;
            }
            Placement::InType(parent) => (parent, 1),
            Placement::Beside(neighbour) => (neighbour, 0),
        };
        path.push((current, step));
        match index.find(items, target) {
            Some(next) if step == 0 || items[next].creates_type() => current = next,
            // A parent that is an item of the update but no type: yrs cannot place the
            // child, so it creates nothing deep.
            Some(next) => break depth_of(depth[next]).unwrap_or(0),
            None => match existing(target) {
                Some(found) => break found,
                None => return Err(UpdateError::UnknownParent),
            },
        }
    };
    // Unwind: the last step's item sits `base` (+ its step) deep; each earlier one adds its own.
    let mut level = base;
    for &(item, step) in path.iter().rev() {
        level = level.saturating_add(step);
        depth[item] = Resolution::Known(level);
    }
    Ok(level)
}

fn depth_of(resolution: Resolution) -> Option<u32> {
    match resolution {
        Resolution::Known(depth) => Some(depth),
        _ => None,
    }
}

/// Walks a v1 update and checks everything that can be checked without the document.
///
/// Beyond what `yrs` checks when it decodes, the update must be in the shape Yjs and `yrs`
/// encode, because `yrs` integrates other shapes wrongly (it panics, or overflows its
/// clocks): each client's structs in one run, every client id below 2^53 (the most a
/// JavaScript number holds, and what `yrs` assumes), every length and count within 32 bits
/// (`yrs` reads them as `u32`, wrapping what is larger), and every clock, run of clocks and
/// deleted range ending at most at [`MAX_CLOCK`].
pub fn inspect(update: &[u8], limits: &UpdateLimits) -> Result<UpdateOutline, UpdateError> {
    let mut cursor = Cursor::new(update);
    let mut outline = UpdateOutline::default();
    let clients = read_u32(&mut cursor)?;
    // Each client group is at least three bytes (count, client, clock).
    check_count(&cursor, u64::from(clients), 3)?;
    let mut seen = HashSet::new();
    for _ in 0..clients {
        let structs = read_u32(&mut cursor)?;
        let client = read_client(&mut cursor)?;
        if !seen.insert(client) {
            return Err(malformed("a client's structs in more than one run"));
        }
        let mut clock = read_clock(&mut cursor)?;
        // Each struct is at least two bytes (info, and one of length or content).
        check_count(&cursor, u64::from(structs), 2)?;
        for _ in 0..structs {
            let id = ItemId { client, clock };
            let len = read_struct(&mut cursor, id, limits, &mut outline)?;
            clock = clock
                .checked_add(len)
                .filter(|&end| end <= MAX_CLOCK)
                .ok_or_else(|| malformed("clocks past the last one"))?;
        }
    }
    // The delete set.
    let clients = read_u32(&mut cursor)?;
    check_count(&cursor, u64::from(clients), 2)?;
    seen.clear();
    for _ in 0..clients {
        let client = read_client(&mut cursor)?;
        if !seen.insert(client) {
            return Err(malformed("a client's deleted ranges in more than one run"));
        }
        let ranges = read_u32(&mut cursor)?;
        check_count(&cursor, u64::from(ranges), 2)?;
        for _ in 0..ranges {
            let clock = read_clock(&mut cursor)?;
            let len = read_u32(&mut cursor)?;
            // yrs adds the two as u32 (and panics where overflow is checked).
            if clock.checked_add(len).is_none_or(|end| end > MAX_CLOCK) {
                return Err(malformed("a deleted range ends past the last clock"));
            }
            if len > 0 {
                outline.deletes.push((client, clock, len));
            }
        }
    }
    Ok(outline)
}

fn malformed(what: &str) -> UpdateError {
    UpdateError::Malformed(what.to_owned())
}

/// The largest client id: Yjs's are JavaScript numbers, and `yrs` keeps the bits above for
/// itself.
const MAX_CLIENT: u64 = (1 << 53) - 1;

/// Reads a client id, refusing one `yrs` cannot hold.
fn read_client(cursor: &mut Cursor<'_>) -> Result<u64, UpdateError> {
    let client: u64 = cursor.read_var()?;
    if client > MAX_CLIENT {
        return Err(malformed("a client id past 53 bits"));
    }
    Ok(client)
}

/// The last clock an update may reach: `yrs` compares clocks as `i32` when it integrates
/// (and so takes a clock past this for one it already has). Two billion operations of one
/// client; Yjs starts a new client id long before.
pub const MAX_CLOCK: u32 = i32::MAX as u32;

/// Reads a clock, refusing one past [`MAX_CLOCK`].
fn read_clock(cursor: &mut Cursor<'_>) -> Result<u32, UpdateError> {
    let clock = read_u32(cursor)?;
    if clock > MAX_CLOCK {
        return Err(malformed("a clock past the last one"));
    }
    Ok(clock)
}

/// Reads an unsigned varint that `yrs` reads as `u32`, refusing one it would wrap.
fn read_u32(cursor: &mut Cursor<'_>) -> Result<u32, UpdateError> {
    let value: u64 = cursor.read_var()?;
    u32::try_from(value).map_err(|_| malformed("a clock, length or count past 32 bits"))
}

/// Refuses a count of things, each at least `min_bytes` long, that cannot fit in what remains.
fn check_count(cursor: &Cursor<'_>, count: u64, min_bytes: u64) -> Result<(), UpdateError> {
    let remaining = (cursor.buf.len() - cursor.next) as u64;
    if count.saturating_mul(min_bytes) > remaining {
        return Err(UpdateError::Malformed(format!(
            "a count of {count} does not fit in the {remaining} bytes that remain"
        )));
    }
    Ok(())
}

/// Reads one struct (GC, skip or item) and answers how many clock ticks it takes.
fn read_struct(
    cursor: &mut Cursor<'_>,
    id: ItemId,
    limits: &UpdateLimits,
    outline: &mut UpdateOutline,
) -> Result<u32, UpdateError> {
    let info = cursor.read_u8()?;
    if info == CONTENT_SKIP || info == CONTENT_GC {
        let len = read_u32(cursor)?;
        if len == 0 {
            return Err(UpdateError::Malformed("empty block".to_owned()));
        }
        if info == CONTENT_GC {
            outline.collected.push((id, len));
        }
        return Ok(len);
    }
    let origin = (info & HAS_ORIGIN != 0)
        .then(|| read_id(cursor))
        .transpose()?;
    let right_origin = (info & HAS_RIGHT_ORIGIN != 0)
        .then(|| read_id(cursor))
        .transpose()?;
    let mut root = None;
    let mut key = None;
    let placement = match (origin, right_origin) {
        (Some(neighbour), _) | (None, Some(neighbour)) => Placement::Beside(neighbour),
        (None, None) => {
            let placement = if read_u32(cursor)? == 1 {
                root = Some(Arc::from(cursor.read_string()?));
                Placement::Root
            } else {
                Placement::InType(read_id(cursor)?)
            };
            if info & HAS_PARENT_SUB != 0 {
                key = Some(Arc::from(cursor.read_string()?));
            }
            placement
        }
    };
    let content = info & 0b1111;
    let len = match content {
        CONTENT_DELETED => read_u32(cursor)?,
        CONTENT_BINARY => {
            cursor.read_buf()?;
            1
        }
        CONTENT_STRING => cursor.read_string()?.encode_utf16().count() as u32,
        CONTENT_EMBED => {
            check_json(cursor.read_string()?, limits.max_depth)?;
            1
        }
        CONTENT_FORMAT => {
            cursor.read_string()?;
            check_json(cursor.read_string()?, limits.max_depth)?;
            1
        }
        CONTENT_TYPE => {
            let type_ref = cursor.read_u8()?;
            if !KNOWN_TYPES.contains(&type_ref) {
                return Err(UpdateError::UnsupportedType(type_ref));
            }
            if type_ref == TYPE_XML_ELEMENT {
                cursor.read_string()?;
            }
            1
        }
        CONTENT_ANY => {
            let values: u64 = cursor.read_var()?;
            check_count(cursor, values, 1)?;
            for _ in 0..values {
                skip_any(cursor, limits.max_depth)?;
            }
            u32::try_from(values).map_err(|_| UpdateError::Malformed("too many values".into()))?
        }
        CONTENT_DOC => {
            cursor.read_string()?;
            skip_any(cursor, limits.max_depth)?;
            1
        }
        // Legacy JSON content: `yrs` reads one string more than Yjs writes, so the two would
        // disagree on everything after it. Yjs has not written it since version 13.
        CONTENT_JSON => return Err(UpdateError::UnsupportedContent(content)),
        other => return Err(UpdateError::UnsupportedContent(other)),
    };
    // `yrs` drops items of length zero without advancing the clock.
    if len > 0 {
        let holds = match content {
            CONTENT_TYPE => Holds::Type,
            CONTENT_DELETED => Holds::Deleted,
            _ => Holds::Other,
        };
        outline.creates_types |= holds == Holds::Type;
        outline.items.push(ItemRecord {
            id,
            len,
            placement,
            holds,
            root,
            key,
        });
    }
    Ok(len)
}

fn read_id(cursor: &mut Cursor<'_>) -> Result<ItemId, UpdateError> {
    let client = read_client(cursor)?;
    let clock = read_clock(cursor)?;
    Ok(ItemId { client, clock })
}

/// Skips one lib0 `Any` value, iteratively, refusing nesting deeper than `max_depth`.
pub(crate) fn skip_any(cursor: &mut Cursor<'_>, max_depth: u32) -> Result<(), UpdateError> {
    // Each open container: how many values it still holds, and whether each has a key first.
    let mut open: Vec<(u64, bool)> = Vec::new();
    let mut level: (u64, bool) = (1, false);
    loop {
        while level.0 == 0 {
            match open.pop() {
                Some(outer) => level = outer,
                None => return Ok(()),
            }
        }
        level.0 -= 1;
        if level.1 {
            cursor.read_string()?;
        }
        match cursor.read_u8()? {
            ANY_UNDEFINED | ANY_NULL | ANY_FALSE | ANY_TRUE => {}
            ANY_INTEGER => skip_signed_varint(cursor)?,
            ANY_FLOAT32 => {
                cursor.read_exact(4)?;
            }
            ANY_FLOAT64 | ANY_BIGINT => {
                cursor.read_exact(8)?;
            }
            ANY_STRING => {
                cursor.read_string()?;
            }
            ANY_BUFFER => {
                cursor.read_buf()?;
            }
            tag @ (ANY_OBJECT | ANY_ARRAY) => {
                let count: u64 = cursor.read_var()?;
                let keyed = tag == ANY_OBJECT;
                check_count(cursor, count, if keyed { 2 } else { 1 })?;
                open.push(level);
                if open.len() > max_depth as usize {
                    return Err(UpdateError::ValuesTooDeep(max_depth));
                }
                level = (count, keyed);
            }
            other => return Err(UpdateError::UnknownValue(other)),
        }
    }
}

/// The longest signed lib0 varint `yrs` reads without shifting past 64 bits (which panics
/// where overflow is checked): 6 bits in the first byte and 7 in each of 8 more.
const MAX_SIGNED_VARINT_BYTES: usize = 9;

/// Skips a signed lib0 varint, refusing one longer than `yrs` can read.
fn skip_signed_varint(cursor: &mut Cursor<'_>) -> Result<(), UpdateError> {
    for _ in 0..MAX_SIGNED_VARINT_BYTES {
        if cursor.read_u8()? & 0b1000_0000 == 0 {
            return Ok(());
        }
    }
    Err(UpdateError::Malformed(
        "an integer longer than 64 bits".to_owned(),
    ))
}

/// Refuses JSON text whose arrays and objects nest deeper than `max_depth`, without parsing
/// it (the parser that reads it later has its own limit; this one is ours and documented).
pub fn check_json(json: &str, max_depth: u32) -> Result<(), UpdateError> {
    let mut depth = 0u32;
    let mut in_string = false;
    let mut escaped = false;
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(UpdateError::ValuesTooDeep(max_depth));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::encoding::write::Write;
    use yrs::{
        Any, Array, ArrayPrelim, Doc, Map, MapPrelim, ReadTxn, StateVector, Text, Transact,
        WriteTxn,
    };

    fn limits(max_depth: u32) -> UpdateLimits {
        UpdateLimits { max_depth }
    }

    fn nested_array_value(levels: usize) -> Any {
        let mut value = Any::Null;
        for _ in 0..levels {
            value = Any::Array(vec![value].into());
        }
        value
    }

    fn update_of(doc: &Doc) -> Vec<u8> {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    #[test]
    fn ordinary_updates_pass() {
        let doc = Doc::new();
        // Roots first: getting one takes the document's lock.
        let text = doc.get_or_insert_text("text");
        let files = doc.get_or_insert_map("files");
        let array = doc.get_or_insert_array("array");
        {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, "hello 🌍");
            files.insert(&mut txn, "a", MapPrelim::default());
            array.insert(&mut txn, 0, nested_array_value(10));
            array.insert(&mut txn, 1, ArrayPrelim::default());
        }
        let outline = inspect(&update_of(&doc), &limits(64)).unwrap();
        assert!(outline.creates_types());
        outline.check_nesting(64, |_| None).unwrap();
    }

    #[test]
    fn deep_values_are_refused_without_recursion() {
        // 20,000 nested arrays: what overflows yrs's recursive decoder.
        let mut payload = Vec::new();
        payload.write_var(1u32); // one client
        payload.write_var(1u32); // one struct
        payload.write_var(7u32); // client
        payload.write_var(0u32); // clock
        payload.write_u8(CONTENT_ANY);
        payload.write_var(1u32); // parent info: named root
        payload.write_string("array");
        payload.write_var(1u32); // one value
        for _ in 0..20_000 {
            payload.write_u8(ANY_ARRAY);
            payload.write_var(1u32);
        }
        payload.write_u8(ANY_NULL);
        payload.write_var(0u32); // empty delete set
        assert_eq!(
            inspect(&payload, &limits(64)).unwrap_err(),
            UpdateError::ValuesTooDeep(64)
        );
    }

    #[test]
    fn depth_limit_is_exact_for_values() {
        let doc = Doc::new();
        let array = doc.get_or_insert_array("array");
        array.insert(&mut doc.transact_mut(), 0, nested_array_value(5));
        let update = update_of(&doc);
        inspect(&update, &limits(5)).unwrap();
        assert_eq!(
            inspect(&update, &limits(4)).unwrap_err(),
            UpdateError::ValuesTooDeep(4)
        );
    }

    #[test]
    fn nested_types_within_one_update_are_counted() {
        let doc = Doc::new();
        let root = doc.get_or_insert_map("root");
        {
            let mut txn = doc.transact_mut();
            let mut map = root.insert(&mut txn, "k", MapPrelim::default());
            for _ in 0..9 {
                map = map.insert(&mut txn, "k", MapPrelim::default());
            }
        }
        let outline = inspect(&update_of(&doc), &limits(64)).unwrap();
        outline.check_nesting(10, |_| None).unwrap();
        assert_eq!(
            outline.check_nesting(9, |_| None).unwrap_err(),
            UpdateError::TypesTooDeep(9)
        );
    }

    #[test]
    fn nesting_counts_types_already_in_the_document() {
        let doc = Doc::new();
        let root = doc.get_or_insert_map("root");
        let map = root.insert(&mut doc.transact_mut(), "k", MapPrelim::default());
        let before = doc.transact().state_vector();
        map.insert(&mut doc.transact_mut(), "inner", MapPrelim::default());
        let diff = doc.transact().encode_diff_v1(&before);
        let outline = inspect(&diff, &limits(64)).unwrap();
        // The parent is outside the update: the document says how deep it is.
        let mut asked = Vec::new();
        outline
            .check_nesting(64, |id| {
                asked.push(id);
                Some(1)
            })
            .unwrap();
        assert_eq!(asked.len(), 1);
        assert_eq!(
            outline.check_nesting(2, |_| Some(2)).unwrap_err(),
            UpdateError::TypesTooDeep(2)
        );
        assert_eq!(
            outline.check_nesting(64, |_| None).unwrap_err(),
            UpdateError::UnknownParent
        );
    }

    #[test]
    fn typing_needs_no_lookup() {
        let doc = Doc::new();
        let text = doc.get_or_insert_text("text");
        text.insert(&mut doc.transact_mut(), 0, "abc");
        let before = doc.transact().state_vector();
        text.insert(&mut doc.transact_mut(), 3, "d");
        let diff = doc.transact().encode_diff_v1(&before);
        let outline = inspect(&diff, &limits(64)).unwrap();
        assert!(!outline.creates_types());
        outline
            .check_nesting(1, |_| panic!("no lookup for typing"))
            .unwrap();
    }

    #[test]
    fn huge_counts_are_refused_before_reading() {
        // One client group claiming 2^31 structs.
        let mut payload = Vec::new();
        payload.write_var(1u32);
        payload.write_var(1u32 << 31);
        payload.write_var(1u32);
        payload.write_var(0u32);
        assert!(matches!(
            inspect(&payload, &limits(64)),
            Err(UpdateError::Malformed(_))
        ));
    }

    #[test]
    fn deep_json_in_formatting_is_refused() {
        assert!(check_json(r#"{"a":[1,{"b":"[[[["}]}"#, 3).is_ok());
        assert_eq!(
            check_json(&"[".repeat(100), 64).unwrap_err(),
            UpdateError::ValuesTooDeep(64)
        );
    }

    #[test]
    fn integers_and_deleted_ranges_yrs_would_overflow_on_are_refused() {
        let any_update = |value: &[u8]| {
            let mut payload = Vec::new();
            payload.write_var(1u32);
            payload.write_var(1u32);
            payload.write_var(7u32);
            payload.write_var(0u32);
            payload.write_u8(CONTENT_ANY);
            payload.write_var(1u32);
            payload.write_string("array");
            payload.write_var(1u32);
            payload.write_u8(ANY_INTEGER);
            payload.extend_from_slice(value);
            payload.write_var(0u32);
            payload
        };
        // Nine bytes read; ten would shift past 64 bits.
        let nine = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        inspect(&any_update(&nine), &limits(64)).unwrap();
        let ten = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(
            inspect(&any_update(&ten), &limits(64)),
            Err(UpdateError::Malformed(_))
        ));
        let mut deletes = vec![0u8];
        deletes.write_var(1u32);
        deletes.write_var(7u64);
        deletes.write_var(1u32);
        deletes.write_var(u32::MAX - 1);
        deletes.write_var(2u32);
        assert!(matches!(
            inspect(&deletes, &limits(64)),
            Err(UpdateError::Malformed(_))
        ));
    }

    /// One client group of `client` starting at `clock` holding one deleted-content item of
    /// `len` in the root `"t"`; appended to `payload`.
    fn deleted_item(payload: &mut Vec<u8>, client: u64, clock: u64, len: u64) {
        payload.write_var(1u32); // one struct
        payload.write_var(client);
        payload.write_var(clock);
        payload.write_u8(CONTENT_DELETED);
        payload.write_var(1u32); // named root
        payload.write_string("t");
        payload.write_var(len);
    }

    #[test]
    fn shapes_yrs_integrates_wrongly_are_refused() {
        let update = |groups: &[(u64, u64, u64)]| {
            let mut payload = Vec::new();
            payload.write_var(groups.len() as u32);
            for &(client, clock, len) in groups {
                deleted_item(&mut payload, client, clock, len);
            }
            payload.write_var(0u32);
            payload
        };
        let refused = |payload: Vec<u8>| {
            matches!(
                inspect(&payload, &limits(64)),
                Err(UpdateError::Malformed(_))
            )
        };
        inspect(&update(&[(1, 0, 3), (2, 5, 1)]), &limits(64)).unwrap();
        // The same client in two runs: yrs appends the second to the first.
        assert!(refused(update(&[(1, 0, 3), (1, 0, 1)])));
        // A client id past 53 bits, a clock or a length past 32 bits: yrs wraps them.
        assert!(refused(update(&[(1 << 53, 0, 1)])));
        assert!(refused(update(&[(1, 1 << 32, 1)])));
        assert!(refused(update(&[(1, 0, 1 << 32)])));
        // A run of clocks ending past the last one, which yrs compares as `i32`.
        let last = u64::from(MAX_CLOCK);
        inspect(&update(&[(1, last - 2, 2)]), &limits(64)).unwrap();
        assert!(refused(update(&[(1, last - 1, 2)])));
        assert!(refused(update(&[(1, last + 1, 1)])));
        // A client's deleted ranges in two runs.
        let mut deletes = vec![0u8];
        deletes.write_var(2u32);
        for _ in 0..2 {
            deletes.write_var(7u64);
            deletes.write_var(1u32);
            deletes.write_var(0u32);
            deletes.write_var(1u32);
        }
        assert!(refused(deletes));
    }

    #[test]
    fn items_placed_in_what_no_item_lives_in_are_refused() {
        // Item 1:0 is a string in root "t"; item 1:1 says it lives inside 1:0.
        let mut payload = Vec::new();
        payload.write_var(1u32);
        payload.write_var(2u32);
        payload.write_var(1u64);
        payload.write_var(0u32);
        payload.write_u8(CONTENT_STRING);
        payload.write_var(1u32);
        payload.write_string("t");
        payload.write_string("a");
        payload.write_u8(CONTENT_ANY);
        payload.write_var(0u32); // parent by id
        payload.write_var(1u64);
        payload.write_var(0u32);
        payload.write_var(1u32);
        payload.write_u8(ANY_NULL);
        payload.write_var(0u32);
        let outline = inspect(&payload, &limits(64)).unwrap();
        assert!(outline.names_parents());
        let parent = ItemId {
            client: 1,
            clock: 0,
        };
        // The document lacks 1:0: the update's own item decides.
        assert_eq!(
            outline.check_parents(|_| false, |_| unreachable!()),
            Err(UpdateError::ParentNotAType(parent))
        );
        // The document has 1:0 and can hold children there (it won over the update's).
        outline
            .check_parents(|_| true, |_| ExistingItem::CanParent)
            .unwrap();
        assert_eq!(
            outline.check_parents(|_| true, |_| ExistingItem::CannotParent),
            Err(UpdateError::ParentNotAType(parent))
        );
        // A parent found nowhere is left for yrs to wait for.
        let mut waiting = Vec::new();
        waiting.write_var(1u32);
        waiting.write_var(1u32);
        waiting.write_var(2u64);
        waiting.write_var(0u32);
        waiting.write_u8(CONTENT_ANY);
        waiting.write_var(0u32);
        waiting.write_var(9u64);
        waiting.write_var(4u32);
        waiting.write_var(1u32);
        waiting.write_u8(ANY_NULL);
        waiting.write_var(0u32);
        inspect(&waiting, &limits(64))
            .unwrap()
            .check_parents(|_| false, |_| unreachable!())
            .unwrap();
    }

    fn location(root: &str, entry: Option<&str>, field: Option<&str>) -> Location {
        Location {
            root: root.into(),
            entry: entry.map(Into::into),
            field: field.map(Into::into),
        }
    }

    #[test]
    fn items_are_located_at_their_root_entry_and_field() {
        let doc = Doc::new();
        let map_entry = {
            let mut txn = doc.transact_mut();
            txn.get_or_insert_text("t").insert(&mut txn, 0, "ab");
            let suggestions = txn.get_or_insert_map("suggestions");
            let entry = suggestions.insert(&mut txn, "s1", MapPrelim::default());
            entry.insert(&mut txn, "status", "pending");
            entry.insert(
                &mut txn,
                "nested",
                MapPrelim::from([("deep", Any::from(1))]),
            );
            txn.encode_update_v1()
        };
        let outline = inspect(&map_entry, &limits(64)).unwrap();
        let mut seen: Vec<Location> = outline
            .locate(|_| None)
            .unwrap()
            .into_iter()
            .map(|(_, _, place)| match place {
                Place::At(location) => (*location).clone(),
                Place::Nowhere => panic!("nothing here is collected"),
            })
            .collect();
        seen.sort_by_key(|l| format!("{l:?}"));
        seen.dedup();
        assert_eq!(
            seen,
            vec![
                location("suggestions", Some("s1"), None),
                location("suggestions", Some("s1"), Some("nested")),
                location("suggestions", Some("s1"), Some("status")),
                location("t", None, None),
            ]
        );

        // Typing after existing text is located through the document, without it only refused.
        let typing = {
            let mut txn = doc.transact_mut();
            txn.get_or_insert_text("t").insert(&mut txn, 2, "c");
            txn.encode_update_v1()
        };
        let outline = inspect(&typing, &limits(64)).unwrap();
        assert_eq!(outline.locate(|_| None), Err(UpdateError::UnknownParent));
        let text = Place::At(Arc::new(location("t", None, None)));
        let located = outline.locate(|_| Some(text.clone())).unwrap();
        assert_eq!(located.len(), 1);
        assert_eq!(located[0].2, text);
        let located = outline.locate(|_| Some(Place::Nowhere)).unwrap();
        assert_eq!(
            located[0].2,
            Place::Nowhere,
            "typing next to collected text lands nowhere"
        );

        // Overwriting a field is located at that field through the value it replaces.
        let overwrite = {
            let mut txn = doc.transact_mut();
            let suggestions = txn.get_or_insert_map("suggestions");
            let Some(yrs::Out::YMap(entry)) = suggestions.get(&txn, "s1") else {
                panic!("the entry");
            };
            entry.insert(&mut txn, "status", "accepted");
            txn.encode_update_v1()
        };
        let outline = inspect(&overwrite, &limits(64)).unwrap();
        assert_eq!(outline.deletes().len(), 1, "the old value is deleted");
        let status = Place::At(Arc::new(location(
            "suggestions",
            Some("s1"),
            Some("status"),
        )));
        let located = outline.locate(|_| Some(status.clone())).unwrap();
        assert_eq!(located[0].2, status);
    }

    #[test]
    fn empty_update_is_empty() {
        let outline = inspect(&[0, 0], &limits(64)).unwrap();
        assert!(outline.is_empty());
    }

    #[test]
    fn cyclic_placement_is_refused() {
        // Two type items, each placed beside the other.
        let mut payload = Vec::new();
        payload.write_var(1u32);
        payload.write_var(2u32);
        payload.write_var(3u32); // client
        payload.write_var(0u32); // clock
        for neighbour in [1u32, 0] {
            payload.write_u8(CONTENT_TYPE | HAS_ORIGIN);
            payload.write_var(3u32);
            payload.write_var(neighbour);
            payload.write_u8(1); // a map
        }
        payload.write_var(0u32);
        let outline = inspect(&payload, &limits(64)).unwrap();
        assert_eq!(
            outline.check_nesting(64, |_| None).unwrap_err(),
            UpdateError::UnknownParent
        );
    }
}
