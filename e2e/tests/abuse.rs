//! Authentication under attack and connection-level limits, tried as an attacker would:
//! parallel password guesses, a flood of logins for unknown emails, request floods from one
//! address, socket floods, and a client that sends its request one byte at a time.
//!
//! Every test's clients share 127.0.0.1; where "another client" must be unaffected it
//! connects from 127.0.0.2 (on Linux all of 127/8 is the loopback interface), which the
//! server sees as a different address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use e2e::TandemServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Result = anyhow::Result<()>;

/// The address of "another client".
const OTHER_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// An HTTP client whose connections come from `local` (any loopback address when `None`).
fn http_from(local: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local)
        .build()
        .expect("building an HTTP client")
}

/// A response's status, JSON body (`Null` when none) and `Retry-After` in seconds.
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// Checks a 429 or 503 carries `Retry-After` and the same `retry_after_seconds`.
    fn assert_retry_after(&self) -> u64 {
        let retry_after = self
            .retry_after
            .unwrap_or_else(|| panic!("{} without Retry-After: {}", self.status, self.body));
        assert_eq!(
            self.body["error"]["retry_after_seconds"], retry_after,
            "{}",
            self.body
        );
        assert!(retry_after >= 1, "{retry_after}");
        retry_after
    }
}

async fn answer(request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap_or_default().parse::<u64>())
        .transpose()?;
    let text = response.text().await?;
    Ok(Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        retry_after,
    })
}

async fn login(
    http: &reqwest::Client,
    server: &TandemServer,
    email: &str,
    password: &str,
) -> anyhow::Result<Answer> {
    answer(
        http.post(server.http("/api/auth/login"))
            .json(&json!({"email": email, "password": password})),
    )
    .await
}

async fn assert_healthy(server: &TandemServer) -> Result {
    let status = reqwest::get(server.http("/healthz")).await?.status();
    ensure!(status == 200, "/healthz answered {status}");
    Ok(())
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
fn proc_status_kib(server: &TandemServer, field: &str) -> anyhow::Result<u64> {
    let pid = server.pid().context("server not running")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no value")?
        .parse()?)
}

#[tokio::test]
async fn parallel_wrong_passwords_check_no_more_passwords_than_the_limit() -> Result {
    const LIMIT: usize = 5;
    const GUESSES: usize = 40;
    let server = TandemServer::start(&["--login-max-failures", "5"]).await?;
    let victim = server.register("victim").await?;
    let hashes_before = server.metric("tandem_password_hashes_total").await?;

    let http = http_from(None);
    let guesses = (0..GUESSES).map(|i| {
        let (http, server, email) = (&http, &server, &victim.email);
        async move { login(http, server, email, &format!("guess-{i}-wrong")).await }
    });
    let answers = futures_util::future::try_join_all(guesses).await?;

    let hashes = server.metric("tandem_password_hashes_total").await? - hashes_before;
    assert!(
        hashes <= LIMIT as f64,
        "{hashes} passwords were checked for {GUESSES} parallel guesses; the limit is {LIMIT}"
    );
    let wrong = answers.iter().filter(|a| a.status == 401).count();
    let locked: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert!(answers.iter().all(|a| a.status == 401 || a.status == 429));
    // The attempt that reaches the limit answers "locked" even when it was checked.
    assert!(wrong < LIMIT, "{wrong} guesses answered 401");
    assert_eq!(wrong + locked.len(), GUESSES);
    for answer in &locked {
        assert_eq!(answer.code(), "login_locked", "{}", answer.body);
        answer.assert_retry_after();
    }

    // The right password is refused while the email is locked, without being checked.
    let hashes_before = server.metric("tandem_password_hashes_total").await?;
    let right = login(&http, &server, &victim.email, &victim.password).await?;
    assert_eq!((right.status, right.code()), (429, "login_locked"));
    let retry_after = right.assert_retry_after();
    assert!(
        retry_after > 14 * 60 && retry_after <= 15 * 60,
        "{retry_after}"
    );
    assert_eq!(
        server.metric("tandem_password_hashes_total").await?,
        hashes_before
    );

    assert_healthy(&server).await?;
    let bystander = server.register("bystander").await?;
    server.login(&bystander).await?;
    Ok(())
}

