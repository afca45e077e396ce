//! Hostile input, sent as an attacker would, through real sockets to the built binary:
//! updates nested deep enough to overflow a recursive decoder, nests of shared types built
//! flat on the wire or one level at a time, documents stored deep before the limit existed,
//! state vectors and awareness updates that claim huge counts in a few bytes, oversized
//! awareness states, and a viewer posing as the AI assistant.
//!
//! The hostile updates are encoded by hand (lib0 varuints, the v1 item layout of
//! `yrs::block`), because no real client produces them. Every test checks that the server
//! stays up and that real `yjs` clients in the room are unaffected.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use e2e::llm::{LlmStandIn, refactor};
use e2e::{TandemServer, TestUser, YjsDriver};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Result = anyhow::Result<()>;

/// How long a test waits for the server to answer a hostile frame. Far longer than a
/// refusal takes; on a server that does not refuse, the wait is the test's failure.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// y-protocols message tags.
const MESSAGE_SYNC: u8 = 0;
const MESSAGE_AWARENESS: u8 = 1;
const MESSAGE_QUERY_AWARENESS: u8 = 3;
const SYNC_STEP_1: u8 = 0;
const SYNC_STEP_2: u8 = 1;
const SYNC_UPDATE: u8 = 2;

/// The v1 item layout: content references and info bits (`yrs::block`).
const CONTENT_TYPE: u8 = 7;
const CONTENT_ANY: u8 = 8;
const HAS_PARENT_SUB: u8 = 0b0010_0000;
/// Shared type reference of a `Y.Map`.
const TYPE_MAP: u64 = 1;
/// lib0 `Any` tag of an array.
const ANY_ARRAY: u8 = 117;

/// The client id every hand-encoded update is written as.
const HOSTILE_CLIENT: u64 = 0x7a11;

