//! Versions and the document REST endpoints, observed through real clients.

use e2e::{TandemServer, YjsDriver};
use serde_json::{Value, json};

type Result = anyhow::Result<()>;

/// A client sending `token` with every request.
fn authorized(token: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

#[tokio::test]
async fn restoring_a_checkpoint_reaches_every_client_and_is_itself_a_version() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let token = server.ensure_room("history").await?;
    let http = authorized(&token)?;
    driver.connect("a", &server, "history").await?;
    driver.connect("b", &server, "history").await?;
    driver.insert("a", "text", 0, "The quick brown fox").await?;
    driver.wait_text("b", "text", "The quick brown fox").await?;

    let checkpoint: Value = http
        .post(server.http("/api/rooms/history/versions"))
        .json(&json!({"label": "before the rewrite"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(checkpoint["kind"], "named");
    assert_eq!(checkpoint["label"], "before the rewrite");
    let id = checkpoint["id"].as_i64().expect("version id");

    driver
        .call(
            "delete",
            json!({"client": "b", "text": "text", "index": 4, "length": 6}),
        )
        .await?;
    driver.insert("b", "text", 4, "slow ").await?;
    driver.wait_text("a", "text", "The slow brown fox").await?;

    let fetched: Value = http
        .get(server.http(&format!("/api/rooms/history/versions/{id}")))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(fetched["content"]["text"], "The quick brown fox");
    let raw = http
        .get(server.http(&format!("/api/rooms/history/versions/{id}?format=yjs")))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    assert!(!raw.is_empty());

    let restored: Value = http
        .post(server.http(&format!("/api/rooms/history/versions/{id}/restore")))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(restored["restored_from"], id);
    for client in ["a", "b"] {
        driver
            .wait_text(client, "text", "The quick brown fox")
            .await?;
    }
    let list: Value = http
        .get(server.http("/api/rooms/history/versions"))
        .send()
        .await?
        .json()
        .await?;
    let versions = list["versions"].as_array().expect("list");
    assert_eq!(versions[0]["kind"], "restore");
    assert_eq!(versions[0]["id"], restored["version"]["id"]);
    assert!(versions.iter().any(|v| v["id"] == id));

    // Clients keep editing on top of the restore.
    driver.insert("a", "text", 19, "!").await?;
    driver
        .wait_text("b", "text", "The quick brown fox!")
        .await?;
    driver.shutdown().await
}

#[tokio::test]
async fn document_endpoint_serves_json_and_yjs_and_errors_have_one_shape() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let token = server.ensure_room("doc").await?;
    let http = authorized(&token)?;
    driver.connect("a", &server, "doc").await?;
    driver.insert("a", "text", 0, "héllo 🌍").await?;
    let body: Value = http
        .get(server.http("/api/rooms/doc/document"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(body, json!({"text": "héllo 🌍"}));
    let update = http
        .get(server.http("/api/rooms/doc/document?format=yjs"))
        .send()
        .await?;
    assert_eq!(update.headers()["content-type"], "application/octet-stream");
    assert!(update.bytes().await?.len() > 10);

    let cases = [
        (
            http.get(server.http("/api/rooms/doc/document?format=xml")),
            400,
            "invalid_request",
        ),
        (
            http.get(server.http("/api/rooms/doc/versions/999")),
            404,
            "not_found",
        ),
        (
            http.get(server.http("/api/rooms/doc/versions/abc")),
            400,
            "invalid_request",
        ),
        (
            http.post(server.http("/api/rooms/doc/versions"))
                .header("content-type", "application/json")
                .body("{nope"),
            400,
            "invalid_request",
        ),
        (
            http.post(server.http("/api/rooms/doc/versions"))
                .json(&json!({"label": ""})),
            400,
            "invalid_request",
        ),
        (
            http.post(server.http("/api/rooms/doc/versions"))
                .json(&json!({"label": "x".repeat(300)})),
            400,
            "invalid_request",
        ),
        (
            http.post(server.http("/api/rooms/doc/versions/999/restore")),
            404,
            "not_found",
        ),
        (http.get(server.http("/api/nothing-here")), 404, "not_found"),
    ];
    for (request, status, code) in cases {
        let response = request.send().await?;
        assert_eq!(response.status().as_u16(), status);
        let error: Value = response.json().await?;
        assert_eq!(error["error"]["code"], code, "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }

    for path in ["/healthz", "/readyz"] {
        assert!(
            http.get(server.http(path))
                .send()
                .await?
                .status()
                .is_success()
        );
    }
    let metrics = http
        .get(server.http("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for name in [
        "tandem_connections",
        "tandem_rooms_in_memory",
        "tandem_updates_applied_total",
        "tandem_persist_batch_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    driver.shutdown().await
}
