//! The AI assistant as a peer: a y-protocols client that joins a room over the same
//! WebSocket as everyone else, with its own account ("AI assistant") and a stable client id.
//!
//! It keeps a replica of the room's document, shows itself in awareness (name, colour,
//! status, and a cursor on the range it works on), writes suggestions into the document's
//! `suggestions` root map, and applies accepted ones as its own edits. It never holds a
//! document lock while waiting: commands come over a channel and each is one short
//! transaction on the replica.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::command::{AcceptGate, PeerCommand, Status};
use super::suggestion::{
    AcceptOutcome, FileRange, GateVerdict, NewSuggestion, SUGGESTIONS_ROOT, SuggestionStatus, field,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::{Message, decode_message};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use yrs::sync::awareness::{Awareness, AwarenessUpdate, AwarenessUpdateEntry};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Any, Assoc, ClientID, Doc, IndexedSequence, Map, MapPrelim, MapRef, Options, Out, ReadTxn,
    Text, TextRef, Transact, TransactionMut, Update, WriteTxn,
};

/// The name the assistant shows (the accounts wing reserves it).
pub use crate::accounts::ASSISTANT_NAME;
/// Its colour in presence.
pub const ASSISTANT_COLOR: &str = "#7c3aed";

/// A handle to a running peer. Cheap to clone.
///
/// The peer either runs in this process ([`spawn`]) or in a separate `tandem ai-peer`
/// process reached over the control connection ([`crate::ai::remote`]); callers cannot tell
/// the difference.
#[derive(Clone)]
pub struct PeerHandle {
    route: Route,
}

/// How long a peer may take to answer a command before it counts as gone.
pub const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone)]
enum Route {
    /// A peer task of this process.
    Local(mpsc::Sender<PeerCommand>),
    /// The peer for one room in the peer process.
    Remote(crate::ai::remote::RemoteRoom),
}

impl PeerHandle {
    /// A handle to a room's peer in the peer process.
    pub(crate) fn remote(room: crate::ai::remote::RemoteRoom) -> Self {
        Self {
            route: Route::Remote(room),
        }
    }

    /// Sends a command; `false` if the peer has stopped.
    pub async fn send(&self, command: PeerCommand) -> bool {
        match &self.route {
            Route::Local(commands) => commands.send(command).await.is_ok(),
            Route::Remote(room) => room.send(command).await,
        }
    }

    /// Sends the command `make` builds around a reply channel and waits for the answer;
    /// `None` when the peer has stopped, or has not answered within [`REPLY_TIMEOUT`] (a
    /// hung peer process must not hold requests forever).
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> PeerCommand) -> Option<T> {
        self.ask_within(REPLY_TIMEOUT, make).await
    }

    async fn ask_within<T>(
        &self,
        limit: std::time::Duration,
        make: impl FnOnce(oneshot::Sender<T>) -> PeerCommand,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        if !self.send(make(reply)).await {
            return None;
        }
        tokio::time::timeout(limit, answer).await.ok()?.ok()
    }

    /// Hands a command over without waiting; `false` when the peer has stopped or its queue
    /// is full (the command is dropped). Only for local peers: a remote one is always sent
    /// to with [`PeerHandle::send`].
    pub fn try_send(&self, command: PeerCommand) -> bool {
        match &self.route {
            Route::Local(commands) => commands.try_send(command).is_ok(),
            Route::Remote(_) => false,
        }
    }

    /// Whether the peer is still running.
    pub fn is_alive(&self) -> bool {
        match &self.route {
            Route::Local(commands) => !commands.is_closed(),
            Route::Remote(room) => room.is_alive(),
        }
    }

    /// Resolves once the peer has stopped (for a remote one: once its control connection has
    /// ended).
    pub async fn stopped(&self) {
        match &self.route {
            Route::Local(commands) => commands.closed().await,
            Route::Remote(room) => room.stopped().await,
        }
    }
}

