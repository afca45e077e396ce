//! The AI assistant's peer as its own process (`tandem ai-peer`) next to a server in
//! `--ai-peer external` mode, against the scripted LLM stand-in, observed through real
//! `yjs` clients and HTTP.

use std::time::Duration;

use e2e::api::{get, post};
use e2e::llm::refactor::{self, REFACTORED, REPLY, SOURCE};
use e2e::llm::{LlmStandIn, ScriptedReply};
use e2e::{AiPeerProcess, SseEvent, TandemServer, YjsDriver};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Result = anyhow::Result<()>;

const SECRET: &str = "e2e-ai-peer-secret-0123456789";

async fn external_server(stand_in: &LlmStandIn) -> anyhow::Result<TandemServer> {
    let base = stand_in.base_url();
    TandemServer::start(&[
        "--ai-base-url",
        &base,
        "--ai-model",
        "stand-in",
        "--ai-peer",
        "external",
        "--ai-peer-secret",
        SECRET,
        "--ai-rate-per-minute",
        "100",
    ])
    .await
}

/// Without a peer process, asking the assistant is a clear 503 and reaches no model.
async fn assert_chat_needs_the_peer(
    server: &TandemServer,
    token: &str,
    stand_in: &LlmStandIn,
) -> Result {
    let requests_before = stand_in.requests().len();
    let (code, body) = post(
        server,
        token,
        "/api/rooms/ext/ai/chat",
        refactor::request("main.rs"),
    )
    .await?;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "ai_peer_unavailable");
    assert_eq!(stand_in.requests().len(), requests_before, "no model call");
    Ok(())
}

async fn ai_status(server: &TandemServer, token: &str, room: &str) -> anyhow::Result<Value> {
    get(server, token, &format!("/api/rooms/{room}/ai/status")).await
}

