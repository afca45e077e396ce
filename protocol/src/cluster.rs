//! The envelope nodes exchange over the cluster bus (Redis pub/sub), encoded with
//! MessagePack (`rmp-serde`). Every envelope names the node it came from, so a node never
//! applies its own messages a second time.

use serde::{Deserialize, Serialize};

/// One message on a room's channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The node that published it.
    pub origin: String,
    /// What it says.
    pub body: ClusterMessage,
}

/// What nodes tell each other about one room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterMessage {
    /// A document update one of the origin's clients made (already persisted by the origin
    /// in durable mode).
    Update(#[serde(with = "serde_bytes")] Vec<u8>),
    /// An awareness update (v1-encoded `AwarenessUpdate`) from the origin's clients.
    Awareness(#[serde(with = "serde_bytes")] Vec<u8>),
    /// "Here is what I have": peers holding the room answer with what the origin lacks.
    SyncRequest {
        /// Correlates replies; 0 for periodic anti-entropy rounds nobody waits on.
        request: u64,
        /// The origin's v1 state vector.
        #[serde(with = "serde_bytes")]
        state_vector: Vec<u8>,
        /// Digest of the origin's state vector and delete set; a peer with the same digest
        /// has nothing to send.
        digest: u64,
    },
    /// The answer to a [`ClusterMessage::SyncRequest`].
    SyncReply {
        /// The node that asked.
        to: String,
        /// The request answered.
        request: u64,
        /// A v1 update with everything the asker lacked.
        #[serde(with = "serde_bytes")]
        update: Vec<u8>,
    },
}

/// Why an envelope could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("invalid cluster envelope: {0}")]
pub struct EnvelopeError(#[from] rmp_serde::decode::Error);

/// Encodes an envelope.
pub fn encode_envelope(envelope: &Envelope) -> Vec<u8> {
    // Serializing plain data into a Vec cannot fail.
    rmp_serde::to_vec(envelope).expect("envelope encodes")
}

/// Decodes an envelope; bytes from the bus are treated as untrusted.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message() -> impl Strategy<Value = ClusterMessage> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..64);
        prop_oneof![
            bytes().prop_map(ClusterMessage::Update),
            bytes().prop_map(ClusterMessage::Awareness),
            (any::<u64>(), bytes(), any::<u64>()).prop_map(|(request, state_vector, digest)| {
                ClusterMessage::SyncRequest {
                    request,
                    state_vector,
                    digest,
                }
            }),
            ("[a-z0-9-]{1,20}", any::<u64>(), bytes()).prop_map(|(to, request, update)| {
                ClusterMessage::SyncReply {
                    to,
                    request,
                    update,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn envelopes_round_trip(origin in "[a-z0-9-]{1,20}", body in message()) {
            let envelope = Envelope { origin, body };
            prop_assert_eq!(decode_envelope(&encode_envelope(&envelope)).unwrap(), envelope);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_envelope(&bytes);
        }
    }

    #[test]
    fn updates_are_stored_as_binary_not_as_integer_arrays() {
        let envelope = Envelope {
            origin: "n1".into(),
            body: ClusterMessage::Update(vec![200; 100]),
        };
        // 100 bytes of payload plus a small header; an integer array would need ~200.
        assert!(encode_envelope(&envelope).len() < 120);
    }
}
