//! The server's end of the control WebSocket of a `tandem ai-peer` process (external mode):
//! checking its secret, attaching it, and relaying between the socket and the
//! [`ControlLink`] until either ends.

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

use super::Ai;
use super::control::{FromPeer, ToPeer};
use super::decisions::ai;
use super::remote::ControlLink;
use crate::app::AppState;
use crate::http::ApiError;
use crate::sync::{Keepalive, KeepaliveTick};

/// Accepts the peer process's control connection: 404 in in-process mode, 401 for a wrong
/// secret (`Authorization: Bearer …`), 409 while another process is connected.
pub(crate) fn connect(
    req: &HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ai = ai(&state)?.clone();
    let remote = ai.remote().ok_or_else(|| {
        ApiError::not_found(
            "the assistant runs inside the server (start it with --ai-peer external)",
        )
    })?;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !remote.secret().verify(presented) {
        warn!("refused an AI peer connection with a wrong secret");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_ai_peer_secret",
            "wrong AI peer secret",
        ));
    }
    let (link, outgoing) = remote
        .attach()
        .map_err(|err| ApiError::conflict("ai_peer_already_connected", err.to_string()))?;
    let (response, session, stream) = match actix_ws::handle(req, body) {
        Ok(upgrade) => upgrade,
        Err(err) => {
            remote.detach(&link);
            return Err(ApiError::invalid(err.to_string()));
        }
    };
    let max = state.session.max_message_size;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    info!("AI peer process connected");
    let tasks = ai.tasks().clone();
    tasks.spawn_local(
        async move {
            let end = control_loop(session.clone(), stream, &link, outgoing, &ai, &state).await;
            if let Some(remote) = ai.remote() {
                remote.detach(&link);
            }
            info!(reason = %end.1, "AI peer process disconnected");
            if let Some(code) = end.0 {
                let _ = session
                    .close(Some(CloseReason {
                        code,
                        description: Some(end.1),
                    }))
                    .await;
            }
        }
        .instrument(info_span!("ai_peer")),
    );
    Ok(response)
}

/// Relays between the control socket and the link until either ends; returns the close
/// code to send (none when the peer process is gone) and why.
async fn control_loop(
    mut session: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
    link: &Arc<ControlLink>,
    mut outgoing: mpsc::Receiver<ToPeer>,
    ai: &Ai,
    state: &AppState,
) -> (Option<CloseCode>, String) {
    let mut keepalive = Keepalive::new(&state.session);
    loop {
        tokio::select! {
            biased;
            _ = ai.stopping().cancelled() => {
                return (Some(CloseCode::Away), "server shutting down".into());
            }
            incoming = stream.next() => {
                let message = match incoming {
                    None => return (None, "connection closed".into()),
                    Some(Ok(message)) => message,
                    // The process went away without a close (killed, network gone).
                    Some(Err(actix_ws::ProtocolError::Io(err))) => {
                        return (None, format!("connection lost: {err}"));
                    }
                    Some(Err(err)) => return (Some(CloseCode::Protocol), err.to_string()),
                };
                keepalive.heard();
                match message {
                    AggregatedMessage::Text(text) => match serde_json::from_str::<FromPeer>(&text) {
                        Ok(message) => {
                            if let Some((id, room, suggestion)) = link.receive(message) {
                                // Checking and versioning take a while; the loop goes on.
                                let (ai_for_gate, link) = (ai.clone(), link.clone());
                                ai.tasks().spawn(async move {
                                    let verdict = ai_for_gate.gate(&room, &suggestion).await;
                                    link.answer_gate(id, verdict).await;
                                });
                            }
                        }
                        Err(err) => {
                            return (Some(CloseCode::Invalid), format!("unreadable message: {err}"));
                        }
                    },
                    AggregatedMessage::Binary(_) => {
                        return (Some(CloseCode::Unsupported), "the control protocol is JSON text".into());
                    }
                    AggregatedMessage::Ping(payload) => {
                        if session.pong(&payload).await.is_err() {
                            return (None, "connection closed".into());
                        }
                    }
                    AggregatedMessage::Pong(_) => {}
                    AggregatedMessage::Close(_) => return (Some(CloseCode::Normal), "closed by the peer".into()),
                }
            }
            Some(message) = outgoing.recv() => {
                let Ok(text) = serde_json::to_string(&message) else { continue };
                if session.text(text).await.is_err() {
                    return (None, "connection closed".into());
                }
            }
            tick = keepalive.tick() => {
                if tick == KeepaliveTick::TimedOut {
                    return (Some(CloseCode::Normal), "keepalive timeout".into());
                }
                if session.ping(b"").await.is_err() {
                    return (None, "connection closed".into());
                }
            }
        }
    }
}
