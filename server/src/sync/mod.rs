//! The sync wing: `/ws/{room}`, one y-protocols session per WebSocket, as `y-websocket`
//! expects, and the [`keepalive`] every long-lived socket runs. It owns the session loop and
//! the close codes below. Invariant: a frame reaches the room only after the session's
//! current role allows it, and every way a session ends is a close code from this table.
//!
//! The room is joined *before* the upgrade, so a room that cannot be loaded is an HTTP error
//! and the client never sees a blank document. After the upgrade one task per connection
//! runs [`run_session`]: it reads the client's frames, relays the room's frames, pings, and
//! closes with a code that says why:
//!
//! | code | when |
//! |---|---|
//! | 1001 | the server is shutting down |
//! | 1003 | a text frame (the protocol is binary) |
//! | 1007 | a frame or update that does not decode or apply |
//! | 1009 | a message larger than `--max-message-size` |
//! | 1013 | the connection fell too far behind; the client reconnects and resyncs |
//! | 1000 | no message or pong within `--ping-timeout` |
//! | 4205 | a viewer was made an editor: reconnect to write (`y-websocket` does) |
//! | 4401 | the session, API key or share link was revoked, or has expired |
//! | 4403 | the participant was removed from the room |
//! | 4404 | the room was deleted |
//!
//! The 44xx codes tell `y-websocket` not to reconnect. Authorization is checked per message:
//! a viewer's update is answered with a permission-denied message and never applied, and a
//! role change announced on [`AccessEvents`](crate::accounts::access::AccessEvents) updates the
//! session's role at once. A demotion keeps the socket (the next update is refused); a
//! promotion to editor closes it with 4205, so a client that opened read-only reconnects and
//! learns it may write.
//!
//! Events are not the only trigger, because an event can be missed (a node cut off from
//! Redis) and an expiry has no event at all. Each session also keeps two timers in its
//! loop: one at its credential's expiry (the session's end unless refreshed, a share link's
//! `expires_at`), which re-reads the credential and closes with 4401 "credentials expired"
//! if it was not renewed; and one that re-checks everything at a random point in the second
//! half of every `--access-recheck-interval`, so rechecks of many sockets spread out.
//! [`AccessEvent::RecheckAll`] (Redis came back, events were dropped) moves the latter to a
//! random point within `--access-recheck-spread`.

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use bytes::Bytes;
use crdt_store::writes::WriteGrant;
use crdt_store::{ApplyError, AwarenessStamp, Delivery, RoomConnection, RoomId};
use futures_util::StreamExt;
use protocol::{DecodeError, Message, decode_message};
use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tokio::time::{Instant, Sleep};
use tracing::{Instrument, debug, info_span, warn};

use crate::accounts::{
    AccessEvent, AuthError, CredentialStatus, Identity, Principal, Role, RoomAccess, room_access,
};
use crate::app::AppState;
use crate::http::{ApiError, ConnectionSlot, bearer_token, require_role};
use crate::telemetry::refused;

mod grant;
pub(crate) mod keepalive;

use grant::write_grant;
pub(crate) use keepalive::{Keepalive, KeepaliveTick};

/// Close code: the participant may write now; reconnecting picks the new role up.
const CLOSE_ROLE_RAISED: u16 = 4205;
/// Close code: credentials revoked or expired while connected.
const CLOSE_REVOKED: u16 = 4401;
/// Close code: removed from the room.
const CLOSE_REMOVED: u16 = 4403;
/// Close code: the room was deleted.
const CLOSE_ROOM_DELETED: u16 = 4404;

/// What a session is allowed to do, kept current by access events.
struct SessionAccess {
    principal: Principal,
    role: Role,
    /// When the credential ends, in milliseconds by the auth clock; `None` for never.
    expires_at: Option<i64>,
    /// Written into (and stripped from) every awareness state this connection sends.
    stamp: AwarenessStamp,
    /// Where this connection may write in the document.
    grant: WriteGrant,
}

