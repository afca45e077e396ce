//! Golden frames from the JavaScript reference implementation.
//!
//! `fixtures/yjs-frames.json` holds frames written by yjs, y-protocols and lib0 exactly as
//! y-websocket puts them on the wire, each with the facts the generator recorded about it;
//! `fixtures/generate.mjs` is the code that produced them. Every frame must decode to the
//! message its facts describe and encode back to the very same bytes.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use protocol::{AwarenessUpdate, Message, StateVector, decode_message, encode_message};
use serde_json::Value;
use yrs::sync::protocol::{
    MSG_AUTH, MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC, MSG_SYNC_STEP_1, MSG_SYNC_STEP_2,
    MSG_SYNC_UPDATE, PERMISSION_DENIED,
};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, GetString, OffsetKind, Options, ReadTxn, Text, Transact, Update};

const FIXTURES: &str = include_str!("fixtures/yjs-frames.json");

/// Every fixture this file checks the facts of. A frame added to the JSON without a check
/// here fails `every_fixture_is_checked`.
const CHECKED_FIXTURES: &[&str] = &[
    "sync_step1_empty",
    "sync_step1",
    "sync_step2",
    "update",
    "update_unicode",
    "awareness",
    "awareness_removed",
    "auth_permission_denied",
    "query_awareness",
];

/// One recorded frame with the facts the generator wrote next to it.
struct Fixture {
    name: String,
    frame: Bytes,
    facts: Value,
}

impl Fixture {
    fn fact(&self, key: &str) -> &Value {
        self.facts
            .get(key)
            .unwrap_or_else(|| panic!("fixture {} records no `{key}`", self.name))
    }

    fn fact_u64(&self, key: &str) -> u64 {
        self.fact(key)
            .as_u64()
            .unwrap_or_else(|| panic!("fixture {}: `{key}` is not an integer", self.name))
    }

    fn fact_str(&self, key: &str) -> &str {
        self.fact(key)
            .as_str()
            .unwrap_or_else(|| panic!("fixture {}: `{key}` is not a string", self.name))
    }

    fn decoded(&self) -> Message {
        decode_message(&self.frame)
            .unwrap_or_else(|e| panic!("fixture {} does not decode: {e}", self.name))
    }
}

fn all_fixtures() -> Vec<Fixture> {
    let parsed: BTreeMap<String, Value> =
        serde_json::from_str(FIXTURES).expect("fixture file is a JSON object");
    parsed
        .into_iter()
        .map(|(name, facts)| {
            let hex = facts["hex"]
                .as_str()
                .unwrap_or_else(|| panic!("fixture {name} has no hex"));
            Fixture {
                frame: Bytes::from(decode_hex(hex)),
                name,
                facts,
            }
        })
        .collect()
}

fn fixture(name: &str) -> Fixture {
    all_fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture named {name}"))
}

fn decode_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd-length hex string");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// The y-protocols type numbers a message goes on the wire with: the outer message type and,
/// for sync and auth messages, the inner one.
fn wire_types(message: &Message) -> (u8, Option<u8>) {
    match message {
        Message::SyncStep1(_) => (MSG_SYNC, Some(MSG_SYNC_STEP_1)),
        Message::SyncStep2(_) => (MSG_SYNC, Some(MSG_SYNC_STEP_2)),
        Message::Update(_) => (MSG_SYNC, Some(MSG_SYNC_UPDATE)),
        Message::Awareness(_) => (MSG_AWARENESS, None),
        Message::Auth(Some(_)) => (MSG_AUTH, Some(PERMISSION_DENIED)),
        Message::Auth(None) => (MSG_AUTH, Some(yrs::sync::protocol::PERMISSION_GRANTED)),
        Message::QueryAwareness => (MSG_QUERY_AWARENESS, None),
    }
}

/// A state vector the way the generator records it: client id (as a string) → clock.
fn state_vector_facts(sv: &StateVector) -> Value {
    let entries: BTreeMap<String, u32> = sv
        .iter()
        .map(|(client, clock)| (client.get().to_string(), *clock))
        .collect();
    serde_json::to_value(entries).expect("a map of numbers serialises")
}