#[tokio::test]
async fn a_flood_of_unknown_email_logins_keeps_memory_bounded() -> Result {
    // Two hashing threads; a login that cannot get one within half a second is told to come
    // back later instead of queueing.
    const THREADS: u64 = 2;
    let server = TandemServer::start(&[
        "--password-hash-concurrency",
        "2",
        "--password-hash-wait",
        "500ms",
    ])
    .await?;
    let http = http_from(None);
    // One login first, so both the baseline and the flood include a warm server.
    assert_eq!(
        login(&http, &server, "warmup@example.test", "not-a-password")
            .await?
            .status,
        401
    );
    let rss_before = proc_status_kib(&server, "VmRSS")?;

    let logins = (0..64).map(|i| {
        let (http, server) = (&http, &server);
        async move {
            login(
                http,
                server,
                &format!("nobody-{i}@example.test"),
                "not-a-password",
            )
            .await
        }
    });
    let answers = futures_util::future::try_join_all(logins).await?;

    for answer in &answers {
        match answer.status {
            401 => assert_eq!(answer.code(), "invalid_credentials"),
            503 => {
                assert_eq!(answer.code(), "server_busy", "{}", answer.body);
                answer.assert_retry_after();
            }
            other => bail!("a login answered {other}: {}", answer.body),
        }
    }
    assert!(
        answers.iter().any(|a| a.status == 401),
        "no login was checked at all"
    );
    // Argon2id with the default parameters fills 19 MiB per hash, and at most THREADS run at
    // once, each thread reusing its block; 40 MiB more covers 64 requests in flight and
    // allocator slack. Unbounded, 64 hashes at once took 1.2 GB.
    let peak = proc_status_kib(&server, "VmHWM")?;
    let bound = THREADS * 19 * 1024 + 40 * 1024;
    assert!(
        peak.saturating_sub(rss_before) <= bound,
        "peak RSS {peak} KiB, {} KiB above the {rss_before} KiB before the flood (bound {bound} KiB)",
        peak.saturating_sub(rss_before)
    );
    assert_healthy(&server).await?;
    // Once the flood is over, logins are checked again.
    let user = server.register("after-the-flood").await?;
    server.login(&user).await?;
    Ok(())
}