/// Awareness fields only the server may set: the assistant is known by its `assistant` flag,
/// so nobody else may raise it.
const ASSISTANT_ONLY_FIELDS: &[&str] = &["assistant"];

fn stamp(identity: &Identity) -> AwarenessStamp {
    let mut user = Map::new();
    user.insert(
        "id".to_owned(),
        identity.user_id.clone().map_or(Value::Null, Value::String),
    );
    user.insert("name".to_owned(), Value::String(identity.name.clone()));
    let is_assistant = identity.user_id.as_deref() == Some(crate::accounts::ASSISTANT_USER_ID);
    AwarenessStamp {
        user,
        strip: if is_assistant {
            Vec::new()
        } else {
            ASSISTANT_ONLY_FIELDS.to_vec()
        },
    }
}

/// The y-protocols WebSocket of a room. Token as `?token=` or `Authorization: Bearer`.
#[utoipa::path(get, path = "/ws/{room}", tag = "sync",
    responses((status = 101, description = "upgraded"), (status = 401), (status = 403), (status = 404),
        (status = 429, description = "`rate_limited` (upgrades from this address) or `too_many_connections`")))]
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    room: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let room_id = RoomId::parse(&room)?;
    // Listen before checking, so a change between the check and the loop is not missed.
    let events = state.events.subscribe();
    let (access, identity, client_slot) = admit(&req, &state, &room_id).await?;
    let connection = state.registry.connect(&room_id).await?;
    // Checked again with the room joined (as `http::Loaded` does for REST): a deletion that
    // finished in between must not leave this socket in a room created afresh under the id.
    require_role(&state, &access.principal, &room_id, Role::Viewer).await?;
    let (response, session, stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::invalid(e.to_string()))?;
    let max = state.session.max_message_size;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let span = info_span!("ws", room = %room_id, conn = connection.id().get());
    let presence = state.presence.join(room_id.as_str(), &identity);
    actix_web::rt::spawn(
        async move {
            let _presence = presence;
            let _client_slot = client_slot;
            run_session(
                session,
                stream,
                connection,
                access,
                events,
                state.into_inner(),
            )
            .await
        }
        .instrument(span),
    );
    Ok(response)
}

/// Checks an upgrade before the room is joined: the credential (live, 401 otherwise), the
/// per-address limits (429) and the caller's role in the room (403, 404). Answers what the
/// session may do, who it is, and the address's connection slot (none for the assistant).
async fn admit(
    req: &HttpRequest,
    state: &AppState,
    room_id: &RoomId,
) -> Result<(SessionAccess, Identity, Option<ConnectionSlot>), ApiError> {
    let token = bearer_token(req).ok_or(AuthError::Missing)?;
    let principal = state.auth.authenticate(&token).await?;
    let expires_at = match state
        .auth
        .credential_status(&principal)
        .await
        .map_err(AuthError::from)?
    {
        CredentialStatus::Live { expires_at } => expires_at,
        CredentialStatus::Revoked => return Err(AuthError::InvalidToken.into()),
        CredentialStatus::Expired => return Err(AuthError::Expired.into()),
    };
    // Per-address upgrade rate and connection cap (429 before the upgrade). The assistant's
    // peers connect from the server's own address, one per room it works in; they are the
    // server's, not a client's, and are not counted.
    let client_slot = match &principal {
        Principal::User { user_id, .. } if user_id == crate::accounts::ASSISTANT_USER_ID => None,
        _ => Some(state.client_limits.admit_websocket(req.peer_addr())?),
    };
    let (role, identity) = require_role(state, &principal, room_id, Role::Viewer).await?;
    let access = SessionAccess {
        principal,
        role,
        expires_at,
        stamp: stamp(&identity),
        grant: write_grant(role, &identity),
    };
    Ok((access, identity, client_slot))
}

/// Why a session ended.
enum End {
    /// The client closed or vanished; nothing more to send.
    ClientGone,
    /// Close with this code and reason.
    Close(CloseCode, String),
}

