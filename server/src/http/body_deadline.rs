//! A deadline on request bodies: a client that sends a complete head and then its body one
//! byte at a time is answered `408 request_timeout` and its connection closed, instead of
//! holding a handler (and its connection) for as long as it likes. The head's own deadline is
//! kept by `head_deadline`; WebSocket upgrades are left alone, since their "body" is the
//! socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Sleep, sleep};

use crate::app::AppState;
use crate::http::error::ApiError;

/// The request's payload, failing once the deadline passes before it ends.
struct DeadlinePayload {
    inner: Payload,
    deadline: Pin<Box<Sleep>>,
    /// Set when the deadline cut the body off, for the middleware to answer 408.
    expired: Arc<AtomicBool>,
    ended: bool,
}

impl Stream for DeadlinePayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.ended = true;
                this.expired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request body not received in time",
                )))))
            }
        }
    }
}

/// Middleware: wraps every non-upgrade request's payload in the body deadline, and answers
/// `408 request_timeout` (closing the connection) when it fired, whatever the handler made
/// of the failed read.
pub async fn enforce(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let timeout = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.http.request_body_timeout);
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let expired = Arc::new(AtomicBool::new(false));
    if let (Some(timeout), false) = (timeout, upgrade) {
        let inner = req.parts_mut().1.take();
        req.set_payload(Payload::Stream {
            payload: Box::pin(DeadlinePayload {
                inner,
                deadline: Box::pin(sleep(timeout)),
                expired: expired.clone(),
                ended: false,
            }),
        });
    }
    let response = next.call(req).await?;
    if !expired.load(Ordering::Relaxed) {
        return Ok(response.map_into_left_body());
    }
    metrics::counter!("tandem_request_body_timeouts_total").increment(1);
    let timeout = timeout.unwrap_or(Duration::ZERO);
    let mut refusal = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body did not arrive within {}",
            humantime::format_duration(timeout)
        ),
    )
    .error_response();
    // The rest of the body may still be on its way; the connection cannot be reused.
    refusal
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(response.into_response(refusal).map_into_right_body())
}
