//! `tandem ai-peer`: the assistant's peer as a process of its own.
//!
//! It opens the server's control WebSocket (`/api/ai/peer`, the shared secret in
//! `Authorization: Bearer …`) and does what the server asks over it ([`crate::ai::control`]):
//! for each room it is told to join it runs the same peer as the in-process mode
//! ([`peer::spawn`]), connected to the ordinary `/ws/{room}` with the short-lived service
//! token the server handed over, and forwards commands to it and its answers back. When the
//! control connection drops it leaves every room (its presence disappears) and reconnects
//! with backoff; the server joins rooms again on the next request. A refused secret ends the
//! process with an error: retrying cannot help.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header::AUTHORIZATION};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::ai::command::AcceptGate;
use crate::ai::control::{CONTROL_PATH, FromPeer, PeerSecret, ToPeer, WireReply};
use crate::ai::peer::{self, PeerHandle, Socket};
use crate::ai::suggestion::GateVerdict;

/// First wait before reconnecting; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the process pings the server.
const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A control connection silent this long (the server pings every `--ping-interval`) is
/// given up and made again.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// Messages for the server queued by room peers and reply tasks.
const OUTGOING_QUEUE: usize = 256;

/// What `tandem ai-peer` runs with.
#[derive(Clone, Debug)]
pub struct PeerProcessConfig {
    /// The server's base URL, `http://host:port`.
    pub server: String,
    /// The shared secret (`--ai-peer-secret` of the server).
    pub secret: PeerSecret,
}

/// The server's WebSocket endpoints, from its base URL.
struct Endpoints {
    /// `ws://host:port/api/ai/peer`.
    control: String,
    /// `ws://host:port`, where `/ws/{room}` is.
    rooms: String,
}

impl Endpoints {
    fn parse(server: &str) -> anyhow::Result<Self> {
        let server = server.trim_end_matches('/');
        let host = server.strip_prefix("http://").ok_or_else(|| {
            anyhow!(
                "--server must be an http:// URL (the peer speaks plain WebSocket; \
                 run it next to the server or behind a local TLS proxy), got {server:?}"
            )
        })?;
        anyhow::ensure!(
            !host.is_empty() && !host.contains('/'),
            "--server must be the server's base URL (http://host:port), got {server:?}"
        );
        Ok(Self {
            control: format!("ws://{host}{CONTROL_PATH}"),
            rooms: format!("ws://{host}"),
        })
    }
}

/// Why a connection attempt failed.
enum ConnectError {
    /// The server answered, and retrying will not change its answer.
    Fatal(anyhow::Error),
    /// Worth another try (server down or restarting, another peer still connected).
    Transient(anyhow::Error),
}

/// Runs until `stop` is cancelled (then leaves every room and returns `Ok`), or until the
/// server refuses the secret.
pub async fn run(config: PeerProcessConfig, stop: CancellationToken) -> anyhow::Result<()> {
    let endpoints = Endpoints::parse(&config.server)?;
    let tasks = TaskTracker::new();
    let mut backoff = MIN_BACKOFF;
    let outcome = loop {
        match connect(&endpoints, &config.secret).await {
            Ok(socket) => {
                backoff = MIN_BACKOFF;
                info!(server = %config.server, "control connection open");
                // Scripts and tests read this line; keep its shape stable.
                println!("tandem ai-peer connected to {}", config.server);
                match serve(socket, &endpoints, &tasks, &stop).await {
                    Ok(()) if stop.is_cancelled() => break Ok(()),
                    Ok(()) => warn!("the server closed the control connection; reconnecting"),
                    Err(err) => warn!(error = %err, "control connection lost; reconnecting"),
                }
            }
            Err(ConnectError::Fatal(err)) => break Err(err),
            Err(ConnectError::Transient(err)) => {
                warn!(error = %err, retry_in = ?backoff, "cannot open the control connection");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => break Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    };
    tasks.close();
    tasks.wait().await;
    outcome
}

async fn connect(endpoints: &Endpoints, secret: &PeerSecret) -> Result<Socket, ConnectError> {
    let mut request = endpoints
        .control
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::Fatal(e.into()))?;
    let mut authorization = HeaderValue::from_str(&secret.authorization())
        .map_err(|_| ConnectError::Fatal(anyhow!("the secret is not a valid header value")))?;
    authorization.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, authorization);
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status();
            match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(ConnectError::Fatal(
                    anyhow!("the server refused the AI peer secret ({status})"),
                )),
                StatusCode::NOT_FOUND => Err(ConnectError::Fatal(anyhow!(
                    "the server does not accept an AI peer process (start it with --ai-peer external)"
                ))),
                StatusCode::CONFLICT => Err(ConnectError::Transient(anyhow!(
                    "another AI peer process is connected"
                ))),
                _ => Err(ConnectError::Transient(anyhow!(
                    "the server answered {status}"
                ))),
            }
        }
        Err(err) => Err(ConnectError::Transient(err.into())),
    }
}