fn close(code: CloseCode, reason: impl Into<String>) -> End {
    End::Close(code, reason.into())
}

/// Tracks the connection gauge for the life of one session.
struct ConnectionGauge(metrics::Gauge);

impl ConnectionGauge {
    fn open(gauge: &metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

async fn run_session(
    mut session: Session,
    mut stream: AggregatedMessageStream,
    mut connection: RoomConnection,
    mut access: SessionAccess,
    mut events: broadcast::Receiver<AccessEvent>,
    state: std::sync::Arc<AppState>,
) {
    let _gauge = ConnectionGauge::open(&state.session_metrics.connections);
    let end = session_loop(
        &mut session,
        &mut stream,
        &mut connection,
        &mut access,
        &mut events,
        &state,
    )
    .await;
    // Leave the room first: that removes this client's awareness and tells the others.
    drop(connection);
    if let End::Close(code, reason) = end {
        debug!(code = u16::from(code), %reason, "closing connection");
        // The client may be gone already; nothing to do about it.
        let _ = session
            .close(Some(CloseReason {
                code,
                description: Some(reason),
            }))
            .await;
    }
}

async fn session_loop(
    session: &mut Session,
    stream: &mut AggregatedMessageStream,
    connection: &mut RoomConnection,
    access: &mut SessionAccess,
    events: &mut broadcast::Receiver<AccessEvent>,
    state: &AppState,
) -> End {
    let config = &state.session;
    let fanned_out = &state.session_metrics.fanned_out;
    // y-websocket's handshake: the server sends its state vector (step 1) and who is here.
    let room = connection.room().clone();
    if session.binary(room.sync_step1_frame()).await.is_err() {
        return End::ClientGone;
    }
    if let Some(frame) = room.awareness_frame()
        && session.binary(frame).await.is_err()
    {
        return End::ClientGone;
    }
    let mut keepalive = Keepalive::new(config);
    let mut timers = AccessTimers::new(state, access);
    loop {
        tokio::select! {
            biased;
            _ = state.shutdown.cancelled() => return close(CloseCode::Away, "server shutting down"),
            incoming = stream.next() => {
                let message = match incoming {
                    None => return End::ClientGone,
                    Some(Ok(message)) => message,
                    Some(Err(err)) => return protocol_error(err, config.max_message_size),
                };
                keepalive.heard();
                match message {
                    AggregatedMessage::Binary(frame) => {
                        // An access change announced before this frame was read (say, the
                        // demotion whose HTTP answer the client saw before editing) applies
                        // to it.
                        if let Err(end) = apply_pending_events(state, access, events, &mut timers, connection.room().id()).await {
                            return end;
                        }
                        // A client that never stops sending keeps this branch ready, and the
                        // biased `select!` would never reach the timers below: an expiry (or
                        // re-check) already due is honoured before its frame.
                        if let Err(end) = timers.recheck_if_elapsed(state, access, connection.room().id()).await {
                            return end;
                        }
                        if let Err(end) = handle_frame(session, connection, access, frame).await {
                            return end;
                        }
                    }
                    AggregatedMessage::Text(_) => {
                        refused("text_frame");
                        return close(CloseCode::Unsupported, "text frames are not part of the protocol");
                    }
                    AggregatedMessage::Ping(payload) => {
                        if session.pong(&payload).await.is_err() {
                            return End::ClientGone;
                        }
                    }
                    AggregatedMessage::Pong(_) => {}
                    AggregatedMessage::Close(_) => return close(CloseCode::Normal, "closed by client"),
                }
            }
            delivery = connection.recv() => match delivery {
                Some(Delivery::Frame(frame)) => {
                    if session.binary(frame).await.is_err() {
                        return End::ClientGone;
                    }
                    fanned_out.increment(1);
                }
                Some(Delivery::Lagged) => {
                    refused("lagged");
                    return close(CloseCode::Again, "connection fell behind; reconnect to resync");
                }
                None => return close(CloseCode::Away, "room closed"),
            },
            event = events.recv() => {
                let due = recheck_due(event, access, connection.room().id());
                if let Err(end) = timers.recheck_if(due, state, access, connection.room().id()).await {
                    return end;
                }
            }
            () = &mut timers.expiry, if access.expires_at.is_some() => {
                if let Err(end) = timers.recheck(state, access, connection.room().id(), Trigger::Expiry).await {
                    return end;
                }
            }
            () = &mut timers.periodic => {
                if let Err(end) = timers.recheck(state, access, connection.room().id(), Trigger::Scheduled).await {
                    return end;
                }
            }
            tick = keepalive.tick() => {
                if tick == KeepaliveTick::TimedOut {
                    refused("keepalive_timeout");
                    return close(CloseCode::Normal, "keepalive timeout");
                }
                if session.ping(b"").await.is_err() {
                    return End::ClientGone;
                }
            }
        }
    }
}

fn protocol_error(err: actix_ws::ProtocolError, max: usize) -> End {
    match err {
        actix_ws::ProtocolError::Overflow => {
            refused("oversized");
            close(CloseCode::Size, format!("message larger than {max} bytes"))
        }
        // Continuation aggregation reports its size limit as an I/O error.
        actix_ws::ProtocolError::Io(ref io)
            if io.to_string().contains("maximum continuation size") =>
        {
            refused("oversized");
            close(CloseCode::Size, format!("message larger than {max} bytes"))
        }
        other => {
            refused("websocket_protocol");
            close(CloseCode::Protocol, other.to_string())
        }
    }
}

/// How soon an access event (or a gap in them) calls for a re-check of this session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Not at all.
    Never,
    /// At a random point within `--access-recheck-spread`: every socket of the node was
    /// asked at once, and they must not reach the database together.
    Soon,
    /// At once: something that concerns this very session changed.
    Now,
}

fn recheck_due(
    event: Result<AccessEvent, broadcast::error::RecvError>,
    access: &SessionAccess,
    room: &RoomId,
) -> Due {
    match event {
        Ok(AccessEvent::RecheckAll) => Due::Soon,
        Ok(event) if event.concerns(&access.principal, room.as_str()) => Due::Now,
        Ok(_) => Due::Never,
        // Missed events on this node's own channel: re-check to be safe.
        Err(broadcast::error::RecvError::Lagged(_)) => Due::Now,
        Err(broadcast::error::RecvError::Closed) => Due::Never,
    }
}

/// Re-checks access if any event already queued concerns this session.
async fn apply_pending_events(
    state: &AppState,
    access: &mut SessionAccess,
    events: &mut broadcast::Receiver<AccessEvent>,
    timers: &mut AccessTimers,
    room: &RoomId,
) -> Result<(), End> {
    let mut due = Due::Never;
    loop {
        let event = match events.try_recv() {
            Ok(event) => Ok(event),
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                Err(broadcast::error::RecvError::Lagged(n))
            }
            Err(_) => break,
        };
        due = due.max(recheck_due(event, access, room));
    }
    timers.recheck_if(due, state, access, room).await
}

