//! Real `yjs` + `y-websocket` clients against the built server.

use std::time::Duration;

use e2e::{RawClient, TandemServer, YjsDriver, seed};
use serde_json::json;

type Result = anyhow::Result<()>;

#[tokio::test]
async fn concurrent_edits_converge_and_a_late_joiner_gets_everything() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    driver.connect("a", &server, "doc").await?;
    driver.connect("b", &server, "doc").await?;
    // Both edit at once, at the same position: CRDT merge must keep both.
    let (ra, rb) = tokio::join!(
        driver.insert("a", "text", 0, "alpha "),
        driver.insert("b", "text", 0, "beta "),
    );
    ra?;
    rb?;
    let text = driver
        .wait_converged(&["a".into(), "b".into()], "text")
        .await?;
    assert!(
        text.contains("alpha ") && text.contains("beta "),
        "{text:?}"
    );
    assert_eq!(text.len(), "alpha beta ".len());

    driver.connect("late", &server, "doc").await?;
    driver.wait_text("late", "text", &text).await?;
    driver.shutdown().await
}

#[tokio::test]
async fn awareness_reaches_others_and_is_removed_on_disconnect() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let a = driver.connect("a", &server, "presence").await?;
    driver.connect("b", &server, "presence").await?;
    let claimed = json!({"user": {"name": "Ada", "color": "#ff0000"}, "cursor": 3});
    driver
        .call("setAwareness", json!({"client": "a", "state": claimed}))
        .await?;
    // The server stamps the sender's real identity over whatever name it claimed.
    let owner = server.owner().await?;
    let state = json!({
        "user": {"name": "owner", "id": owner.id, "color": "#ff0000"},
        "cursor": 3,
    });
    driver
        .call(
            "waitAwareness",
            json!({"client": "b", "clientId": a, "present": true, "equals": state}),
        )
        .await?;
    // A joiner receives the presence of those already there.
    driver.connect("c", &server, "presence").await?;
    driver
        .call(
            "waitAwareness",
            json!({"client": "c", "clientId": a, "present": true, "equals": state}),
        )
        .await?;
    driver.call("destroy", json!({"client": "a"})).await?;
    for observer in ["b", "c"] {
        driver
            .call(
                "waitAwareness",
                json!({"client": observer, "clientId": a, "present": false}),
            )
            .await?;
    }
    driver.shutdown().await
}

#[tokio::test]
async fn fifty_clients_in_five_rooms_converge_under_random_edits() -> Result {
    let seed = seed("fifty_clients_in_five_rooms_converge_under_random_edits");
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let rooms: Vec<String> = (0..5).map(|r| format!("room-{r}")).collect();
    let clients: Vec<(String, String)> = (0..50)
        .map(|i| (format!("c{i}"), rooms[i % rooms.len()].clone()))
        .collect();
    let connects = clients
        .iter()
        .map(|(client, room)| driver.connect(client, &server, room));
    for result in futures_util::future::join_all(connects).await {
        result?;
    }
    let edits = clients.iter().enumerate().map(|(i, (client, _))| {
        driver.call(
            "randomEdits",
            json!({"client": client, "text": "text", "seed": seed + i as u64, "count": 40}),
        )
    });
    for result in futures_util::future::join_all(edits).await {
        result?;
    }
    for room in &rooms {
        let members: Vec<String> = clients
            .iter()
            .filter(|(_, r)| r == room)
            .map(|(c, _)| c.clone())
            .collect();
        let text = driver.wait_converged(&members, "text").await?;
        // The server's copy converged too.
        let body: serde_json::Value = reqwest::Client::new()
            .get(server.http(&format!("/api/rooms/{room}/document")))
            .bearer_auth(server.owner().await?.token)
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(
            body["text"].as_str(),
            Some(text.as_str()),
            "room {room}, seed {seed}"
        );
    }
    driver.shutdown().await
}