/// A client id that is the same every time the assistant joins `room`. Safe to reuse because
/// the peer always syncs before it writes, so its clock continues after its earlier edits.
pub fn stable_client_id(room: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    ("tandem-ai-peer", room).hash(&mut hasher);
    // 31 bits: inside yjs's client id range and never 0.
    (hasher.finish() & 0x7fff_ffff).max(1)
}

/// `{ws_base}/ws/{room}?token={token}`, the room percent-encoded (room names may hold
/// spaces, `?`, `#` and the like; tokens are URL-safe).
pub fn room_url(ws_base: &str, room: &str, token: &str) -> String {
    let mut url = format!("{ws_base}/ws/");
    for byte in room.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url.push_str("?token=");
    url.push_str(token);
    url
}

/// The awareness clock a peer starts from: tenths of a second since 2025-01-01.
///
/// Every peer of a room uses the same client id, and awareness clients (the server's replica
/// and every `yjs` client) remember the last clock they saw for an id even after its state
/// was removed, ignoring anything not newer. A peer that joins again, in this process or in
/// a restarted peer process, must therefore start above wherever the previous one stopped:
/// a previous peer would have to change its state more than ten times a second, on average
/// over its whole life, to get ahead of this (it changes it a few times per request and
/// every 15 s). Fits the 32-bit clock until 2038.
fn initial_awareness_clock(now_ms: i64) -> u32 {
    const EPOCH_2025_MS: i64 = 1_735_689_600_000;
    u32::try_from((now_ms - EPOCH_2025_MS).max(0) / 100).unwrap_or(u32::MAX - 1_000_000)
}

