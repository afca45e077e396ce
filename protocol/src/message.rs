//! The y-protocols messages, as `y-websocket` frames them: one message per WebSocket frame,
//! a varuint message type followed by its payload.

use bytes::Bytes;
use yrs::StateVector;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::sync::protocol::{
    MSG_AUTH, MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC, MSG_SYNC_STEP_1, MSG_SYNC_STEP_2,
    MSG_SYNC_UPDATE, PERMISSION_DENIED, PERMISSION_GRANTED,
};
use yrs::updates::encoder::Encode;
use yrs::{ClientID, encoding::read::Error as ReadError};

/// One y-protocols message.
///
/// Update payloads are slices of the frame that arrived (no copy). They are *not* decoded
/// here: the store decodes an update exactly once, right before applying it, and refuses it
/// there if it is malformed, so the hot path never parses an update twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// "Here is what I have": the sender's state vector; the answer is a [`Message::SyncStep2`].
    SyncStep1(StateVector),
    /// The updates the receiver of a step 1 lacked, as one v1-encoded Yjs update.
    SyncStep2(Bytes),
    /// An incremental v1-encoded Yjs update.
    Update(Bytes),
    /// Presence: client id → (clock, JSON state or `null`).
    Awareness(AwarenessUpdate),
    /// Authorization outcome; `Some(reason)` is permission denied.
    Auth(Option<String>),
    /// A request for every awareness state the receiver knows.
    QueryAwareness,
}

/// Why a frame could not be decoded. Every variant means "close this connection"; none of
/// them is a server fault.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame had no bytes at all.
    #[error("empty frame")]
    Empty,
    /// The frame ended early or a length prefix pointed past its end.
    #[error("malformed frame: {0}")]
    Malformed(#[from] yrs::encoding::read::Error),
    /// A message type this server does not speak.
    #[error("unknown message type {0}")]
    UnknownMessageType(u64),
    /// A sync message whose sub-type is not step 1, step 2 or update.
    #[error("unknown sync message type {0}")]
    UnknownSyncMessageType(u64),
    /// An auth message that is neither "granted" nor "denied".
    #[error("unknown auth message type {0}")]
    UnknownAuthMessageType(u64),
    /// Bytes left after one complete message: `y-websocket` sends exactly one per frame.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// A state vector that does not decode.
    #[error("invalid state vector: {0}")]
    InvalidStateVector(yrs::encoding::read::Error),
    /// An awareness payload that does not decode.
    #[error("invalid awareness update: {0}")]
    InvalidAwareness(yrs::encoding::read::Error),
}

/// Decodes one frame into a [`Message`]. Update payloads share `frame`'s buffer.
pub fn decode_message(frame: &Bytes) -> Result<Message, DecodeError> {
    if frame.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut cursor = Cursor::new(frame);
    let message = match cursor.read_var::<u64>()? {
        tag if tag == u64::from(MSG_SYNC) => decode_sync(frame, &mut cursor)?,
        tag if tag == u64::from(MSG_AWARENESS) => {
            let payload = cursor.read_buf()?;
            Message::Awareness(decode_awareness(payload).map_err(DecodeError::InvalidAwareness)?)
        }
        tag if tag == u64::from(MSG_AUTH) => match cursor.read_var::<u64>()? {
            t if t == u64::from(PERMISSION_DENIED) => {
                Message::Auth(Some(cursor.read_string()?.to_owned()))
            }
            t if t == u64::from(PERMISSION_GRANTED) => Message::Auth(None),
            other => return Err(DecodeError::UnknownAuthMessageType(other)),
        },
        tag if tag == u64::from(MSG_QUERY_AWARENESS) => Message::QueryAwareness,
        other => return Err(DecodeError::UnknownMessageType(other)),
    };
    let trailing = frame.len() - cursor.next;
    if trailing != 0 {
        return Err(DecodeError::TrailingBytes(trailing));
    }
    Ok(message)
}

fn decode_sync(frame: &Bytes, cursor: &mut Cursor<'_>) -> Result<Message, DecodeError> {
    let sub_type = cursor.read_var::<u64>()?;
    let payload = cursor.read_buf()?;
    match sub_type {
        t if t == u64::from(MSG_SYNC_STEP_1) => Ok(Message::SyncStep1(
            decode_state_vector(payload).map_err(DecodeError::InvalidStateVector)?,
        )),
        t if t == u64::from(MSG_SYNC_STEP_2) => Ok(Message::SyncStep2(frame.slice_ref(payload))),
        t if t == u64::from(MSG_SYNC_UPDATE) => Ok(Message::Update(frame.slice_ref(payload))),
        other => Err(DecodeError::UnknownSyncMessageType(other)),
    }
}

/// Refuses a claimed count of entries, each at least `min_bytes` long, that the bytes left in
/// `cursor` cannot hold, before anything is reserved for them.
fn check_count(cursor: &Cursor<'_>, count: u64, min_bytes: u64) -> Result<usize, ReadError> {
    let remaining = (cursor.buf.len() - cursor.next) as u64;
    if count.saturating_mul(min_bytes) > remaining {
        return Err(ReadError::EndOfBuffer(
            usize::try_from(count.saturating_mul(min_bytes)).unwrap_or(usize::MAX),
        ));
    }
    // Fits: `count` is at most the length of a buffer in memory.
    Ok(count as usize)
}

