//! Revocation and expiry reach every open socket, on every node: a reused refresh token, an
//! expiring share link or session, and a removal a node never heard of because Redis was
//! down. Observed through real `yjs` + `y-websocket` clients and HTTP against the binary.

use std::time::Duration;

use anyhow::Context;
use e2e::{RedisServer, TandemServer, YjsDriver, api};
use serde_json::{Value, json};

type Result = anyhow::Result<()>;

/// The first close the server sent `client` since it connected (waiting for it up to
/// `timeout`): its code and reason.
async fn first_close(
    driver: &YjsDriver,
    client: &str,
    timeout: Duration,
) -> anyhow::Result<(u64, String)> {
    let close = driver
        .call(
            "waitClose",
            json!({"client": client, "index": 0, "timeoutMs": timeout.as_millis() as u64}),
        )
        .await?;
    let code = close["code"]
        .as_u64()
        .with_context(|| format!("{client} closed without a code: {close}"))?;
    Ok((
        code,
        close["reason"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// How many times the server has closed `client` so far.
async fn close_count(driver: &YjsDriver, client: &str) -> anyhow::Result<u64> {
    let status = driver.call("status", json!({"client": client})).await?;
    status["closeCount"]
        .as_u64()
        .with_context(|| format!("no close count: {status}"))
}

/// `POST /api/auth/refresh` with `refresh_token`: the status and the body.
async fn refresh(server: &TandemServer, refresh_token: &str) -> anyhow::Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .post(server.http("/api/auth/refresh"))
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// The server answers `/healthz`.
async fn assert_healthy(server: &TandemServer) -> Result {
    let status = reqwest::get(server.http("/healthz")).await?.status();
    anyhow::ensure!(status.is_success(), "/healthz answered {status}");
    Ok(())
}

/// An API key of the room's owner, editor in `room`; keys have no expiry.
async fn owner_api_key(server: &TandemServer, room: &str) -> anyhow::Result<String> {
    let owner = server.ensure_room(room).await?;
    let (status, created) = api::post(
        server,
        &owner,
        "/api/api-keys",
        json!({"name": "observer", "role": "editor", "rooms": [room]}),
    )
    .await?;
    anyhow::ensure!(status == 201, "create API key: {status} {created}");
    Ok(created["key"].as_str().context("key")?.to_owned())
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_closes_the_stolen_session_s_socket_with_4401() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = server.ensure_room("stolen").await?;
    let victim = server.register("victim").await?;
    server.add_member("stolen", &victim, "editor").await?;
    // The same account's other session, which the theft has nothing to do with.
    let other_session = server.login(&victim).await?;
    driver.connect("owner", &server, "stolen").await?;
    driver
        .connect_with_token("thief", &server, "stolen", &victim.token)
        .await?;
    driver
        .connect_with_token("other", &server, "stolen", &other_session.token)
        .await?;

    // One holder rotates the refresh token; the other presents the old one again.
    let (status, body) = refresh(&server, &victim.refresh_token).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = refresh(&server, &victim.refresh_token).await?;
    assert_eq!(status, 401, "{body}");

    let (code, reason) = first_close(&driver, "thief", Duration::from_secs(10)).await?;
    assert_eq!((code, reason.as_str()), (4401, "credentials revoked"));
    assert_eq!(
        server.upgrade_status("stolen", Some(&victim.token)).await?,
        401
    );

    // The thief's writes stop: its edit goes nowhere, the owner's later one arrives alone.
    driver
        .insert("thief", "text", 0, "written after revocation")
        .await?;
    driver.insert("owner", "text", 0, "owner's edit").await?;
    driver.wait_text("other", "text", "owner's edit").await?;
    let document = api::get(&server, &owner, "/api/rooms/stolen/document").await?;
    assert_eq!(document["text"], "owner's edit", "{document}");
    assert_eq!(close_count(&driver, "other").await?, 0);
    assert_eq!(close_count(&driver, "owner").await?, 0);
    assert_healthy(&server).await?;
    driver.shutdown().await
}

#[tokio::test]
async fn a_share_link_s_socket_closes_with_4401_when_the_link_expires() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = server.ensure_room("brief").await?;
    driver.connect("owner", &server, "brief").await?;
    driver.insert("owner", "text", 0, "for a moment").await?;
    let mut links = Vec::new();
    for expires_in in ["2s", "never"] {
        let (status, link) = api::post(
            &server,
            &owner,
            "/api/rooms/brief/share-links",
            json!({"expires_in": expires_in}),
        )
        .await?;
        assert_eq!(status, 201, "{link}");
        links.push(link["token"].as_str().context("share token")?.to_owned());
    }
    driver
        .connect_with_token("expiring", &server, "brief", &links[0])
        .await?;
    driver
        .connect_with_token("lasting", &server, "brief", &links[1])
        .await?;
    driver.wait_text("expiring", "text", "for a moment").await?;

    // No event announces an expiry: the socket's own timer closes it.
    let (code, reason) = first_close(&driver, "expiring", Duration::from_secs(10)).await?;
    assert_eq!((code, reason.as_str()), (4401, "credentials expired"));
    assert_eq!(server.upgrade_status("brief", Some(&links[0])).await?, 401);

    // The link that does not expire, and the owner, go on as before.
    driver.insert("owner", "text", 0, "still ").await?;
    driver
        .wait_text("lasting", "text", "still for a moment")
        .await?;
    assert_eq!(close_count(&driver, "lasting").await?, 0);
    assert_eq!(close_count(&driver, "owner").await?, 0);
    assert_healthy(&server).await?;
    driver.shutdown().await
}

#[tokio::test]
async fn a_share_link_holder_sending_without_pause_is_still_closed_at_expiry() -> Result {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = server.ensure_room("flood").await?;
    driver.connect("owner", &server, "flood").await?;
    let made = tokio::time::Instant::now();
    let (status, link) = api::post(
        &server,
        &owner,
        "/api/rooms/flood/share-links",
        json!({"expires_in": "2s"}),
    )
    .await?;
    assert_eq!(status, 201, "{link}");
    let share = link["token"].as_str().context("share token")?;
    let (socket, _) =
        tokio_tungstenite::connect_async(format!("{}/flood?token={share}", server.ws_url()))
            .await?;
    let (mut sink, mut stream) = socket.split();
    // Query-awareness messages (type 3), as fast as the socket takes them, so the server
    // always has a frame of this client waiting.
    let flood = tokio::spawn(async move {
        let mut sent = 0u64;
        loop {
            for _ in 0..256 {
                if sink.feed(Message::Binary(vec![3u8].into())).await.is_err() {
                    return sent;
                }
            }
            if sink.flush().await.is_err() {
                return sent;
            }
            sent += 256;
        }
    });
    // The link ends 2 s after it was made; the close may lag that by a re-check, not more.
    let close = tokio::time::timeout_at(made + Duration::from_secs(5), async {
        while let Some(message) = stream.next().await {
            if let Message::Close(frame) = message? {
                return Ok::<_, anyhow::Error>(frame);
            }
        }
        anyhow::bail!("the socket ended without a close frame")
    })
    .await
    .context("the flooding socket outlived its link by 3 s")??
    .context("a close without a code")?;
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4401, "credentials expired")
    );
    drop(stream);
    let sent = flood.await?;
    assert!(sent > 0);
    driver.insert("owner", "text", 0, "unaffected").await?;
    assert_eq!(close_count(&driver, "owner").await?, 0);
    assert_healthy(&server).await?;
    driver.shutdown().await
}

#[tokio::test]
async fn a_session_s_socket_closes_with_4401_when_the_session_ends_unless_refreshed() -> Result {
    // Sessions end 4 s after their last refresh; the observer writes with an API key,
    // which has no expiry.
    let server = TandemServer::start(&["--refresh-token-ttl", "4s"]).await?;
    let driver = YjsDriver::start().await?;
    let key = owner_api_key(&server, "lapse").await?;
    let member = server.register("member").await?;
    server.add_member("lapse", &member, "editor").await?;
    let renewed = server.login(&member).await?;
    driver
        .connect_with_token("observer", &server, "lapse", &key)
        .await?;
    driver
        .connect_with_token("lapsing", &server, "lapse", &member.token)
        .await?;
    driver
        .connect_with_token("renewed", &server, "lapse", &renewed.token)
        .await?;

    // Let part of the lifetime pass (this waits for the clock, not for an event), then
    // refresh one session: its end moves 2 s past the other's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, tokens) = refresh(&server, &renewed.refresh_token).await?;
    assert_eq!(status, 200, "{tokens}");
    let fresh_token = tokens["access_token"].as_str().context("token")?.to_owned();

    let (code, reason) = first_close(&driver, "lapsing", Duration::from_secs(10)).await?;
    assert_eq!((code, reason.as_str()), (4401, "credentials expired"));
    // The refreshed session's socket outlives the other and still writes.
    assert_eq!(close_count(&driver, "renewed").await?, 0);
    driver.insert("renewed", "text", 0, "renewed").await?;
    driver.wait_text("observer", "text", "renewed").await?;

    // Without another refresh it ends too, and its access token, though not expired
    // itself, no longer opens anything.
    let (code, reason) = first_close(&driver, "renewed", Duration::from_secs(10)).await?;
    assert_eq!((code, reason.as_str()), (4401, "credentials expired"));
    assert_eq!(
        server.upgrade_status("lapse", Some(&fresh_token)).await?,
        401
    );
    assert_eq!(close_count(&driver, "observer").await?, 0);
    assert_healthy(&server).await?;
    driver.shutdown().await
}

/// Two nodes on one database and one Redis; `extra` added to both.
async fn two_nodes(redis: &RedisServer, extra: &[&str]) -> anyhow::Result<Vec<TandemServer>> {
    let url = redis.url();
    let mut args = vec![
        "--redis-url",
        url.as_str(),
        "--cluster-sync-interval",
        "500ms",
    ];
    args.extend_from_slice(extra);
    let first = TandemServer::start(&[&args[..], &["--node-id", "node-1"]].concat()).await?;
    let database = first.database_url().to_owned();
    let second = TandemServer::start_on(
        Some(&database),
        &[&args[..], &["--node-id", "node-2"]].concat(),
    )
    .await?;
    Ok(vec![first, second])
}

/// A member of `room` and the owner both connected to node 2; the member is then removed
/// through node 1 while Redis is down. Answers the driver, with clients `member` and
/// `owner`.
async fn remove_while_redis_is_down(
    nodes: &[TandemServer],
    redis: &mut RedisServer,
    room: &str,
) -> anyhow::Result<YjsDriver> {
    let owner = nodes[0].ensure_room(room).await?;
    let member = nodes[0].register("member").await?;
    nodes[0].add_member(room, &member, "editor").await?;
    let driver = YjsDriver::start().await?;
    driver
        .connect_url("member", &nodes[1].ws_url(), room, &member.token)
        .await?;
    driver
        .connect_url("owner", &nodes[1].ws_url(), room, &owner)
        .await?;

    redis.stop().await?;
    let response = reqwest::Client::new()
        .delete(nodes[0].http(&format!("/api/rooms/{room}/members/{}", member.id)))
        .bearer_auth(&owner)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().as_u16() == 204,
        "remove member: {}",
        response.status()
    );
    Ok(driver)
}

