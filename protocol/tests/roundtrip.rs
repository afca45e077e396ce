//! Property tests of the codec: every message survives encode → decode unchanged, hostile
//! bytes never panic the decoder, and a frame cut short is always refused.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use protocol::{
    AwarenessUpdate, AwarenessUpdateEntry, Message, StateVector, decode_message, encode_message,
};
use serde_json::Value;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Array, ClientID, Doc, GetString, Map, OffsetKind, Options, ReadTxn, Text, Transact, Update,
};

/// Client ids as yjs 13.x generates them and as the workspace's `small-client` yrs stores
/// them: 32 bits.
fn client_id() -> impl Strategy<Value = ClientID> {
    any::<u32>().prop_map(|id| ClientID::new(u64::from(id)))
}

fn state_vector() -> impl Strategy<Value = StateVector> {
    prop::collection::vec((client_id(), any::<u32>()), 0..8)
        .prop_map(|entries| entries.into_iter().collect())
}

fn update_payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

/// Awareness states as y-protocols sends them: JSON objects of user data, or `null` for a
/// client that left.
fn json_state() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    let nested = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    });
    prop_oneof![1 => Just(Value::Null), 4 => nested]
}

fn awareness_update() -> impl Strategy<Value = AwarenessUpdate> {
    prop::collection::hash_map(client_id(), (any::<u32>(), json_state()), 0..6).prop_map(
        |clients| AwarenessUpdate {
            clients: clients
                .into_iter()
                .map(|(client, (clock, state))| {
                    let json: Arc<str> = state.to_string().into();
                    (client, AwarenessUpdateEntry { clock, json })
                })
                .collect::<HashMap<_, _>>(),
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        state_vector().prop_map(Message::SyncStep1),
        update_payload().prop_map(Message::SyncStep2),
        update_payload().prop_map(Message::Update),
        awareness_update().prop_map(Message::Awareness),
        any::<Option<String>>().prop_map(Message::Auth),
        Just(Message::QueryAwareness),
    ]
}

/// Bytes that start like a real frame (a known message type, and a known sub-type where there
/// is one) so the decoder gets past the first byte more often than uniform noise would.
fn frame_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let prefixes: [&'static [u8]; 8] =
        [&[], &[0, 0], &[0, 1], &[0, 2], &[1], &[2, 0], &[2, 1], &[3]];
    (
        prop::sample::select(prefixes.to_vec()),
        prop::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(|(prefix, tail)| {
            let mut bytes = prefix.to_vec();
            bytes.extend(tail);
            bytes.truncate(512);
            bytes
        })
}

fn tandem_doc() -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

/// One edit a client can make; positions are fractions of the current length so every edit
/// applies to whatever the document holds by then. Offsets count UTF-16 units and may fall
/// inside a surrogate pair, as a JavaScript client's can; such updates must travel all the same.
#[derive(Debug, Clone)]
enum Edit {
    InsertText { at: f64, text: String },
    DeleteText { at: f64, len: u32 },
    SetMapEntry { key: String, value: i64 },
    PushToArray { value: String },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (0.0..=1.0f64, "[a-z 🌍é\n]{1,12}")
            .prop_map(|(at, text)| Edit::InsertText { at, text }),
        1 => (0.0..=1.0f64, 1..6u32).prop_map(|(at, len)| Edit::DeleteText { at, len }),
        1 => ("[a-c]{1,2}", any::<i64>()).prop_map(|(key, value)| Edit::SetMapEntry { key, value }),
        1 => "[a-z]{0,6}".prop_map(|value| Edit::PushToArray { value }),
    ]
}

/// Applies `edit` to `doc` in its own transaction and returns the v1 update it produced.
fn apply_edit(doc: &Doc, edit: &Edit) -> Vec<u8> {
    let text = doc.get_or_insert_text("text");
    let map = doc.get_or_insert_map("map");
    let array = doc.get_or_insert_array("array");
    let mut txn = doc.transact_mut();
    let len = text.len(&txn);
    match edit {
        Edit::InsertText { at, text: inserted } => {
            text.insert(&mut txn, (f64::from(len) * at) as u32, inserted);
        }
        Edit::DeleteText { at, len: wanted } => {
            let start = (f64::from(len) * at) as u32;
            let removed = (*wanted).min(len - start);
            if removed > 0 {
                text.remove_range(&mut txn, start, removed);
            }
        }
        Edit::SetMapEntry { key, value } => {
            map.insert(&mut txn, key.as_str(), *value);
        }
        Edit::PushToArray { value } => {
            array.push_back(&mut txn, value.as_str());
        }
    }
    txn.encode_update_v1()
}

fn text_of(doc: &Doc) -> String {
    // Take the root before opening a transaction: `get_or_insert_text` needs a write one.
    let text = doc.get_or_insert_text("text");
    text.get_string(&doc.transact())
}

fn decode(frame: &[u8]) -> Result<Message, protocol::DecodeError> {
    decode_message(&Bytes::copy_from_slice(frame))
}

proptest! {
    // Failing cases are saved next to this file (`roundtrip.proptest-regressions`); the
    // default location assumes a `src/lib.rs` beside the test, which an integration test lacks.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_message_round_trips(message in message()) {
        let frame = encode_message(&message);
        prop_assert_eq!(decode(&frame).expect("an encoded message decodes"), message);
    }

    #[test]
    fn awareness_states_come_back_as_the_same_json(update in awareness_update()) {
        let Message::Awareness(decoded) = decode(&encode_message(&Message::Awareness(update.clone())))
            .expect("an encoded message decodes")
        else {
            panic!("awareness decoded as another message");
        };
        prop_assert_eq!(decoded.clients.len(), update.clients.len());
        for (client, entry) in &update.clients {
            let back = &decoded.clients[client];
            prop_assert_eq!(back.clock, entry.clock);
            let sent: Value = serde_json::from_str(&entry.json).expect("generated JSON parses");
            let received: Value = serde_json::from_str(&back.json).expect("decoded JSON parses");
            prop_assert_eq!(received, sent);
        }
    }

    #[test]
    fn frame_builders_agree_with_the_generic_encoder(
        payload in update_payload(),
        sv in state_vector(),
        awareness in awareness_update(),
        reason in any::<String>(),
    ) {
        prop_assert_eq!(
            protocol::encode_update_frame(&payload).to_vec(),
            encode_message(&Message::Update(payload.clone()))
        );
        prop_assert_eq!(
            protocol::encode_sync_step2_frame(&payload).to_vec(),
            encode_message(&Message::SyncStep2(payload))
        );
        prop_assert_eq!(
            decode(&protocol::encode_sync_step1_frame(&sv.encode_v1())).expect("step 1 decodes"),
            Message::SyncStep1(sv)
        );
        prop_assert_eq!(
            decode(&protocol::encode_awareness_frame(&awareness)).expect("awareness decodes"),
            Message::Awareness(awareness)
        );
        prop_assert_eq!(
            protocol::encode_permission_denied_frame(&reason).to_vec(),
            encode_message(&Message::Auth(Some(reason)))
        );
    }

    /// Whatever arrives, the decoder answers without panicking; when it accepts something, the
    /// message it made is one the encoder writes back in a form that decodes to the same.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(message) = decode(&bytes) {
            prop_assert_eq!(decode(&encode_message(&message)).expect("re-encoded decodes"), message);
        }
    }

    #[test]
    fn frame_like_bytes_never_panic(bytes in frame_like_bytes()) {
        if let Ok(message) = decode(&bytes) {
            prop_assert_eq!(decode(&encode_message(&message)).expect("re-encoded decodes"), message);
        }
    }

    /// Every message ends in a length-prefixed field or a varuint, so any cut is detectable.
    #[test]
    fn every_truncation_of_a_valid_frame_is_refused(message in message()) {
        let frame = encode_message(&message);
        for len in 0..frame.len() {
            prop_assert!(
                decode(&frame[..len]).is_err(),
                "{} of {} bytes of {:?} decoded", len, frame.len(), message
            );
        }
    }

    /// Real updates made by yrs travel through the update and step 2 frames untouched, and the
    /// payloads the decoder hands out rebuild the same document.
    #[test]
    fn real_updates_survive_framing(edits in prop::collection::vec(edit(), 1..24)) {
        let source = tandem_doc();
        let replica = tandem_doc();
        for edit in &edits {
            let update = apply_edit(&source, edit);
            let frame = protocol::encode_update_frame(&update);
            let Ok(Message::Update(payload)) = decode_message(&frame) else {
                panic!("an update frame did not decode as an update");
            };
            prop_assert_eq!(payload.as_ref(), update.as_slice());
            replica
                .transact_mut()
                .apply_update(Update::decode_v1(&payload).expect("payload decodes"))
                .expect("payload applies");
        }
        let state = source.transact().encode_state_as_update_v1(&StateVector::default());
        let Ok(Message::SyncStep2(payload)) = decode_message(&protocol::encode_sync_step2_frame(&state)) else {
            panic!("a step 2 frame did not decode as a step 2");
        };
        prop_assert_eq!(payload.as_ref(), state.as_slice());

        let from_step2 = tandem_doc();
        from_step2
            .transact_mut()
            .apply_update(Update::decode_v1(&payload).expect("state decodes"))
            .expect("state applies");
        let expected_text = text_of(&source);
        let expected_sv = source.transact().state_vector();
        for doc in [&replica, &from_step2] {
            prop_assert_eq!(text_of(doc), expected_text.clone());
            prop_assert_eq!(doc.transact().state_vector(), expected_sv.clone());
        }
        let sv = source.transact().state_vector();
        prop_assert_eq!(
            decode_message(&protocol::encode_sync_step1_frame(&sv.encode_v1())).expect("step 1 decodes"),
            Message::SyncStep1(sv)
        );
    }
}