/// Decodes a v1 state vector. `yrs`'s own decoder reserves room for the count the bytes
/// claim before reading one entry (eight bytes can ask for gigabytes); this one checks the
/// count against the bytes that remain (each entry is at least two) and grows as it reads.
pub fn decode_state_vector(bytes: &[u8]) -> Result<StateVector, ReadError> {
    let mut cursor = Cursor::new(bytes);
    let claimed: u32 = cursor.read_var()?;
    let count = check_count(&cursor, u64::from(claimed), 2)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let client: u64 = cursor.read_var()?;
        let clock: u32 = cursor.read_var()?;
        entries.push((ClientID::new(client), clock));
    }
    Ok(entries.into_iter().collect())
}

/// Decodes an awareness update, with the same care as [`decode_state_vector`]: each entry
/// is at least three bytes (client id, clock, the length of its JSON).
pub fn decode_awareness(bytes: &[u8]) -> Result<AwarenessUpdate, ReadError> {
    let mut cursor = Cursor::new(bytes);
    let claimed: u64 = cursor.read_var()?;
    let count = check_count(&cursor, claimed, 3)?;
    let mut update = AwarenessUpdate {
        clients: Default::default(),
    };
    for _ in 0..count {
        let client: u64 = cursor.read_var()?;
        let clock: u32 = cursor.read_var()?;
        let json = cursor.read_string()?.into();
        update
            .clients
            .insert(ClientID::new(client), AwarenessUpdateEntry { clock, json });
    }
    Ok(update)
}

/// Encodes a [`Message`] as one frame, byte-identical to what y-protocols produces.
pub fn encode_message(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    match message {
        Message::SyncStep1(sv) => {
            out.write_var(MSG_SYNC);
            out.write_var(MSG_SYNC_STEP_1);
            out.write_buf(sv.encode_v1());
        }
        Message::SyncStep2(update) => {
            out.write_var(MSG_SYNC);
            out.write_var(MSG_SYNC_STEP_2);
            out.write_buf(update);
        }
        Message::Update(update) => {
            out.write_var(MSG_SYNC);
            out.write_var(MSG_SYNC_UPDATE);
            out.write_buf(update);
        }
        Message::Awareness(update) => {
            out.write_var(MSG_AWARENESS);
            out.write_buf(update.encode_v1());
        }
        Message::Auth(reason) => {
            out.write_var(MSG_AUTH);
            match reason {
                Some(reason) => {
                    out.write_var(PERMISSION_DENIED);
                    out.write_string(reason);
                }
                None => out.write_var(PERMISSION_GRANTED),
            }
        }
        Message::QueryAwareness => out.write_var(MSG_QUERY_AWARENESS),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_truncated_frames_are_errors() {
        assert!(matches!(decode(&[]), Err(DecodeError::Empty)));
        // Sync, update, length 10 but no payload.
        assert!(matches!(
            decode(&[0, 2, 10]),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_types_are_errors() {
        assert!(matches!(
            decode(&[9]),
            Err(DecodeError::UnknownMessageType(9))
        ));
        assert!(matches!(
            decode(&[0, 7, 0]),
            Err(DecodeError::UnknownSyncMessageType(7))
        ));
    }

    fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        decode_message(&Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn garbage_state_vector_is_refused() {
        // Sync step 1 whose state vector claims one entry and then ends.
        assert!(matches!(
            decode(&[0, 0, 1, 1]),
            Err(DecodeError::InvalidStateVector(_))
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut frame = encode_message(&Message::QueryAwareness);
        frame.push(0);
        assert!(matches!(decode(&frame), Err(DecodeError::TrailingBytes(1))));
    }

    #[test]
    fn claimed_counts_are_checked_against_the_bytes_that_remain() {
        // Sync step 1 whose state vector claims 2^28 entries in 8 bytes: yrs would reserve
        // 512 MB for it before reading one.
        let mut state_vector = Vec::new();
        state_vector.write_var(1u32 << 28);
        state_vector.write_var(1u32);
        state_vector.write_var(1u32);
        assert!(matches!(
            decode_state_vector(&state_vector),
            Err(ReadError::EndOfBuffer(_))
        ));
        let mut awareness = Vec::new();
        awareness.write_var(1u64 << 40);
        awareness.write_var(1u32);
        awareness.write_var(1u32);
        awareness.write_string("{}");
        assert!(matches!(
            decode_awareness(&awareness),
            Err(ReadError::EndOfBuffer(_))
        ));
    }

    #[test]
    fn bounded_decoders_agree_with_yrs_on_valid_input() {
        use yrs::updates::decoder::Decode;
        let sv: StateVector = [
            (ClientID::new(1), 5),
            (ClientID::new(u64::from(u32::MAX)), 9),
        ]
        .into_iter()
        .collect();
        let bytes = sv.encode_v1();
        assert_eq!(decode_state_vector(&bytes).unwrap(), sv);
        let mut update = AwarenessUpdate {
            clients: Default::default(),
        };
        update.clients.insert(
            ClientID::new(7),
            AwarenessUpdateEntry {
                clock: 3,
                json: r#"{"user":{"name":"a"}}"#.into(),
            },
        );
        let bytes = update.encode_v1();
        assert_eq!(decode_awareness(&bytes).unwrap(), update);
        assert_eq!(AwarenessUpdate::decode_v1(&bytes).unwrap(), update);
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // Awareness with a claimed 2^62 entries: must fail on the missing bytes, not on OOM.
        let frame = [
            1u8, 10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0,
        ];
        assert!(decode(&frame).is_err());
    }
}
