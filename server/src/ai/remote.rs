//! The server's side of external mode: the one control connection of the `tandem ai-peer`
//! process, and the [`PeerHandle`](crate::ai::peer::PeerHandle)s that forward commands over
//! it.
//!
//! [`RemotePeers`] holds at most one live [`ControlLink`]. A link lives as long as its
//! WebSocket session (`routes::ai::peer_control`); when it ends every reply still awaited
//! over it is dropped (its requests answer 503) and every handle made for it reports dead,
//! so the next request joins its room again over whichever link is live by then.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ai::command::PeerCommand;
use crate::ai::control::{FromPeer, PeerSecret, ReplySlot, ToPeer, WireCommand};
use crate::ai::suggestion::GateVerdict;

/// Frames the server may queue for the peer process before senders wait.
const OUTGOING_QUEUE: usize = 256;

/// The slot for the peer process's control connection.
pub struct RemotePeers {
    secret: PeerSecret,
    /// The live link, if any. A `std` mutex on purpose: held only to read or swap the `Arc`.
    current: Mutex<Option<Arc<ControlLink>>>,
}

/// A second peer process tried to connect while one is connected.
#[derive(Debug, thiserror::Error)]
#[error("an AI peer process is already connected")]
pub struct AlreadyConnected;

impl RemotePeers {
    /// Waits for a peer process authenticating with `secret`.
    pub fn new(secret: PeerSecret) -> Self {
        Self {
            secret,
            current: Mutex::new(None),
        }
    }

    /// The secret the peer process must present.
    pub fn secret(&self) -> &PeerSecret {
        &self.secret
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<ControlLink>>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the slot for a new control connection; returns the link and the frames to
    /// write to it.
    pub fn attach(&self) -> Result<(Arc<ControlLink>, mpsc::Receiver<ToPeer>), AlreadyConnected> {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|link| !link.is_closed()) {
            return Err(AlreadyConnected);
        }
        let (outgoing, receiver) = mpsc::channel(OUTGOING_QUEUE);
        let link = Arc::new(ControlLink {
            outgoing,
            pending: Mutex::new(Some(HashMap::new())),
            next_id: AtomicU64::new(1),
            joined: Mutex::new(HashSet::new()),
            closed: CancellationToken::new(),
        });
        *slot = Some(link.clone());
        Ok((link, receiver))
    }

    /// Ends `link` (its session ended) and frees the slot if it still holds it.
    pub fn detach(&self, link: &Arc<ControlLink>) {
        link.close();
        let mut slot = self.slot();
        if slot
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, link))
        {
            *slot = None;
        }
    }

    /// The live link, if a peer process is connected.
    pub fn current(&self) -> Option<Arc<ControlLink>> {
        self.slot().clone().filter(|link| !link.is_closed())
    }
}

/// One control connection.
pub struct ControlLink {
    /// Frames for the session to write.
    outgoing: mpsc::Sender<ToPeer>,
    /// Replies awaited, by command id; `None` once the link is closed, so nothing can be
    /// registered after the waiters were released. A `std` mutex: held to insert or remove.
    pending: Mutex<Option<HashMap<u64, ReplySlot>>>,
    next_id: AtomicU64,
    /// Rooms the peer process holds a socket to (joined and not reported left).
    joined: Mutex<HashSet<String>>,
    /// Cancelled when the session ends.
    closed: CancellationToken,
}

