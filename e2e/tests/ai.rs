//! The AI assistant against a scripted OpenAI-compatible stand-in, observed through real
//! `yjs` clients and HTTP.

use std::time::Duration;

use e2e::api::{get, post};
use e2e::llm::refactor::{self, REPLY, SOURCE};
use e2e::llm::{LlmStandIn, ScriptedReply};
use e2e::{SseEvent, TandemServer, YjsDriver, seed};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

type Result = anyhow::Result<()>;

const FILE: &str = "main.rs";

async fn ai_server(stand_in: &LlmStandIn, extra: &[&str]) -> anyhow::Result<TandemServer> {
    let base = stand_in.base_url();
    let mut args = vec![
        "--ai-base-url",
        base.as_str(),
        "--ai-model",
        "stand-in",
        "--ai-api-key",
        "test-key",
    ];
    args.extend_from_slice(extra);
    TandemServer::start(&args).await
}

async fn chat(
    server: &TandemServer,
    room: &str,
    token: &str,
    body: Value,
) -> anyhow::Result<Vec<SseEvent>> {
    server.ai_chat(room, token, body).await
}

#[tokio::test]
async fn a_streamed_answer_becomes_a_live_suggestion_that_accepting_applies() -> Result {
    let stand_in = LlmStandIn::start().await?;
    stand_in.push(ScriptedReply::slow(
        REPLY,
        Duration::ZERO,
        Duration::from_millis(150),
    ));
    let server = ai_server(&stand_in, &[]).await?;
    let token = server.ensure_room("ai").await?;
    let driver = YjsDriver::start().await?;
    driver.connect("a", &server, "ai").await?;
    driver.connect("b", &server, "ai").await?;
    driver.insert("a", FILE, 0, SOURCE).await?;
    driver.wait_text("b", FILE, SOURCE).await?;

    // The assistant shows itself while it works.
    let writing = driver.call(
        "waitAwarenessWhere",
        json!({"client": "b", "field": "status", "equals": "writing", "timeoutMs": 20000}),
    );
    let (events, writing) = tokio::join!(
        chat(&server, "ai", &token, refactor::request(FILE)),
        writing
    );
    let events = events?;
    let assistant = writing?;
    assert_eq!(assistant["state"]["user"]["name"], "AI assistant");
    assert!(
        assistant["state"]["cursor"]["anchor"].is_string(),
        "{assistant}"
    );

    // Token by token: one event per piece, spread over the time the model took.
    let tokens: Vec<&SseEvent> = events.iter().filter(|e| e.name == "token").collect();
    let texts: Vec<&str> = tokens
        .iter()
        .filter_map(|e| e.data["text"].as_str())
        .collect();
    assert_eq!(texts, REPLY);
    let spread = tokens.last().unwrap().at - tokens.first().unwrap().at;
    assert!(
        spread >= Duration::from_millis(400),
        "tokens arrived together ({spread:?})"
    );
    let done = events.last().expect("events");
    assert_eq!(done.name, "done", "{:?}", done.data);
    let suggestion = done.data["suggestion_ids"][0]
        .as_str()
        .expect("a suggestion")
        .to_owned();
    assert!(done.data["usage"]["completion_tokens"].as_u64() > Some(0));

    // Every client sees the suggestion in the document.
    let entry = driver.wait_suggestion("b", &suggestion, "pending").await?;
    assert_eq!(entry["value"]["replacement"], "let total = a + b;");
    assert_eq!(entry["value"]["original"], "let total=a+b;");
    assert_eq!(entry["value"]["author"], "AI assistant");

    let (status, body) = post(
        &server,
        &token,
        &format!("/api/rooms/ai/suggestions/{suggestion}/accept"),
        json!({}),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let expected = "let x = 1;\nlet total = a + b;\nlet y = 2;\n";
    driver.wait_text("a", FILE, expected).await?;
    driver.wait_text("b", FILE, expected).await?;

    // A checkpoint was taken just before; undoing since it restores the original.
    let versions = get(&server, &token, "/api/rooms/ai/versions").await?;
    let checkpoint = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["label"].as_str().is_some_and(|l| l.contains(&suggestion)))
        .expect("checkpoint before accepting")
        .clone();
    let (status, undone) = post(
        &server,
        &token,
        "/api/rooms/ai/ai/undo",
        json!({"since_version": checkpoint["id"]}),
    )
    .await?;
    assert_eq!(status, 200, "{undone}");
    assert_eq!(undone["undone"], json!([suggestion]));
    driver.wait_text("b", FILE, SOURCE).await?;

    // An editor's client may accept too, by setting the status in the document.
    stand_in.push(ScriptedReply::text(REPLY));
    let events = chat(&server, "ai", &token, refactor::request(FILE)).await?;
    let second = events.last().unwrap().data["suggestion_ids"][0]
        .as_str()
        .expect("suggestion")
        .to_owned();
    driver.wait_suggestion("a", &second, "pending").await?;
    // An editor's client cannot decide by setting the status in the document: the status is
    // the server's, and decisions go through its gate (the accept route).
    driver
        .set_suggestion_status("a", &second, "accepted")
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
    let (status, body) = post(
        &server,
        &token,
        &format!("/api/rooms/ai/suggestions/{second}/accept"),
        json!({}),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    driver.wait_text("b", FILE, expected).await?;
    driver
        .call(
            "waitMapEntry",
            json!({"client": "b", "name": "suggestions", "key": second, "field": "author", "equals": "AI assistant"}),
        )
        .await?;
    // The accept route takes the checkpoint (before the edit the clients just saw).
    let versions = get(&server, &token, "/api/rooms/ai/versions").await?;
    assert!(
        versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["label"].as_str().is_some_and(|l| l.contains(&second))),
        "{versions}"
    );

    // The conversation and its usage are stored.
    let conversations = get(&server, &token, "/api/rooms/ai/ai/conversations").await?;
    let listed = conversations["conversations"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let mut found = false;
    for conversation in listed {
        let id = conversation["id"].as_str().unwrap();
        let conversation = get(
            &server,
            &token,
            &format!("/api/rooms/ai/ai/conversations/{id}"),
        )
        .await?;
        let messages = conversation["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["role"], "user");
        assert_eq!(messages[1]["content"], REPLY.concat());
        assert!(messages[1]["completion_tokens"].as_i64() > Some(0));
        found |= messages[1]["suggestion_ids"] == json!([suggestion]);
    }
    assert!(found, "the first suggestion is recorded with its message");
    let usage = get(&server, &token, "/api/usage").await?;
    assert_eq!(usage["days"][0]["requests"], 2);
    assert!(usage["days"][0]["total_tokens"].as_i64() > Some(0));
    driver.shutdown().await
}

#[tokio::test]
async fn accepting_after_concurrent_edits_replaces_exactly_the_intended_range() -> Result {
    let seed = seed("accepting_after_concurrent_edits_replaces_exactly_the_intended_range");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let stand_in = LlmStandIn::start().await?;
    let server = ai_server(&stand_in, &["--ai-rate-per-minute", "100"]).await?;
    let token = server.ensure_room("moving").await?;
    let driver = YjsDriver::start().await?;
    driver.connect("editor", &server, "moving").await?;

    for round in 0..3 {
        let file = format!("round{round}.rs");
        driver.insert("editor", &file, 0, SOURCE).await?;
        stand_in.push(ScriptedReply::slow(
            REPLY,
            Duration::from_millis(800),
            Duration::ZERO,
        ));
        let mut body = refactor::request(FILE);
        body["file"] = json!(file);
        let requests_before = stand_in.requests().len();
        let answer = chat(&server, "moving", &token, body);
        let edits = async {
            // While the model is thinking, someone edits before and after the range.
            stand_in.wait_requests(requests_before + 1).await?;
            let mut expected_before = String::from("let x = 1;\n");
            let mut expected_after = String::from("\nlet y = 2;\n");
            for _ in 0..4 {
                let word: String = (0..rng.random_range(1..6))
                    .map(|_| rng.random_range(b'a'..=b'z') as char)
                    .collect();
                if rng.random_bool(0.5) {
                    let at = rng.random_range(0..=expected_before.len());
                    driver.insert("editor", &file, at, &word).await?;
                    expected_before.insert_str(at, &word);
                } else {
                    let at = rng.random_range(1..=expected_after.len());
                    let offset = expected_before.len() + "let total=a+b;".len() + at;
                    driver.insert("editor", &file, offset, &word).await?;
                    expected_after.insert_str(at, &word);
                }
            }
            Ok::<_, anyhow::Error>((expected_before, expected_after))
        };
        let (events, edits) = tokio::join!(answer, edits);
        let (before, after) = edits?;
        let events = events?;
        let done = events.last().expect("events");
        let suggestion = done.data["suggestion_ids"][0].as_str().expect("suggestion");
        let (status, body) = post(
            &server,
            &token,
            &format!("/api/rooms/moving/suggestions/{suggestion}/accept"),
            json!({}),
        )
        .await?;
        assert_eq!(status, 200, "seed {seed}: {body}");
        let expected = format!("{before}let total = a + b;{after}");
        driver.wait_text("editor", &file, &expected).await?;
    }

    // A suggestion whose text was edited meanwhile is a conflict and applies nothing.
    driver.insert("editor", "conflict.rs", 0, SOURCE).await?;
    stand_in.push(ScriptedReply::text(REPLY));
    let mut body = refactor::request(FILE);
    body["file"] = json!("conflict.rs");
    let events = chat(&server, "moving", &token, body).await?;
    let suggestion = events.last().unwrap().data["suggestion_ids"][0]
        .as_str()
        .expect("suggestion")
        .to_owned();
    driver
        .call(
            "delete",
            json!({"client": "editor", "text": "conflict.rs", "index": 15, "length": 4}),
        )
        .await?;
    let edited = driver.text("editor", "conflict.rs").await?;
    let (status, body) = post(
        &server,
        &token,
        &format!("/api/rooms/moving/suggestions/{suggestion}/accept"),
        json!({}),
    )
    .await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["status"], "conflict");
    driver
        .wait_suggestion("editor", &suggestion, "conflict")
        .await?;
    assert_eq!(driver.text("editor", "conflict.rs").await?, edited);
    driver.shutdown().await
}

#[tokio::test]
async fn a_failing_endpoint_falls_back_and_limits_and_roles_are_enforced() -> Result {
    let broken = LlmStandIn::start().await?;
    broken.set_default(ScriptedReply::error(500, "upstream exploded"));
    let healthy = LlmStandIn::start().await?;
    healthy.set_default(ScriptedReply::text(&["fine ", "answer"]));
    let fallback = format!("{}|stand-in|key2", healthy.base_url());
    let server = ai_server(
        &broken,
        &[
            "--ai-fallbacks",
            &fallback,
            "--ai-max-retries",
            "1",
            "--ai-rate-per-minute",
            "2",
        ],
    )
    .await?;
    let token = server.ensure_room("limits").await?;

    let events = chat(&server, "limits", &token, json!({"message": "hello"})).await?;
    let text: String = events
        .iter()
        .filter(|e| e.name == "token")
        .filter_map(|e| e.data["text"].as_str())
        .collect();
    assert_eq!(text, "fine answer");
    // The first attempt and one retry (--ai-max-retries 1), and nothing more: the HTTP
    // client does not retry on its own.
    assert_eq!(broken.requests().len(), 2);
    assert_eq!(healthy.requests().len(), 1);

    // The second request is within the limit, the third is not.
    chat(&server, "limits", &token, json!({"message": "again"})).await?;
    let response = reqwest::Client::new()
        .post(server.http("/api/rooms/limits/ai/chat"))
        .bearer_auth(&token)
        .json(&json!({"message": "once more"}))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["code"], "ai_rate_limited");

    // Viewers may not ask.
    let viewer = server.register("viewer").await?;
    server.add_member("limits", &viewer, "viewer").await?;
    let (status, body) = post(
        &server,
        &viewer.token,
        "/api/rooms/limits/ai/chat",
        json!({"message": "hi"}),
    )
    .await?;
    assert_eq!(status, 403, "{body}");

    // A selection larger than the budget is a clear error, not a silent truncation.
    let driver = YjsDriver::start().await?;
    driver.connect("a", &server, "limits").await?;
    let long = "x".repeat(20_000);
    driver.insert("a", FILE, 0, &long).await?;
    let outsider = server.register("big").await?;
    server.add_member("limits", &outsider, "editor").await?;
    let (status, body) = post(
        &server,
        &outsider.token,
        "/api/rooms/limits/ai/chat",
        json!({"message": "explain", "action": "explain", "file": FILE, "selection": {"start": 0, "end": 20_000}}),
    )
    .await?;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "selection_too_large");
    driver.shutdown().await
}
