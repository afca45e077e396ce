//! Room lifetime through the built binary: a deleted room leaves nothing behind, nothing
//! racing its deletion (a slow upload, a closing socket's "left" event) lands after it, and
//! whoever creates a room under the same id finds it empty.

use std::time::Duration;

use e2e::api::{get, json as call, post};
use e2e::llm::{LlmStandIn, ScriptedReply};
use e2e::{TandemServer, TestUser};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

type Result = anyhow::Result<()>;

/// How long a test waits for something that should happen promptly.
const LIMIT: Duration = Duration::from_secs(10);

async fn create_room(server: &TandemServer, user: &TestUser, room: &str) -> anyhow::Result<()> {
    let (status, body) = post(
        server,
        &user.token,
        "/api/rooms",
        json!({"id": room, "name": format!("{room} room")}),
    )
    .await?;
    anyhow::ensure!(status == 201, "create {room}: {status} {body}");
    Ok(())
}

async fn delete_room(server: &TandemServer, user: &TestUser, room: &str) -> anyhow::Result<()> {
    let (status, body) = call(
        server,
        Method::DELETE,
        &user.token,
        &format!("/api/rooms/{room}"),
        None,
    )
    .await?;
    anyhow::ensure!(status == 204, "delete {room}: {status} {body}");
    Ok(())
}

async fn assert_healthy(server: &TandemServer) -> Result {
    let status = reqwest::get(server.http("/healthz")).await?.status();
    assert_eq!(status, 200, "the server is up");
    Ok(())
}

/// Everything a member of `room` can read of it, as one JSON value per endpoint.
async fn everything_visible(
    server: &TandemServer,
    token: &str,
    room: &str,
) -> anyhow::Result<Value> {
    let base = format!("/api/rooms/{room}");
    Ok(json!({
        "document": get(server, token, &format!("{base}/document")).await?,
        "files": get(server, token, &format!("{base}/files")).await?["files"],
        "versions": get(server, token, &format!("{base}/versions")).await?["versions"],
        "comments": get(server, token, &format!("{base}/comments")).await?,
        "conversations": get(server, token, &format!("{base}/ai/conversations")).await?["conversations"],
        "activity": get(server, token, &format!("{base}/activity")).await?["events"],
    }))
}

/// A plain WebSocket to `room` as `token`.
async fn open_socket(
    server: &TandemServer,
    token: &str,
    room: &str,
) -> anyhow::Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let (socket, _) =
        tokio_tungstenite::connect_async(format!("{}/{room}?token={token}", server.ws_url()))
            .await?;
    Ok(socket)
}

