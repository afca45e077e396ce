//! `/ws/{room}`: one y-protocols session per WebSocket, as `y-websocket` expects.
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
//! | 4401 | the session, API key or share link was revoked (or the link expired) |
//! | 4403 | the participant was removed from the room |
//! | 4404 | the room was deleted |
//!
//! The 44xx codes tell `y-websocket` not to reconnect. Authorization is checked per message:
//! a viewer's update is answered with a permission-denied message and never applied, and a
//! role change announced on [`AccessEvents`](crate::access::AccessEvents) updates the
//! session's role at once. A demotion keeps the socket (the next update is refused); a
//! promotion to editor closes it with 4205, so a client that opened read-only reconnects and
//! learns it may write.

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use bytes::Bytes;
use crdt_store::{ApplyError, Delivery, RoomConnection, RoomId};
use futures_util::StreamExt;
use protocol::{DecodeError, Message, decode_message};
use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{Instrument, debug, info_span, warn};

use crate::access::{AccessEvent, Identity, RoomAccess, room_access};
use crate::app::AppState;
use crate::auth::{AuthError, Principal, Role};
use crate::error::ApiError;
use crate::routes::caller::{bearer_token, require_role};
use crate::telemetry::refused;

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
    token: String,
    principal: Principal,
    role: Role,
    /// Written into the `user` field of every awareness state this connection sends.
    stamp: Map<String, Value>,
}

fn stamp(identity: &Identity) -> Map<String, Value> {
    let mut stamp = Map::new();
    stamp.insert(
        "id".to_owned(),
        identity.user_id.clone().map_or(Value::Null, Value::String),
    );
    stamp.insert("name".to_owned(), Value::String(identity.name.clone()));
    stamp
}

/// The y-protocols WebSocket of a room. Token as `?token=` or `Authorization: Bearer`.
#[utoipa::path(get, path = "/ws/{room}", tag = "sync",
    responses((status = 101, description = "upgraded"), (status = 401), (status = 403), (status = 404)))]
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    room: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let room_id = RoomId::parse(&room)?;
    // Listen before checking, so a change between the check and the loop is not missed.
    let events = state.events.subscribe();
    let token = bearer_token(&req).ok_or(AuthError::Missing)?;
    let principal = state.auth.authenticate(&token).await?;
    let (role, identity) = require_role(&state, &principal, room_id.as_str(), Role::Viewer).await?;
    let access = SessionAccess {
        token,
        principal,
        role,
        stamp: stamp(&identity),
    };
    let connection = state.registry.connect(&room_id).await?;
    // Checked again with the room joined (see `authorized_room`): a deletion that finished
    // in between must not leave this socket in a room created afresh under the id.
    require_role(&state, &access.principal, room_id.as_str(), Role::Viewer).await?;
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
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
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
                last_heard = Instant::now();
                match message {
                    AggregatedMessage::Binary(frame) => {
                        // An access change announced before this frame was read (say, the
                        // demotion whose HTTP answer the client saw before editing) applies
                        // to it.
                        if let Err(end) = apply_pending_events(state, access, events, connection.room().id()).await {
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
                if concerns_session(event, access, connection.room().id())
                    && let Err(end) = recheck_access(state, access, connection.room().id()).await
                {
                    return end;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > config.ping_timeout {
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

/// Whether an access event (or a gap in them) calls for a re-check of this session.
fn concerns_session(
    event: Result<AccessEvent, broadcast::error::RecvError>,
    access: &SessionAccess,
    room: &RoomId,
) -> bool {
    match event {
        Ok(event) => event.concerns(&access.principal, room.as_str()),
        // Missed events: re-check to be safe.
        Err(broadcast::error::RecvError::Lagged(_)) => true,
        Err(broadcast::error::RecvError::Closed) => false,
    }
}

/// Re-checks access if any event already queued concerns this session.
async fn apply_pending_events(
    state: &AppState,
    access: &mut SessionAccess,
    events: &mut broadcast::Receiver<AccessEvent>,
    room: &RoomId,
) -> Result<(), End> {
    let mut recheck = false;
    loop {
        match events.try_recv() {
            Ok(event) => recheck |= event.concerns(&access.principal, room.as_str()),
            Err(broadcast::error::TryRecvError::Lagged(_)) => recheck = true,
            Err(_) => break,
        }
    }
    if recheck {
        recheck_access(state, access, room).await?;
    }
    Ok(())
}

/// Re-reads what the session may do after an access change; ends it if nothing.
async fn recheck_access(
    state: &AppState,
    access: &mut SessionAccess,
    room: &RoomId,
) -> Result<(), End> {
    let credentials_live = match &access.principal {
        Principal::User { session_id, .. } => state
            .auth
            .session_live(session_id)
            .await
            .map_err(AuthError::from),
        _ => match state.auth.authenticate(&access.token).await {
            Ok(_) => Ok(true),
            Err(AuthError::InvalidToken | AuthError::Expired | AuthError::Missing) => Ok(false),
            Err(other) => Err(other),
        },
    };
    match credentials_live {
        Ok(true) => {}
        Ok(false) => {
            return Err(close(
                CloseCode::Other(CLOSE_REVOKED),
                "credentials revoked",
            ));
        }
        Err(err) => {
            // A database hiccup must not cut everyone off; the next event re-checks.
            warn!(error = %err, "access re-check failed; keeping the current role");
            return Ok(());
        }
    }
    match room_access(state.db(), &access.principal, room.as_str()).await {
        Ok(RoomAccess::NoRoom) => Err(close(CloseCode::Other(CLOSE_ROOM_DELETED), "room deleted")),
        Ok(RoomAccess::Denied) => Err(close(
            CloseCode::Other(CLOSE_REMOVED),
            "removed from the room",
        )),
        Ok(RoomAccess::Granted { role, identity }) => {
            let may_now_write = access.role < Role::Editor && role >= Role::Editor;
            access.role = role;
            access.stamp = stamp(&identity);
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
    let may_write = access.role >= Role::Editor;
    match message {
        Message::SyncStep2(update) | Message::Update(update) if !may_write => {
            refuse_write(session, &update).await?;
        }
        Message::SyncStep1(remote) => {
            let reply = connection.room().sync_step2_frame(&remote);
            session.binary(reply).await.map_err(|_| End::ClientGone)?;
        }
        // Step 2 is re-framed as an update for the others; an update frame is forwarded as is.
        Message::SyncStep2(update) => connection
            .apply_update(update, None)
            .await
            .map_err(apply_failed)?,
        Message::Update(update) => connection
            .apply_update(update, Some(frame))
            .await
            .map_err(apply_failed)?,
        Message::Awareness(update) => {
            connection.apply_awareness(update, frame, Some(&access.stamp))
        }
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

fn apply_failed(err: ApplyError) -> End {
    match err {
        ApplyError::ShuttingDown => close(CloseCode::Away, "server shutting down"),
        other => {
            refused("invalid_update");
            close(CloseCode::Invalid, other.to_string())
        }
    }
}