/// What made a session re-check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    /// An access event, or the periodic backstop.
    Scheduled,
    /// The credential's lifetime ran out by the last reading.
    Expiry,
}

/// The two deadlines of a session's access: its credential's expiry and its next re-check.
/// Both are tokio timers polled by the session loop's `select!`, so they cost nothing
/// until they fire.
struct AccessTimers {
    /// Fires when the credential ends (only polled while it has an expiry).
    expiry: std::pin::Pin<Box<Sleep>>,
    /// Fires at the next periodic (or requested) re-check.
    periodic: std::pin::Pin<Box<Sleep>>,
    interval: std::time::Duration,
    spread: std::time::Duration,
}

impl AccessTimers {
    fn new(state: &AppState, access: &SessionAccess) -> Self {
        let mut timers = Self {
            expiry: Box::pin(tokio::time::sleep_until(far_future())),
            periodic: Box::pin(tokio::time::sleep_until(far_future())),
            interval: state.session.access_recheck_interval,
            spread: state.session.access_recheck_spread,
        };
        timers.rearm(state, access);
        timers
    }

    /// After a re-check: the next periodic one in the second half of the interval (so at
    /// least once per interval, and sockets opened or re-checked together drift apart), and
    /// the expiry where the credential now ends.
    fn rearm(&mut self, state: &AppState, access: &SessionAccess) {
        let next = self.interval.mul_f64(0.5 + rand::random::<f64>() / 2.0);
        self.periodic.as_mut().reset(Instant::now() + next);
        let expiry = access
            .expires_at
            .and_then(|at| {
                let left = u64::try_from(at.saturating_sub(state.auth.now())).unwrap_or(0);
                Instant::now().checked_add(std::time::Duration::from_millis(left))
            })
            .unwrap_or_else(far_future);
        self.expiry.as_mut().reset(expiry);
    }

