//! Write permissions per part of the document, with real `yjs` clients: an editor's client
//! cannot forge the comment mirror or another author's suggestion, a suggester's client
//! cannot write the text but its suggestions go through, stamped with who made them, and
//! nothing refused reaches the other clients or the database.

use e2e::api::get;
use e2e::{TandemServer, TestUser, YjsDriver};
use serde_json::{Value, json};

type Result<T = ()> = anyhow::Result<T>;

const FILE: &str = "notes.md";

async fn member(server: &TandemServer, room: &str, role: &str) -> Result<TestUser> {
    let user = server.register(role).await?;
    server.add_member(room, &user, role).await?;
    Ok(user)
}

async fn denied(driver: &YjsDriver, client: &str) -> Result<String> {
    let reason = driver
        .call("waitPermissionDenied", json!({ "client": client }))
        .await?;
    Ok(reason.as_str().unwrap_or_default().to_owned())
}

async fn document(server: &TandemServer, token: &str) -> Result<Value> {
    get(server, token, "/api/rooms/perm/document").await
}

#[tokio::test]
async fn each_role_writes_only_its_part_of_the_document() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = server.ensure_room("perm").await?;
    let editor = member(&server, "perm", "editor").await?;
    let suggester = member(&server, "perm", "suggester").await?;
    // Each refused attempt is made from a client of its own: a refused update stays in its
    // sender's copy (Yjs has no way to take it back), so that copy's later updates build on
    // something the room never had.
    for (client, token) in [
        ("ed", &editor.token),
        ("ed-forging", &editor.token),
        ("sue", &suggester.token),
        ("sue-typing", &suggester.token),
    ] {
        driver
            .connect_with_token(client, &server, "perm", token)
            .await?;
    }
    driver.connect("owner", &server, "perm").await?;
    driver.insert("ed", FILE, 0, "hello").await?;
    for client in ["ed-forging", "sue", "sue-typing"] {
        driver.wait_text(client, FILE, "hello").await?;
    }

    // An editor's client forging a comment thread in the mirror: refused, seen by nobody.
    driver
        .call(
            "setMapEntry",
            json!({"client": "ed-forging", "name": "comments", "key": "forged",
                   "value": {"quote": "hello", "status": "open"}}),
        )
        .await?;
    let reason = denied(&driver, "ed-forging").await?;
    assert!(reason.contains("comments are written through"), "{reason}");

    // A suggester's client typing: refused.
    driver.insert("sue-typing", FILE, 5, " world").await?;
    let reason = denied(&driver, "sue-typing").await?;
    assert!(
        reason.contains("may not edit the document's content"),
        "{reason}"
    );

    // A suggester's suggestion, claiming to be the assistant's and accepted: it goes through,
    // stamped by the server with who made it, and pending.
    driver
        .call(
            "setMapEntry",
            json!({"client": "sue", "name": "suggestions", "key": "s1",
                   "value": {"file": FILE, "replacement": "hi", "author": "AI assistant",
                             "author_id": "user:ai-assistant", "status": "accepted"}}),
        )
        .await?;
    driver
        .call(
            "waitMapEntry",
            json!({"client": "owner", "name": "suggestions", "key": "s1", "field": "author",
                   "equals": "suggester"}),
        )
        .await?;
    let doc = document(&server, &owner).await?;
    let s1 = &doc["suggestions"]["s1"];
    assert_eq!(s1["status"], "pending", "{doc}");
    assert_eq!(s1["author_id"], format!("user:{}", suggester.id), "{doc}");
    assert_eq!(s1["replacement"], "hi", "{doc}");

    // Its content is its author's: an editor's client may not rewrite it.
    driver
        .call(
            "waitMapEntry",
            json!({"client": "ed", "name": "suggestions", "key": "s1", "field": "status",
                   "equals": "pending"}),
        )
        .await?;
    driver
        .connect_with_token("ed-rewriting", &server, "perm", &editor.token)
        .await?;
    driver
        .call(
            "setMapField",
            json!({"client": "ed-rewriting", "key": "s1", "name": "suggestions", "field": "replacement",
                   "value": "mine"}),
        )
        .await?;
    let reason = denied(&driver, "ed-rewriting").await?;
    assert!(reason.contains("belongs to someone else"), "{reason}");

    // The editor still types; the owner's client gets exactly what was allowed.
    driver.insert("ed", FILE, 5, "!").await?;
    driver.wait_text("owner", FILE, "hello!").await?;
    let doc = document(&server, &owner).await?;
    assert_eq!(doc[FILE], "hello!", "{doc}");
    assert!(
        doc.get("comments")
            .is_none_or(|c| c.get("forged").is_none()),
        "{doc}"
    );
    assert_eq!(doc["suggestions"]["s1"]["replacement"], "hi", "{doc}");
    let mirror = driver
        .call("getMap", json!({"client": "owner", "name": "comments"}))
        .await?;
    assert!(mirror.get("forged").is_none(), "{mirror}");

    // And after a restart, what is stored is what was allowed.
    let mut server = server;
    assert!(server.stop().await?, "the server did not stop cleanly");
    server.restart().await?;
    let stored = document(&server, &owner).await?;
    assert_eq!(stored[FILE], "hello!", "{stored}");
    assert_eq!(stored["suggestions"]["s1"]["status"], "pending", "{stored}");
    Ok(())
}
