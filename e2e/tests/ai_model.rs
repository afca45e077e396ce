//! One end-to-end exchange with a real (small) language model: the answer streams and a
//! well-formed suggestion lands in the document. Structure is asserted, never wording.

use e2e::{LocalModel, TandemServer, YjsDriver};
use serde_json::{Value, json};

#[tokio::test]
async fn a_real_model_streams_an_answer_and_proposes_a_well_formed_suggestion() -> anyhow::Result<()>
{
    let model = LocalModel::start().await?;
    let base = model.base_url();
    let server = TandemServer::start(&[
        "--ai-base-url",
        &base,
        "--ai-model",
        "smollm2",
        "--ai-timeout",
        "120s",
    ])
    .await?;
    let token = server.ensure_room("real").await?;
    let driver = YjsDriver::start().await?;
    driver.connect("a", &server, "real").await?;
    let source = "fn add(a: i32, b: i32) -> i32 {\n    a+b\n}\n";
    driver.insert("a", "lib.rs", 0, source).await?;

    let mut response = reqwest::Client::new()
        .post(server.http("/api/rooms/real/ai/chat"))
        .bearer_auth(&token)
        .json(&json!({
            "message": "Add a comment explaining this function.",
            "action": "add_comments",
            "file": "lib.rs",
            "selection": {"start": 0, "end": source.encode_utf16().count()},
        }))
        .send()
        .await?;
    assert!(response.status().is_success(), "{}", response.status());
    let mut body = String::new();
    while let Some(chunk) = response.chunk().await? {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events: Vec<(String, Value)> = body
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_owned();
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            (name, serde_json::from_str(data).unwrap_or(Value::Null))
        })
        .collect();
    let tokens = events.iter().filter(|(name, _)| name == "token").count();
    assert!(tokens > 1, "the answer streamed in pieces: {body}");
    let (name, done) = events.last().expect("events");
    assert_eq!(name, "done", "{body}");
    assert!(done["usage"]["completion_tokens"].as_u64() > Some(0));
    let suggestion = done["suggestion_ids"][0]
        .as_str()
        .expect("a suggestion")
        .to_owned();

    let entry = driver.wait_suggestion("a", &suggestion, "pending").await?;
    let value = &entry["value"];
    assert_eq!(value["file"], "lib.rs");
    assert_eq!(value["original"], source);
    assert_eq!(value["author"], "AI assistant");
    assert!(
        value["replacement"]
            .as_str()
            .is_some_and(|r| !r.trim().is_empty())
    );
    // The anchors are Yjs relative positions (binary), which the JSON view shows as objects.
    assert!(!value["start"].is_null() && !value["end"].is_null());
    driver.shutdown().await
}