/// Gate questions awaiting the server's answer, by id. A `std` mutex: held to insert or
/// remove.
type Gates = Arc<Mutex<HashMap<u64, oneshot::Sender<GateVerdict>>>>;

fn lock(gates: &Gates) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<GateVerdict>>> {
    gates.lock().unwrap_or_else(|e| e.into_inner())
}

/// Releases every gate question when the connection ends: their peers carry on (and stop).
struct ReleaseGates(Gates);

impl Drop for ReleaseGates {
    fn drop(&mut self) {
        lock(&self.0).clear();
    }
}

/// Everything one control connection has started.
struct Session<'a> {
    endpoints: &'a Endpoints,
    tasks: &'a TaskTracker,
    /// Cancelled when the connection ends: every room peer it started leaves.
    rooms_stop: CancellationToken,
    /// Each joined room's peer, with the number it was started under.
    rooms: HashMap<String, (u64, PeerHandle)>,
    started: u64,
    gates: Gates,
    next_gate: Arc<AtomicU64>,
    /// For room peers and reply tasks to reach the server.
    outgoing: mpsc::Sender<FromPeer>,
    /// Room peers that stopped, by room and number.
    exits: mpsc::Sender<(String, u64)>,
}

async fn serve(
    mut socket: Socket,
    endpoints: &Endpoints,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let (outgoing, mut to_server) = mpsc::channel(OUTGOING_QUEUE);
    let (exits, mut stopped_rooms) = mpsc::channel(OUTGOING_QUEUE);
    let mut session = Session {
        endpoints,
        tasks,
        rooms_stop: stop.child_token(),
        rooms: HashMap::new(),
        started: 0,
        gates: Gates::default(),
        next_gate: Arc::new(AtomicU64::new(1)),
        outgoing,
        exits,
    };
    let _leave_rooms = session.rooms_stop.clone().drop_guard();
    let _release_gates = ReleaseGates(session.gates.clone());
    let mut ping = tokio::time::interval(PING_INTERVAL);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            message = socket.next() => {
                let Some(message) = message else { return Ok(()) };
                last_heard = Instant::now();
                match message? {
                    WsMessage::Text(text) => match serde_json::from_str::<ToPeer>(&text) {
                        Ok(message) => {
                            if let Some(reply) = session.receive(message) {
                                send(&mut socket, &reply).await?;
                            }
                        }
                        Err(err) => warn!(error = %err, "unreadable control message"),
                    },
                    WsMessage::Close(_) => return Ok(()),
                    _ => {}
                }
            }
            Some(message) = to_server.recv() => send(&mut socket, &message).await?,
            Some((room, number)) = stopped_rooms.recv() => {
                if session.rooms.get(&room).is_some_and(|(started, _)| *started == number) {
                    session.rooms.remove(&room);
                    send(&mut socket, &FromPeer::Left { room }).await?;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    bail!("nothing heard from the server for {SILENCE_LIMIT:?}");
                }
                socket.send(WsMessage::Ping(Default::default())).await?;
            }
            _ = stop.cancelled() => {
                peer::close_gracefully(&mut socket).await;
                return Ok(());
            }
        }
    }
}