/// A document configured as Tandem configures its own (UTF-16 offsets, as JavaScript counts).
fn tandem_doc() -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

fn apply(doc: &Doc, update: &[u8]) {
    let update = Update::decode_v1(update).expect("a yjs update decodes");
    doc.transact_mut()
        .apply_update(update)
        .expect("a yjs update applies");
}

fn text_of(doc: &Doc, name: &str) -> String {
    doc.get_or_insert_text(name).get_string(&doc.transact())
}

fn sync_payload(fixture: &Fixture) -> Bytes {
    match fixture.decoded() {
        Message::SyncStep2(payload) | Message::Update(payload) => payload,
        other => panic!("fixture {} decoded to {other:?}", fixture.name),
    }
}

fn awareness(fixture: &Fixture) -> AwarenessUpdate {
    match fixture.decoded() {
        Message::Awareness(update) => update,
        other => panic!("fixture {} decoded to {other:?}", fixture.name),
    }
}

#[test]
fn every_fixture_is_checked() {
    let in_file: BTreeSet<String> = all_fixtures().into_iter().map(|f| f.name).collect();
    let checked: BTreeSet<String> = CHECKED_FIXTURES.iter().map(|s| s.to_string()).collect();
    assert_eq!(in_file, checked);
}

#[test]
fn every_frame_decodes_to_its_recorded_type_and_encodes_back_to_the_same_bytes() {
    for fixture in all_fixtures() {
        let message = fixture.decoded();
        let (message_type, inner_type) = wire_types(&message);
        assert_eq!(
            u64::from(message_type),
            fixture.fact_u64("message_type"),
            "{}",
            fixture.name
        );
        let recorded_inner = fixture
            .facts
            .get("sync_type")
            .or_else(|| fixture.facts.get("auth_type"))
            .and_then(Value::as_u64);
        assert_eq!(
            inner_type.map(u64::from),
            recorded_inner,
            "{}",
            fixture.name
        );
        assert_eq!(
            encode_message(&message),
            fixture.frame.as_ref(),
            "{} does not re-encode byte for byte",
            fixture.name
        );
    }
}

#[test]
fn sync_step1_carries_the_recorded_state_vector() {
    for name in ["sync_step1_empty", "sync_step1"] {
        let fixture = fixture(name);
        let Message::SyncStep1(sv) = fixture.decoded() else {
            panic!("{name} is not a sync step 1");
        };
        assert_eq!(
            state_vector_facts(&sv),
            *fixture.fact("state_vector"),
            "{name}"
        );
    }
    // The facts themselves are not vacuous: one of them names a client.
    assert_eq!(
        fixture("sync_step1").fact("state_vector")["1234"],
        Value::from(5)
    );
}

#[test]
fn sync_step2_rebuilds_the_recorded_document() {
    let fixture = fixture("sync_step2");
    let doc = tandem_doc();
    apply(&doc, &sync_payload(&fixture));
    assert_eq!(
        text_of(&doc, fixture.fact_str("text_name")),
        fixture.fact_str("text")
    );
    assert_eq!(text_of(&doc, "text"), "hello");
    assert_eq!(
        state_vector_facts(&doc.transact().state_vector()),
        *fixture.fact("state_vector")
    );
}

#[test]
fn update_extends_the_step2_document() {
    let step2 = fixture("sync_step2");
    let fixture = fixture("update");
    let doc = tandem_doc();
    apply(&doc, &sync_payload(&step2));
    apply(&doc, &sync_payload(&fixture));
    assert_eq!(
        text_of(&doc, fixture.fact_str("text_name")),
        fixture.fact_str("text_after")
    );
    assert_eq!(text_of(&doc, "text"), "hello world");
    assert_eq!(
        state_vector_facts(&doc.transact().state_vector()),
        *fixture.fact("state_vector_after")
    );
}