/// Appends `n` as a lib0 varuint.
fn write_var(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends a lib0 string (varuint length, UTF-8 bytes).
fn write_string(out: &mut Vec<u8>, s: &str) {
    write_var(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends a lib0 length-prefixed buffer.
fn write_buf(out: &mut Vec<u8>, bytes: &[u8]) {
    write_var(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A sync update message carrying `update`.
fn update_frame(update: &[u8]) -> Vec<u8> {
    let mut frame = vec![MESSAGE_SYNC, SYNC_UPDATE];
    write_buf(&mut frame, update);
    frame
}

/// An awareness message carrying one state: `json` for client `client` at `clock`.
fn awareness_frame(client: u64, clock: u64, json: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    write_var(&mut payload, 1);
    write_var(&mut payload, client);
    write_var(&mut payload, clock);
    write_string(&mut payload, json);
    let mut frame = vec![MESSAGE_AWARENESS];
    write_buf(&mut frame, &payload);
    frame
}

/// An update of `levels` `Y.Map`s of [`HOSTILE_CLIENT`], clocks `first..first + levels`, each
/// under key `k` of the one before it. The first lives in root map `root` when `parent` is
/// `None`, else in the map created by item `parent` (a clock of the same client). Flat on the
/// wire: each item names its parent's id, so the bytes grow linearly with the depth.
fn nested_maps(root: &str, parent: Option<u32>, first: u32, levels: u32) -> Vec<u8> {
    let mut update = Vec::new();
    write_var(&mut update, 1); // one client
    write_var(&mut update, u64::from(levels));
    write_var(&mut update, HOSTILE_CLIENT);
    write_var(&mut update, u64::from(first));
    for clock in first..first + levels {
        // No origins: the item names its parent, then its key in it.
        update.push(CONTENT_TYPE | HAS_PARENT_SUB);
        let parent = if clock == first {
            parent
        } else {
            Some(clock - 1)
        };
        match parent {
            None => {
                write_var(&mut update, 1); // parent is a root type, by name
                write_string(&mut update, root);
            }
            Some(parent) => {
                write_var(&mut update, 0); // parent is the type an item created
                write_var(&mut update, HOSTILE_CLIENT);
                write_var(&mut update, u64::from(parent));
            }
        }
        write_string(&mut update, "k");
        write_var(&mut update, TYPE_MAP);
    }
    write_var(&mut update, 0); // empty delete set
    update
}

/// An update inserting into root array `root` one value: `depth` arrays, each the only
/// element of the one around it (two bytes a level).
fn nested_arrays(root: &str, depth: usize) -> Vec<u8> {
    let mut update = Vec::new();
    write_var(&mut update, 1);
    write_var(&mut update, 1);
    write_var(&mut update, HOSTILE_CLIENT);
    write_var(&mut update, 0);
    update.push(CONTENT_ANY);
    write_var(&mut update, 1);
    write_string(&mut update, root);
    write_var(&mut update, 1); // one value
    for _ in 0..depth - 1 {
        update.extend_from_slice(&[ANY_ARRAY, 1]);
    }
    update.extend_from_slice(&[ANY_ARRAY, 0]);
    write_var(&mut update, 0);
    update
}

/// How many maps nest under key `k` from `value` down (`{"k": {"k": {}}}` is 2).
fn map_depth(mut value: &Value) -> usize {
    let mut depth = 0;
    while let Some(inner) = value.get("k") {
        depth += 1;
        value = inner;
    }
    depth
}

/// A bare WebSocket to one room, reading what the server sends.
struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Socket {
    /// Opens `/ws/{room}?token=…`.
    async fn open(server: &TandemServer, room: &str, token: &str) -> anyhow::Result<Self> {
        let (ws, _) =
            tokio_tungstenite::connect_async(format!("{}/{room}?token={token}", server.ws_url()))
                .await
                .with_context(|| format!("opening a socket to {room}"))?;
        Ok(Self { ws })
    }

    async fn send(&mut self, frame: Vec<u8>) -> Result {
        self.ws.send(WsMessage::Binary(frame.into())).await?;
        Ok(())
    }

    /// The next binary frame the server sends.
    async fn next_binary(&mut self) -> anyhow::Result<Vec<u8>> {
        tokio::time::timeout(ANSWER_TIMEOUT, async {
            while let Some(message) = self.ws.next().await {
                match message? {
                    WsMessage::Binary(frame) => return Ok(frame.to_vec()),
                    WsMessage::Close(frame) => bail!("closed while a frame was awaited: {frame:?}"),
                    _ => continue,
                }
            }
            bail!("socket ended while a frame was awaited")
        })
        .await
        .map_err(|_| anyhow::anyhow!("no frame from the server in {ANSWER_TIMEOUT:?}"))?
    }

    /// Reads until the server closes; the close code and reason.
    async fn closed(&mut self) -> anyhow::Result<(u16, String)> {
        tokio::time::timeout(ANSWER_TIMEOUT, async {
            while let Some(message) = self.ws.next().await {
                match message {
                    Ok(WsMessage::Close(Some(CloseFrame { code, reason }))) => {
                        return Ok((u16::from(code), reason.to_string()));
                    }
                    Ok(WsMessage::Close(None)) => bail!("closed without a code"),
                    Ok(_) => continue,
                    Err(err) => bail!("socket error before a close frame: {err}"),
                }
            }
            bail!("socket ended without a close frame")
        })
        .await
        .map_err(|_| anyhow::anyhow!("the server did not close the socket in {ANSWER_TIMEOUT:?}"))?
    }
}

/// `GET path` with `token`: status and JSON body (`Null` when the body is not JSON).
async fn get(server: &TandemServer, path: &str, token: &str) -> anyhow::Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .get(server.http(path))
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// The room's document as JSON; fails unless it is served.
async fn document(server: &TandemServer, room: &str, token: &str) -> anyhow::Result<Value> {
    let (status, body) = get(server, &format!("/api/rooms/{room}/document"), token).await?;
    ensure!(status == 200, "document of {room}: {status} {body}");
    Ok(body)
}

/// Polls the room's document, as text, until `done` holds for it (or fails after a
/// deadline). For documents nested deeper than `serde_json` parses (128 levels).
async fn wait_document_text(
    server: &TandemServer,
    room: &str,
    token: &str,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> Result {
    let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
    loop {
        let response = reqwest::Client::new()
            .get(server.http(&format!("/api/rooms/{room}/document")))
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        ensure!(status == 200, "document of {room}: {status} {text}");
        if done(&text) {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{room} never showed {what}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the room's document until `done` holds for it (or fails after a deadline).
async fn wait_document(
    server: &TandemServer,
    room: &str,
    token: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
    loop {
        let current = document(server, room, token).await?;
        if done(&current) {
            return Ok(current);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{room} never showed {what}: {current}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_healthy(server: &TandemServer) -> Result {
    let status = reqwest::get(server.http("/healthz")).await?.status();
    ensure!(status == 200, "/healthz answered {status}");
    Ok(())
}

/// A share link to `room` (its token, `shr_…`), made by the owner.
async fn share_link(server: &TandemServer, room: &str) -> anyhow::Result<String> {
    let owner = server.ensure_room(room).await?;
    let link: Value = reqwest::Client::new()
        .post(server.http(&format!("/api/rooms/{room}/share-links")))
        .bearer_auth(&owner)
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(link["token"]
        .as_str()
        .context("share link token")?
        .to_owned())
}

/// A registered account that is a member of `room` with `role`.
async fn member(server: &TandemServer, room: &str, role: &str) -> anyhow::Result<TestUser> {
    let user = server.register(role).await?;
    server.add_member(room, &user, role).await?;
    Ok(user)
}

/// `VmHWM` of process `pid` (its peak resident set) in bytes: what a transient allocation
/// leaves behind even after it is freed.
fn peak_resident_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/PID/status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?;
    Ok(kib * 1024)
}

#[tokio::test]
async fn deeply_nested_values_are_refused_and_the_room_keeps_working() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = server.ensure_room("nested").await?;
    let editor = member(&server, "nested", "editor").await?;
    driver.connect("a", &server, "nested").await?;
    driver.connect("b", &server, "nested").await?;
    driver.insert("a", "text", 0, "hello").await?;
    driver.wait_text("b", "text", "hello").await?;
    let before = wait_document(&server, "nested", &owner, "the text", |d| {
        d["text"] == "hello"
    })
    .await?;

    // 20,000 arrays, each the only element of the one around it: 40 KB that a recursive
    // decoder follows 20,000 frames deep.
    let update = nested_arrays("list", 20_000);
    assert!(update.len() < 41_000, "{} bytes", update.len());
    // As an update, and as the sync step 2 a client answers the server's step 1 with.
    let mut step_2 = vec![MESSAGE_SYNC, SYNC_STEP_2];
    write_buf(&mut step_2, &update);
    for frame in [update_frame(&update), step_2] {
        let mut hostile = Socket::open(&server, "nested", &editor.token).await?;
        hostile.send(frame).await?;
        let (code, reason) = hostile.closed().await?;
        assert_eq!(code, 1007, "{reason}");
        assert_healthy(&server).await?;
    }
    assert_eq!(document(&server, "nested", &owner).await?, before);
    driver.insert("b", "text", 5, " world").await?;
    driver.wait_text("a", "text", "hello world").await?;
    let after = wait_document(&server, "nested", &owner, "the edit", |d| {
        d["text"] == "hello world"
    })
    .await?;
    assert!(after.get("list").is_none(), "{after}");
    Ok(())
}

#[tokio::test]
async fn a_flat_nest_of_maps_is_refused_whole_and_nothing_of_it_is_stored() -> Result {
    let mut server = TandemServer::start(&[]).await?;
    let owner = server.ensure_room("maps").await?;
    server.write_text("maps", &owner, "text", "kept").await?;

    // 100,000 maps, each inside the one before: ten bytes a level on the wire.
    let update = nested_maps("m", None, 0, 100_000);
    let mut hostile = Socket::open(&server, "maps", &owner).await?;
    hostile.send(update_frame(&update)).await?;
    let (code, reason) = hostile.closed().await?;
    assert_eq!(code, 1007, "{reason}");
    assert_healthy(&server).await?;

    // Nothing of it was stored: after a restart the document reads, without the nest.
    assert!(server.stop().await?, "the server did not stop cleanly");
    server.restart().await?;
    let stored = document(&server, "maps", &owner).await?;
    assert_eq!(stored["text"], "kept", "{stored}");
    assert!(stored.get("m").is_none(), "{stored}");
    assert_healthy(&server).await
}

#[tokio::test]
async fn a_nest_built_one_level_per_update_stops_at_the_limit() -> Result {
    let server = TandemServer::start(&["--max-nesting-depth", "8"]).await?;
    let owner = server.ensure_room("levels").await?;
    let mut socket = Socket::open(&server, "levels", &owner).await?;
    for level in 1..=8u32 {
        let parent = (level > 1).then(|| level - 2);
        socket
            .send(update_frame(&nested_maps("m", parent, level - 1, 1)))
            .await?;
        wait_document(&server, "levels", &owner, &format!("level {level}"), |d| {
            map_depth(&d["m"]) == level as usize
        })
        .await?;
    }
    // Level 9 on its own (in the map of level 8, clock 7), and levels 8 and 9 in one update
    // hung on level 7 (clock 6): both go one past the limit, counting what the document has.
    for (parent, levels) in [(7, 1), (6, 2)] {
        socket
            .send(update_frame(&nested_maps("m", Some(parent), 8, levels)))
            .await?;
        let (code, reason) = socket.closed().await?;
        assert_eq!(code, 1007, "{levels} level(s) on clock {parent}: {reason}");
        assert_healthy(&server).await?;
        socket = Socket::open(&server, "levels", &owner).await?;
    }
    let stored = document(&server, "levels", &owner).await?;
    assert_eq!(map_depth(&stored["m"]), 8, "{stored}");
    Ok(())
}

#[tokio::test]
async fn a_document_stored_deeper_than_the_limit_is_refused_on_every_read() -> Result {
    // Plant two deep documents while the limit is high, as if stored before it existed.
    let mut planting = TandemServer::start(&["--max-nesting-depth", "1000"]).await?;
    let owner = planting.ensure_room("deep-types").await?;
    planting.ensure_room("deep-values").await?;
    planting.ensure_room("calm").await?;
    planting
        .write_text("calm", &owner, "text", "calm notes")
        .await?;
    let mut socket = Socket::open(&planting, "deep-types", &owner).await?;
    socket
        .send(update_frame(&nested_maps("m", None, 0, 200)))
        .await?;
    wait_document_text(&planting, "deep-types", &owner, "the nest", |d| {
        d.matches(r#"{"k":"#).count() == 200
    })
    .await?;
    let mut socket = Socket::open(&planting, "deep-values", &owner).await?;
    socket
        .send(update_frame(&nested_arrays("list", 200)))
        .await?;
    wait_document_text(&planting, "deep-values", &owner, "the nest", |d| {
        d.contains(&format!("{}{}", "[".repeat(201), "]".repeat(201)))
    })
    .await?;
    let mut versions = Vec::new();
    for room in ["deep-types", "deep-values"] {
        let version: Value = reqwest::Client::new()
            .post(planting.http(&format!("/api/rooms/{room}/versions")))
            .bearer_auth(&owner)
            .json(&json!({"label": "while deep"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        versions.push((room, version["id"].as_i64().context("version id")?));
    }
    assert!(
        planting.stop().await?,
        "the planting server did not stop cleanly"
    );

    // The same database under the default limit, with an AI provider that reads rooms.
    let stand_in = LlmStandIn::start().await?;
    let base = stand_in.base_url();
    let server = TandemServer::start_on(
        Some(planting.database_url()),
        &[
            "--ai-base-url",
            &base,
            "--ai-model",
            "stand-in",
            "--ai-api-key",
            "test-key",
        ],
    )
    .await?;
    for (room, version) in versions {
        for path in [
            format!("/api/rooms/{room}/document"),
            format!("/api/rooms/{room}/versions/{version}"),
            format!("/api/rooms/{room}/export"),
            format!("/api/rooms/{room}/files"),
            format!("/api/rooms/{room}/comments"),
        ] {
            let (status, body) = get(&server, &path, &owner).await?;
            assert_too_deep(status, &body, &path);
        }
        let http = reqwest::Client::new();
        for (path, body) in [
            (
                format!("/api/rooms/{room}/versions/{version}/restore"),
                json!({}),
            ),
            (
                format!("/api/rooms/{room}/fork"),
                json!({"id": format!("{room}-copy")}),
            ),
            (
                format!("/api/rooms/{room}/ai/chat"),
                refactor::request("main.rs"),
            ),
        ] {
            let response = http
                .post(server.http(&path))
                .bearer_auth(&owner)
                .json(&body)
                .send()
                .await?;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_too_deep(status, &body, &path);
        }
        assert_eq!(
            server.upgrade_status(room, Some(&owner)).await?,
            422,
            "{room}"
        );
        assert_healthy(&server).await?;
    }

    // Other rooms are read and written as before.
    let calm = document(&server, "calm", &owner).await?;
    assert_eq!(calm["text"], "calm notes", "{calm}");
    server.write_text("calm", &owner, "text", "more ").await?;
    assert_healthy(&server).await
}

/// Fails unless a read of a too-deep document was answered 422 `document_too_deep`.
fn assert_too_deep(status: u16, body: &Value, what: &str) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("document_too_deep")),
        "{what}: {body}"
    );
}

/// A sync step 1 whose state vector claims 2^28 entries, in a few bytes.
fn huge_state_vector_frame() -> Vec<u8> {
    let mut state_vector = Vec::new();
    write_var(&mut state_vector, 1 << 28);
    write_var(&mut state_vector, 1);
    write_var(&mut state_vector, 1);
    let mut frame = vec![MESSAGE_SYNC, SYNC_STEP_1];
    write_buf(&mut frame, &state_vector);
    frame
}

/// An awareness update claiming 2^28 states, in a few bytes.
fn huge_awareness_frame() -> Vec<u8> {
    let mut payload = Vec::new();
    write_var(&mut payload, 1 << 28);
    write_var(&mut payload, 1);
    write_var(&mut payload, 1);
    write_string(&mut payload, "{}");
    let mut frame = vec![MESSAGE_AWARENESS];
    write_buf(&mut frame, &payload);
    frame
}

/// An update claiming 2^28 clients, in a few bytes.
fn huge_update_clients() -> Vec<u8> {
    let mut update = Vec::new();
    write_var(&mut update, 1 << 28);
    write_var(&mut update, 1);
    write_var(&mut update, HOSTILE_CLIENT);
    write_var(&mut update, 0);
    update
}

/// An update inserting into root array `list` one value: a map claiming 2^28 entries.
fn huge_value_map() -> Vec<u8> {
    const ANY_OBJECT: u8 = 118;
    let mut update = Vec::new();
    write_var(&mut update, 1);
    write_var(&mut update, 1);
    write_var(&mut update, HOSTILE_CLIENT);
    write_var(&mut update, 0);
    update.push(CONTENT_ANY);
    write_var(&mut update, 1);
    write_string(&mut update, "list");
    write_var(&mut update, 1);
    update.push(ANY_OBJECT);
    write_var(&mut update, 1 << 28);
    write_string(&mut update, "k");
    update.push(ANY_OBJECT);
    write_var(&mut update, 0);
    write_var(&mut update, 0);
    update
}

#[tokio::test]
async fn claimed_counts_do_not_allocate_on_parallel_share_link_sockets() -> Result {
    const SOCKETS: usize = 16;
    const ALLOWED_GROWTH: u64 = 50 * 1024 * 1024;
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = server.ensure_room("claims").await?;
    let share = share_link(&server, "claims").await?;
    driver.connect("a", &server, "claims").await?;
    driver.insert("a", "text", 0, "steady").await?;
    let pid = server.pid().context("server pid")?;

    // Share links may send state vectors and awareness; updates need an editor's token.
    for (what, frame, token) in [
        ("state vector", huge_state_vector_frame(), &share),
        ("awareness", huge_awareness_frame(), &share),
        (
            "update clients",
            update_frame(&huge_update_clients()),
            &owner,
        ),
        ("value map", update_frame(&huge_value_map()), &owner),
    ] {
        assert!(frame.len() <= 32, "{what}: {} bytes", frame.len());
        let mut sockets = Vec::new();
        for _ in 0..SOCKETS {
            sockets.push(Socket::open(&server, "claims", token).await?);
        }
        let peak_before = peak_resident_bytes(pid)?;
        let closes = futures_util::future::join_all(sockets.iter_mut().map(|socket| {
            let frame = frame.clone();
            async move {
                socket.send(frame).await?;
                socket.closed().await
            }
        }))
        .await;
        for close in closes {
            let (code, reason) = close.with_context(|| format!("{what} socket"))?;
            assert_eq!(code, 1007, "{what}: {reason}");
        }
        let growth = peak_resident_bytes(pid)?.saturating_sub(peak_before);
        assert!(
            growth < ALLOWED_GROWTH,
            "{what}: peak resident memory grew by {} MiB",
            growth / (1024 * 1024)
        );
        assert_healthy(&server).await?;
    }

    driver.insert("a", "text", 6, " on").await?;
    wait_document(&server, "claims", &owner, "the edit", |d| {
        d["text"] == "steady on"
    })
    .await?;
    Ok(())
}

/// Whether `haystack` holds `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn an_oversized_awareness_state_closes_its_socket_and_is_never_relayed() -> Result {
    const HOSTILE_STATE: usize = 8 * 1024 * 1024;
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = server.ensure_room("presence").await?;
    let share = share_link(&server, "presence").await?;
    driver.connect("a", &server, "presence").await?;
    driver.connect("b", &server, "presence").await?;

    // A 1 KiB state is relayed as usual.
    let note = "n".repeat(1024);
    driver
        .call(
            "setAwareness",
            json!({"client": "a", "state": {"note": note}}),
        )
        .await?;
    driver
        .call(
            "waitAwarenessWhere",
            json!({"client": "b", "field": "note", "equals": note}),
        )
        .await?;

    let mut hostile = Socket::open(&server, "presence", &share).await?;
    let blob = "x".repeat(HOSTILE_STATE);
    let state = json!({ "blob": blob }).to_string();
    hostile
        .send(awareness_frame(HOSTILE_CLIENT, 1, &state))
        .await?;
    let (code, reason) = hostile.closed().await?;
    assert_eq!(code, 1009, "{reason}");
    assert!(
        reason.contains("65536"),
        "the reason names the limit: {reason}"
    );
    assert_healthy(&server).await?;

    // A client joining now is sent the room's awareness: the note, not the blob.
    let mut joiner = Socket::open(&server, "presence", &owner).await?;
    joiner.send(vec![MESSAGE_QUERY_AWARENESS]).await?;
    let mut received = 0;
    let awareness = loop {
        let frame = joiner.next_binary().await?;
        received += frame.len();
        if frame.first() == Some(&MESSAGE_AWARENESS) {
            break frame;
        }
    };
    assert!(
        contains(&awareness, note.as_bytes()),
        "the room's awareness lacks the note"
    );
    assert!(
        received < 64 * 1024,
        "the joiner was sent {received} bytes before the room's awareness"
    );
    let states = driver
        .call("getAwareness", json!({"client": "b"}))
        .await?
        .to_string();
    assert!(!states.contains("blob"), "the oversized state was relayed");
    Ok(())
}

#[tokio::test]
async fn a_viewer_cannot_pose_as_the_assistant_or_as_someone_else() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    server.ensure_room("masks").await?;
    let viewer = member(&server, "masks", "viewer").await?;
    driver.connect("owner", &server, "masks").await?;
    driver
        .connect_with_token("viewer", &server, "masks", &viewer.token)
        .await?;
    driver
        .call(
            "setAwareness",
            json!({"client": "viewer", "state": {
                "assistant": true,
                "user": {"name": "Mallory", "id": "x"},
                "cursor": 7,
            }}),
        )
        .await?;
    let seen = driver
        .call(
            "waitAwarenessWhere",
            json!({"client": "owner", "field": "cursor", "equals": 7}),
        )
        .await?;
    let state = &seen["state"];
    assert!(state.get("assistant").is_none(), "{state}");
    assert_eq!(state["user"]["id"], viewer.id.as_str(), "{state}");
    assert_eq!(state["user"]["name"], "viewer", "{state}");

    // Nor can anyone take the assistant's name.
    for name in ["AI assistant", "  ai ASSISTANT "] {
        let refused = reqwest::Client::new()
            .post(server.http("/api/auth/register"))
            .json(
                &json!({"email": format!("mask-{}@example.test", rand::random::<u32>()),
                "password": "long-enough-password", "display_name": name}),
            )
            .send()
            .await?;
        assert_eq!(refused.status().as_u16(), 422, "{name:?}");
        let body: Value = refused.json().await?;
        assert_eq!(
            body["error"]["fields"]["display_name"],
            "is reserved for the AI assistant"
        );
    }
    Ok(())
}

/// Where a hand-encoded item says it goes.
enum Place {
    /// Into the shared type the item at this clock (of [`HOSTILE_CLIENT`]) created.
    In(u32),
    /// Right after the item at this clock, in the type it lives in.
    After(u32),
    /// Right before the item at this clock, in the type it lives in.
    Before(u32),
}

/// An update of one item of [`HOSTILE_CLIENT`] at `clock`: content reference `content_ref`
/// with `content` (its encoded body), placed at `place`.
fn single_item(clock: u32, place: Place, content_ref: u8, content: &[u8]) -> Vec<u8> {
    const HAS_ORIGIN: u8 = 0b1000_0000;
    const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
    let mut update = Vec::new();
    write_var(&mut update, 1);
    write_var(&mut update, 1);
    write_var(&mut update, HOSTILE_CLIENT);
    write_var(&mut update, u64::from(clock));
    match place {
        Place::In(parent) => {
            update.push(content_ref);
            write_var(&mut update, 0);
            write_var(&mut update, HOSTILE_CLIENT);
            write_var(&mut update, u64::from(parent));
        }
        Place::After(origin) | Place::Before(origin) => {
            let flag = if matches!(place, Place::After(_)) {
                HAS_ORIGIN
            } else {
                HAS_RIGHT_ORIGIN
            };
            update.push(content_ref | flag);
            write_var(&mut update, HOSTILE_CLIENT);
            write_var(&mut update, u64::from(origin));
        }
    }
    update.extend_from_slice(content);
    write_var(&mut update, 0);
    update
}

/// An update of `levels` `Y.Array`s of [`HOSTILE_CLIENT`] from clock 0, each the only
/// element of the one before, the first in root array `root`.
fn nested_type_arrays(root: &str, levels: u32) -> Vec<u8> {
    const TYPE_ARRAY: u64 = 0;
    let mut update = Vec::new();
    write_var(&mut update, 1);
    write_var(&mut update, u64::from(levels));
    write_var(&mut update, HOSTILE_CLIENT);
    write_var(&mut update, 0);
    for clock in 0..levels {
        update.push(CONTENT_TYPE);
        if clock == 0 {
            write_var(&mut update, 1);
            write_string(&mut update, root);
        } else {
            write_var(&mut update, 0);
            write_var(&mut update, HOSTILE_CLIENT);
            write_var(&mut update, u64::from(clock - 1));
        }
        write_var(&mut update, TYPE_ARRAY);
    }
    write_var(&mut update, 0);
    update
}

#[tokio::test]
async fn a_type_placed_beside_the_deepest_item_counts_that_items_depth() -> Result {
    const ANY_STRING: u8 = 119;
    let server = TandemServer::start(&["--max-nesting-depth", "8"]).await?;
    let owner = server.ensure_room("beside").await?;
    let mut socket = Socket::open(&server, "beside", &owner).await?;
    // Eight arrays deep (clocks 0..=7), then a plain value in the deepest (clock 8).
    socket
        .send(update_frame(&nested_type_arrays("a", 8)))
        .await?;
    let mut value = Vec::new();
    write_var(&mut value, 1);
    value.push(ANY_STRING);
    write_string(&mut value, "leaf");
    socket
        .send(update_frame(&single_item(
            8,
            Place::In(7),
            CONTENT_ANY,
            &value,
        )))
        .await?;
    wait_document_text(&server, "beside", &owner, "the leaf", |d| {
        d.contains(r#"[[[[[[[["leaf"]]]]]]]]"#)
    })
    .await?;

    // An array inside the deepest, and arrays next to the leaf: each would be level 9.
    let mut array = Vec::new();
    write_var(&mut array, 0);
    for place in [Place::In(7), Place::After(8), Place::Before(8)] {
        socket
            .send(update_frame(&single_item(9, place, CONTENT_TYPE, &array)))
            .await?;
        let (code, reason) = socket.closed().await?;
        assert_eq!(code, 1007, "{reason}");
        assert!(reason.contains("nested deeper than 8"), "{reason}");
        assert_healthy(&server).await?;
        socket = Socket::open(&server, "beside", &owner).await?;
    }
    // A plain value there is fine: it nests nothing.
    let mut value = Vec::new();
    write_var(&mut value, 1);
    value.push(ANY_STRING);
    write_string(&mut value, "next");
    socket
        .send(update_frame(&single_item(
            9,
            Place::After(8),
            CONTENT_ANY,
            &value,
        )))
        .await?;
    wait_document_text(
        &server,
        "beside",
        &owner,
        "the leaf and the next value",
        |d| d.contains(r#"[[[[[[[["leaf","next"]]]]]]]]"#),
    )
    .await
}

/// Runs `sql` on the database of a stopped server (the `sqlite3` or `psql` client), for
/// planting rows as an earlier release stored them.
fn run_sql(database_url: &str, sql: &str) -> Result {
    let output = if let Some(path) = database_url.strip_prefix("sqlite://") {
        std::process::Command::new("sqlite3")
            .arg(path)
            .arg(sql)
            .output()?
    } else {
        std::process::Command::new("psql")
            .arg(database_url)
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()?
    };
    ensure!(
        output.status.success(),
        "{sql:.80}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// `bytes` as an SQL blob literal of the database behind `database_url`.
fn blob_literal(database_url: &str, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if database_url.starts_with("sqlite://") {
        format!("X'{hex}'")
    } else {
        format!("decode('{hex}', 'hex')")
    }
}

#[tokio::test]
async fn a_document_stored_by_an_earlier_release_deeper_than_any_limit_is_refused_clearly() -> Result
{
    // Releases before the limit stored values as deep as yrs could decode without
    // overflowing: thousands of levels, past what any --max-nesting-depth allows, so only
    // rows written as they wrote them can hold such a document.
    let mut server = TandemServer::start(&[]).await?;
    let owner = server.ensure_room("landmine").await?;
    server.ensure_room("calm").await?;
    server
        .write_text("calm", &owner, "text", "calm notes")
        .await?;
    assert!(server.stop().await?, "the server did not stop cleanly");
    let update = nested_arrays("list", 3000);
    let blob = blob_literal(server.database_url(), &update);
    run_sql(
        server.database_url(),
        &format!(
            "INSERT INTO room_updates (room_id, data, created_at) VALUES ('landmine', {blob}, 0); \
             INSERT INTO room_versions (room_id, kind, label, data, created_at) \
             VALUES ('calm', 'named', 'planted', {blob}, 0)"
        ),
    )?;
    server.restart().await?;

    let (status, body) = get(&server, "/api/rooms/landmine/document", &owner).await?;
    assert_too_deep(status, &body, "document");
    assert_eq!(server.upgrade_status("landmine", Some(&owner)).await?, 422);
    let (_, list) = get(&server, "/api/rooms/calm/versions", &owner).await?;
    let planted = list["versions"]
        .as_array()
        .and_then(|versions| versions.iter().find(|v| v["label"] == "planted"))
        .and_then(|v| v["id"].as_i64())
        .with_context(|| format!("the planted version is listed: {list}"))?;
    let (status, body) = get(
        &server,
        &format!("/api/rooms/calm/versions/{planted}"),
        &owner,
    )
    .await?;
    assert_too_deep(status, &body, "version JSON");
    assert_healthy(&server).await?;
    assert_eq!(
        document(&server, "calm", &owner).await?["text"],
        "calm notes"
    );
    Ok(())
}

/// One struct run of `client` from `clock`: one deleted-content item of `len` clocks in root
/// `"gone"`, appended to `update`.
fn deleted_run(update: &mut Vec<u8>, client: u64, clock: u64, len: u64) {
    const CONTENT_DELETED: u8 = 1;
    write_var(update, 1);
    write_var(update, client);
    write_var(update, clock);
    update.push(CONTENT_DELETED);
    write_var(update, 1);
    write_string(update, "gone");
    write_var(update, len);
}

/// Updates in shapes neither Yjs nor yrs encode, on which yrs's integration panicked or
/// wrapped its clocks (the fuzzer's findings): a client's structs in two runs, a clock past
/// 32 bits, a client id past 53 bits, a deleted range past the last clock, and an item inside
/// text. Each closes its socket with 1007 and changes nothing; the room goes on.
#[tokio::test]
async fn updates_in_shapes_yrs_integrates_wrongly_are_refused() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = server.ensure_room("shapes").await?;
    driver.connect("a", &server, "shapes").await?;
    driver.connect("b", &server, "shapes").await?;
    driver.insert("a", "text", 0, "hello").await?;
    driver.wait_text("b", "text", "hello").await?;

    let runs = |groups: &[(u64, u64, u64)]| {
        let mut update = Vec::new();
        write_var(&mut update, groups.len() as u64);
        for &(client, clock, len) in groups {
            deleted_run(&mut update, client, clock, len);
        }
        write_var(&mut update, 0);
        update
    };
    let mut past_last_clock = vec![0];
    write_var(&mut past_last_clock, 1);
    write_var(&mut past_last_clock, HOSTILE_CLIENT);
    write_var(&mut past_last_clock, 1);
    write_var(&mut past_last_clock, u64::from(u32::MAX));
    write_var(&mut past_last_clock, 2);
    // A string at clock 0, then a value placed inside it (clock 1).
    let mut inside_text = Vec::new();
    write_var(&mut inside_text, 1);
    write_var(&mut inside_text, 2);
    write_var(&mut inside_text, HOSTILE_CLIENT);
    write_var(&mut inside_text, 0);
    inside_text.push(4); // a string in root "gone"
    write_var(&mut inside_text, 1);
    write_string(&mut inside_text, "gone");
    write_string(&mut inside_text, "x");
    inside_text.push(CONTENT_ANY); // a value, parent by id: the string
    write_var(&mut inside_text, 0);
    write_var(&mut inside_text, HOSTILE_CLIENT);
    write_var(&mut inside_text, 0);
    write_var(&mut inside_text, 1);
    inside_text.push(126); // null
    write_var(&mut inside_text, 0);
    let hostile = [
        (
            "two runs",
            runs(&[(HOSTILE_CLIENT, 22, 1), (HOSTILE_CLIENT, 3, 226)]),
        ),
        ("clock past 32 bits", runs(&[(HOSTILE_CLIENT, 1 << 40, 1)])),
        ("length past 32 bits", runs(&[(HOSTILE_CLIENT, 0, 1 << 33)])),
        ("client past 53 bits", runs(&[(1 << 60, 0, 1)])),
        ("deleted past the last clock", past_last_clock),
        ("inside text", inside_text),
    ];
    for (what, update) in hostile {
        let mut socket = Socket::open(&server, "shapes", &owner).await?;
        socket.send(update_frame(&update)).await?;
        let (code, reason) = socket.closed().await?;
        assert_eq!(code, 1007, "{what}: {reason}");
        assert_healthy(&server).await?;
    }
    let untouched = document(&server, "shapes", &owner).await?;
    assert_eq!(
        untouched,
        serde_json::json!({ "text": "hello" }),
        "{untouched}"
    );
    driver.insert("b", "text", 5, " world").await?;
    driver.wait_text("a", "text", "hello world").await?;
    Ok(())
}
