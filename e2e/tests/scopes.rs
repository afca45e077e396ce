//! What a caller may reach beyond its own rooms: an API key scoped to some rooms and the
//! data of the others; webhook endpoints that answer without end, sit on special-purpose
//! addresses or would be reached through a proxy named in the environment; and AI questions
//! refused before anything of them is stored.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use e2e::api;
use e2e::llm::{LlmStandIn, ScriptedReply};
use e2e::webhook::WebhookReceiver;
use e2e::{TandemServer, TestUser};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

type Result = anyhow::Result<()>;

/// How long the waits of these tests (deliveries settling, endpoints hung up on) may take.
const WAIT: Duration = Duration::from_secs(30);

/// `GET /healthz` answers 200: the server is still up.
async fn assert_healthy(server: &TandemServer) -> Result {
    let status = reqwest::get(server.http("/healthz")).await?.status();
    ensure!(status == 200, "/healthz answered {status}");
    Ok(())
}

/// A field of `/proc/PID/status` in KiB (`VmHWM`, the peak resident size, or `VmRSS`).
fn memory_kib(server: &TandemServer, field: &str) -> anyhow::Result<u64> {
    let pid = server.pid().context("the server is not running")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

// --- API keys ---------------------------------------------------------------------------

/// The key's room, the owner's other room, and a room of someone else's the owner was
/// added to: the key may see data of the first only.
const KEY_ROOM: &str = "scope-alpha";
const OTHER_ROOM: &str = "scope-beta";
const THIRD_ROOM: &str = "scope-gamma";
/// What a colleague wrote to the owner in the other room; it must never reach the key.
const OTHER_ROOM_SECRET: &str = "beta-only plans";

/// What a key scoped to [`KEY_ROOM`] gets from every endpoint that returns room data or
/// belongs to its user. Endpoints of one room answer as for a non-participant elsewhere;
/// account endpoints need a session; the user's notifications and AI usage are served,
/// limited to the key's rooms (checked in detail by the test).
// Kept out of rustfmt so the statuses line up.
#[rustfmt::skip]
const KEY_SCOPE: &[(&str, &str, u16)] = &[
    ("GET", "/api/notifications",                          200),
    ("GET", "/api/notifications?unread=true",              200),
    ("GET", "/api/usage",                                  200),
    ("GET", "/api/rooms/scope-alpha/activity",             200),
    ("GET", "/api/rooms/scope-alpha/comments",             200),
    ("GET", "/api/rooms/scope-alpha/ai/conversations",     200),
    ("GET", "/api/rooms/scope-beta/activity",              403),
    ("GET", "/api/rooms/scope-gamma/activity",             403),
    ("GET", "/api/rooms/scope-beta",                       403),
    ("GET", "/api/rooms/scope-beta/members",               403),
    ("GET", "/api/rooms/scope-beta/comments",              403),
    ("GET", "/api/rooms/scope-beta/document",              403),
    ("GET", "/api/rooms/scope-beta/files",                 403),
    ("GET", "/api/rooms/scope-beta/versions",              403),
    ("GET", "/api/rooms/scope-beta/export",                403),
    ("GET", "/api/rooms/scope-beta/ai/conversations",      403),
    ("GET", "/api/rooms/scope-beta/ai/status",             403),
    ("GET", "/api/rooms/scope-beta/webhooks",              403),
    ("GET", "/api/rooms",                                  403),
    ("GET", "/api/me",                                     403),
    ("GET", "/api/api-keys",                               403),
    ("GET", "/ws/scope-beta",                              403),
];

/// `author` comments on the root text `notes` of `room`, mentioning `mentioned`.
async fn mention(
    server: &TandemServer,
    author: &TestUser,
    room: &str,
    mentioned: &TestUser,
    body: &str,
) -> Result {
    let (status, thread) = api::post(
        server,
        &author.token,
        &format!("/api/rooms/{room}/comments"),
        json!({"file": "notes", "start": 0, "end": 5, "body": body, "mentions": [mentioned.id]}),
    )
    .await?;
    ensure!(status == 201, "comment in {room}: {status} {thread}");
    Ok(())
}

/// `(rooms, unread_count)` of a page of notifications.
fn notification_rooms(page: &Value) -> (Vec<String>, u64) {
    let mut rooms: Vec<String> = page["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["room_id"].as_str().unwrap_or("(none)").to_owned())
        .collect();
    rooms.sort();
    (rooms, page["unread_count"].as_u64().unwrap_or(u64::MAX))
}

/// AI requests counted by `/api/usage`, over all days.
fn usage_requests(usage: &Value) -> i64 {
    usage["days"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|day| day["requests"].as_i64().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn an_api_key_sees_notifications_usage_and_activity_of_its_own_rooms_only() -> Result {
    let stand_in = LlmStandIn::start().await?;
    stand_in.set_default(ScriptedReply::text(&["an ", "answer"]));
    let base = stand_in.base_url();
    let server = TandemServer::start(&["--ai-base-url", &base, "--ai-model", "stand-in"]).await?;
    let owner = server.owner().await?;
    let (colleague, neighbour) =
        tokio::try_join!(server.register("colleague"), server.register("neighbour"))?;
    for room in [KEY_ROOM, OTHER_ROOM] {
        server.ensure_room(room).await?;
        server.add_member(room, &colleague, "editor").await?;
        server
            .write_text(room, &owner.token, "notes", "hello world")
            .await?;
    }
    mention(&server, &colleague, KEY_ROOM, &owner, "alpha review").await?;
    mention(&server, &colleague, OTHER_ROOM, &owner, OTHER_ROOM_SECRET).await?;
    // Someone else's room adds the owner: an `invited` notification about a third room.
    let (status, created) = api::post(
        &server,
        &neighbour.token,
        "/api/rooms",
        json!({"id": THIRD_ROOM, "name": "Gamma"}),
    )
    .await?;
    ensure!(status == 201, "{created}");
    let (status, added) = api::post(
        &server,
        &neighbour.token,
        &format!("/api/rooms/{THIRD_ROOM}/members"),
        json!({"email": owner.email, "role": "viewer"}),
    )
    .await?;
    ensure!(status == 201, "{added}");
    // One AI request in each of the owner's rooms.
    for room in [KEY_ROOM, OTHER_ROOM] {
        let events = server
            .ai_chat(room, &owner.token, json!({"message": "hi"}))
            .await?;
        ensure!(
            events.iter().any(|e| e.name == "done"),
            "no answer in {room}"
        );
    }
    let (status, key) = api::post(
        &server,
        &owner.token,
        "/api/api-keys",
        json!({"name": "bot", "role": "editor", "rooms": [KEY_ROOM]}),
    )
    .await?;
    ensure!(status == 201, "{key}");
    let key = key["key"].as_str().context("the key")?.to_owned();

    // The session sees everything of its user; these are what the key must not see.
    let everything = api::get(&server, &owner.token, "/api/notifications").await?;
    assert_eq!(
        notification_rooms(&everything),
        (
            vec![KEY_ROOM.into(), OTHER_ROOM.into(), THIRD_ROOM.into()],
            3
        ),
        "{everything}"
    );
    assert!(everything.to_string().contains(OTHER_ROOM_SECRET));
    assert_eq!(
        usage_requests(&api::get(&server, &owner.token, "/api/usage").await?),
        2
    );

    let mut wrong = Vec::new();
    for (method, path, expected) in KEY_SCOPE {
        let (status, body) = if let Some(room) = path.strip_prefix("/ws/") {
            (server.upgrade_status(room, Some(&key)).await?, Value::Null)
        } else {
            let method = Method::from_bytes(method.as_bytes())?;
            api::json(&server, method, &key, path, None).await?
        };
        let text = body.to_string();
        let leaked = [OTHER_ROOM, THIRD_ROOM, OTHER_ROOM_SECRET]
            .into_iter()
            .find(|secret| text.contains(secret));
        if status != *expected || leaked.is_some() {
            wrong.push(format!(
                "{method} {path}: {status} (expected {expected}), leaks {leaked:?}: {text:.200}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // In detail: the key's notifications, unread count and usage are its room's alone.
    let seen = api::get(&server, &key, "/api/notifications").await?;
    assert_eq!(
        notification_rooms(&seen),
        (vec![KEY_ROOM.into()], 1),
        "{seen}"
    );
    assert_eq!(seen["notifications"][0]["data"]["excerpt"], "alpha review");
    assert_eq!(
        usage_requests(&api::get(&server, &key, "/api/usage").await?),
        1
    );

    // Marking read reaches its room's notifications only: another room's is "not found",
    // and "read all" leaves the others unread.
    let other_room_notification = everything["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["room_id"] == OTHER_ROOM)
        .and_then(|n| n["id"].as_i64())
        .context("the other room's notification")?;
    let (status, body) = api::json(
        &server,
        Method::POST,
        &key,
        &format!("/api/notifications/{other_room_notification}/read"),
        None,
    )
    .await?;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api::json(
        &server,
        Method::POST,
        &key,
        "/api/notifications/read-all",
        None,
    )
    .await?;
    assert_eq!(status, 204, "{body}");
    let unread = api::get(&server, &owner.token, "/api/notifications?unread=true").await?;
    assert_eq!(
        notification_rooms(&unread),
        (vec![OTHER_ROOM.into(), THIRD_ROOM.into()], 2),
        "{unread}"
    );
    assert_healthy(&server).await
}

// --- Webhook response bodies ------------------------------------------------------------

/// An HTTP endpoint that answers every request with `status` and a body of `length` bytes,
/// written as fast as the client reads it, and counts how much of it went out before the
/// client hung up.
struct EndlessEndpoint {
    address: String,
    /// Body bytes written, over all connections.
    sent: Arc<AtomicU64>,
    /// Connections whose answer ended (all sent, or the client gone).
    finished: watch::Sender<usize>,
    task: JoinHandle<()>,
}

/// How every body of an [`EndlessEndpoint`] begins (the rest is `x`).
const BODY_START: &str = "upstream says: ";

impl EndlessEndpoint {
    async fn start(status: u16, length: u64) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let sent = Arc::new(AtomicU64::new(0));
        let finished = watch::Sender::new(0);
        let task = tokio::spawn({
            let (sent, finished) = (sent.clone(), finished.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (sent, finished) = (sent.clone(), finished.clone());
                    tokio::spawn(async move {
                        let _ = answer_endlessly(stream, status, length, &sent).await;
                        finished.send_modify(|n| *n += 1);
                    });
                }
            }
        });
        Ok(Self {
            address,
            sent,
            finished,
            task,
        })
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    /// Waits until `count` answers ended.
    async fn wait_finished(&self, count: usize) -> Result {
        let mut finished = self.finished.subscribe();
        tokio::time::timeout(WAIT, finished.wait_for(|n| *n >= count))
            .await
            .context("the endpoint's answer never ended")??;
        Ok(())
    }
}

impl Drop for EndlessEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request and answers it with `status` and `length` bytes of body.
async fn answer_endlessly(
    stream: TcpStream,
    status: u16,
    length: u64,
    sent: &AtomicU64,
) -> anyhow::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            bail!("the client went away mid-request");
        }
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse()?;
        }
    }
    let mut body = vec![0; content_length];
    stream.read_exact(&mut body).await?;
    let head = format!(
        "HTTP/1.1 {status} Hostile\r\ncontent-type: text/plain\r\ncontent-length: {length}\r\n\r\n{BODY_START}"
    );
    let stream = stream.get_mut();
    stream.write_all(head.as_bytes()).await?;
    sent.fetch_add(BODY_START.len() as u64, Ordering::Relaxed);
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = length - BODY_START.len() as u64;
    while left > 0 {
        let part = &chunk[..chunk.len().min(left as usize)];
        stream.write_all(part).await?;
        sent.fetch_add(part.len() as u64, Ordering::Relaxed);
        left -= part.len() as u64;
    }
    Ok(())
}

/// Registers a webhook of `room` for `events`; answers its id.
async fn register_hook(
    server: &TandemServer,
    token: &str,
    room: &str,
    url: &str,
) -> anyhow::Result<String> {
    let (status, created) = api::post(
        server,
        token,
        &format!("/api/rooms/{room}/webhooks"),
        json!({"url": url, "events": ["version_created"]}),
    )
    .await?;
    ensure!(status == 201, "register {url}: {status} {created}");
    Ok(created["id"].as_str().context("webhook id")?.to_owned())
}

/// Waits until the webhook's newest delivery has left `pending`; answers it.
async fn settled_delivery(
    server: &TandemServer,
    token: &str,
    room: &str,
    hook: &str,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = api::get(
            server,
            token,
            &format!("/api/rooms/{room}/webhooks/{hook}/deliveries"),
        )
        .await?;
        if let Some(newest) = page["deliveries"].get(0)
            && newest["status"] != "pending"
        {
            return Ok(newest.clone());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "still pending: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Takes a named version of `room`: a `version_created` event for its webhooks.
async fn take_version(server: &TandemServer, token: &str, room: &str) -> Result {
    let (status, version) = api::post(
        server,
        token,
        &format!("/api/rooms/{room}/versions"),
        json!({"label": "for the webhooks"}),
    )
    .await?;
    ensure!(status == 201, "{version}");
    Ok(())
}

#[tokio::test]
async fn endpoints_answering_huge_bodies_cost_no_memory_and_the_error_shows_the_start() -> Result {
    // Far more than the server may hold: buffered whole, either body alone would show in
    // its peak memory many times over the margin allowed below.
    const LENGTH: u64 = 128 * 1024 * 1024;
    const CAP: usize = 1024;
    let failing = EndlessEndpoint::start(500, LENGTH).await?;
    let succeeding = EndlessEndpoint::start(200, LENGTH).await?;
    let receiver = WebhookReceiver::start().await?;
    let cap = CAP.to_string();
    let server = TandemServer::start(&[
        "--webhook-allow-private",
        "--webhook-max-attempts",
        "1",
        "--webhook-max-response-bytes",
        &cap,
    ])
    .await?;
    let room = "hooks";
    let token = server.ensure_room(room).await?;
    let failing_hook = register_hook(&server, &token, room, &failing.url()).await?;
    let succeeding_hook = register_hook(&server, &token, room, &succeeding.url()).await?;
    let quiet_hook = register_hook(&server, &token, room, &receiver.url("/quiet")).await?;
    let peak_before = memory_kib(&server, "VmHWM")?;

    take_version(&server, &token, room).await?;
    // The server reads the start of each body and hangs up: neither body was sent whole.
    failing.wait_finished(1).await?;
    succeeding.wait_finished(1).await?;
    for (endpoint, name) in [(&failing, "500"), (&succeeding, "200")] {
        let sent = endpoint.sent.load(Ordering::Relaxed);
        assert!(
            sent < LENGTH,
            "the {name} endpoint sent its whole body ({sent} bytes)"
        );
    }

    let failed = settled_delivery(&server, &token, room, &failing_hook).await?;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["last_status_code"], 500, "{failed}");
    let error = failed["last_error"].as_str().context("no last_error")?;
    assert!(
        error.starts_with(&format!("HTTP 500: {BODY_START}xxxxxxxx")),
        "{error}"
    );
    assert!(
        error.contains(&format!("longer than {CAP} bytes")),
        "the error does not say the body was cut: {error}"
    );
    assert!(error.chars().count() < 700, "{} characters", error.len());
    let delivered = settled_delivery(&server, &token, room, &succeeding_hook).await?;
    assert_eq!(
        (&delivered["status"], &delivered["last_status_code"]),
        (&json!("delivered"), &json!(200)),
        "{delivered}"
    );
    // The room's other webhook is served as usual.
    let quiet = settled_delivery(&server, &token, room, &quiet_hook).await?;
    assert_eq!(quiet["status"], "delivered", "{quiet}");
    assert_eq!(receiver.deliveries().len(), 1);

    let growth_kib = memory_kib(&server, "VmHWM")?.saturating_sub(peak_before);
    assert!(
        growth_kib < 32 * 1024,
        "peak memory grew by {growth_kib} KiB while endpoints answered {LENGTH}-byte bodies"
    );
    assert_healthy(&server).await
}

// --- Webhook targets --------------------------------------------------------------------

#[tokio::test]
async fn registration_refuses_every_special_purpose_address() -> Result {
    let server = TandemServer::start(&[]).await?;
    let room = "targets";
    let token = server.ensure_room(room).await?;
    let path = format!("/api/rooms/{room}/webhooks");
    // One address of each range (IANA's IPv4 and IPv6 special-purpose registries), written
    // as a URL would be.
    let refused = [
        "http://0.0.0.0/",
        "http://10.1.2.3/",
        "http://100.64.0.1/",
        "http://127.0.0.1:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://172.16.0.1/",
        "http://192.0.0.8/",
        "http://192.0.2.1/",
        "http://192.88.99.1/",
        "http://192.168.1.1/",
        "http://198.18.0.1/",
        "http://198.19.255.254/",
        "http://198.51.100.1/",
        "http://203.0.113.1/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        // Other spellings of 127.0.0.1 that URL parsing turns into it.
        "http://2130706433/",
        "http://0x7f.1/",
        "http://[::]/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[::127.0.0.1]/",
        "http://[::169.254.169.254]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[64:ff9b:1::808:808]/",
        "http://[100::1]/",
        "http://[2001::1]/",
        "http://[2001:2::1]/",
        "http://[2001:db8::1]/",
        "http://[2002:7f00:1::1]/",
        "http://[2002:808:808::1]/",
        "http://[3fff::1]/",
        "http://[5f00::1]/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[fe80::1]/",
        "http://[fec0::1]/",
        "http://[ff02::1]/",
        "http://localhost:8080/",
        "http://api.localhost./",
    ];
    let mut accepted = Vec::new();
    for url in refused {
        let (status, body) = api::post(&server, &token, &path, json!({"url": url})).await?;
        if (status, body["error"]["code"].as_str()) != (422, Some("validation_failed")) {
            accepted.push(format!("{url}: {status} {body}"));
        }
    }
    assert!(accepted.is_empty(), "not refused: {accepted:#?}");
    // The refusal says which range it is.
    let (_, body) = api::post(&server, &token, &path, json!({"url": "http://[fec0::1]/"})).await?;
    assert_eq!(
        body["error"]["fields"]["url"],
        "the URL points to a special-purpose address (site-local, RFC 3879), not a public one"
    );
    // Public addresses, also inside the IPv6 forms judged by their IPv4 address, are fine.
    for url in [
        "https://93.184.216.34/hook",
        "https://[2606:4700::1111]/hook",
        "https://[::ffff:93.184.216.34]/hook",
        "https://[64:ff9b::5db8:d822]/hook",
        "https://hooks.example.test/hook",
    ] {
        let (status, body) = api::post(&server, &token, &path, json!({"url": url})).await?;
        assert_eq!(status, 201, "{url}: {body}");
    }
    assert_healthy(&server).await
}

// --- Proxies ----------------------------------------------------------------------------

/// A would-be proxy: records the request line of everything sent to it and answers 200.
struct ProxyTrap {
    address: String,
    connections: Arc<AtomicUsize>,
    request_lines: Arc<std::sync::Mutex<Vec<String>>>,
    answered: watch::Sender<usize>,
    task: JoinHandle<()>,
}

impl ProxyTrap {
    async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let request_lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let answered = watch::Sender::new(0);
        let task = tokio::spawn({
            let (connections, request_lines, answered) =
                (connections.clone(), request_lines.clone(), answered.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::Relaxed);
                    let (request_lines, answered) = (request_lines.clone(), answered.clone());
                    tokio::spawn(async move {
                        let mut stream = BufReader::new(stream);
                        let mut first = String::new();
                        if stream.read_line(&mut first).await.is_err() {
                            return;
                        }
                        // The rest of the head; the body does not matter.
                        loop {
                            let mut line = String::new();
                            match stream.read_line(&mut line).await {
                                Ok(0) | Err(_) => break,
                                Ok(_) if line.trim().is_empty() => break,
                                Ok(_) => {}
                            }
                        }
                        request_lines
                            .lock()
                            .expect("request lines lock")
                            .push(first.trim().to_owned());
                        let _ = stream
                            .get_mut()
                            .write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                            )
                            .await;
                        answered.send_modify(|n| *n += 1);
                    });
                }
            }
        });
        Ok(Self {
            address,
            connections,
            request_lines,
            answered,
            task,
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn request_lines(&self) -> Vec<String> {
        self.request_lines
            .lock()
            .expect("request lines lock")
            .clone()
    }
}

impl Drop for ProxyTrap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server started with proxies named in its environment, which [`TandemServer`] cannot
/// set, driven over plain HTTP. Killed when dropped.
struct ServerWithProxyEnvironment {
    /// The process (killed on drop).
    _child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    /// Where the server's stderr (logs) goes.
    log_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for ServerWithProxyEnvironment {
    fn drop(&mut self) {
        // Shown only when the test fails, as [`TandemServer`] does.
        let logs = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        eprintln!("--- tandem server log ---\n{logs}");
    }
}

impl ServerWithProxyEnvironment {
    async fn start(proxy: &str, extra_args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let mut command = tokio::process::Command::new(e2e::tandem_binary());
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra_args)
            .env("DATABASE_URL", e2e::fresh_database_url(dir.path()))
            .env("TANDEM_JWT_SECRET", e2e::TEST_JWT_SECRET)
            .env("RUST_LOG", "info,sqlx=warn")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy");
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            command.env(name, proxy).env(name.to_lowercase(), proxy);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("starting tandem")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let address = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(address) = line.strip_prefix("tandem listening on http://") {
                    return Ok(address.trim().to_owned());
                }
            }
            bail!("the server exited before listening")
        })
        .await
        .context("the server did not start in time")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            _child: child,
            base: format!("http://{address}"),
            // The test's own calls go straight to the server, whatever its environment says.
            http: reqwest::Client::builder().no_proxy().build()?,
            log_path,
            _dir: dir,
        })
    }

    /// Calls `path` with a JSON body; answers the status and the JSON body.
    async fn call(
        &self,
        method: Method,
        token: Option<&str>,
        path: &str,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_null() {
            request = request.json(&body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }
}

#[tokio::test]
async fn deliveries_ignore_proxies_named_in_the_environment() -> Result {
    let trap = ProxyTrap::start().await?;
    let receiver = WebhookReceiver::start().await?;
    let server =
        ServerWithProxyEnvironment::start(&trap.url(), &["--webhook-allow-private"]).await?;
    let (status, registered) = server
        .call(
            Method::POST,
            None,
            "/api/auth/register",
            json!({"email": "proxy@example.test", "password": "a-long-password", "display_name": "P"}),
        )
        .await?;
    ensure!(status == 201, "{registered}");
    let token = registered["access_token"].as_str().context("token")?;
    let (status, room) = server
        .call(
            Method::POST,
            Some(token),
            "/api/rooms",
            json!({"id": "direct", "name": "Direct"}),
        )
        .await?;
    ensure!(status == 201, "{room}");
    let (status, hook) = server
        .call(
            Method::POST,
            Some(token),
            "/api/rooms/direct/webhooks",
            json!({"url": receiver.url("/direct"), "events": ["version_created"]}),
        )
        .await?;
    ensure!(status == 201, "{hook}");
    let hook = hook["id"].as_str().context("webhook id")?;
    let (status, version) = server
        .call(
            Method::POST,
            Some(token),
            "/api/rooms/direct/versions",
            json!({"label": "v"}),
        )
        .await?;
    ensure!(status == 201, "{version}");

    let deadline = tokio::time::Instant::now() + WAIT;
    let delivery = loop {
        let (_, page) = server
            .call(
                Method::GET,
                Some(token),
                &format!("/api/rooms/direct/webhooks/{hook}/deliveries"),
                Value::Null,
            )
            .await?;
        if let Some(newest) = page["deliveries"].get(0)
            && newest["status"] != "pending"
        {
            break newest.clone();
        }
        ensure!(tokio::time::Instant::now() < deadline, "pending: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert_eq!(
        trap.connections.load(Ordering::Relaxed),
        0,
        "the delivery went through the proxy of the environment: {:?}",
        trap.request_lines()
    );
    assert_eq!(receiver.deliveries().len(), 1, "the receiver got nothing");
    let (status, _) = server
        .call(Method::GET, None, "/healthz", Value::Null)
        .await?;
    assert_eq!(status, 200);
    Ok(())
}

#[tokio::test]
async fn an_explicit_webhook_proxy_carries_every_delivery() -> Result {
    let trap = ProxyTrap::start().await?;
    let proxy = trap.url();
    // No `--webhook-allow-private`: the proxy on loopback is the operator's choice, and the
    // target's name is the proxy's to resolve.
    let server = TandemServer::start(&["--webhook-proxy", &proxy]).await?;
    let room = "proxied";
    let token = server.ensure_room(room).await?;
    let hook = register_hook(&server, &token, room, "http://hooks.example.test/proxied").await?;
    take_version(&server, &token, room).await?;
    let mut answered = trap.answered.subscribe();
    tokio::time::timeout(WAIT, answered.wait_for(|n| *n >= 1))
        .await
        .context("nothing reached the proxy")??;
    assert_eq!(
        trap.request_lines(),
        ["POST http://hooks.example.test/proxied HTTP/1.1"]
    );
    let delivery = settled_delivery(&server, &token, room, &hook).await?;
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert_healthy(&server).await
}

// --- AI ---------------------------------------------------------------------------------

/// The room's AI conversations.
async fn conversations(
    server: &TandemServer,
    token: &str,
    room: &str,
) -> anyhow::Result<Vec<Value>> {
    let body = api::get(
        server,
        token,
        &format!("/api/rooms/{room}/ai/conversations"),
    )
    .await?;
    Ok(body["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Asks in `room`; answers the status and error code of a refusal (`200` and `""` for an
/// answer, which is read to its end).
async fn ask(
    server: &TandemServer,
    token: &str,
    room: &str,
    body: Value,
) -> anyhow::Result<(u16, String)> {
    let response = api::send(
        server,
        Method::POST,
        Some(token),
        &format!("/api/rooms/{room}/ai/chat"),
        Some((body.to_string().into_bytes(), "application/json")),
    )
    .await?;
    Ok((response.status, response.error_code()))
}

#[tokio::test]
async fn ai_questions_refused_by_role_range_size_or_rate_leave_no_conversation() -> Result {
    let stand_in = LlmStandIn::start().await?;
    stand_in.set_default(ScriptedReply::text(&["an answer"]));
    let base = stand_in.base_url();
    let server = TandemServer::start(&[
        "--ai-base-url",
        &base,
        "--ai-model",
        "stand-in",
        "--ai-rate-per-minute",
        "1",
        "--ai-context-tokens",
        "100",
    ])
    .await?;
    let room = "refusals";
    let token = server.ensure_room(room).await?;
    // About 500 tokens: over the budget of 100.
    server
        .write_text(room, &token, "notes", &"word ".repeat(400))
        .await?;
    let viewer = server.register("viewer").await?;
    server.add_member(room, &viewer, "viewer").await?;

    for (who, body, expected) in [
        (&viewer.token, json!({"message": "hi"}), (403, "forbidden")),
        (
            &token,
            json!({"message": "explain", "file": "notes", "selection": {"start": 0, "end": 2000}}),
            (413, "selection_too_large"),
        ),
        (
            &token,
            json!({"message": "explain", "file": "missing.rs", "selection": {"start": 0, "end": 1}}),
            (422, "validation_failed"),
        ),
    ] {
        let (status, code) = ask(&server, who, room, body.clone()).await?;
        assert_eq!((status, code.as_str()), expected, "{body}");
        assert_eq!(
            conversations(&server, &token, room).await?,
            Vec::<Value>::new()
        );
    }
    // Refusals before the limit did not count against it: the one request a minute allowed
    // is still there, and it is stored.
    let events = server
        .ai_chat(room, &token, json!({"message": "hello"}))
        .await?;
    assert!(events.iter().any(|e| e.name == "done"), "no answer");
    let stored = conversations(&server, &token, room).await?;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let conversation = stored[0]["id"].as_str().context("conversation id")?;
    let messages_path = format!("/api/rooms/{room}/ai/conversations/{conversation}");
    let messages = api::get(&server, &token, &messages_path).await?["messages"].clone();
    assert_eq!(messages.as_array().map(Vec::len), Some(2), "{messages}");

    // Over the limit: neither a new conversation nor a message in the existing one.
    let (status, code) = ask(&server, &token, room, json!({"message": "again"})).await?;
    assert_eq!((status, code.as_str()), (429, "ai_rate_limited"));
    let (status, code) = ask(
        &server,
        &token,
        room,
        json!({"message": "and again", "conversation_id": conversation}),
    )
    .await?;
    assert_eq!((status, code.as_str()), (429, "ai_rate_limited"));
    let (status, body) = api::post(
        &server,
        &token,
        &format!("{messages_path}/regenerate"),
        json!({}),
    )
    .await?;
    assert_eq!(status, 429, "{body}");
    assert_eq!(conversations(&server, &token, room).await?.len(), 1);
    assert_eq!(
        api::get(&server, &token, &messages_path).await?["messages"],
        messages
    );
    assert_eq!(stand_in.requests().len(), 1, "the model was asked again");
    assert_healthy(&server).await
}

#[tokio::test]
async fn ai_questions_without_a_model_a_peer_or_any_allowance_leave_no_conversation() -> Result {
    let stand_in = LlmStandIn::start().await?;
    let base = stand_in.base_url();
    let model = ["--ai-base-url", base.as_str(), "--ai-model", "stand-in"];
    let external = [
        &model[..],
        &[
            "--ai-peer",
            "external",
            "--ai-peer-secret",
            "e2e-ai-peer-secret-0123456789",
        ],
    ]
    .concat();
    let no_allowance = [&model[..], &["--ai-rate-per-minute", "0"]].concat();
    let (no_model, no_peer, none_allowed) = tokio::try_join!(
        TandemServer::start(&[]),
        TandemServer::start(&external),
        TandemServer::start(&no_allowance),
    )?;
    for (server, expected) in [
        (&no_model, (503, "ai_not_configured")),
        (&no_peer, (503, "ai_peer_unavailable")),
        (&none_allowed, (429, "ai_rate_limited")),
    ] {
        let room = "refused";
        let token = server.ensure_room(room).await?;
        for attempt in 0..2 {
            let (status, code) = ask(server, &token, room, json!({"message": "hi"})).await?;
            assert_eq!((status, code.as_str()), expected, "attempt {attempt}");
        }
        assert_eq!(
            conversations(server, &token, room).await?,
            Vec::<Value>::new()
        );
        assert_healthy(server).await?;
    }
    assert!(stand_in.requests().is_empty(), "the model was asked");
    Ok(())
}