/// Waits until the server reports the peer process (dis)connected. The server has no event
/// to subscribe to for this, so its status endpoint is asked until it says so.
async fn wait_peer_connected(
    server: &TandemServer,
    token: &str,
    room: &str,
    connected: bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = ai_status(server, token, room).await?;
        if status["peer_connected"] == connected {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the server never reported peer_connected = {connected}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status of a WebSocket upgrade to the control endpoint with `authorization`.
async fn control_upgrade(
    server: &TandemServer,
    authorization: Option<&str>,
) -> anyhow::Result<u16> {
    let mut request = format!("ws://{}/api/ai/peer", server.address()).into_client_request()?;
    if let Some(authorization) = authorization {
        request
            .headers_mut()
            .insert("authorization", authorization.parse()?);
    }
    e2e::upgrade_status(request).await
}

fn tokens(events: &[SseEvent]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e.name == "token")
        .filter_map(|e| e.data["text"].as_str())
        .collect()
}

fn suggestion_id(events: &[SseEvent]) -> String {
    let done = events.last().expect("events");
    assert_eq!(done.name, "done", "{:?}", done.data);
    done.data["suggestion_ids"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no suggestion: {}", done.data))
        .to_owned()
}

#[tokio::test]
async fn a_separate_peer_process_streams_suggests_and_recovers_after_being_killed() -> Result {
    let stand_in = LlmStandIn::start().await?;
    let mut server = external_server(&stand_in).await?;
    let token = server.ensure_room("ext").await?;

    // No peer process yet: AI endpoints say so clearly, nothing reaches the model.
    let status = ai_status(&server, &token, "ext").await?;
    assert_eq!(status["peer_mode"], "external", "{status}");
    assert_eq!(status["peer_connected"], false, "{status}");
    assert_chat_needs_the_peer(&server, &token, &stand_in).await?;

    let mut peer = AiPeerProcess::start(&server, SECRET).await?;
    wait_peer_connected(&server, &token, "ext", true).await?;
    // One peer process at a time.
    assert_eq!(
        control_upgrade(&server, Some(&format!("Bearer {SECRET}"))).await?,
        409
    );

    let driver = YjsDriver::start().await?;
    driver.connect("a", &server, "ext").await?;
    driver.connect("b", &server, "ext").await?;
    driver.insert("a", "main.rs", 0, SOURCE).await?;
    driver.insert("a", "second.rs", 0, SOURCE).await?;
    driver.insert("a", "third.rs", 0, SOURCE).await?;
    driver.wait_text("b", "main.rs", SOURCE).await?;
    driver.wait_text("b", "second.rs", SOURCE).await?;
    driver.wait_text("b", "third.rs", SOURCE).await?;

    // While it works, the assistant shows itself: thinking, then writing, its cursor on the
    // selection. Tokens reach the HTTP client one by one.
    stand_in.push(ScriptedReply::slow(
        REPLY,
        Duration::from_millis(500),
        Duration::from_millis(150),
    ));
    let presence = |status: &str| {
        driver.call(
            "waitAwarenessWhere",
            json!({"client": "b", "field": "status", "equals": status, "timeoutMs": 20000}),
        )
    };
    let (events, thinking, writing) = tokio::join!(
        server.ai_chat("ext", &token, refactor::request("main.rs")),
        presence("thinking"),
        presence("writing"),
    );
    let (events, thinking, writing) = (events?, thinking?, writing?);
    let assistant = writing["clientId"].as_u64().expect("client id");
    assert_eq!(thinking["clientId"], writing["clientId"]);
    let state = &writing["state"];
    assert_eq!(state["user"]["name"], "AI assistant", "{state}");
    assert_eq!(state["assistant"], true, "{state}");
    assert!(state["user"]["color"].is_string(), "{state}");
    assert_eq!(state["cursor"]["file"], "main.rs", "{state}");
    assert!(state["cursor"]["anchor"].is_string(), "{state}");
    assert!(state["cursor"]["head"].is_string(), "{state}");
    assert_eq!(tokens(&events), REPLY);
    let pieces: Vec<&SseEvent> = events.iter().filter(|e| e.name == "token").collect();
    let spread = pieces.last().unwrap().at - pieces.first().unwrap().at;
    assert!(
        spread >= Duration::from_millis(400),
        "tokens arrived together ({spread:?})"
    );
    let first = suggestion_id(&events);
    presence("idle").await?;

    // The suggestion is in everyone's document, written by the peer process; accepting it
    // through the server changes the text.
    let entry = driver.wait_suggestion("b", &first, "pending").await?;
    assert_eq!(entry["value"]["replacement"], "let total = a + b;");
    assert_eq!(entry["value"]["author"], "AI assistant");
    let (code, body) = post(
        &server,
        &token,
        &format!("/api/rooms/ext/suggestions/{first}/accept"),
        json!({}),
    )
    .await?;
    assert_eq!(code, 200, "{body}");
    driver.wait_text("a", "main.rs", REFACTORED).await?;
    driver.wait_text("b", "main.rs", REFACTORED).await?;

    // A second suggestion, left pending.
    stand_in.push(ScriptedReply::text(REPLY));
    let second = suggestion_id(
        &server
            .ai_chat("ext", &token, refactor::request("second.rs"))
            .await?,
    );
    driver.wait_suggestion("b", &second, "pending").await?;

    // Kill the peer process: it leaves presence, AI endpoints answer 503, sync goes on.
    peer.kill().await?;
    wait_peer_connected(&server, &token, "ext", false).await?;
    driver
        .call(
            "waitAwareness",
            json!({"client": "b", "clientId": assistant, "present": false, "timeoutMs": 20000}),
        )
        .await?;
    assert_chat_needs_the_peer(&server, &token, &stand_in).await?;
    let (code, body) = post(
        &server,
        &token,
        &format!("/api/rooms/ext/suggestions/{second}/accept"),
        json!({}),
    )
    .await?;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "ai_peer_unavailable");
    driver
        .insert("a", "main.rs", 0, "// still in sync\n")
        .await?;
    let edited = format!("// still in sync\n{REFACTORED}");
    driver.wait_text("b", "main.rs", &edited).await?;
    assert_eq!(driver.text("b", "second.rs").await?, SOURCE);

    // Start it again: the pending suggestion can be accepted, and the assistant is back in
    // presence under the same client id.
    let mut peer = AiPeerProcess::start(&server, SECRET).await?;
    wait_peer_connected(&server, &token, "ext", true).await?;
    let (code, body) = post(
        &server,
        &token,
        &format!("/api/rooms/ext/suggestions/{second}/accept"),
        json!({}),
    )
    .await?;
    assert_eq!(code, 200, "{body}");
    driver.wait_text("b", "second.rs", REFACTORED).await?;

    // An editor's client cannot accept through the document (the status is the server's):
    // it is told so, and accepting through the server applies it, the peer process asking
    // the server (which checks its copy and takes the checkpoint) before applying.
    stand_in.push(ScriptedReply::text(REPLY));
    let third = suggestion_id(
        &server
            .ai_chat("ext", &token, refactor::request("third.rs"))
            .await?,
    );
    driver.wait_suggestion("a", &third, "pending").await?;
    driver
        .set_suggestion_status("a", &third, "accepted")
        .await?;
    let denied = driver
        .call("waitPermissionDenied", json!({"client": "a"}))
        .await?;
    assert!(
        denied
            .as_str()
            .is_some_and(|r| r.contains("written by the server")),
        "{denied}"
    );
    let accepted = reqwest::Client::new()
        .post(server.http(&format!("/api/rooms/ext/suggestions/{third}/accept")))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(accepted.status(), 200);
    driver.wait_text("b", "third.rs", REFACTORED).await?;
    let versions: Value = reqwest::Client::new()
        .get(server.http("/api/rooms/ext/versions"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert!(
        versions["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .any(|v| v["label"].as_str().is_some_and(|l| l.contains(&third))),
        "no checkpoint before applying {third}: {versions}"
    );
    stand_in.push(ScriptedReply::slow(
        &["An ", "explanation."],
        Duration::from_millis(300),
        Duration::from_millis(100),
    ));
    let explain = json!({
        "message": "what is this?",
        "action": "explain",
        "file": "main.rs",
        "selection": {"start": 0, "end": 16},
    });
    let (events, writing) =
        tokio::join!(server.ai_chat("ext", &token, explain), presence("writing"));
    assert_eq!(tokens(&events?), ["An ", "explanation."]);
    assert_eq!(writing?["clientId"], assistant);

    // Both stop gracefully: the peer process leaves its rooms and exits 0; a server with a
    // peer process connected still shuts down cleanly.
    assert!(peer.stop().await?, "tandem ai-peer exited with an error");
    driver
        .call(
            "waitAwareness",
            json!({"client": "b", "clientId": assistant, "present": false, "timeoutMs": 20000}),
        )
        .await?;
    let mut peer = AiPeerProcess::start(&server, SECRET).await?;
    assert!(server.stop().await?, "the server exited with an error");
    driver.shutdown().await?;
    peer.kill().await
}

#[tokio::test]
async fn a_wrong_secret_is_refused() -> Result {
    let stand_in = LlmStandIn::start().await?;
    let server = external_server(&stand_in).await?;
    let token = server.ensure_room("refused").await?;

    assert_eq!(control_upgrade(&server, None).await?, 401);
    assert_eq!(
        control_upgrade(&server, Some("Bearer not-the-secret-at-all")).await?,
        401
    );
    // The process gives up at once with a clear message instead of retrying forever.
    let (succeeded, log) = AiPeerProcess::run_to_exit(&server, "not-the-secret-at-all").await?;
    assert!(!succeeded, "{log}");
    assert!(log.contains("refused the AI peer secret"), "{log}");
    let status = ai_status(&server, &token, "refused").await?;
    assert_eq!(status["peer_connected"], false, "{status}");
    assert!(
        !server.logs().contains("not-the-secret-at-all") && !server.logs().contains(SECRET),
        "a secret reached the server's log"
    );

    // A server running the peer itself has no control endpoint.
    let in_process = TandemServer::start(&[]).await?;
    assert_eq!(
        control_upgrade(&in_process, Some(&format!("Bearer {SECRET}"))).await?,
        404
    );
    Ok(())
}
