//! Identifiers with their parsing rules.

use std::fmt;
use std::sync::Arc;

/// The name of a room, as it appears in `/ws/{room}` and `/api/rooms/{room}`.
///
/// Between 1 and [`RoomId::MAX_LEN`] bytes of printable characters, without `/` (it is a
/// single path segment) and without control characters (it ends up in logs).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

/// Why a string is not a [`RoomId`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidRoomId {
    /// The name was empty.
    #[error("room name is empty")]
    Empty,
    /// The name was longer than [`RoomId::MAX_LEN`] bytes.
    #[error("room name is longer than {} bytes", RoomId::MAX_LEN)]
    TooLong,
    /// The name contained `/` or a control character.
    #[error("room name contains '/' or a control character")]
    ForbiddenCharacter,
}

impl RoomId {
    /// Longest accepted name, in bytes (the database column is this wide).
    pub const MAX_LEN: usize = 255;

    /// Parses a room name.
    pub fn parse(name: &str) -> Result<Self, InvalidRoomId> {
        if name.is_empty() {
            return Err(InvalidRoomId::Empty);
        }
        if name.len() > Self::MAX_LEN {
            return Err(InvalidRoomId::TooLong);
        }
        if name.chars().any(|c| c == '/' || c.is_control()) {
            return Err(InvalidRoomId::ForbiddenCharacter);
        }
        Ok(Self(name.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Identifies one connection (or one server-side writer) within this process, so that a
/// connection is not sent back the updates it sent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ConnectionId(pub(crate) u64);

impl ConnectionId {
    /// Edits the server makes itself (restores, imports). No connection has this id, so every
    /// connection receives them.
    pub const SERVER: ConnectionId = ConnectionId(0);

    /// The numeric value, for logs.
    pub fn get(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(RoomId::parse("notes-2026.md").is_ok());
        assert!(RoomId::parse("café ☕").is_ok());
        assert_eq!(RoomId::parse(""), Err(InvalidRoomId::Empty));
        assert_eq!(RoomId::parse("a/b"), Err(InvalidRoomId::ForbiddenCharacter));
        assert_eq!(
            RoomId::parse("a\nb"),
            Err(InvalidRoomId::ForbiddenCharacter)
        );
        assert_eq!(RoomId::parse(&"x".repeat(256)), Err(InvalidRoomId::TooLong));
        assert!(RoomId::parse(&"x".repeat(255)).is_ok());
    }
}