#[tokio::test]
async fn twenty_clients_joining_a_cold_room_at_once_share_one_load() -> Result {
    let mut server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    driver.connect("writer", &server, "cold").await?;
    driver
        .insert("writer", "text", 0, "persisted before the restart")
        .await?;
    driver.connect("witness", &server, "cold").await?;
    driver
        .wait_text("witness", "text", "persisted before the restart")
        .await?;
    driver.shutdown().await?;
    assert!(server.stop().await?, "clean exit:\n{}", server.logs());
    server.restart().await?;

    let driver = YjsDriver::start().await?;
    let names: Vec<String> = (0..20).map(|i| format!("j{i}")).collect();
    let joins = names.iter().map(|n| driver.connect(n, &server, "cold"));
    for result in futures_util::future::join_all(joins).await {
        result?;
    }
    for name in &names {
        assert_eq!(
            driver.text(name, "text").await?,
            "persisted before the restart"
        );
    }
    assert_eq!(server.metric("tandem_room_loads_total").await?, 1.0);
    driver.shutdown().await
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_keeps_every_edit() -> Result {
    let mut server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    driver.connect("a", &server, "shutdown").await?;
    driver.connect("b", &server, "shutdown").await?;
    driver
        .call(
            "randomEdits",
            json!({"client": "a", "text": "text", "seed": 7, "count": 100}),
        )
        .await?;
    let text = driver
        .wait_converged(&["a".into(), "b".into()], "text")
        .await?;
    let close = driver.call("waitClose", json!({"client": "b"}));
    let stopped = server.stop();
    let (close, stopped) = tokio::join!(close, stopped);
    assert!(stopped?, "clean exit:\n{}", server.logs());
    assert_eq!(close?["code"], json!(1001));
    driver.shutdown().await?;

    server.restart().await?;
    let driver = YjsDriver::start().await?;
    driver.connect("fresh", &server, "shutdown").await?;
    assert_eq!(driver.text("fresh", "text").await?, text);
    driver.shutdown().await
}

#[tokio::test]
async fn kill_9_keeps_edits_another_client_already_saw() -> Result {
    let mut server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    driver.connect("writer", &server, "crash").await?;
    driver.connect("witness", &server, "crash").await?;
    for i in 0..30 {
        driver.insert("writer", "text", 0, &format!("{i},")).await?;
    }
    let seen = driver.text("writer", "text").await?;
    driver.wait_text("witness", "text", &seen).await?;
    // The witness has every edit; in durable mode that means they are committed.
    server.kill().await?;
    driver.shutdown().await?;

    server.restart().await?;
    let driver = YjsDriver::start().await?;
    driver.connect("after", &server, "crash").await?;
    assert_eq!(driver.text("after", "text").await?, seen);
    driver.shutdown().await
}

#[tokio::test]
async fn an_offline_client_merges_its_edits_on_reconnect() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    driver.connect("online", &server, "offline").await?;
    driver.connect("traveller", &server, "offline").await?;
    driver.insert("online", "text", 0, "shared start. ").await?;
    driver
        .wait_text("traveller", "text", "shared start. ")
        .await?;

    driver
        .call("disconnect", json!({"client": "traveller"}))
        .await?;
    driver
        .insert("traveller", "text", 14, "written offline.")
        .await?;
    driver.insert("online", "text", 0, "Meanwhile: ").await?;
    driver
        .call("reconnect", json!({"client": "traveller"}))
        .await?;
    let text = driver
        .wait_converged(&["online".into(), "traveller".into()], "text")
        .await?;
    assert_eq!(text, "Meanwhile: shared start. written offline.");
    driver.shutdown().await
}

async fn assert_room_unharmed(driver: &YjsDriver, server: &TandemServer, room: &str) -> Result {
    driver.insert("a", "text", 0, "still ").await?;
    driver.wait_text("b", "text", "still fine").await?;
    driver.connect("after", server, room).await?;
    driver.wait_text("after", "text", "still fine").await?;
    Ok(())
}