#[tokio::test]
async fn a_member_removed_while_redis_is_down_is_closed_on_the_other_node_when_it_returns() -> Result
{
    let mut redis = RedisServer::start().await?;
    // A periodic re-check far away: only Redis coming back can close the socket here.
    let nodes = two_nodes(&redis, &["--access-recheck-interval", "10m"]).await?;
    let driver = remove_while_redis_is_down(&nodes, &mut redis, "outage").await?;

    redis.restart().await?;
    // Nodes reconnect with a backoff of up to 5 s, then re-check within the spread (2 s).
    let (code, reason) = first_close(&driver, "member", Duration::from_secs(20)).await?;
    assert_eq!((code, reason.as_str()), (4403, "removed from the room"));
    driver
        .insert("owner", "text", 0, "owner still here")
        .await?;
    assert_eq!(close_count(&driver, "owner").await?, 0);
    for node in &nodes {
        assert_healthy(node).await?;
    }
    driver.shutdown().await
}

#[tokio::test]
async fn a_member_removed_while_redis_is_down_is_closed_by_the_periodic_recheck() -> Result {
    let mut redis = RedisServer::start().await?;
    let nodes = two_nodes(&redis, &["--access-recheck-interval", "1s"]).await?;
    let driver = remove_while_redis_is_down(&nodes, &mut redis, "backstop").await?;

    // Redis stays down: node 2 never hears of the removal, and finds it out by itself.
    let (code, reason) = first_close(&driver, "member", Duration::from_secs(10)).await?;
    assert_eq!((code, reason.as_str()), (4403, "removed from the room"));
    let ready: Value = reqwest::get(nodes[1].http("/readyz")).await?.json().await?;
    assert_eq!(ready["redis"], "down", "{ready}");
    assert_eq!(close_count(&driver, "owner").await?, 0);
    for node in &nodes {
        assert_healthy(node).await?;
    }
    driver.shutdown().await
}
