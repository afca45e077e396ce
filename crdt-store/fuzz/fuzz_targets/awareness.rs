//! Presence as a socket delivers it: `decode_awareness` on arbitrary bytes, then the
//! stamping every non-assistant connection's states go through. A stamped state is a JSON
//! object whose `user.id` and `user.name` are the stamp's, with every stripped field gone;
//! the input is also stamped as one raw state, so the JSON side is reached directly.

use crdt_store::AwarenessStamp;
use crdt_store::room::stamp_identity;
use serde_json::{Map, Value};
use tandem_fuzz::{MAX_INPUT, MeasuringAllocator, allocation_bound, peak_during};

#[global_allocator]
static ALLOCATOR: MeasuringAllocator = MeasuringAllocator;

fn stamp() -> AwarenessStamp {
    let mut user = Map::new();
    user.insert("id".into(), Value::String("user-1".into()));
    user.insert("name".into(), Value::String("Ada".into()));
    AwarenessStamp {
        user,
        strip: vec!["assistant"],
    }
}

fn check_stamped(json: &str, stamp: &AwarenessStamp) {
    let Some(stamped) = stamp_identity(json, stamp) else {
        assert_eq!(json, "null", "only a removal goes unstamped");
        return;
    };
    let state: Value = serde_json::from_str(&stamped).expect("a stamped state is JSON");
    let Value::Object(state) = state else {
        panic!("a stamped state is an object: {stamped}");
    };
    for field in &stamp.strip {
        assert!(!state.contains_key(*field), "{field} survived: {stamped}");
    }
    let user = state
        .get("user")
        .and_then(Value::as_object)
        .expect("a stamped state has a user object");
    for (key, value) in &stamp.user {
        assert_eq!(user.get(key), Some(value), "user.{key} is not the stamp's");
    }
}

fn main() {
    let stamp = stamp();
    afl::fuzz!(|data: &[u8]| {
        if data.len() > MAX_INPUT {
            return;
        }
        let (decoded, peak) = peak_during(|| protocol::decode_awareness(data));
        assert!(
            peak <= allocation_bound(data.len()),
            "decoding {} bytes held {peak} bytes",
            data.len()
        );
        if let Ok(update) = decoded {
            for entry in update.clients.values() {
                check_stamped(&entry.json, &stamp);
            }
        }
        if let Ok(json) = std::str::from_utf8(data) {
            check_stamped(json, &stamp);
        }
    });
}
