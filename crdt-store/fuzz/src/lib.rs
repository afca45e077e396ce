//! What the fuzz targets share: an allocator that measures, the small nesting limit the
//! targets run under, and the read paths every stored document goes through.
//!
//! # Layout
//! - [`MeasuringAllocator`]: the global allocator of every target; [`peak_during`] answers
//!   how many bytes a closure held at most, so a decoder that reserves what the input
//!   merely claims is a finding, not a slow run.
//! - [`read_paths`]: nesting, JSON, files, restore and anchors over one document, with the
//!   invariants that must hold whatever the document.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use yrs::{Doc, ReadTxn, StateVector, Transact};

/// The nesting limit the targets run under: small, so the fuzzer reaches it with inputs of
/// a few dozen bytes (the server's default is 64).
pub const FUZZ_MAX_DEPTH: u32 = 8;

/// Inputs longer than this are skipped: the fuzzer learns nothing from megabytes that it
/// cannot from kilobytes, and every execution stays fast.
pub const MAX_INPUT: usize = 64 * 1024;

/// The system allocator, counting the bytes live now and the most live since the last
/// [`peak_during`] started.
pub struct MeasuringAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for MeasuringAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        new
    }
}

/// Runs `f` and answers its result with the most bytes it held live at once beyond what was
/// live when it started. The targets are single-threaded, so nothing else allocates
/// meanwhile.
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let result = f();
    let peak = PEAK.load(Ordering::Relaxed);
    (result, peak.saturating_sub(base))
}

/// The most a decoder may hold for `input_len` bytes of input: a generous constant factor
/// (each wire byte can become an item of a hundred-odd bytes, vectors grow by doubling) and
/// a fixed allowance. Reserving for a count the input only claims is far beyond it.
pub fn allocation_bound(input_len: usize) -> usize {
    (1 << 20) + 512 * input_len
}

/// A document's whole state, v1-encoded: what "unchanged" is compared by.
pub fn encoded_state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

/// Every read path a stored document is served through, over `doc`, which nests at most
/// `limit` levels: measuring it, JSON, files, restoring it into another document, anchoring
/// and locating a range in its first file. Panics when an invariant does not hold.
pub fn read_paths(doc: &Doc, limit: u32) {
    use crdt_store::document;

    let nesting = document::nesting(&doc.transact(), limit);
    assert!(
        nesting.types.max(nesting.values) <= limit,
        "a document that passed the limit of {limit} nests {nesting:?}"
    );
    if nesting.text_in_sequence {
        // A client's update can put text into an array (Yjs never does): the document then
        // stays in sync but is refused by every reader that would hand it to yrs's
        // sequence reader, which never ends on it.
        assert!(document::check_nesting(doc, limit).is_err());
        assert!(document::to_json(doc).is_err());
        return;
    }
    assert!(document::check_nesting(doc, limit).is_ok());

    let json = document::to_json(doc).expect("a document within the limit reads as JSON");
    assert!(json.is_object(), "to_json answers an object: {json}");
    // The JSON the server sends must serialise (and so must not be nested beyond reason).
    let text = serde_json::to_string(&json).expect("the document's JSON serialises");
    let _: serde_json::Value = serde_json::from_str(&text).expect("and parses back");

    let files = document::files(doc);
    let target = crdt_store::new_doc();
    {
        let mut txn = target.transact_mut();
        document::restore_into(&mut txn, doc);
    }
    let restored = document::files(&target);
    for (path, _) in &restored {
        assert!(
            files.iter().any(|(name, _)| name == path),
            "restore created a file {path:?} the source does not have"
        );
    }
    // A restore writes nested shared types back as plain values, so their levels add up:
    // what it makes may be deeper than its source, which is why the store tries a restore on
    // a copy and refuses one whose result it would not read. The depth check must say so,
    // never hang, and JSON must be refused exactly when the check refuses.
    let nesting = document::nesting(&target.transact(), limit);
    assert!(
        nesting.text_in_sequence || nesting.types.max(nesting.values) <= 2 * limit + 1,
        "restoring a document within {limit} levels made one of {nesting:?}"
    );
    assert_eq!(
        document::to_json(&target).is_ok(),
        document::check_nesting(&target, document::STORED_DEPTH_GUARD).is_ok()
    );

    if let Some((path, content)) = files.first() {
        let units = content.encode_utf16().count() as u32;
        let end = units.min(3);
        if let Ok(anchor) = document::anchor_range(doc, path, 0, end) {
            let located = document::locate_range(doc, path, &anchor.start, &anchor.end);
            let (start, stop, covered) =
                located.expect("a range anchored a moment ago is found again");
            assert_eq!((start, stop), (0, end), "the range moved with no edit");
            assert_eq!(covered, anchor.original, "the range covers other text");
        }
        // Anchors come from clients too (comment threads): arbitrary bytes must not panic.
        let _ = document::locate_range(doc, path, content.as_bytes(), &[0, 1, 2]);
    }
}
