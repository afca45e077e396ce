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

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use bytes::Bytes;
use crdt_store::{ApplyError, Delivery, RoomConnection, RoomId};
use futures_util::StreamExt;
use protocol::{DecodeError, Message, decode_message};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{Instrument, debug, info_span};

use crate::app::AppState;
use crate::error::ApiError;
use crate::telemetry::refused;

/// `GET /ws/{room}`: upgrade and start the session.
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    room: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let room_id = RoomId::parse(&room)?;
    let connection = state.registry.connect(&room_id).await?;
    let (response, session, stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::invalid(e.to_string()))?;
    let max = state.session.max_message_size;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let span = info_span!("ws", room = %room_id, conn = connection.id().get());
    actix_web::rt::spawn(
        run_session(session, stream, connection, state.into_inner()).instrument(span),
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
    state: std::sync::Arc<AppState>,
) {
    let _gauge = ConnectionGauge::open(&state.session_metrics.connections);
    let end = session_loop(&mut session, &mut stream, &mut connection, &state).await;
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
                        if let Err(end) = handle_frame(session, connection, frame).await {
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

/// Handles one binary frame from the client.
async fn handle_frame(
    session: &mut Session,
    connection: &mut RoomConnection,
    frame: Bytes,
) -> Result<(), End> {
    let message = decode_message(&frame).map_err(malformed)?;
    match message {
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
        Message::Awareness(update) => connection.apply_awareness(update, frame),
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
