//! Client updates as every socket's go through: `inspect`, then `apply_client_update` into
//! a fresh document and into one pre-loaded from a seed, then every read path over the
//! result.
//!
//! Invariants:
//! - a refused update (or one holding nothing) leaves the document's encoded state as it
//!   was;
//! - an accepted one never leaves the document nested deeper than the limit;
//! - differential with `yrs`: what `inspect` accepts, `yrs` decodes without running out of
//!   bytes and without holding more memory than the input justifies (its decoder reserves
//!   what counts claim), and whatever `yrs` decoded from it nests within the limit once
//!   applied (so anything deeper was refused by `inspect`).

use crdt_store::guard::apply_client_update;
use protocol::UpdateLimits;
use tandem_fuzz::{
    FUZZ_MAX_DEPTH, MAX_INPUT, MeasuringAllocator, allocation_bound, encoded_state, peak_during,
    read_paths,
};
use yrs::encoding::read::Error as ReadError;
use yrs::updates::decoder::Decode;
use yrs::{Doc, Transact, Update};

#[global_allocator]
static ALLOCATOR: MeasuringAllocator = MeasuringAllocator;

/// A document made by real yjs (`seeds/generate.mjs`): files, formatted text, nested maps
/// one level short of the fuzzing limit, values, XML. The update seeds edit it.
const PRELOAD: &[u8] = include_bytes!("../seeds/preload.bin");

fn preloaded() -> Doc {
    let doc = crdt_store::new_doc();
    apply_client_update(&mut doc.transact_mut(), PRELOAD, &UpdateLimits::default())
        .expect("the preload seed applies");
    doc
}

fn main() {
    let limits = UpdateLimits {
        max_depth: FUZZ_MAX_DEPTH,
    };
    assert!(
        crdt_store::document::nesting(&preloaded().transact(), FUZZ_MAX_DEPTH).deepest()
            <= FUZZ_MAX_DEPTH,
        "the preload seed is within the fuzzing limit"
    );
    afl::fuzz!(|data: &[u8]| {
        if data.len() > MAX_INPUT {
            return;
        }
        if protocol::update::inspect(data, &limits).is_ok() {
            let (decoded, peak) = peak_during(|| Update::decode_v1(data));
            assert!(
                peak <= allocation_bound(data.len()),
                "inspect accepted {} bytes that yrs decodes holding {peak} bytes",
                data.len()
            );
            if let Err(err) = &decoded {
                assert!(
                    !matches!(
                        err,
                        ReadError::EndOfBuffer(_)
                            | ReadError::NotEnoughMemory(_)
                            | ReadError::InvalidVarInt
                    ),
                    "inspect accepted an update yrs cannot read: {err}"
                );
            }
        }
        for doc in [crdt_store::new_doc(), preloaded()] {
            let before = encoded_state(&doc);
            let applied = apply_client_update(&mut doc.transact_mut(), data, &limits);
            match applied {
                Ok(true) => read_paths(&doc, FUZZ_MAX_DEPTH),
                Ok(false) => assert_eq!(
                    encoded_state(&doc),
                    before,
                    "an update holding nothing changed the document"
                ),
                Err(err) => assert_eq!(
                    encoded_state(&doc),
                    before,
                    "a refused update changed the document ({err})"
                ),
            }
        }
    });
}