#[tokio::test]
async fn logins_registrations_and_refreshes_are_rate_limited_per_address() -> Result {
    let server = TandemServer::start(&["--auth-rate-per-minute", "6", "--auth-burst", "3"]).await?;
    let http = http_from(None);
    for i in 0..3 {
        let answer = login(
            &http,
            &server,
            &format!("guess-{i}@example.test"),
            "wrong-pw",
        )
        .await?;
        assert_eq!(
            answer.status, 401,
            "request {i} of the burst: {}",
            answer.body
        );
    }
    let limited = login(&http, &server, "one-more@example.test", "wrong-pw").await?;
    assert_eq!((limited.status, limited.code()), (429, "rate_limited"));
    // Six a minute: the next one passes in about ten seconds.
    let retry_after = limited.assert_retry_after();
    assert!((1..=10).contains(&retry_after), "{retry_after}");

    // Registration and refresh draw on the same budget.
    let register = answer(http.post(server.http("/api/auth/register")).json(
        &json!({"email": "new@example.test", "password": "long-enough-pw", "display_name": "n"}),
    ))
    .await?;
    assert_eq!((register.status, register.code()), (429, "rate_limited"));
    register.assert_retry_after();
    let refresh = answer(
        http.post(server.http("/api/auth/refresh"))
            .json(&json!({"refresh_token": "whatever"})),
    )
    .await?;
    assert_eq!((refresh.status, refresh.code()), (429, "rate_limited"));
    assert_eq!(
        server.metric("tandem_client_limit_refusals_total").await?,
        3.0
    );

    // Another address is not limited by this one's requests.
    let other = http_from(Some(OTHER_CLIENT));
    let registered = answer(other.post(server.http("/api/auth/register")).json(
        &json!({"email": "other@example.test", "password": "long-enough-pw", "display_name": "o"}),
    ))
    .await?;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let logged_in = login(&other, &server, "other@example.test", "long-enough-pw").await?;
    assert_eq!(logged_in.status, 200, "{}", logged_in.body);
    assert_healthy(&server).await?;
    Ok(())
}

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket upgrade to `room` from `local`: the socket, or the refusal's status and
/// JSON body.
async fn upgrade_from(
    server: &TandemServer,
    local: IpAddr,
    room: &str,
    token: &str,
) -> anyhow::Result<std::result::Result<Socket, (u16, Value)>> {
    let address: SocketAddr = server.address().parse()?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(local, 0))?;
    let stream = socket.connect(address).await?;
    let url = format!("{}/{room}?token={token}", server.ws_url());
    match tokio_tungstenite::client_async(url, stream).await {
        Ok((socket, _)) => Ok(Ok(socket)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Ok(Err((response.status().as_u16(), body)))
        }
        Err(err) => Err(err.into()),
    }
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Sends a y-protocols update inserting `content` into the root text `text` on `socket` and
/// waits until the server's document shows it.
async fn write_through(
    server: &TandemServer,
    socket: &mut Socket,
    room: &str,
    token: &str,
    content: &str,
) -> Result {
    use yrs::{ReadTxn, Text, Transact};
    let doc = yrs::Doc::new();
    let root = doc.get_or_insert_text("text");
    let update = {
        let mut txn = doc.transact_mut();
        root.insert(&mut txn, 0, content);
        txn.encode_state_as_update_v1(&yrs::StateVector::default())
    };
    // [message sync = 0, sync update = 2, length-prefixed update]; the update is short, so
    // its length is one varuint byte.
    ensure!(update.len() < 128);
    let mut frame = vec![0u8, 2, update.len() as u8];
    frame.extend_from_slice(&update);
    socket.send(WsMessage::Binary(frame.into())).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let document: Value = reqwest::Client::new()
            .get(server.http(&format!("/api/rooms/{room}/document")))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if document["text"]
            .as_str()
            .is_some_and(|t| t.contains(content))
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the write never showed: {document}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn websockets_per_address_are_capped_and_refused_before_the_upgrade() -> Result {
    let server = TandemServer::start(&["--ws-connections-per-ip", "3"]).await?;
    let token = server.ensure_room("capped").await?;
    let mut open = Vec::new();
    for _ in 0..3 {
        let socket = upgrade_from(&server, LOCALHOST, "capped", &token).await?;
        open.push(socket.map_err(|(status, body)| anyhow::anyhow!("{status} {body}"))?);
    }
    let Err((status, body)) = upgrade_from(&server, LOCALHOST, "capped", &token).await? else {
        bail!("a fourth socket from one address was upgraded");
    };
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");

    // The sockets within the cap keep working, and another address connects.
    write_through(&server, &mut open[0], "capped", &token, "still here").await?;
    let other = upgrade_from(&server, OTHER_CLIENT, "capped", &token).await?;
    assert!(
        other.is_ok(),
        "another address was refused: {:?}",
        other.err()
    );
    assert_healthy(&server).await?;

    // Closing one frees its slot.
    let mut closed = open.pop().context("three open")?;
    closed.close(None).await?;
    while closed.next().await.is_some() {}
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match upgrade_from(&server, LOCALHOST, "capped", &token).await? {
            Ok(socket) => {
                open.push(socket);
                break;
            }
            Err((429, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err((status, body)) => bail!("after a close: {status} {body}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn websocket_upgrades_per_address_are_rate_limited() -> Result {
    let server =
        TandemServer::start(&["--ws-upgrades-per-minute", "6", "--ws-upgrade-burst", "3"]).await?;
    let token = server.ensure_room("busy").await?;
    let mut first = None;
    for i in 0..3 {
        let socket = upgrade_from(&server, LOCALHOST, "busy", &token)
            .await?
            .map_err(|(status, body)| anyhow::anyhow!("upgrade {i}: {status} {body}"))?;
        first.get_or_insert(socket);
    }
    let Err((status, body)) = upgrade_from(&server, LOCALHOST, "busy", &token).await? else {
        bail!("a fourth upgrade within the burst of three passed");
    };
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let retry_after = body["error"]["retry_after_seconds"]
        .as_u64()
        .context("retry_after_seconds")?;
    assert!((1..=10).contains(&retry_after), "{body}");

    // A socket opened before keeps working; another address is not limited.
    let mut first = first.context("three upgrades")?;
    write_through(&server, &mut first, "busy", &token, "unaffected").await?;
    let other = upgrade_from(&server, OTHER_CLIENT, "busy", &token).await?;
    assert!(
        other.is_ok(),
        "another address was refused: {:?}",
        other.err()
    );
    assert_healthy(&server).await?;
    Ok(())
}

/// Reads from `stream` until the server closes it; answers what it sent and when it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> anyhow::Result<String> {
    let mut received = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("still open after {within:?}"))?;
    Ok(String::from_utf8_lossy(&received).into_owned())
}

/// Sends `head` one byte every `interval` on `stream` until the server stops taking bytes
/// or closes; answers when the stream closed, and how many bytes got through.
async fn dribble(
    stream: TcpStream,
    head: Vec<u8>,
    interval: Duration,
    within: Duration,
) -> anyhow::Result<(Duration, usize, String)> {
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        for byte in head {
            if write.write_all(&[byte]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(interval).await;
        }
        sent
    });
    let mut received = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    writer.abort();
    let sent = writer.await.unwrap_or(0);
    closed
        .map_err(|_| anyhow::anyhow!("a dribbling client was still connected after {within:?}"))?;
    Ok((
        elapsed,
        sent,
        String::from_utf8_lossy(&received).into_owned(),
    ))
}

#[tokio::test]
async fn a_client_dribbling_its_request_head_is_cut_off() -> Result {
    let server = TandemServer::start(&["--request-head-timeout", "1s"]).await?;
    let address = server.address().to_owned();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {address}\r\nUser-Agent: one-byte-a-while\r\nAccept: */*\r\nX-Padding: {}\r\n\r\n",
        "x".repeat(64)
    );

    // On a kept-alive connection: one complete request, then the next one dribbled (the case
    // actix's own first-request timer does not cover).
    let mut kept_alive = TcpStream::connect(&address).await?;
    kept_alive
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
        .await?;
    let mut first = vec![0u8; 1024];
    let n = kept_alive.read(&mut first).await?;
    let first = String::from_utf8_lossy(&first[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let slow = tokio::spawn(dribble(
        kept_alive,
        head.clone().into_bytes(),
        Duration::from_millis(100),
        Duration::from_secs(5),
    ));

    // A fresh connection dribbling a WebSocket handshake, at the same time.
    let token = server.ensure_room("slow").await?;
    let handshake = format!(
        "GET /ws/slow?token={token} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let handshake_stream = TcpStream::connect(&address).await?;
    let slow_handshake = tokio::spawn(dribble(
        handshake_stream,
        handshake.clone().into_bytes(),
        Duration::from_millis(100),
        Duration::from_secs(5),
    ));

    // Meanwhile everyone else is served.
    for _ in 0..5 {
        assert_healthy(&server).await?;
    }
    let user = server.register("patient").await?;
    server.login(&user).await?;

    for (what, full, task) in [
        ("kept-alive request", head.len(), slow),
        ("WebSocket handshake", handshake.len(), slow_handshake),
    ] {
        let (elapsed, sent, received) = task.await??;
        assert!(
            sent < full,
            "{what}: the whole head ({full} bytes) got through"
        );
        // actix times a connection's first head from a clock it refreshes every 500 ms, so
        // that deadline may come up to half a second early.
        assert!(
            elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
            "{what}: closed after {elapsed:?}"
        );
        assert!(
            received.starts_with("HTTP/1.1 408"),
            "{what}: answered {received:?}"
        );
    }

    // A connection that sends nothing at all is closed too.
    let mut silent = TcpStream::connect(&address).await?;
    read_until_closed(&mut silent, Duration::from_secs(3)).await?;
    assert_healthy(&server).await?;
    Ok(())
}

#[tokio::test]
async fn a_client_dribbling_its_request_body_is_answered_408_and_closed() -> Result {
    let server = TandemServer::start(&["--request-body-timeout", "1s"]).await?;
    let address = server.address().to_owned();
    let body = format!(
        r#"{{"email": "slow@example.test", "password": "{}"}}"#,
        "p".repeat(100)
    );
    let head = format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(&address).await?;
    stream.write_all(head.as_bytes()).await?;
    let slow = tokio::spawn(dribble(
        stream,
        body.clone().into_bytes(),
        Duration::from_millis(100),
        Duration::from_secs(5),
    ));

    // Meanwhile everyone else is served, bodies included.
    let user = server.register("patient").await?;
    server.login(&user).await?;
    assert_healthy(&server).await?;

    let (elapsed, sent, received) = slow.await??;
    assert!(sent < body.len(), "the whole body got through");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}"
    );
    assert!(
        received.starts_with("HTTP/1.1 408"),
        "answered {received:?}"
    );
    assert!(
        received.contains("request_timeout"),
        "answered {received:?}"
    );
    assert_eq!(
        server.metric("tandem_request_body_timeouts_total").await?,
        1.0
    );
    Ok(())
}
