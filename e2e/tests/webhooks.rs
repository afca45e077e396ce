//! Webhooks: signed deliveries to a receiver on loopback, debounced document changes,
//! retries with backoff, failures recorded, and registration refusing what it must.

use std::time::Duration;

use e2e::TandemServer;
use e2e::api;
use e2e::webhook::{Delivery, WebhookReceiver};
use reqwest::Method;
use serde_json::{Value, json};

type Result = anyhow::Result<()>;

async fn register_hook(
    server: &TandemServer,
    token: &str,
    room: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let (status, created) = api::json(
        server,
        Method::POST,
        token,
        &format!("/api/rooms/{room}/webhooks"),
        Some(body),
    )
    .await?;
    anyhow::ensure!(status == 201, "register webhook: {status} {created}");
    Ok(created)
}

/// Waits until the webhook's newest delivery has left `pending`; answers it.
async fn settled_delivery(
    server: &TandemServer,
    token: &str,
    room: &str,
    hook: &str,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = api::get(
            server,
            token,
            &format!("/api/rooms/{room}/webhooks/{hook}/deliveries"),
        )
        .await?;
        if let Some(newest) = body["deliveries"].get(0)
            && newest["status"] != "pending"
        {
            return Ok(newest.clone());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "deliveries still pending: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn events_of<'a>(deliveries: &'a [Delivery], kind: &str) -> Vec<&'a Delivery> {
    deliveries
        .iter()
        .filter(|d| d.json()["event"] == kind)
        .collect()
}

/// Waits for more deliveries until `done` holds for what arrived.
async fn wait_until(
    receiver: &WebhookReceiver,
    done: impl Fn(&[Delivery]) -> bool,
) -> anyhow::Result<Vec<Delivery>> {
    loop {
        let deliveries = receiver.deliveries();
        if done(&deliveries) {
            return Ok(deliveries);
        }
        receiver.wait_deliveries(deliveries.len() + 1).await?;
    }
}

fn updates_reported(deliveries: &[Delivery]) -> u64 {
    events_of(deliveries, "document_changed")
        .iter()
        .map(|d| d.json()["data"]["updates"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn deliveries_are_signed_and_cover_changes_versions_and_comments() -> Result {
    let receiver = WebhookReceiver::start().await?;
    let server =
        TandemServer::start(&["--webhook-allow-private", "--webhook-debounce", "300ms"]).await?;
    let room = "hooked";
    let token = server.ensure_room(room).await?;
    let hook = register_hook(
        &server,
        &token,
        room,
        json!({"url": receiver.url("/incoming")}),
    )
    .await?;
    let secret = hook["secret"].as_str().unwrap_or_default().to_owned();
    let hook_id = hook["id"].as_str().unwrap_or_default().to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 20, "{hook}");
    assert_eq!(
        hook["events"],
        json!(["document_changed", "version_created", "comment_created"])
    );
    let listed = api::get(&server, &token, &format!("/api/rooms/{room}/webhooks")).await?;
    assert_eq!(listed["webhooks"][0]["id"], hook_id.as_str());
    assert!(
        !listed.to_string().contains(&secret),
        "a listing shows the secret: {listed}"
    );

    // Two edits: every committed update is reported, folded into debounced events.
    server
        .write_text(room, &token, "notes", "hello world")
        .await?;
    server.write_text(room, &token, "notes", "more ").await?;
    let deliveries = wait_until(&receiver, |d| updates_reported(d) >= 2).await?;
    assert_eq!(updates_reported(&deliveries), 2);

    let (status, version) = api::json(
        &server,
        Method::POST,
        &token,
        &format!("/api/rooms/{room}/versions"),
        Some(json!({"label": "v1"})),
    )
    .await?;
    assert_eq!(status, 201, "{version}");
    let deliveries = wait_until(&receiver, |d| !events_of(d, "version_created").is_empty()).await?;
    assert_eq!(
        events_of(&deliveries, "version_created")[0].json()["data"]["version_id"],
        version["id"]
    );

    let (status, thread) = api::json(
        &server,
        Method::POST,
        &token,
        &format!("/api/rooms/{room}/comments"),
        Some(json!({"file": "notes", "start": 0, "end": 4, "body": "look here"})),
    )
    .await?;
    assert_eq!(status, 201, "{thread}");
    let deliveries = wait_until(&receiver, |d| !events_of(d, "comment_created").is_empty()).await?;
    let comment = events_of(&deliveries, "comment_created")[0].json();
    assert_eq!(comment["data"]["thread_id"], thread["id"], "{comment}");
    assert!(comment["actor"]["user_id"].is_string(), "{comment}");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    for delivery in &deliveries {
        let body = delivery.json();
        assert_eq!(delivery.path, "/incoming");
        assert!(
            delivery.signature_verifies(&secret),
            "bad signature on {body}"
        );
        assert!(!delivery.signature_verifies("whsec_someone-else"));
        let mut tampered = delivery.clone();
        tampered.body.extend_from_slice(b" ");
        assert!(
            !tampered.signature_verifies(&secret),
            "a changed body still verifies"
        );
        assert_eq!(
            delivery.header("x-tandem-event"),
            body["event"].as_str().unwrap_or_default()
        );
        assert_eq!(delivery.header("x-tandem-webhook"), hook_id);
        assert_eq!(delivery.header("content-type"), "application/json");
        assert_eq!(body["room"], room);
        let timestamp: i64 = delivery.header("x-tandem-timestamp").parse()?;
        assert!(
            (timestamp - now).abs() < 300,
            "timestamp {timestamp} vs now {now}"
        );
    }

    // The comment is mirrored into the document: one more committed update, reported too.
    let deliveries = wait_until(&receiver, |d| updates_reported(d) >= 3).await?;
    assert_eq!(updates_reported(&deliveries), 3);
    // Every delivery is listed as delivered on the first attempt (once its outcome is
    // recorded, just after the receiver answered).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let listed = api::get(
            &server,
            &token,
            &format!("/api/rooms/{room}/webhooks/{hook_id}/deliveries"),
        )
        .await?;
        let rows = listed["deliveries"].as_array().cloned().unwrap_or_default();
        if rows.iter().all(|row| row["status"] != "pending") {
            break rows;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "deliveries still pending: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let listed = json!(rows);
    assert_eq!(rows.len(), deliveries.len(), "{listed}");
    for row in rows {
        assert_eq!(
            (
                row["status"].as_str(),
                row["attempts"].as_i64(),
                row["last_status_code"].as_i64()
            ),
            (Some("delivered"), Some(1), Some(200)),
            "{row}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn failing_receivers_are_retried_with_backoff_and_failures_recorded() -> Result {
    let receiver = WebhookReceiver::start().await?;
    receiver.answer_next(&[500, 503]);
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let server = TandemServer::start(&[
        "--webhook-allow-private",
        "--webhook-retry-base",
        "150ms",
        "--webhook-max-attempts",
        "3",
    ])
    .await?;
    let room = "flaky";
    let token = server.ensure_room(room).await?;
    let recovering = register_hook(
        &server,
        &token,
        room,
        json!({"url": receiver.url("/hook"), "events": ["version_created"]}),
    )
    .await?;
    let dead = register_hook(
        &server,
        &token,
        room,
        json!({"url": format!("http://{closed}/hook"), "events": ["version_created"]}),
    )
    .await?;

    let (status, _) = api::json(
        &server,
        Method::POST,
        &token,
        &format!("/api/rooms/{room}/versions"),
        Some(json!({"label": "v"})),
    )
    .await?;
    assert_eq!(status, 201);

    let attempts = receiver.wait_deliveries(3).await?;
    let secret = recovering["secret"].as_str().unwrap_or_default();
    for attempt in &attempts {
        assert!(attempt.signature_verifies(secret));
        assert_eq!(
            attempt.header("x-tandem-delivery"),
            attempts[0].header("x-tandem-delivery"),
            "one delivery, retried"
        );
        assert_eq!(attempt.json()["event_id"], attempts[0].json()["event_id"]);
    }
    let first_wait = attempts[1].received_at - attempts[0].received_at;
    let second_wait = attempts[2].received_at - attempts[1].received_at;
    assert!(
        first_wait >= Duration::from_millis(140),
        "first retry after {first_wait:?}"
    );
    assert!(
        second_wait >= Duration::from_millis(290),
        "second retry after {second_wait:?} (backoff doubles)"
    );

    let delivered = settled_delivery(
        &server,
        &token,
        room,
        recovering["id"].as_str().unwrap_or_default(),
    )
    .await?;
    assert_eq!(
        (
            delivered["status"].as_str(),
            delivered["attempts"].as_i64(),
            delivered["last_status_code"].as_i64()
        ),
        (Some("delivered"), Some(3), Some(200)),
        "{delivered}"
    );

    let failed = settled_delivery(
        &server,
        &token,
        room,
        dead["id"].as_str().unwrap_or_default(),
    )
    .await?;
    assert_eq!(
        (failed["status"].as_str(), failed["attempts"].as_i64()),
        (Some("failed"), Some(3)),
        "{failed}"
    );
    assert!(failed["last_status_code"].is_null());
    assert!(
        failed["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    // Nothing more arrives at the recovered receiver.
    assert_eq!(receiver.deliveries().len(), 3);
    Ok(())
}

#[tokio::test]
async fn registration_refuses_bad_urls_private_targets_and_unknown_events() -> Result {
    let server = TandemServer::start(&[]).await?;
    let room = "strict";
    let token = server.ensure_room(room).await?;
    let path = format!("/api/rooms/{room}/webhooks");
    for (body, status, code) in [
        (
            json!({"url": "http://127.0.0.1:9/hook"}),
            422,
            "validation_failed",
        ),
        (
            json!({"url": "http://localhost/hook"}),
            422,
            "validation_failed",
        ),
        (
            json!({"url": "http://[::1]/hook"}),
            422,
            "validation_failed",
        ),
        (
            json!({"url": "http://10.0.0.8/hook"}),
            422,
            "validation_failed",
        ),
        (
            json!({"url": "ftp://hooks.example.test/"}),
            422,
            "validation_failed",
        ),
        (json!({"url": "not a url"}), 422, "validation_failed"),
        (
            json!({"url": "https://hooks.example.test/", "events": ["no_such_event"]}),
            400,
            "invalid_request",
        ),
        (
            json!({"url": "https://hooks.example.test/", "events": []}),
            400,
            "invalid_request",
        ),
        (
            json!({"url": "https://hooks.example.test/", "secret": "mine"}),
            400,
            "invalid_request",
        ),
    ] {
        let (got, answer) =
            api::json(&server, Method::POST, &token, &path, Some(body.clone())).await?;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let listed = api::get(&server, &token, &path).await?;
    assert_eq!(listed["webhooks"], json!([]));

    for index in 0..20 {
        register_hook(&server, &token, room, json!({"url": format!("https://hooks.example.test/{index}"), "events": ["left", "joined", "left"]})).await?;
    }
    let (status, answer) = api::json(
        &server,
        Method::POST,
        &token,
        &path,
        Some(json!({"url": "https://hooks.example.test/21"})),
    )
    .await?;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("too_many_webhooks"))
    );
    let listed = api::get(&server, &token, &path).await?;
    let hooks = listed["webhooks"].as_array().cloned().unwrap_or_default();
    assert_eq!(hooks.len(), 20);
    assert_eq!(
        hooks[0]["events"],
        json!(["left", "joined"]),
        "duplicates are folded"
    );

    let first = hooks[0]["id"].as_str().unwrap_or_default();
    let deleted = api::send(
        &server,
        Method::DELETE,
        Some(&token),
        &format!("{path}/{first}"),
        None,
    )
    .await?;
    assert_eq!(deleted.status, 204);
    let gone = api::send(
        &server,
        Method::GET,
        Some(&token),
        &format!("{path}/{first}/deliveries"),
        None,
    )
    .await?;
    assert_eq!(gone.status, 404);
    assert_eq!(
        api::get(&server, &token, &path).await?["webhooks"]
            .as_array()
            .map(Vec::len),
        Some(19)
    );
    Ok(())
}

#[tokio::test]
async fn changes_waiting_out_the_debounce_at_shutdown_are_delivered_after_a_restart() -> Result {
    let receiver = WebhookReceiver::start().await?;
    // A debounce far longer than the test: only the shutdown can send the change on.
    let mut server =
        TandemServer::start(&["--webhook-allow-private", "--webhook-debounce", "1h"]).await?;
    let room = "restarted";
    let token = server.ensure_room(room).await?;
    register_hook(
        &server,
        &token,
        room,
        json!({"url": receiver.url("/hook"), "events": ["document_changed"]}),
    )
    .await?;
    server
        .write_text(room, &token, "notes", "written before the shutdown")
        .await?;
    assert!(
        receiver.deliveries().is_empty(),
        "delivered before the debounce ran out"
    );
    assert!(server.stop().await?, "graceful shutdown");
    server.restart().await?;
    let deliveries = wait_until(&receiver, |d| updates_reported(d) >= 1).await?;
    assert_eq!(updates_reported(&deliveries), 1);
    Ok(())
}
