//! The control connection between the server and a separate `tandem ai-peer` process.
//!
//! In external mode the server does everything an AI request needs except being in the
//! room: it calls the model, streams the answer, stores the conversation and enforces the
//! limits. What the in-process peer is told over a channel ([`PeerCommand`]) travels instead
//! as JSON text frames over one WebSocket at `/api/ai/peer`, which the peer process opens
//! with the shared secret in `Authorization: Bearer …`:
//!
//! - the server sends [`ToPeer::Join`] (a room and a short-lived service token for its
//!   `/ws/{room}` socket), [`ToPeer::Command`] (one command for one room's peer, numbered
//!   when it expects a reply) and [`ToPeer::GateAnswer`];
//! - the peer process sends [`FromPeer::Reply`] (the answer to a numbered command),
//!   [`FromPeer::Gate`] (a client accepted a suggestion through the document: may it be
//!   applied?) and [`FromPeer::Left`] (its socket to a room closed; the next request joins
//!   again).
//!
//! Only the server and the peer process (both this crate) speak it, so it lives here rather
//! than in `protocol`.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::ai::command::{PeerCommand, Status};
use crate::ai::suggestion::{AcceptOutcome, FileRange, GateVerdict, NewSuggestion};

/// Path of the control WebSocket.
pub const CONTROL_PATH: &str = "/api/ai/peer";

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// The secret the peer process authenticates with. Neither `Debug` (beyond a placeholder)
/// nor `Serialize`: it never reaches a log line or a response.
#[derive(Clone)]
pub struct PeerSecret(String);

impl PeerSecret {
    /// Accepts a secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn parse(secret: &str) -> Result<Self, String> {
        let secret = Self::unchecked(secret);
        secret.check()?;
        Ok(secret)
    }

    /// Wraps `secret` as given, for clap's value parser: clap repeats a value it refuses in
    /// its error message, so the length is checked later with [`PeerSecret::check`].
    pub fn unchecked(secret: &str) -> Self {
        Self(secret.to_owned())
    }

    /// Whether the secret is long enough; the error does not repeat it.
    pub fn check(&self) -> Result<(), String> {
        if self.0.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the AI peer secret must be at least {MIN_SECRET_LEN} bytes"
            ));
        }
        Ok(())
    }

    /// Whether `presented` is this secret, in time independent of where they differ (both
    /// are hashed first, so not even the length leaks).
    pub fn verify(&self, presented: &str) -> bool {
        let expected = Sha256::digest(self.0.as_bytes());
        let presented = Sha256::digest(presented.as_bytes());
        expected.as_slice().ct_eq(presented.as_slice()).into()
    }

    /// The `Authorization` header value the peer process sends.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSecret(<redacted>)")
    }
}

/// Server → peer process. No `Debug`: `Join` carries a token.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToPeer {
    /// Join `room` over `/ws/{room}` with `token` (a service access token of the assistant's
    /// account, valid for `--access-token-ttl`; only the upgrade checks it).
    Join {
        /// The room.
        room: String,
        /// The token for the upgrade.
        token: String,
    },
    /// A command for the peer in `room`. `id` is `Some` when a [`FromPeer::Reply`] is due.
    Command {
        /// The room.
        room: String,
        /// Names the reply.
        id: Option<u64>,
        /// What to do.
        command: WireCommand,
    },
    /// The answer to [`FromPeer::Gate`] `id`.
    GateAnswer {
        /// The question.
        id: u64,
        /// The answer.
        verdict: GateVerdict,
    },
}

/// Peer process → server.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromPeer {
    /// The outcome of command `id`.
    Reply {
        /// The command's `id`.
        id: u64,
        /// Its outcome.
        reply: WireReply,
    },
    /// A client set suggestion `suggestion` of `room` to `accepted`: check it on the
    /// server's copy and take the checkpoint.
    Gate {
        /// Names the answer.
        id: u64,
        /// The room.
        room: String,
        /// The suggestion id.
        suggestion: String,
    },
    /// The peer's socket to `room` closed.
    Left {
        /// The room.
        room: String,
    },
}