#[test]
fn unicode_update_counts_utf16_units_like_javascript() {
    let fixture = fixture("update_unicode");
    let doc = tandem_doc();
    apply(&doc, &sync_payload(&fixture));
    let expected = fixture.fact_str("text");
    assert_eq!(expected, "héllo 🌍 wörld");
    let text = doc.get_or_insert_text(fixture.fact_str("text_name"));
    let txn = doc.transact();
    assert_eq!(text.get_string(&txn), expected);
    let utf16_length = fixture.fact_u64("utf16_length");
    assert_eq!(u64::from(text.len(&txn)), utf16_length);
    // The emoji is one character but two UTF-16 units, so the two counts differ.
    assert_ne!(expected.chars().count() as u64, utf16_length);
    assert_eq!(
        state_vector_facts(&txn.state_vector()),
        *fixture.fact("state_vector_after")
    );
}

#[test]
fn awareness_frames_carry_the_recorded_client_clock_and_state() {
    for name in ["awareness", "awareness_removed"] {
        let fixture = fixture(name);
        let update = awareness(&fixture);
        assert_eq!(update.clients.len(), 1, "{name}");
        let client = ClientID::new(fixture.fact_u64("client_id"));
        let entry = update
            .clients
            .get(&client)
            .unwrap_or_else(|| panic!("{name} has no entry for the recorded client"));
        assert_eq!(u64::from(entry.clock), fixture.fact_u64("clock"), "{name}");
        let state: Value = serde_json::from_str(&entry.json).expect("awareness state is JSON");
        assert_eq!(state, *fixture.fact("state"), "{name}");
    }
    let removed = fixture("awareness_removed");
    assert_eq!(*removed.fact("state"), Value::Null);
}

#[test]
fn permission_denied_carries_its_reason() {
    let fixture = fixture("auth_permission_denied");
    assert_eq!(
        fixture.decoded(),
        Message::Auth(Some(fixture.fact_str("reason").to_owned()))
    );
}

#[test]
fn query_awareness_is_a_bare_type() {
    assert_eq!(
        fixture("query_awareness").decoded(),
        Message::QueryAwareness
    );
}

/// The builders the fan-out path uses must put the same bytes on the wire as y-protocols.
#[test]
fn frame_builders_reproduce_the_reference_bytes() {
    let step2 = fixture("sync_step2");
    assert_eq!(
        protocol::encode_sync_step2_frame(&sync_payload(&step2)),
        step2.frame
    );
    for name in ["update", "update_unicode"] {
        let fixture = fixture(name);
        assert_eq!(
            protocol::encode_update_frame(&sync_payload(&fixture)),
            fixture.frame,
            "{name}"
        );
    }
    for name in ["sync_step1_empty", "sync_step1"] {
        let fixture = fixture(name);
        let Message::SyncStep1(sv) = fixture.decoded() else {
            panic!("{name} is not a sync step 1");
        };
        assert_eq!(
            protocol::encode_sync_step1_frame(&sv.encode_v1()),
            fixture.frame,
            "{name}"
        );
    }
    for name in ["awareness", "awareness_removed"] {
        let fixture = fixture(name);
        assert_eq!(
            protocol::encode_awareness_frame(&awareness(&fixture)),
            fixture.frame,
            "{name}"
        );
    }
    let denied = fixture("auth_permission_denied");
    assert_eq!(
        protocol::encode_permission_denied_frame(denied.fact_str("reason")),
        denied.frame
    );
    assert_eq!(
        protocol::encode_query_awareness_frame(),
        fixture("query_awareness").frame
    );
}

/// A document built in Rust with the same client id and edit as the generator's yields the
/// same sync step 1 and step 2 frames, so a server answer is indistinguishable from a peer's.
#[test]
fn the_same_edit_made_in_rust_produces_the_reference_sync_frames() {
    let doc = Doc::with_options(Options {
        client_id: ClientID::new(1234),
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    });
    doc.get_or_insert_text("text")
        .insert(&mut doc.transact_mut(), 0, "hello");
    let txn = doc.transact();
    assert_eq!(
        protocol::encode_sync_step1_frame(&txn.state_vector().encode_v1()),
        fixture("sync_step1").frame
    );
    assert_eq!(
        protocol::encode_sync_step2_frame(&txn.encode_state_as_update_v1(&StateVector::default())),
        fixture("sync_step2").frame
    );
}
