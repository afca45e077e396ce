//! Frames as a socket delivers them: `decode_message` on arbitrary bytes. Whatever decodes
//! must re-encode to a frame that decodes to the same message and re-encodes to the same
//! bytes (one canonical encoding), and the hot-path frame builders must agree with it.

use bytes::Bytes;
use protocol::{Message, decode_message, encode_message};
use tandem_fuzz::{MAX_INPUT, MeasuringAllocator, allocation_bound, peak_during};

#[global_allocator]
static ALLOCATOR: MeasuringAllocator = MeasuringAllocator;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if data.len() > MAX_INPUT {
            return;
        }
        let frame = Bytes::copy_from_slice(data);
        let (decoded, peak) = peak_during(|| decode_message(&frame));
        assert!(
            peak <= allocation_bound(data.len()),
            "decoding {} bytes held {peak} bytes",
            data.len()
        );
        let Ok(message) = decoded else { return };
        let encoded = encode_message(&message);
        let again = decode_message(&Bytes::from(encoded.clone()))
            .expect("a frame the server encodes decodes");
        assert_eq!(again, message, "re-encoding changed the message");
        // Awareness entries and state vectors live in hash maps: several entries encode in
        // no fixed order, so only the decoded message is compared for those.
        let unordered = match &message {
            Message::Awareness(update) => update.clients.len() > 1,
            Message::SyncStep1(state_vector) => state_vector.len() > 1,
            _ => false,
        };
        if !unordered {
            assert_eq!(
                encode_message(&again),
                encoded,
                "the encoding of a message is not canonical"
            );
        }
        let built = match &message {
            Message::Update(update) => Some(protocol::encode_update_frame(update)),
            Message::SyncStep2(update) => Some(protocol::encode_sync_step2_frame(update)),
            Message::Awareness(update) => Some(protocol::encode_awareness_frame(update)),
            Message::QueryAwareness => Some(protocol::encode_query_awareness_frame()),
            Message::Auth(Some(reason)) => Some(protocol::encode_permission_denied_frame(reason)),
            Message::SyncStep1(_) | Message::Auth(None) => None,
        };
        if let Some(built) = built.filter(|_| !unordered) {
            assert_eq!(&built[..], &encoded[..], "the frame builder disagrees");
        }
        // The payload of an update is a slice of the frame, never a copy that could differ.
        if let Message::Update(update) | Message::SyncStep2(update) = &message {
            assert!(data.ends_with(update), "the update is not the frame's tail");
        }
    });
}