/// A [`PeerCommand`] on the wire (without its reply channel).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireCommand {
    /// [`PeerCommand::Status`].
    Status {
        /// The status.
        status: Status,
        /// The range it works on.
        range: Option<FileRange>,
    },
    /// [`PeerCommand::Suggest`].
    Suggest {
        /// The suggestion.
        suggestion: NewSuggestion,
    },
    /// [`PeerCommand::Accept`].
    Accept {
        /// The suggestion id.
        suggestion: String,
    },
    /// [`PeerCommand::Reject`].
    Reject {
        /// The suggestion id.
        suggestion: String,
    },
    /// [`PeerCommand::MarkConflict`].
    MarkConflict {
        /// The suggestion id.
        suggestion: String,
    },
    /// [`PeerCommand::UndoSince`].
    UndoSince {
        /// Milliseconds since the epoch.
        since_ms: i64,
    },
}

/// The answer to a [`WireCommand`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireReply {
    /// To `Suggest`: the new suggestion's id, or why there is none.
    Suggested {
        /// The outcome.
        result: Result<String, String>,
    },
    /// To `Accept`, `Reject` and `MarkConflict`.
    Decided {
        /// The outcome.
        outcome: AcceptOutcome,
    },
    /// To `UndoSince`: the suggestions undone.
    Undone {
        /// Their ids.
        suggestions: Vec<String>,
    },
    /// The room's peer had stopped; nothing was done.
    Unavailable,
}

/// Where the reply to a command sent over the wire goes.
pub enum ReplySlot {
    /// [`PeerCommand::Suggest`]'s sender.
    Suggested(oneshot::Sender<Result<String, String>>),
    /// The sender of `Accept`, `Reject` and `MarkConflict`.
    Decided(oneshot::Sender<AcceptOutcome>),
    /// [`PeerCommand::UndoSince`]'s sender.
    Undone(oneshot::Sender<Vec<String>>),
}

impl ReplySlot {
    /// Delivers `reply`. A reply of the wrong kind, or `Unavailable`, drops the sender, which
    /// the waiting request sees as "the peer is unavailable".
    pub fn fulfil(self, reply: WireReply) {
        match (self, reply) {
            (Self::Suggested(sender), WireReply::Suggested { result }) => {
                let _ = sender.send(result);
            }
            (Self::Decided(sender), WireReply::Decided { outcome }) => {
                let _ = sender.send(outcome);
            }
            (Self::Undone(sender), WireReply::Undone { suggestions }) => {
                let _ = sender.send(suggestions);
            }
            _ => {}
        }
    }
}

/// A reply still to come from a local peer, ready to go on the wire.
pub type PendingReply = Pin<Box<dyn Future<Output = WireReply> + Send>>;

impl WireCommand {
    /// Splits a command into what travels and where its answer goes.
    pub fn from_command(command: PeerCommand) -> (Self, Option<ReplySlot>) {
        match command {
            PeerCommand::Status(status, range) => (Self::Status { status, range }, None),
            PeerCommand::Suggest(suggestion, reply) => (
                Self::Suggest { suggestion },
                Some(ReplySlot::Suggested(reply)),
            ),
            PeerCommand::Accept(suggestion, reply) => {
                (Self::Accept { suggestion }, Some(ReplySlot::Decided(reply)))
            }
            PeerCommand::Reject(suggestion, reply) => {
                (Self::Reject { suggestion }, Some(ReplySlot::Decided(reply)))
            }
            PeerCommand::MarkConflict(suggestion, reply) => (
                Self::MarkConflict { suggestion },
                Some(ReplySlot::Decided(reply)),
            ),
            PeerCommand::UndoSince(since_ms, reply) => {
                (Self::UndoSince { since_ms }, Some(ReplySlot::Undone(reply)))
            }
        }
    }