    /// Re-checks now, soon, or not at all.
    async fn recheck_if(
        &mut self,
        due: Due,
        state: &AppState,
        access: &mut SessionAccess,
        room: &RoomId,
    ) -> Result<(), End> {
        match due {
            Due::Never => Ok(()),
            Due::Soon => {
                let soon = Instant::now() + self.spread.mul_f64(rand::random::<f64>());
                if soon < self.periodic.deadline() {
                    self.periodic.as_mut().reset(soon);
                }
                Ok(())
            }
            Due::Now => self.recheck(state, access, room, Trigger::Scheduled).await,
        }
    }

    /// Re-checks now if the expiry or the periodic re-check is already past.
    async fn recheck_if_elapsed(
        &mut self,
        state: &AppState,
        access: &mut SessionAccess,
        room: &RoomId,
    ) -> Result<(), End> {
        let now = Instant::now();
        if access.expires_at.is_some() && self.expiry.deadline() <= now {
            self.recheck(state, access, room, Trigger::Expiry).await
        } else if self.periodic.deadline() <= now {
            self.recheck(state, access, room, Trigger::Scheduled).await
        } else {
            Ok(())
        }
    }

    async fn recheck(
        &mut self,
        state: &AppState,
        access: &mut SessionAccess,
        room: &RoomId,
        trigger: Trigger,
    ) -> Result<(), End> {
        recheck_access(state, access, room, trigger).await?;
        self.rearm(state, access);
        Ok(())
    }
}

/// A deadline that never comes in practice (tokio's own choice for "no timeout").
fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400 * 365 * 30)
}

/// Re-reads what the session may do; ends it if nothing.
async fn recheck_access(
    state: &AppState,
    access: &mut SessionAccess,
    room: &RoomId,
    trigger: Trigger,
) -> Result<(), End> {
    // Bounded per node, so re-checking every socket at once queues here, not in the pool.
    let _turn = state.events.recheck_turn().await;
    match state.auth.credential_status(&access.principal).await {
        Ok(CredentialStatus::Live { expires_at }) => access.expires_at = expires_at,
        Ok(CredentialStatus::Revoked) => {
            return Err(close(
                CloseCode::Other(CLOSE_REVOKED),
                "credentials revoked",
            ));
        }
        Ok(CredentialStatus::Expired) => {
            return Err(close(
                CloseCode::Other(CLOSE_REVOKED),
                "credentials expired",
            ));
        }
        // By the last reading the credential ends now; without a newer one, it has ended.
        Err(err) if trigger == Trigger::Expiry => {
            warn!(error = %err, "credential re-check at expiry failed; closing");
            return Err(close(
                CloseCode::Other(CLOSE_REVOKED),
                "credentials expired",
            ));
        }
        Err(err) => {
            // A database hiccup must not cut everyone off; the next re-check reads again.
            warn!(error = %err, "access re-check failed; keeping the current role");
            return Ok(());
        }
    }
    match room_access(state.db(), &access.principal, room).await {
        Ok(RoomAccess::NoRoom) => Err(close(CloseCode::Other(CLOSE_ROOM_DELETED), "room deleted")),
        Ok(RoomAccess::Denied) => Err(close(
            CloseCode::Other(CLOSE_REMOVED),
            "removed from the room",
        )),
        Ok(RoomAccess::Granted { role, identity }) => {
            let may_now_write = access.role < Role::Editor && role >= Role::Editor;
            access.role = role;
            access.stamp = stamp(&identity);
            access.grant = write_grant(role, &identity);
            if may_now_write {
                return Err(close(
                    CloseCode::Other(CLOSE_ROLE_RAISED),
                    "role changed: reconnect to edit",
                ));
            }
            Ok(())
        }
        Err(err) => {
            warn!(error = %err, "access re-check failed; keeping the current role");
            Ok(())
        }
    }
}

