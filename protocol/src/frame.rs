//! Frames built for sending. Each function returns one complete y-protocols message ready to
//! go into one WebSocket frame; the fan-out path builds a frame once and shares its
//! [`Bytes`] with every subscriber.

use bytes::Bytes;
use yrs::encoding::write::Write;
use yrs::sync::awareness::AwarenessUpdate;
use yrs::sync::protocol::{
    MSG_AUTH, MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC, MSG_SYNC_STEP_1, MSG_SYNC_STEP_2,
    MSG_SYNC_UPDATE, PERMISSION_DENIED,
};
use yrs::updates::encoder::Encode;

/// Upper bound of a varuint length prefix, so buffers are sized once.
const MAX_VARINT_LEN: usize = 10;

fn sync_frame(sub_type: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(2 + MAX_VARINT_LEN + payload.len());
    out.write_var(MSG_SYNC);
    out.write_var(sub_type);
    out.write_buf(payload);
    Bytes::from(out)
}

/// `[sync, update, update]`: how a live edit travels.
pub fn encode_update_frame(update: &[u8]) -> Bytes {
    sync_frame(MSG_SYNC_UPDATE, update)
}

/// `[sync, step 1, state vector]`.
pub fn encode_sync_step1_frame(state_vector: &[u8]) -> Bytes {
    sync_frame(MSG_SYNC_STEP_1, state_vector)
}

/// `[sync, step 2, update]`: the answer to a step 1.
pub fn encode_sync_step2_frame(update: &[u8]) -> Bytes {
    sync_frame(MSG_SYNC_STEP_2, update)
}

/// `[awareness, update]`.
pub fn encode_awareness_frame(update: &AwarenessUpdate) -> Bytes {
    let payload = update.encode_v1();
    let mut out = Vec::with_capacity(1 + MAX_VARINT_LEN + payload.len());
    out.write_var(MSG_AWARENESS);
    out.write_buf(payload);
    Bytes::from(out)
}

/// `[auth, permission denied, reason]`: what a refused write is answered with.
pub fn encode_permission_denied_frame(reason: &str) -> Bytes {
    let mut out = Vec::with_capacity(2 + MAX_VARINT_LEN + reason.len());
    out.write_var(MSG_AUTH);
    out.write_var(PERMISSION_DENIED);
    out.write_string(reason);
    Bytes::from(out)
}

/// `[query awareness]`.
pub fn encode_query_awareness_frame() -> Bytes {
    Bytes::from_static(&[MSG_QUERY_AWARENESS])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, encode_message};

    #[test]
    fn frames_match_the_generic_encoder() {
        let update = Bytes::from_static(&[1, 2, 3, 4]);
        assert_eq!(
            encode_update_frame(&update).as_ref(),
            encode_message(&Message::Update(update.clone()))
        );
        assert_eq!(
            encode_sync_step2_frame(&update).as_ref(),
            encode_message(&Message::SyncStep2(update))
        );
        assert_eq!(
            encode_permission_denied_frame("read-only").as_ref(),
            encode_message(&Message::Auth(Some("read-only".into())))
        );
        assert_eq!(
            encode_query_awareness_frame().as_ref(),
            encode_message(&Message::QueryAwareness)
        );
    }
}
