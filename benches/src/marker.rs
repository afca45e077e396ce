//! The latency marker a load-generator writer inserts as the text of each edit:
//! `#<sequence>.<sent micros>;`, both numbers in decimal.
//!
//! Every client of a load run lives in one process, so the send time is counted in
//! microseconds since one shared [`std::time::Instant`] and an observer computes the
//! fan-out latency from the marker alone: no shared map, no lock, no decoding of the update.
//!
//! Why the marker can be found by scanning the raw frame: a v1 update holding a single
//! inserted string carries the string's UTF-8 bytes verbatim as its last block, followed
//! only by the delete set, which for an edit that deletes nothing is the single byte `0`.
//! So the last `#` of the frame starts the marker; the bytes before it (client ids, clocks,
//! lengths) are never looked at.

use std::fmt::Write;

const START: u8 = b'#';
const SEPARATOR: u8 = b'.';
const END: u8 = b';';

/// What a writer embeds in one edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// The edit's number within its room, from 0.
    pub sequence: u64,
    /// When the writer sent it, in microseconds since the run's shared epoch.
    pub sent_micros: u64,
}

impl Marker {
    /// The text to insert.
    pub fn to_text(self) -> String {
        let mut text = String::with_capacity(24);
        // Writing into a String cannot fail.
        let _ = write!(
            text,
            "{}{}{}{}{}",
            START as char, self.sequence, SEPARATOR as char, self.sent_micros, END as char
        );
        text
    }

    /// Finds the marker in the frame (or bare update) of an edit that inserted only a
    /// marker. `None` when the bytes hold no well-formed marker.
    pub fn find_in_frame(frame: &[u8]) -> Option<Self> {
        let start = frame.iter().rposition(|&b| b == START)?;
        let rest = &frame[start + 1..];
        let (sequence, rest) = parse_decimal(rest)?;
        let rest = rest.strip_prefix(&[SEPARATOR])?;
        let (sent_micros, rest) = parse_decimal(rest)?;
        rest.strip_prefix(&[END])?;
        Some(Self {
            sequence,
            sent_micros,
        })
    }
}

/// Reads the leading decimal digits of `bytes` (at least one, at most `u64`), returning the
/// number and what follows it.
fn parse_decimal(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut value: u64 = 0;
    for &digit in &bytes[..digits] {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    Some((value, &bytes[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Doc, GetString, Text, Transact};

    #[test]
    fn found_in_every_frame_of_a_growing_document() {
        // Hundreds of edits walk the clock through every byte value, including `#` itself,
        // and the left-origin ids before the string with it.
        let doc = Doc::with_client_id(35);
        let text = doc.get_or_insert_text("text");
        let mut expected_text = String::new();
        for sequence in 0..600 {
            let marker = Marker {
                sequence,
                sent_micros: 1_000_000 + sequence * 35,
            };
            let frame = {
                let mut txn = doc.transact_mut();
                let end = text.len(&txn);
                text.insert(&mut txn, end, &marker.to_text());
                protocol::encode_update_frame(&txn.encode_update_v1())
            };
            expected_text.push_str(&marker.to_text());
            assert_eq!(
                Marker::find_in_frame(&frame),
                Some(marker),
                "edit {sequence}"
            );
        }
        assert_eq!(text.get_string(&doc.transact()), expected_text);
    }

    #[test]
    fn malformed_markers_are_not_found() {
        for bytes in [
            &b""[..],
            b"no marker",
            b"#12;",
            b"#.5;",
            b"#1.;",
            b"#1.2",
            b"#99999999999999999999999.1;",
        ] {
            assert_eq!(Marker::find_in_frame(bytes), None, "{bytes:?}");
        }
        assert_eq!(
            Marker::find_in_frame(b"\x00#7.8;\x00"),
            Some(Marker {
                sequence: 7,
                sent_micros: 8
            })
        );
    }
}
