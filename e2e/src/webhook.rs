//! A webhook receiver on loopback: records every delivery (headers and body) and answers
//! with scripted statuses, so tests can check signatures, retries and failures.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long [`WebhookReceiver::wait_deliveries`] waits.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest body or header block a delivery may have.
const MAX_REQUEST: usize = 1024 * 1024;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The request path.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: HashMap<String, String>,
    /// The raw body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub received_at: std::time::Instant,
}

impl Delivery {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value (`""` when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// Whether `X-Tandem-Signature` is the HMAC-SHA256 of `"{timestamp}.{body}"` under
    /// `secret`, checked in constant time.
    pub fn signature_verifies(&self, secret: &str) -> bool {
        let Some(hex) = self.header("x-tandem-signature").strip_prefix("sha256=") else {
            return false;
        };
        let Some(signature) = decode_hex(hex) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(self.header("x-tandem-timestamp").as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        mac.verify_slice(&signature).is_ok()
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

struct Shared {
    /// Statuses for the next requests, then 200. A `std` mutex: held only to push or pop.
    statuses: Mutex<VecDeque<u16>>,
    /// Every request so far; the count is what waiters watch.
    deliveries: Mutex<Vec<Delivery>>,
    received: watch::Sender<usize>,
}

/// The receiver. Dropping it stops it.
pub struct WebhookReceiver {
    address: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl WebhookReceiver {
    /// Binds `127.0.0.1:0`; every request is answered 200 until told otherwise.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the webhook receiver")?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            statuses: Mutex::new(VecDeque::new()),
            deliveries: Mutex::new(Vec::new()),
            received: watch::Sender::new(0),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Ok(Self {
            address,
            shared,
            task,
        })
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Answers the next requests with these statuses, in order (then 200 again).
    pub fn answer_next(&self, statuses: &[u16]) {
        self.shared
            .statuses
            .lock()
            .expect("statuses lock")
            .extend(statuses);
    }

    /// Every request received so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared
            .deliveries
            .lock()
            .expect("deliveries lock")
            .clone()
    }

    /// Waits until `count` requests arrived in all; fails after 30 s.
    pub async fn wait_deliveries(&self, count: usize) -> Result<Vec<Delivery>> {
        let mut received = self.shared.received.subscribe();
        let reached = tokio::time::timeout(WAIT_TIMEOUT, received.wait_for(|n| *n >= count))
            .await
            .is_ok_and(|waited| waited.is_ok());
        anyhow::ensure!(
            reached,
            "the webhook receiver got {} requests in {WAIT_TIMEOUT:?}, expected {count}",
            *received.borrow()
        );
        Ok(self.deliveries())
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    // Dropping the set aborts its tasks: open connections end with the receiver.
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        connections.spawn(serve(stream, shared.clone()));
    }
}

/// Serves requests on one connection until the client closes it.
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let mut connection = BufReader::new(stream);
    while let Ok(Some(delivery)) = read_request(&mut connection).await {
        let status = shared
            .statuses
            .lock()
            .expect("statuses lock")
            .pop_front()
            .unwrap_or(200);
        {
            let mut deliveries = shared.deliveries.lock().expect("deliveries lock");
            deliveries.push(delivery);
            shared.received.send_replace(deliveries.len());
        }
        let body = format!("status {status}");
        let response = format!(
            "HTTP/1.1 {status} Scripted\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if connection
            .get_mut()
            .write_all(response.as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Reads one HTTP/1.1 request with a `content-length` body; `None` when the client closed.
async fn read_request(connection: &mut BufReader<TcpStream>) -> std::io::Result<Option<Delivery>> {
    let mut request_line = String::new();
    if connection.read_line(&mut request_line).await? == 0 {
        return Ok(None);
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut headers = HashMap::new();
    let mut header_bytes = 0;
    loop {
        let mut line = String::new();
        let read = connection.read_line(&mut line).await?;
        header_bytes += read;
        if read == 0 || header_bytes > MAX_REQUEST {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    let mut body = vec![0; length];
    connection.read_exact(&mut body).await?;
    Ok(Some(Delivery {
        path,
        headers,
        body,
        received_at: std::time::Instant::now(),
    }))
}