    /// Rebuilds the command for a local peer, with the future of its wire reply (`None` for
    /// a status, which has none). A peer that stops before answering yields `Unavailable`.
    pub fn into_command(self) -> (PeerCommand, Option<PendingReply>) {
        fn pending<T: Send + 'static>(
            receiver: oneshot::Receiver<T>,
            wrap: fn(T) -> WireReply,
        ) -> Option<PendingReply> {
            Some(Box::pin(async move {
                receiver.await.map_or(WireReply::Unavailable, wrap)
            }))
        }
        match self {
            Self::Status { status, range } => (PeerCommand::Status(status, range), None),
            Self::Suggest { suggestion } => {
                let (sender, receiver) = oneshot::channel();
                (
                    PeerCommand::Suggest(suggestion, sender),
                    pending(receiver, |result| WireReply::Suggested { result }),
                )
            }
            Self::Accept { suggestion } => {
                let (sender, receiver) = oneshot::channel();
                (
                    PeerCommand::Accept(suggestion, sender),
                    pending(receiver, |outcome| WireReply::Decided { outcome }),
                )
            }
            Self::Reject { suggestion } => {
                let (sender, receiver) = oneshot::channel();
                (
                    PeerCommand::Reject(suggestion, sender),
                    pending(receiver, |outcome| WireReply::Decided { outcome }),
                )
            }
            Self::MarkConflict { suggestion } => {
                let (sender, receiver) = oneshot::channel();
                (
                    PeerCommand::MarkConflict(suggestion, sender),
                    pending(receiver, |outcome| WireReply::Decided { outcome }),
                )
            }
            Self::UndoSince { since_ms } => {
                let (sender, receiver) = oneshot::channel();
                (
                    PeerCommand::UndoSince(since_ms, sender),
                    pending(receiver, |suggestions| WireReply::Undone { suggestions }),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_only_themselves_and_never_print() {
        assert!(PeerSecret::parse("short").is_err());
        let secret = PeerSecret::parse("a-long-enough-secret").unwrap();
        assert!(secret.verify("a-long-enough-secret"));
        assert!(!secret.verify("a-long-enough-secreT"));
        assert!(!secret.verify(""));
        assert!(!format!("{secret:?}").contains("long-enough"));
    }

    #[tokio::test]
    async fn a_command_crosses_the_wire_and_its_reply_comes_back() {
        let (sender, receiver) = oneshot::channel();
        let (wire, slot) = WireCommand::from_command(PeerCommand::Accept("s1".into(), sender));
        let json = serde_json::to_string(&ToPeer::Command {
            room: "r".into(),
            id: Some(7),
            command: wire,
        })
        .unwrap();
        let ToPeer::Command { id, command, .. } = serde_json::from_str(&json).unwrap() else {
            panic!("not a command: {json}");
        };
        assert_eq!(id, Some(7));
        let (command, reply) = command.into_command();
        let PeerCommand::Accept(suggestion, answer) = command else {
            panic!("not an accept");
        };
        assert_eq!(suggestion, "s1");
        answer.send(AcceptOutcome::Conflict).unwrap();
        let reply = serde_json::to_string(&reply.unwrap().await).unwrap();
        slot.unwrap().fulfil(serde_json::from_str(&reply).unwrap());
        assert_eq!(receiver.await.unwrap(), AcceptOutcome::Conflict);

        // A peer that stopped before answering is reported, and the waiter sees it.
        let (sender, receiver) = oneshot::channel();
        let (wire, slot) = WireCommand::from_command(PeerCommand::UndoSince(5, sender));
        let (command, reply) = wire.into_command();
        drop(command);
        let reply = reply.unwrap().await;
        assert!(matches!(reply, WireReply::Unavailable));
        slot.unwrap().fulfil(reply);
        assert!(receiver.await.is_err());
    }
}
