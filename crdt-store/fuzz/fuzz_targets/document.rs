//! A stored document from fuzzed bytes: `decode_stored` with a small nesting limit, then
//! every read path over what it accepts (nesting, JSON, files, restore, anchors).

use crdt_store::document::decode_stored;
use tandem_fuzz::{FUZZ_MAX_DEPTH, MAX_INPUT, MeasuringAllocator, read_paths};

#[global_allocator]
static ALLOCATOR: MeasuringAllocator = MeasuringAllocator;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if data.len() > MAX_INPUT {
            return;
        }
        if let Ok(doc) = decode_stored(data, FUZZ_MAX_DEPTH) {
            read_paths(&doc, FUZZ_MAX_DEPTH);
        }
    });
}
