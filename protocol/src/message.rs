//! The y-protocols messages, as `y-websocket` frames them: one message per WebSocket frame,
//! a varuint message type followed by its payload.

use bytes::Bytes;
use yrs::StateVector;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::sync::awareness::AwarenessUpdate;
use yrs::sync::protocol::{
    MSG_AUTH, MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC, MSG_SYNC_STEP_1, MSG_SYNC_STEP_2,
    MSG_SYNC_UPDATE, PERMISSION_DENIED, PERMISSION_GRANTED,
};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

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
            Message::Awareness(
                AwarenessUpdate::decode_v1(payload).map_err(DecodeError::InvalidAwareness)?,
            )
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
            StateVector::decode_v1(payload).map_err(DecodeError::InvalidStateVector)?,
        )),
        t if t == u64::from(MSG_SYNC_STEP_2) => Ok(Message::SyncStep2(frame.slice_ref(payload))),
        t if t == u64::from(MSG_SYNC_UPDATE) => Ok(Message::Update(frame.slice_ref(payload))),
        other => Err(DecodeError::UnknownSyncMessageType(other)),
    }
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
    fn huge_declared_lengths_do_not_allocate() {
        // Awareness with a claimed 2^62 entries: must fail on the missing bytes, not on OOM.
        let frame = [
            1u8, 10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0,
        ];
        assert!(decode(&frame).is_err());
    }
}
