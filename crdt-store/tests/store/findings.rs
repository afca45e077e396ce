//! Every input the fuzzers ever crashed or hung on (`crdt-store/fuzz/findings`), replayed
//! through the paths they broke: `update-*` as a client's update into an empty document and
//! into the fuzzers' preloaded one, `document-*` as stored bytes. Each must be taken or
//! refused, a refusal must leave the document as it was, and what is taken must read.

use std::path::PathBuf;

use crdt_store::document::{self, decode_stored};
use crdt_store::guard::apply_client_update;
use protocol::UpdateLimits;
use yrs::{Doc, ReadTxn, StateVector, Transact};

/// The nesting limit the fuzzers run under (`tandem_fuzz::FUZZ_MAX_DEPTH`).
const FUZZ_MAX_DEPTH: u32 = 8;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn findings(prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(fuzz_dir().join("findings"))
        .expect("the findings folder")
        .map(|entry| entry.expect("a finding").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(prefix))
        })
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read a finding"))
        })
        .collect();
    found.sort();
    found
}

fn state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

fn reads(doc: &Doc, name: &str) {
    if document::check_nesting(doc, FUZZ_MAX_DEPTH).is_ok() {
        let json = document::to_json(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(json.is_object(), "{name}: {json}");
        document::files(doc);
    }
}

#[test]
fn updates_that_crashed_the_fuzzer_are_taken_or_refused_cleanly() {
    let limits = UpdateLimits {
        max_depth: FUZZ_MAX_DEPTH,
    };
    let preload = std::fs::read(fuzz_dir().join("seeds/preload.bin")).expect("preload seed");
    let updates = findings("update-");
    assert!(updates.len() >= 5, "{} findings", updates.len());
    for (name, update) in updates {
        let fresh = crdt_store::new_doc();
        let preloaded = crdt_store::new_doc();
        apply_client_update(&mut preloaded.transact_mut(), &preload, &limits)
            .expect("the preload applies");
        for doc in [fresh, preloaded] {
            let before = state(&doc);
            let applied = apply_client_update(&mut doc.transact_mut(), &update, &limits);
            match applied {
                Ok(true) => reads(&doc, &name),
                Ok(false) => assert_eq!(state(&doc), before, "{name} held nothing"),
                Err(err) => assert_eq!(state(&doc), before, "{name} was refused ({err})"),
            }
        }
    }
}

#[test]
fn stored_documents_that_crashed_the_fuzzer_open_or_are_refused_cleanly() {
    let documents = findings("document-");
    assert!(documents.len() >= 5, "{} findings", documents.len());
    for (name, bytes) in documents {
        if let Ok(doc) = decode_stored(&bytes, FUZZ_MAX_DEPTH) {
            reads(&doc, &name);
        }
    }
}