#[tokio::test]
async fn a_malformed_frame_closes_only_that_connection() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    driver.connect("a", &server, "guarded").await?;
    driver.connect("b", &server, "guarded").await?;
    driver.insert("a", "text", 0, "fine").await?;
    driver.wait_text("b", "text", "fine").await?;

    // A sync update whose length prefix points past the end of the frame.
    let mut truncated = RawClient::connect(&server, "guarded").await?;
    truncated.send(vec![0, 2, 0x7f, 1, 2, 3]).await?;
    let (code, reason) = truncated.closed().await?;
    assert_eq!(code, 1007, "{reason}");
    assert!(reason.contains("malformed"), "{reason}");

    // A well-framed update whose payload is not a Yjs update.
    let mut garbage = RawClient::connect(&server, "guarded").await?;
    garbage
        .send(vec![0, 2, 5, 0xff, 0xff, 0xff, 0xff, 0x0f])
        .await?;
    let (code, reason) = garbage.closed().await?;
    assert_eq!(code, 1007, "{reason}");

    // An unknown message type.
    let mut unknown = RawClient::connect(&server, "guarded").await?;
    unknown.send(vec![42, 0]).await?;
    assert_eq!(unknown.closed().await?.0, 1007);

    assert_room_unharmed(&driver, &server, "guarded").await?;
    assert!(server.metric("tandem_frames_refused_total").await? >= 3.0);
    driver.shutdown().await
}

#[tokio::test]
async fn an_oversized_frame_closes_only_that_connection() -> Result {
    let server = TandemServer::start(&["--max-message-size", "65536"]).await?;
    let driver = YjsDriver::start().await?;
    driver.connect("a", &server, "big").await?;
    driver.connect("b", &server, "big").await?;
    driver.insert("a", "text", 0, "fine").await?;
    driver.wait_text("b", "text", "fine").await?;

    let mut raw = RawClient::connect(&server, "big").await?;
    raw.send(vec![0u8; 70_000]).await?;
    let (code, reason) = raw.closed().await?;
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("65536"), "{reason}");

    // A real client whose single edit exceeds the limit is refused the same way.
    driver.connect("huge", &server, "big").await?;
    let close = driver.call("waitClose", json!({"client": "huge"}));
    let huge_text = "x".repeat(80_000);
    let insert = driver.insert("huge", "text", 0, &huge_text);
    let (close, insert) = tokio::join!(close, insert);
    insert?;
    assert_eq!(close?["code"], json!(1009));
    driver.call("destroy", json!({"client": "huge"})).await?;

    assert_room_unharmed(&driver, &server, "big").await?;
    driver.shutdown().await
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_after_the_timeout() -> Result {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TandemServer::start(&["--ping-interval", "200ms", "--ping-timeout", "1s"]).await?;
    let token = server.ensure_room("silent").await?;
    // A bare socket that completes the upgrade and then only listens: it never pongs.
    let mut socket = tokio::net::TcpStream::connect(server.address()).await?;
    let request = format!(
        "GET /ws/silent?token={token} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.address()
    );
    socket.write_all(request.as_bytes()).await?;
    let mut received = Vec::new();
    let mut pings = 0;
    let close_code = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buffer = [0u8; 4096];
        loop {
            let n = socket.read(&mut buffer).await?;
            anyhow::ensure!(n > 0, "connection ended without a close frame");
            received.extend_from_slice(&buffer[..n]);
            // Skip the HTTP response head once.
            if let Some(end) = find(&received, b"\r\n\r\n") {
                if received.starts_with(b"HTTP/1.1 101") {
                    received.drain(..end + 4);
                } else if received.starts_with(b"HTTP/") {
                    anyhow::bail!("upgrade refused: {}", String::from_utf8_lossy(&received));
                }
            }
            // Server frames are unmasked: [opcode byte, length byte, (extended length), payload].
            while received.len() >= 2 && !received.starts_with(b"HTTP/") {
                let opcode = received[0] & 0x0f;
                let (len, header) = match received[1] & 0x7f {
                    126 if received.len() >= 4 => {
                        (u16::from_be_bytes([received[2], received[3]]) as usize, 4)
                    }
                    127 => anyhow::bail!("unexpectedly large frame"),
                    126 => break,
                    n => (n as usize, 2),
                };
                if received.len() < header + len {
                    break;
                }
                let payload: Vec<u8> = received[header..header + len].to_vec();
                received.drain(..header + len);
                match opcode {
                    0x9 => pings += 1,
                    0x8 => return Ok(u16::from_be_bytes([payload[0], payload[1]])),
                    _ => {}
                }
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("the server never closed the silent connection"))??;
    assert_eq!(close_code, 1000);
    assert!(
        pings >= 2,
        "the server pinged before giving up ({pings} pings)"
    );
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