/// Reads until the server closes `socket`; its close code.
async fn close_code(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> anyhow::Result<u16> {
    tokio::time::timeout(LIMIT, async {
        while let Some(message) = socket.next().await {
            if let WsMessage::Close(Some(CloseFrame { code, .. })) = message? {
                return Ok(u16::from(code));
            }
        }
        anyhow::bail!("socket ended without a close frame")
    })
    .await
    .map_err(|_| anyhow::anyhow!("the server never closed the socket"))?
}

/// A room with a document, a comment, a named version, an AI conversation, activity and an
/// open socket is deleted; the open socket is closed with 4404, another room is untouched,
/// and the same id created again by someone else shows none of it (its "left" event
/// included).
#[tokio::test]
async fn a_room_created_again_under_a_deleted_id_shows_nothing_of_the_old_one() -> Result {
    let stand_in = LlmStandIn::start().await?;
    stand_in.set_default(ScriptedReply::text(&["Nothing to see here."]));
    let base = stand_in.base_url();
    let server = TandemServer::start(&[
        "--ai-base-url",
        base.as_str(),
        "--ai-model",
        "stand-in",
        "--ai-api-key",
        "test-key",
    ])
    .await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    create_room(&server, &alice, "reused").await?;
    create_room(&server, &alice, "bystander").await?;

    server
        .write_text("reused", &alice.token, "notes", "alice's secret text")
        .await?;
    let (status, thread) = post(
        &server,
        &alice.token,
        "/api/rooms/reused/comments",
        json!({"file": "notes", "start": 0, "end": 7, "body": "alice's secret remark"}),
    )
    .await?;
    assert_eq!(status, 201, "{thread}");
    let (status, version) = post(
        &server,
        &alice.token,
        "/api/rooms/reused/versions",
        json!({"label": "alice's secret checkpoint"}),
    )
    .await?;
    assert_eq!(status, 201, "{version}");
    let events = server
        .ai_chat(
            "reused",
            &alice.token,
            json!({"message": "alice's secret conversation title"}),
        )
        .await?;
    assert!(events.iter().any(|e| e.name == "done"), "the chat finished");
    let before = everything_visible(&server, &alice.token, "reused").await?;
    assert_eq!(
        before["conversations"].as_array().map(Vec::len),
        Some(1),
        "{before}"
    );
    assert!(!before["activity"].as_array().expect("events").is_empty());

    let mut open = open_socket(&server, &alice.token, "reused").await?;
    let mut bystander = open_socket(&server, &alice.token, "bystander").await?;
    delete_room(&server, &alice, "reused").await?;
    assert_eq!(close_code(&mut open).await?, 4404);

    create_room(&server, &bob, "reused").await?;
    let after = everything_visible(&server, &bob.token, "reused").await?;
    let text = after.to_string();
    assert!(
        !text.contains("secret"),
        "the old room shows through: {after}"
    );
    assert!(
        !text.contains(&alice.id),
        "alice appears in bob's room: {after}"
    );
    assert_eq!(after["files"], json!([]), "{after}");
    assert_eq!(after["versions"], json!([]), "{after}");
    assert_eq!(after["conversations"], json!([]), "{after}");
    assert_eq!(after["activity"], json!([]), "{after}");
    // Alice is not a participant of bob's room, whatever she held in hers.
    let (status, _) = call(
        &server,
        Method::GET,
        &alice.token,
        "/api/rooms/reused/document",
        None,
    )
    .await?;
    assert_eq!(status, 403);

    // The other room and its socket are unaffected.
    server
        .write_text("bystander", &alice.token, "notes", "still here")
        .await?;
    assert!(
        tokio::time::timeout(Duration::from_millis(50), bystander.next())
            .await
            .map_or(true, |m| matches!(m, Some(Ok(WsMessage::Binary(_))))),
        "the bystander socket stays open"
    );
    assert_healthy(&server).await
}

/// A raw HTTP/1.1 request whose body is sent in two parts, so the server holds it half read.
struct SlowUpload {
    stream: tokio::net::TcpStream,
    rest: Vec<u8>,
}

impl SlowUpload {
    /// Sends the request line, headers and the first half of `body`.
    async fn start(
        server: &TandemServer,
        token: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<Self> {
        let mut stream = tokio::net::TcpStream::connect(server.address()).await?;
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            server.address(),
            body.len()
        );
        let (first, rest) = body.split_at(body.len() / 2);
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(first).await?;
        stream.flush().await?;
        Ok(Self {
            stream,
            rest: rest.to_vec(),
        })
    }

    /// Sends the rest of the body; the response's status code and body.
    async fn finish(mut self) -> anyhow::Result<(u16, String)> {
        self.stream.write_all(&self.rest).await?;
        let mut response = Vec::new();
        tokio::time::timeout(LIMIT, self.stream.read_to_end(&mut response)).await??;
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no status line in {response:?}"))?;
        Ok((status, response))
    }
}

/// Polls `/metrics` until `name` reaches `at_least`.
async fn wait_metric(server: &TandemServer, name: &str, at_least: f64) -> Result {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while server.metric(name).await? < at_least {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// An upload whose body is still arriving when its room is deleted is refused (404), and
/// the file it carried is nowhere in the room created again under the id.
#[tokio::test]
async fn an_upload_in_flight_when_its_room_is_deleted_plants_nothing() -> Result {
    let server = TandemServer::start(&[]).await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    create_room(&server, &alice, "planted").await?;
    assert_eq!(server.metric("tandem_rooms_in_memory").await?, 0.0);

    let body = "planted by a request that outlived its room\n".repeat(64);
    let upload = SlowUpload::start(
        &server,
        &alice.token,
        "/api/rooms/planted/files/planted.txt",
        body.as_bytes(),
    )
    .await?;
    // The handler has checked alice's role and holds the room (loading it) before it reads
    // the body.
    wait_metric(&server, "tandem_rooms_in_memory", 1.0).await?;
    delete_room(&server, &alice, "planted").await?;
    let (status, response) = upload.finish().await?;
    assert_eq!(status, 404, "{response}");

    create_room(&server, &bob, "planted").await?;
    let after = everything_visible(&server, &bob.token, "planted").await?;
    assert_eq!(after["files"], json!([]), "{after}");
    assert!(!after.to_string().contains("planted by"), "{after}");
    assert_healthy(&server).await
}

/// `[sync, update, update]`: one y-protocols update message (lib0 varuint length prefix).
fn update_frame(update: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8, 2];
    let mut len = update.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            frame.push(byte);
            break;
        }
        frame.push(byte | 0x80);
    }
    frame.extend_from_slice(update);
    frame
}