async fn send(socket: &mut Socket, message: &FromPeer) -> anyhow::Result<()> {
    let text = serde_json::to_string(message).context("encoding a control message")?;
    socket.send(WsMessage::Text(text.into())).await?;
    Ok(())
}

impl Session<'_> {
    /// Acts on one message from the server; returns what to answer at once, if anything.
    fn receive(&mut self, message: ToPeer) -> Option<FromPeer> {
        match message {
            ToPeer::Join { room, token } => {
                self.join(room, &token);
                None
            }
            ToPeer::Command { room, id, command } => {
                let (command, reply) = command.into_command();
                let peer = self
                    .rooms
                    .get(&room)
                    .map(|(_, peer)| peer)
                    .filter(|peer| peer.is_alive());
                // Never wait here: a room peer may itself be waiting for a gate answer
                // that only this loop can deliver.
                let handed_over = peer.is_some_and(|peer| peer.try_send(command));
                match (id, reply) {
                    (Some(id), Some(reply)) if handed_over => {
                        let outgoing = self.outgoing.clone();
                        self.tasks.spawn(async move {
                            let reply = reply.await;
                            let _ = outgoing.send(FromPeer::Reply { id, reply }).await;
                        });
                        None
                    }
                    (Some(id), _) => Some(FromPeer::Reply {
                        id,
                        reply: WireReply::Unavailable,
                    }),
                    (None, _) => None,
                }
            }
            ToPeer::GateAnswer { id, verdict } => {
                if let Some(waiter) = lock(&self.gates).remove(&id) {
                    let _ = waiter.send(verdict);
                }
                None
            }
        }
    }

    fn join(&mut self, room: String, token: &str) {
        if self
            .rooms
            .get(&room)
            .is_some_and(|(_, peer)| peer.is_alive())
        {
            debug!(%room, "already in the room");
            return;
        }
        self.started += 1;
        let number = self.started;
        let peer = peer::spawn(
            peer::room_url(&self.endpoints.rooms, &room, token),
            room.clone(),
            crate::clock::system_clock(),
            self.gate(&room),
            self.tasks,
            self.rooms_stop.child_token(),
        );
        let watched = peer.clone();
        let exits = self.exits.clone();
        let name = room.clone();
        self.tasks.spawn(async move {
            watched.stopped().await;
            let _ = exits.send((name, number)).await;
        });
        info!(%room, "joined");
        self.rooms.insert(room, (number, peer));
    }

    /// The gate of `room`'s peer: asks the server over the control connection.
    fn gate(&self, room: &str) -> AcceptGate {
        let gates = self.gates.clone();
        let next = self.next_gate.clone();
        let outgoing = self.outgoing.clone();
        let room = room.to_owned();
        Arc::new(move |suggestion: String| {
            let (gates, outgoing, room) = (gates.clone(), outgoing.clone(), room.clone());
            let id = next.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                let (sender, answer) = oneshot::channel();
                lock(&gates).insert(id, sender);
                let question = FromPeer::Gate {
                    id,
                    room,
                    suggestion,
                };
                if outgoing.send(question).await.is_err() {
                    lock(&gates).remove(&id);
                    return GateVerdict::Unreachable;
                }
                tokio::select! {
                    verdict = answer => verdict.unwrap_or(GateVerdict::Unreachable),
                    // The connection ended before the answer came.
                    _ = outgoing.closed() => GateVerdict::Unreachable,
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_the_base_url() {
        let endpoints = Endpoints::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(endpoints.control, "ws://127.0.0.1:8080/api/ai/peer");
        assert_eq!(endpoints.rooms, "ws://127.0.0.1:8080");
        assert!(Endpoints::parse("https://example.com").is_err());
        assert!(Endpoints::parse("http://example.com/base").is_err());
        assert!(Endpoints::parse("127.0.0.1:8080").is_err());
    }
}