/// An empty v1 update: what `y-websocket` sends in step 2 when it has nothing new.
const EMPTY_UPDATE: &[u8] = &[0, 0];

/// Refuses a write from a read-only connection with the y-protocols permission-denied reply.
async fn refuse_write(session: &mut Session, update: &[u8]) -> Result<(), End> {
    if update == EMPTY_UPDATE {
        return Ok(());
    }
    refused("permission_denied");
    let reply =
        protocol::encode_permission_denied_frame("read-only: your role cannot edit this room");
    session.binary(reply).await.map_err(|_| End::ClientGone)
}

/// Handles one binary frame from the client.
async fn handle_frame(
    session: &mut Session,
    connection: &mut RoomConnection,
    access: &SessionAccess,
    frame: Bytes,
) -> Result<(), End> {
    let message = decode_message(&frame).map_err(malformed)?;
    let may_write = access.role.writes_document();
    match message {
        Message::SyncStep2(update) | Message::Update(update) if !may_write => {
            refuse_write(session, &update).await?;
        }
        Message::SyncStep1(remote) => {
            let reply = connection.room().sync_step2_frame(&remote);
            session.binary(reply).await.map_err(|_| End::ClientGone)?;
        }
        // Step 2 is re-framed as an update for the others; an update frame is forwarded as is.
        Message::SyncStep2(update) => {
            let applied = connection
                .apply_update_as(update, None, &access.grant)
                .await;
            write_answered(session, applied).await?;
        }
        Message::Update(update) => {
            let applied = connection
                .apply_update_as(update, Some(frame), &access.grant)
                .await;
            write_answered(session, applied).await?;
        }
        Message::Awareness(update) => connection
            .apply_awareness(update, frame, Some(&access.stamp))
            .map_err(|refused_state| {
                refused("awareness_too_large");
                close(CloseCode::Size, refused_state.to_string())
            })?,
        Message::QueryAwareness => {
            if let Some(reply) = connection.room().awareness_frame() {
                session.binary(reply).await.map_err(|_| End::ClientGone)?;
            }
        }
        // Clients do not authenticate through this message; there is nothing to answer.
        Message::Auth(_) => {}
    }
    Ok(())
}

fn malformed(err: DecodeError) -> End {
    refused("malformed");
    close(CloseCode::Invalid, format!("malformed message: {err}"))
}

/// Answers an update the store refused for where it writes with the permission-denied
/// message (the socket stays open, as for a viewer's update: nothing of it was applied);
/// any other refusal ends the session.
async fn write_answered(session: &mut Session, applied: Result<(), ApplyError>) -> Result<(), End> {
    match applied {
        Ok(()) => Ok(()),
        Err(ApplyError::Denied(denied)) => {
            refused("permission_denied");
            let reply = protocol::encode_permission_denied_frame(&denied.to_string());
            session.binary(reply).await.map_err(|_| End::ClientGone)
        }
        Err(err) => Err(apply_failed(err)),
    }
}

fn apply_failed(err: ApplyError) -> End {
    match err {
        ApplyError::ShuttingDown => close(CloseCode::Away, "server shutting down"),
        other => {
            refused("invalid_update");
            close(CloseCode::Invalid, other.to_string())
        }
    }
}
