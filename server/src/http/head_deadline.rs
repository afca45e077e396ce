//! A deadline on every request head of an HTTP/1 connection, not only the first.
//!
//! actix-http times the first request head of a connection (`client_request_timeout`) and an
//! idle kept-alive connection (`keep_alive`), but once a kept-alive connection receives one
//! byte of its next request no timer runs until that head is complete: a client sending one
//! byte a second holds the connection forever, and a few thousand such clients hold every
//! file descriptor (slow-loris). [`HeadDeadlineStream`] sits between the TCP socket and
//! actix's HTTP/1 dispatcher and watches the bytes go by: from the first byte of a request
//! head, the empty line that ends it must arrive within the timeout, or the client is sent
//! `408 Request Timeout` and the connection is closed. It parses nothing else; the dispatcher
//! does. After a `101 Switching Protocols` response (a WebSocket) it steps aside, and the
//! session's pings govern the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Sleep, sleep};

/// Sent, best effort, to a client whose request head took too long.
const REQUEST_TIMEOUT_RESPONSE: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Where the connection is in its request/response cycle.
enum Phase {
    /// Waiting for or reading a request head. `deadline` is set from the head's first byte;
    /// `line_ends` counts line feeds seen with nothing but carriage returns between them
    /// (two end the head).
    Head {
        deadline: Option<Pin<Box<Sleep>>>,
        line_ends: u8,
    },
    /// The head is complete; the body is read and the response written. The first bytes of
    /// the response decide what comes next.
    Request { response_start: Vec<u8> },
    /// The connection switched protocols; bytes pass untouched.
    Upgraded,
}

/// Enough of a status line to read its code: `HTTP/1.1 101`.
const STATUS_LINE_PREFIX: usize = 12;

/// A TCP stream that enforces the request-head deadline. See the module docs.
pub struct HeadDeadlineStream {
    io: TcpStream,
    timeout: Duration,
    phase: Phase,
}

impl HeadDeadlineStream {
    /// Wraps a freshly accepted connection; its first head is timed from its first byte
    /// (actix times it from the accept, too).
    pub fn new(io: TcpStream, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            phase: Phase::Head {
                deadline: None,
                line_ends: 0,
            },
        }
    }

    /// Follows the bytes just read; arms the deadline at a head's first byte and clears it at
    /// its end.
    fn observe_read(&mut self, bytes: &[u8], cx: &mut Context<'_>) {
        let Phase::Head {
            deadline,
            line_ends,
        } = &mut self.phase
        else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        if deadline.is_none() {
            let mut timer = Box::pin(sleep(self.timeout));
            // Registers this task's waker, so the deadline fires even if no byte follows.
            let _ = timer.as_mut().poll(cx);
            *deadline = Some(timer);
        }
        for &byte in bytes {
            match byte {
                b'\n' => {
                    *line_ends += 1;
                    if *line_ends == 2 {
                        self.phase = Phase::Request {
                            response_start: Vec::with_capacity(STATUS_LINE_PREFIX),
                        };
                        // Bytes after the head are its body (or a pipelined request, which
                        // the next head phase times from its next byte).
                        return;
                    }
                }
                b'\r' => {}
                _ => *line_ends = 0,
            }
        }
    }

    /// Follows the bytes just written: the response's status line ends the request, or
    /// hands the connection over to the upgraded protocol.
    fn observe_write(&mut self, bytes: &[u8]) {
        let Phase::Request { response_start } = &mut self.phase else {
            return;
        };
        let wanted = STATUS_LINE_PREFIX - response_start.len();
        response_start.extend_from_slice(&bytes[..wanted.min(bytes.len())]);
        if response_start.len() < STATUS_LINE_PREFIX {
            return;
        }
        let status = &response_start[STATUS_LINE_PREFIX - 3..];
        self.phase = match status {
            b"101" => Phase::Upgraded,
            // `100 Continue` comes before the body and the real response.
            b"100" => Phase::Request {
                response_start: Vec::with_capacity(STATUS_LINE_PREFIX),
            },
            _ => Phase::Head {
                deadline: None,
                line_ends: 0,
            },
        };
    }

    /// Whether the current head's deadline has passed (registering the waker if not).
    fn head_timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.phase {
            Phase::Head {
                deadline: Some(deadline),
                ..
            } => deadline.as_mut().poll(cx).is_ready(),
            _ => false,
        }
    }
}

impl AsyncRead for HeadDeadlineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.head_timed_out(cx) {
            // The client is not reading either, most likely; never wait on it.
            let _ = this.io.try_write(REQUEST_TIMEOUT_RESPONSE);
            metrics::counter!("tandem_request_head_timeouts_total").increment(1);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received in time",
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        this.observe_read(&buf.filled()[before..], cx);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HeadDeadlineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
        this.observe_write(&buf[..written]);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