impl ControlLink {
    fn pending(&self) -> MutexGuard<'_, Option<HashMap<u64, ReplySlot>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn joined(&self) -> MutexGuard<'_, HashSet<String>> {
        self.joined.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    fn close(&self) {
        self.closed.cancel();
        // Dropping the slots tells every waiting request the peer is gone.
        self.pending().take();
    }

    /// Tells the peer process to join `room` with `token`; a handle for the room follows.
    pub async fn join(self: &Arc<Self>, room: &str, token: String) -> Option<RemoteRoom> {
        let join = ToPeer::Join {
            room: room.to_owned(),
            token,
        };
        if self.outgoing.send(join).await.is_err() {
            return None;
        }
        self.joined().insert(room.to_owned());
        Some(self.room(room))
    }

    /// A handle to `room`'s peer, if the peer process holds one.
    pub fn joined_room(self: &Arc<Self>, room: &str) -> Option<RemoteRoom> {
        self.joined().contains(room).then(|| self.room(room))
    }

    fn room(self: &Arc<Self>, room: &str) -> RemoteRoom {
        RemoteRoom {
            link: self.clone(),
            room: room.to_owned(),
        }
    }

    /// Handles what the peer process sent, except gate questions, which need the rooms:
    /// those come back for the caller to answer with [`ControlLink::answer_gate`].
    pub fn receive(&self, message: FromPeer) -> Option<(u64, String, String)> {
        match message {
            FromPeer::Reply { id, reply } => {
                let slot = self.pending().as_mut().and_then(|p| p.remove(&id));
                if let Some(slot) = slot {
                    slot.fulfil(reply);
                }
                None
            }
            FromPeer::Left { room } => {
                self.joined().remove(&room);
                None
            }
            FromPeer::Gate {
                id,
                room,
                suggestion,
            } => Some((id, room, suggestion)),
        }
    }

    /// Sends the answer to gate question `id`.
    pub async fn answer_gate(&self, id: u64, verdict: GateVerdict) {
        let _ = self.outgoing.send(ToPeer::GateAnswer { id, verdict }).await;
    }
}

/// The peer of one room in the peer process, reached over a [`ControlLink`].
#[derive(Clone)]
pub struct RemoteRoom {
    link: Arc<ControlLink>,
    room: String,
}

impl RemoteRoom {
    /// Forwards `command`; `false` when the link has ended. Its reply (if any) arrives on the
    /// command's own channel, or that channel is dropped when the link ends first.
    pub async fn send(&self, command: PeerCommand) -> bool {
        let (command, slot) = WireCommand::from_command(command);
        let id = match slot {
            Some(slot) => {
                let id = self.link.next_id.fetch_add(1, Ordering::Relaxed);
                match self.link.pending().as_mut() {
                    Some(pending) => pending.insert(id, slot),
                    None => return false,
                };
                Some(id)
            }
            None => None,
        };
        let message = ToPeer::Command {
            room: self.room.clone(),
            id,
            command,
        };
        if self.link.outgoing.send(message).await.is_ok() {
            return true;
        }
        if let (Some(id), Some(pending)) = (id, self.link.pending().as_mut()) {
            pending.remove(&id);
        }
        false
    }

    /// Whether the link is live and the peer process still holds the room.
    pub fn is_alive(&self) -> bool {
        !self.link.is_closed() && self.link.joined().contains(&self.room)
    }

    /// Resolves when the link ends.
    pub async fn stopped(&self) {
        self.link.closed.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn peers() -> RemotePeers {
        RemotePeers::new(PeerSecret::parse("0123456789abcdef").unwrap())
    }

    #[tokio::test]
    async fn one_link_at_a_time_and_its_end_releases_every_waiter() {
        let peers = peers();
        let (link, mut outgoing) = peers.attach().unwrap();
        assert!(peers.attach().is_err(), "a second connection is refused");
        let room = link.join("r", "token".into()).await.unwrap();
        assert!(matches!(outgoing.recv().await, Some(ToPeer::Join { .. })));
        assert!(room.is_alive());

        let (sender, answer) = oneshot::channel();
        assert!(room.send(PeerCommand::UndoSince(0, sender)).await);
        let Some(ToPeer::Command { id: Some(_), .. }) = outgoing.recv().await else {
            panic!("expected a numbered command");
        };
        peers.detach(&link);
        assert!(answer.await.is_err(), "the waiter learns the peer is gone");
        assert!(!room.is_alive());
        assert!(peers.current().is_none());
        let (sender, _answer) = oneshot::channel();
        assert!(!room.send(PeerCommand::UndoSince(0, sender)).await);

        // The slot is free again; a room the peer left is not alive.
        let (link, _outgoing) = peers.attach().unwrap();
        let room = link.join("r", "token".into()).await.unwrap();
        link.receive(FromPeer::Left { room: "r".into() });
        assert!(!room.is_alive());
        assert!(link.joined_room("r").is_none());
    }

    #[tokio::test]
    async fn replies_reach_their_request() {
        let peers = peers();
        let (link, mut outgoing) = peers.attach().unwrap();
        let room = link.join("r", "token".into()).await.unwrap();
        outgoing.recv().await;
        let (sender, answer) = oneshot::channel();
        room.send(PeerCommand::UndoSince(0, sender)).await;
        let Some(ToPeer::Command { id: Some(id), .. }) = outgoing.recv().await else {
            panic!("expected a numbered command");
        };
        link.receive(FromPeer::Reply {
            id,
            reply: crate::ai::control::WireReply::Undone {
                suggestions: vec!["s".into()],
            },
        });
        assert_eq!(answer.await.unwrap(), vec!["s".to_owned()]);
    }
}