/// Starts a peer connected to `ws_url` (`ws://host:port/ws/{room}?token=…`) as a task of
/// `tasks`; it leaves the room when `stop` is cancelled or its socket closes.
pub fn spawn(
    ws_url: String,
    room: String,
    now: crate::clock::Clock,
    gate: AcceptGate,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> PeerHandle {
    let (commands, receiver) = mpsc::channel(64);
    tasks.spawn(async move {
        if let Err(err) = run(ws_url, &room, receiver, now, gate, stop).await {
            warn!(room = %room, error = %err, "AI peer stopped");
        }
    });
    PeerHandle {
        route: Route::Local(commands),
    }
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends a close frame and waits (briefly) for the server's, so the server reads our close
/// before the connection ends instead of an unexpected end of stream.
pub(crate) async fn close_gracefully(socket: &mut Socket) {
    if socket.close(None).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
}

struct Peer {
    doc: Doc,
    awareness: Awareness,
    status: Status,
    now: crate::clock::Clock,
    gate: Option<AcceptGate>,
}

async fn run(
    ws_url: String,
    room: &str,
    mut commands: mpsc::Receiver<PeerCommand>,
    now: crate::clock::Clock,
    gate: AcceptGate,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (mut socket, _) = tokio::select! {
        connected = tokio_tungstenite::connect_async(&ws_url) => connected?,
        _ = stop.cancelled() => return Ok(()),
    };
    let doc = Doc::with_options(Options {
        client_id: ClientID::new(stable_client_id(room)),
        offset_kind: yrs::OffsetKind::Utf16,
        ..Options::default()
    });
    let mut peer = Peer {
        awareness: Awareness::new(doc.clone()),
        doc,
        status: Status::Idle,
        gate: Some(gate),
        now,
    };
    peer.seed_awareness_clock();
    // Handshake: our state vector; then wait for the server's step 2 before anything else.
    let step1 = protocol::encode_sync_step1_frame(&peer.doc.transact().state_vector().encode_v1());
    socket.send(WsMessage::Binary(step1)).await?;
    let mut synced = false;
    let mut pending: Vec<PeerCommand> = Vec::new();
    let mut renew = tokio::time::interval(Duration::from_secs(15));
    peer.announce(&mut socket, None).await?;
    loop {
        tokio::select! {
            message = socket.next() => {
                let Some(message) = message else { return Ok(()) };
                let WsMessage::Binary(frame) = message? else { continue };
                let was_synced = synced;
                peer.receive(&mut socket, frame, &mut synced).await?;
                if synced && !was_synced {
                    for command in pending.drain(..) {
                        peer.handle(&mut socket, command).await?;
                    }
                }
                if synced {
                    peer.apply_client_accepts(&mut socket).await?;
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return Ok(()) };
                if synced {
                    peer.handle(&mut socket, command).await?;
                } else {
                    pending.push(command);
                }
            }
            _ = renew.tick() => peer.announce(&mut socket, None).await?,
            _ = stop.cancelled() => {
                // The server removes our presence when the socket closes.
                close_gracefully(&mut socket).await;
                return Ok(());
            }
        }
    }
}

use crdt_store::document::{file_text, resolve_anchor};

fn sticky(txn: &impl ReadTxn, text: &TextRef, index: u32, assoc: Assoc) -> Option<String> {
    text.sticky_index(txn, index, assoc)
        .map(|s| B64.encode(s.encode_v1()))
}

fn buffer_field(map: &MapRef, txn: &impl ReadTxn, key: &str) -> Option<Vec<u8>> {
    match map.get(txn, key)? {
        Out::Any(Any::Buffer(b)) => Some(b.to_vec()),
        _ => None,
    }
}

fn relative_position(txn: &impl ReadTxn, text: &TextRef, index: u32, assoc: Assoc) -> Option<Any> {
    text.sticky_index(txn, index, assoc)
        .map(|s| Any::Buffer(s.encode_v1().into()))
}

fn field(map: &MapRef, txn: &impl ReadTxn, key: &str) -> Option<String> {
    match map.get(txn, key)? {
        Out::Any(Any::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// A suggestion's status; `None` when it has none a server would write.
fn status(map: &MapRef, txn: &impl ReadTxn) -> Option<SuggestionStatus> {
    SuggestionStatus::parse(&field(map, txn, field::STATUS)?)
}

/// Writes a suggestion's status.
fn set_status(map: &MapRef, txn: &mut TransactionMut<'_>, status: SuggestionStatus) {
    map.insert(txn, field::STATUS, status.as_str());
}

impl Peer {
    /// Starts the local awareness clock at [`initial_awareness_clock`].
    fn seed_awareness_clock(&mut self) {
        let me = self.awareness.client_id();
        let seed = AwarenessUpdate {
            clients: HashMap::from([(
                me,
                AwarenessUpdateEntry {
                    clock: initial_awareness_clock((self.now)()),
                    json: "null".into(),
                },
            )]),
        };
        // A removal of an unknown client only records its clock; the first state set
        // afterwards continues from it.
        let _ = self.awareness.apply_update(seed);
    }

    async fn send_update(&self, socket: &mut Socket, update: Vec<u8>) -> anyhow::Result<()> {
        if update.len() > 2 {
            socket
                .send(WsMessage::Binary(protocol::encode_update_frame(&update)))
                .await?;
        }
        Ok(())
    }

    /// Publishes the assistant's presence: name, colour, status, and a selection.
    async fn announce(
        &mut self,
        socket: &mut Socket,
        range: Option<&FileRange>,
    ) -> anyhow::Result<()> {
        let cursor = range.and_then(|range| {
            let txn = self.doc.transact();
            let text = file_text(&txn, &range.file)?;
            Some(json!({
                "file": range.file,
                "anchor": sticky(&txn, &text, range.start, Assoc::After)?,
                "head": sticky(&txn, &text, range.end, Assoc::Before)?,
            }))
        });
        let state = json!({
            "user": {"name": ASSISTANT_NAME, "color": ASSISTANT_COLOR},
            "assistant": true,
            "status": self.status,
            "cursor": cursor,
        });
        self.awareness.set_local_state_raw(state.to_string());
        let update = self.awareness.update()?;
        socket
            .send(WsMessage::Binary(protocol::encode_awareness_frame(&update)))
            .await?;
        Ok(())
    }

    async fn receive(
        &mut self,
        socket: &mut Socket,
        frame: Bytes,
        synced: &mut bool,
    ) -> anyhow::Result<()> {
        match decode_message(&frame)? {
            Message::SyncStep1(remote) => {
                let diff = self.doc.transact().encode_diff_v1(&remote);
                socket
                    .send(WsMessage::Binary(protocol::encode_sync_step2_frame(&diff)))
                    .await?;
            }
            Message::SyncStep2(update) => {
                self.doc
                    .transact_mut()
                    .apply_update(Update::decode_v1(&update)?)?;
                *synced = true;
            }
            Message::Update(update) => {
                self.doc
                    .transact_mut()
                    .apply_update(Update::decode_v1(&update)?)?;
            }
            Message::Auth(Some(reason)) => warn!(%reason, "AI peer was refused a write"),
            Message::Awareness(_) | Message::Auth(None) | Message::QueryAwareness => {}
        }
        Ok(())
    }

    async fn handle(&mut self, socket: &mut Socket, command: PeerCommand) -> anyhow::Result<()> {
        match command {
            PeerCommand::Status(status, range) => {
                self.status = status;
                self.announce(socket, range.as_ref()).await?;
            }
            PeerCommand::Suggest(suggestion, reply) => {
                let (result, update) = self.suggest(&suggestion);
                self.send_update(socket, update).await?;
                let _ = reply.send(result);
            }
            PeerCommand::Accept(id, reply) => {
                let (outcome, update) = self.decide(&id, true);
                self.send_update(socket, update).await?;
                let _ = reply.send(outcome);
            }
            PeerCommand::Reject(id, reply) => {
                let (outcome, update) = self.decide(&id, false);
                self.send_update(socket, update).await?;
                let _ = reply.send(outcome);
            }
            PeerCommand::MarkConflict(id, reply) => {
                let update = {
                    let mut txn = self.doc.transact_mut();
                    if let Some(Out::YMap(s)) =
                        txn.get_or_insert_map(SUGGESTIONS_ROOT).get(&txn, &id)
                        && status(&s, &txn) == Some(SuggestionStatus::Pending)
                    {
                        set_status(&s, &mut txn, SuggestionStatus::Conflict);
                    }
                    txn.encode_update_v1()
                };
                self.send_update(socket, update).await?;
                let _ = reply.send(AcceptOutcome::Conflict);
            }
            PeerCommand::UndoSince(since, reply) => {
                let (undone, update) = self.undo_since(since);
                self.send_update(socket, update).await?;
                let _ = reply.send(undone);
            }
        }
        Ok(())
    }

    fn suggest(&self, s: &NewSuggestion) -> (Result<String, String>, Vec<u8>) {
        let mut txn = self.doc.transact_mut();
        let (start, end, original) = (
            s.range.start.clone(),
            s.range.end.clone(),
            s.range.original.clone(),
        );
        let id = crate::accounts::random_id();
        let entry: HashMap<String, Any> = HashMap::from([
            (field::FILE.into(), Any::from(s.range.file.as_str())),
            (field::START.into(), Any::Buffer(start.into())),
            (field::END.into(), Any::Buffer(end.into())),
            (field::ORIGINAL.into(), Any::from(original)),
            (field::REPLACEMENT.into(), Any::from(s.replacement.as_str())),
            (field::EXPLANATION.into(), Any::from(s.explanation.as_str())),
            (field::AUTHOR.into(), Any::from(ASSISTANT_NAME)),
            (
                field::STATUS.into(),
                Any::from(SuggestionStatus::Pending.as_str()),
            ),
            (
                field::CONVERSATION_ID.into(),
                Any::from(s.conversation_id.as_str()),
            ),
            (field::CREATED_AT_MS.into(), Any::from((self.now)() as f64)),
        ]);
        let suggestions = txn.get_or_insert_map(SUGGESTIONS_ROOT);
        suggestions.insert(
            &mut txn,
            id.as_str(),
            entry.into_iter().collect::<MapPrelim>(),
        );
        (Ok(id), txn.encode_update_v1())
    }

    /// Applies (or rejects) a suggestion in one transaction of the assistant's own.
    fn decide(&self, id: &str, accept: bool) -> (AcceptOutcome, Vec<u8>) {
        let mut txn = self.doc.transact_mut();
        let outcome = decide_in(&mut txn, id, accept, (self.now)());
        (outcome, txn.encode_update_v1())
    }

    /// Applies suggestions an editor's client marked `accepted` (without `applied_at_ms`).
    async fn apply_client_accepts(&mut self, socket: &mut Socket) -> anyhow::Result<()> {
        let requested: Vec<String> = {
            let txn = self.doc.transact();
            let Some(suggestions) = txn.get_map(SUGGESTIONS_ROOT) else {
                return Ok(());
            };
            suggestions
                .iter(&txn)
                .filter_map(|(id, value)| match value {
                    Out::YMap(s)
                        if status(&s, &txn) == Some(SuggestionStatus::Accepted)
                            && s.get(&txn, field::APPLIED_AT_MS).is_none() =>
                    {
                        Some(id.to_owned())
                    }
                    _ => None,
                })
                .collect()
        };
        for id in requested {
            debug!(suggestion = %id, "applying a suggestion a client accepted");
            let verdict = match &self.gate {
                Some(gate) => gate(id.clone()).await,
                None => GateVerdict::Apply,
            };
            if verdict == GateVerdict::Unreachable {
                continue;
            }
            let intact = verdict == GateVerdict::Apply;
            let update = {
                let mut txn = self.doc.transact_mut();
                if let Some(Out::YMap(s)) = txn.get_or_insert_map(SUGGESTIONS_ROOT).get(&txn, &id) {
                    let reopened = if intact {
                        SuggestionStatus::Pending
                    } else {
                        SuggestionStatus::Conflict
                    };
                    set_status(&s, &mut txn, reopened);
                }
                if intact {
                    decide_in(&mut txn, &id, true, (self.now)());
                }
                txn.encode_update_v1()
            };
            self.send_update(socket, update).await?;
        }
        Ok(())
    }

    fn undo_since(&self, since: i64) -> (Vec<String>, Vec<u8>) {
        let mut txn = self.doc.transact_mut();
        let suggestions = txn.get_or_insert_map(SUGGESTIONS_ROOT);
        let mut applied: Vec<(f64, String, MapRef)> = suggestions
            .iter(&txn)
            .filter_map(|(id, value)| match value {
                Out::YMap(s) if status(&s, &txn) == Some(SuggestionStatus::Accepted) => {
                    // Only a plain number counts: a shared type there is a client's doing,
                    // and reading one is not the peer's business.
                    match s.get(&txn, field::APPLIED_AT_MS)? {
                        Out::Any(Any::Number(at)) => at
                            .as_f64()
                            .filter(|at| *at >= since as f64)
                            .map(|at| (at, id.to_owned(), s)),
                        _ => None,
                    }
                }
                _ => None,
            })
            .collect();
        // Newest first, so each undo sees the text as the later ones left it.
        applied.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut undone = Vec::new();
        for (_, id, s) in applied {
            let (Some(file), Some(start), Some(end), Some(original), Some(replacement)) = (
                field(&s, &txn, field::FILE),
                buffer_field(&s, &txn, field::APPLIED_START),
                buffer_field(&s, &txn, field::APPLIED_END),
                field(&s, &txn, field::ORIGINAL),
                field(&s, &txn, field::REPLACEMENT),
            ) else {
                continue;
            };
            let Some((text, start, end, covered)) = resolve_anchor(&txn, &file, &start, &end)
            else {
                continue;
            };
            if covered != replacement {
                continue;
            }
            text.remove_range(&mut txn, start, end - start);
            text.insert(&mut txn, start, &original);
            set_status(&s, &mut txn, SuggestionStatus::Undone);
            undone.push(id);
        }
        (undone, txn.encode_update_v1())
    }
}

fn decide_in(txn: &mut TransactionMut<'_>, id: &str, accept: bool, now: i64) -> AcceptOutcome {
    let suggestions = txn.get_or_insert_map(SUGGESTIONS_ROOT);
    let Some(Out::YMap(s)) = suggestions.get(txn, id) else {
        return AcceptOutcome::NotFound;
    };
    let current = status(&s, txn);
    if current != Some(SuggestionStatus::Pending) {
        return AcceptOutcome::AlreadyDecided { status: current };
    }
    if !accept {
        set_status(&s, txn, SuggestionStatus::Rejected);
        return AcceptOutcome::AlreadyDecided {
            status: Some(SuggestionStatus::Rejected),
        };
    }
    let (Some(file), Some(start), Some(end), Some(original), Some(replacement)) = (
        field(&s, txn, field::FILE),
        buffer_field(&s, txn, field::START),
        buffer_field(&s, txn, field::END),
        field(&s, txn, field::ORIGINAL),
        field(&s, txn, field::REPLACEMENT),
    ) else {
        set_status(&s, txn, SuggestionStatus::Conflict);
        return AcceptOutcome::Conflict;
    };
    let Some((text, start, end, _)) =
        resolve_anchor(txn, &file, &start, &end).filter(|(_, _, _, covered)| *covered == original)
    else {
        // The anchored text was deleted or changed meanwhile: never apply over it.
        set_status(&s, txn, SuggestionStatus::Conflict);
        return AcceptOutcome::Conflict;
    };
    text.remove_range(txn, start, end - start);
    text.insert(txn, start, &replacement);
    let new_end = start + replacement.encode_utf16().count() as u32;
    if let (Some(a), Some(b)) = (
        relative_position(txn, &text, start, Assoc::After),
        relative_position(txn, &text, new_end, Assoc::Before),
    ) {
        s.insert(txn, field::APPLIED_START, a);
        s.insert(txn, field::APPLIED_END, b);
    }
    set_status(&s, txn, SuggestionStatus::Accepted);
    s.insert(txn, field::APPLIED_AT_MS, now as f64);
    AcceptOutcome::Accepted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::suggestion::AnchoredRange;

    #[tokio::test]
    async fn a_peer_that_never_answers_counts_as_gone() {
        let (commands, mut received) = mpsc::channel(4);
        let handle = PeerHandle {
            route: Route::Local(commands),
        };
        // The command arrives, and its reply channel is kept but never answered.
        let keep = tokio::spawn(async move {
            let command = received.recv().await;
            std::future::pending::<()>().await;
            drop(command);
        });
        let answer = handle
            .ask_within(std::time::Duration::from_millis(50), |reply| {
                PeerCommand::UndoSince(0, reply)
            })
            .await;
        assert_eq!(answer, None);
        keep.abort();
        // A stopped peer answers None at once.
        let (commands, received) = mpsc::channel(4);
        drop(received);
        let stopped = PeerHandle {
            route: Route::Local(commands),
        };
        assert_eq!(
            stopped.ask(|reply| PeerCommand::UndoSince(0, reply)).await,
            None::<Vec<String>>
        );
    }
    use yrs::GetString;

    #[test]
    fn room_urls_escape_the_room() {
        assert_eq!(
            room_url("ws://h:1", "my room?#é", "t.k-n"),
            "ws://h:1/ws/my%20room%3F%23%C3%A9?token=t.k-n"
        );
    }

    #[test]
    fn a_peer_joining_again_announces_a_newer_awareness_clock() {
        // The previous peer of the room announced a few states and left a little later.
        let start = 1_780_000_000_000;
        let same_id = || {
            Doc::with_options(Options {
                client_id: ClientID::new(stable_client_id("room")),
                ..Options::default()
            })
        };
        let mut first = peer(same_id());
        first.now = std::sync::Arc::new(move || start);
        first.seed_awareness_clock();
        for _ in 0..5 {
            first.awareness.set_local_state_raw("{}");
        }
        let me = first.awareness.client_id();
        let (last_clock, _) = first.awareness.meta(me).unwrap();
        let mut second = peer(same_id());
        second.now = std::sync::Arc::new(move || start + 1_000);
        second.seed_awareness_clock();
        second.awareness.set_local_state_raw("{}");
        let (clock, _) = second.awareness.meta(me).unwrap();
        assert!(clock > last_clock, "{clock} <= {last_clock}");
        // And the announced update carries that clock.
        let update = second.awareness.update().unwrap();
        assert_eq!(update.clients[&me].clock, clock);
    }

    #[test]
    fn client_ids_are_stable_per_room_and_differ_between_rooms() {
        assert_eq!(stable_client_id("a"), stable_client_id("a"));
        assert_ne!(stable_client_id("a"), stable_client_id("b"));
        assert!(stable_client_id("a") <= u64::from(u32::MAX));
    }

    fn doc_with(text: &str) -> Doc {
        let doc = crdt_store::new_doc();
        doc.get_or_insert_text("main.rs")
            .insert(&mut doc.transact_mut(), 0, text);
        doc
    }

    fn peer(doc: Doc) -> Peer {
        Peer {
            awareness: Awareness::new(doc.clone()),
            doc,
            status: Status::Idle,
            now: std::sync::Arc::new(|| 1_000),
            gate: None,
        }
    }

    fn suggestion(peer: &Peer, start: u32, end: u32, replacement: &str) -> NewSuggestion {
        NewSuggestion {
            range: AnchoredRange::new(
                "main.rs",
                crdt_store::document::anchor_range(&peer.doc, "main.rs", start, end).unwrap(),
            ),
            replacement: replacement.into(),
            explanation: "better".into(),
            conversation_id: "c".into(),
        }
    }

    #[test]
    fn accepting_follows_concurrent_edits_and_conflicts_when_the_range_changed() {
        let doc = doc_with("let x = 1;\nlet y = 2;\n");
        let peer = peer(doc.clone());
        let (id, _) = peer.suggest(&suggestion(&peer, 11, 21, "let y = 3;"));
        let id = id.unwrap();
        // Someone inserts before the range: it moves, and accepting still hits it.
        doc.get_or_insert_text("main.rs")
            .insert(&mut doc.transact_mut(), 0, "// top\n");
        assert_eq!(peer.decide(&id, true).0, AcceptOutcome::Accepted);
        let text = doc.get_or_insert_text("main.rs");
        assert_eq!(
            text.get_string(&doc.transact()),
            "// top\nlet x = 1;\nlet y = 3;\n"
        );

        // A second suggestion whose range is then edited inside: conflict, nothing applied.
        let (id, _) = peer.suggest(&suggestion(&peer, 7, 17, "let x = 9;"));
        let id = id.unwrap();
        text.insert(&mut doc.transact_mut(), 12, "0");
        assert_eq!(peer.decide(&id, true).0, AcceptOutcome::Conflict);
        assert!(text.get_string(&doc.transact()).contains("let x0 = 1;"));

        // Undoing everything since the start restores the first suggestion's original.
        let (undone, _) = peer.undo_since(0);
        assert_eq!(undone.len(), 1);
        assert_eq!(
            text.get_string(&doc.transact()),
            "// top\nlet x0 = 1;\nlet y = 2;\n"
        );
    }
}