/// A client's document: each edit answers the v1 update it made.
struct Author(yrs::Doc);

impl Author {
    fn new(client: u64) -> Self {
        Self(yrs::Doc::with_client_id(client))
    }

    fn append(&self, text: &str, content: &str) -> Vec<u8> {
        use yrs::{GetString, Text, Transact};
        let root = self.0.get_or_insert_text(text);
        let mut txn = self.0.transact_mut();
        let at = root.get_string(&txn).encode_utf16().count() as u32;
        root.insert(&mut txn, at, content);
        txn.encode_update_v1()
    }

    fn apply(&self, update: &[u8]) {
        use yrs::Transact;
        use yrs::updates::decoder::Decode;
        let update = yrs::Update::decode_v1(update).expect("an update this test made");
        self.0.transact_mut().apply_update(update).expect("applies");
    }
}

/// The server's JSON of `room`'s document.
async fn document(server: &TandemServer, token: &str, room: &str) -> anyhow::Result<Value> {
    get(server, token, &format!("/api/rooms/{room}/document")).await
}

/// Polls `room`'s document until `text` reads `expected`.
async fn wait_document_text(
    server: &TandemServer,
    token: &str,
    room: &str,
    text: &str,
    expected: &str,
) -> Result {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let doc = document(server, token, room).await?;
        if doc[text] == expected {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{room}.{text} never read {expected:?}: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An update whose dependency never arrives does not stop compaction: the room's log is
/// still folded (today's rule stopped at that update for good), everything survives a
/// restart, and the waiting update shows once its dependency comes.
#[tokio::test]
async fn a_room_with_an_update_waiting_for_a_dependency_is_still_compacted() -> Result {
    let mut server = TandemServer::start(&["--compact-after", "5"]).await?;
    let token = server.ensure_room("waiting").await?;
    let lost = Author::new(1);
    let builder = Author::new(2);
    let missing = lost.append("other", "missing ");
    builder.apply(&missing);
    let dependent = builder.append("other", "dependent");
    let writer = Author::new(3);

    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{}/waiting?token={token}", server.ws_url()))
            .await?;
    use futures_util::SinkExt;
    socket
        .send(WsMessage::Binary(update_frame(&dependent).into()))
        .await?;
    let mut expected = String::new();
    for i in 0..30 {
        let piece = format!("<{i}>");
        expected.push_str(&piece);
        socket
            .send(WsMessage::Binary(
                update_frame(&writer.append("t", &piece)).into(),
            ))
            .await?;
    }
    wait_document_text(&server, &token, "waiting", "t", &expected).await?;
    wait_metric(&server, "tandem_compactions_total", 1.0).await?;
    let _ = socket.close(None).await;

    server.stop().await?;
    server.restart().await?;
    wait_document_text(&server, &token, "waiting", "t", &expected).await?;
    server
        .write_text("waiting", &token, "unrelated", "x")
        .await?;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{}/waiting?token={token}", server.ws_url()))
            .await?;
    socket
        .send(WsMessage::Binary(update_frame(&missing).into()))
        .await?;
    wait_document_text(&server, &token, "waiting", "other", "missing dependent").await?;
    assert_healthy(&server).await
}

/// Makes the server's database refuse, for good, every logged update whose bytes contain
/// `marker`: a trigger stands for a value the database cannot take.
async fn refuse_updates_containing(server: &TandemServer, marker: &str) -> Result {
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(server.database_url()).await?;
    if server.database_url().starts_with("postgres") {
        db.execute_unprepared(&format!(
            "CREATE FUNCTION refuse_marked() RETURNS trigger AS $$ BEGIN \
             IF position(convert_to('{marker}', 'UTF8') IN NEW.data) > 0 THEN \
             RAISE EXCEPTION 'this update cannot be stored' USING ERRCODE = '22000'; \
             END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse_marked BEFORE INSERT ON room_updates \
             FOR EACH ROW EXECUTE FUNCTION refuse_marked();"
        ))
        .await?;
    } else {
        db.execute_unprepared(&format!(
            "CREATE TRIGGER refuse_marked BEFORE INSERT ON room_updates \
             WHEN instr(NEW.data, CAST('{marker}' AS BLOB)) > 0 \
             BEGIN SELECT RAISE(ABORT, 'this update cannot be stored'); END"
        ))
        .await?;
    }
    db.close().await?;
    Ok(())
}

/// An update the database refuses for good closes its sender's socket with 1007 (its
/// client resyncs) and is counted; the writer does not retry it forever, so the same room's
/// other clients and every other room keep getting their edits.
#[tokio::test]
async fn an_update_the_database_refuses_closes_its_sender_and_stalls_nobody() -> Result {
    let server = TandemServer::start(&[]).await?;
    let token = server.ensure_room("poisoned").await?;
    server.ensure_room("healthy").await?;
    refuse_updates_containing(&server, "POISON").await?;

    let (mut hostile, _) =
        tokio_tungstenite::connect_async(format!("{}/poisoned?token={token}", server.ws_url()))
            .await?;
    use futures_util::SinkExt;
    let poison = Author::new(7).append("t", "POISON");
    hostile
        .send(WsMessage::Binary(update_frame(&poison).into()))
        .await?;
    let (code, reason) = tokio::time::timeout(LIMIT, async {
        while let Some(message) = hostile.next().await {
            if let WsMessage::Close(Some(CloseFrame { code, reason })) = message? {
                return Ok((u16::from(code), reason.to_string()));
            }
        }
        anyhow::bail!("socket ended without a close frame")
    })
    .await
    .map_err(|_| anyhow::anyhow!("the refused update's socket stayed open"))??;
    assert_eq!(code, 1007, "{reason}");
    assert!(reason.contains("could not be stored"), "{reason}");
    assert_eq!(server.metric("tandem_persist_refused_total").await?, 1.0);

    // Durable fan-out goes on: in that room and in another one.
    server.write_text("poisoned", &token, "t", "fine").await?;
    server
        .write_text("healthy", &token, "t", "also fine")
        .await?;
    let doc = document(&server, &token, "poisoned").await?;
    assert!(!doc.to_string().contains("POISON"), "{doc}");
    assert_healthy(&server).await
}
