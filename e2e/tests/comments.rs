//! Comment threads anchored in the text, mentions, notifications and the activity feed,
//! observed through real `yjs` clients and HTTP.

use e2e::api::{get, json, post};
use e2e::{TandemServer, TestUser, YjsDriver, seed};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

type Result = anyhow::Result<()>;

const FILE: &str = "story.md";
const BEFORE: &str = "Once upon a time, the ";
const WORDS: &str = "quick brown fox";
const AFTER: &str = " jumped over the lazy dog.\nThe end.\n";

fn utf16_len(s: &str) -> u32 {
    s.encode_utf16().count() as u32
}

/// A room holding [`FILE`] with the story, written by a connected `yjs` client `writer`.
async fn room_with_story(
    server: &TandemServer,
    driver: &YjsDriver,
    room: &str,
    writer: &str,
) -> anyhow::Result<String> {
    let token = server.ensure_room(room).await?;
    driver.connect(writer, server, room).await?;
    driver
        .insert(writer, FILE, 0, &format!("{BEFORE}{WORDS}{AFTER}"))
        .await?;
    // The server has the text once another client sees it.
    driver.connect("observer", server, room).await?;
    driver
        .wait_text("observer", FILE, &format!("{BEFORE}{WORDS}{AFTER}"))
        .await?;
    Ok(token)
}

async fn open_thread(
    server: &TandemServer,
    token: &str,
    room: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let (status, thread) =
        post(server, token, &format!("/api/rooms/{room}/comments"), body).await?;
    anyhow::ensure!(status == 201, "open thread: {status} {thread}");
    Ok(thread)
}

fn on_words(body: &str) -> Value {
    let start = utf16_len(BEFORE);
    json!({"file": FILE, "start": start, "end": start + utf16_len(WORDS), "body": body})
}

#[tokio::test]
async fn a_comment_range_follows_its_words_through_two_clients_edits_and_orphans_when_they_go()
-> Result {
    let seed = seed(
        "a_comment_range_follows_its_words_through_two_clients_edits_and_orphans_when_they_go",
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let token = room_with_story(&server, &driver, "anchors", "a").await?;
    driver.connect("b", &server, "anchors").await?;
    driver
        .wait_text("b", FILE, &format!("{BEFORE}{WORDS}{AFTER}"))
        .await?;
    let thread = open_thread(&server, &token, "anchors", on_words("Which fox?")).await?;
    let id = thread["id"].as_str().expect("thread id").to_owned();
    assert_eq!(thread["quote"], WORDS);
    assert_eq!(thread["text"], WORDS);

    // The model of the text: what is before, inside and after the commented range. Inserted
    // text is digits, so the story's own words are recognisable inside the range.
    let (mut before, mut inside, mut after) =
        (BEFORE.to_owned(), WORDS.to_owned(), AFTER.to_owned());
    let clients = ["a", "b"];
    for round in 0..6 {
        // Each round's edits come from one client, which has seen every earlier round (so
        // offsets computed from the model are offsets in its text).
        let client = clients[round % 2];
        for _ in 0..5 {
            let digits: String = (0..rng.random_range(1..4))
                .map(|_| rng.random_range(b'0'..=b'9') as char)
                .collect();
            // Offsets are bytes here: everything is ASCII, so bytes are UTF-16 units.
            match rng.random_range(0..5) {
                // Before the range, its first character included: stays outside.
                0 => {
                    let at = rng.random_range(0..=before.len());
                    driver.insert(client, FILE, at, &digits).await?;
                    before.insert_str(at, &digits);
                }
                // Strictly inside: becomes part of the range.
                1 => {
                    let at = rng.random_range(1..inside.len());
                    driver
                        .insert(client, FILE, before.len() + at, &digits)
                        .await?;
                    inside.insert_str(at, &digits);
                }
                // After the range, right at its end included: stays outside.
                2 => {
                    let at = rng.random_range(0..=after.len());
                    driver
                        .insert(client, FILE, before.len() + inside.len() + at, &digits)
                        .await?;
                    after.insert_str(at, &digits);
                }
                // Deleting before the range.
                3 if before.len() > 1 => {
                    let at = rng.random_range(0..before.len());
                    driver
                        .call(
                            "delete",
                            json!({"client": client, "text": FILE, "index": at, "length": 1}),
                        )
                        .await?;
                    before.remove(at);
                }
                // Deleting after the range.
                _ if after.len() > 1 => {
                    let at = rng.random_range(0..after.len());
                    driver
                        .call(
                            "delete",
                            json!({"client": client, "text": FILE, "index": before.len() + inside.len() + at, "length": 1}),
                        )
                        .await?;
                    after.remove(at);
                }
                _ => {}
            }
        }
        let expected = format!("{before}{inside}{after}");
        driver.wait_text("a", FILE, &expected).await?;
        driver.wait_text("b", FILE, &expected).await?;
        let now = get(
            &server,
            &token,
            &format!("/api/rooms/anchors/comments/{id}"),
        )
        .await?;
        assert_eq!(
            now["text"],
            inside.as_str(),
            "seed {seed}, round {round}: {now}"
        );
        let words: String = inside.chars().filter(|c| !c.is_ascii_digit()).collect();
        assert_eq!(words, WORDS, "seed {seed}");
        assert_eq!(now["start"], utf16_len(&before), "seed {seed}");
        assert_eq!(
            now["end"],
            utf16_len(&before) + utf16_len(&inside),
            "seed {seed}"
        );
        assert_eq!(now["orphaned"], false);
        // A client resolves the same range from the anchors mirrored into the document.
        let resolved = driver
            .call(
                "resolveRange",
                json!({"client": "b", "name": "comments", "key": id, "text": FILE}),
            )
            .await?;
        assert_eq!(resolved["text"], inside.as_str(), "seed {seed}: {resolved}");
    }

    // Deleting the words orphans the thread; it keeps its quote and comments.
    driver
        .call(
            "delete",
            json!({"client": "a", "text": FILE, "index": before.len(), "length": inside.len()}),
        )
        .await?;
    driver
        .wait_text("b", FILE, &format!("{before}{after}"))
        .await?;
    let orphan = get(
        &server,
        &token,
        &format!("/api/rooms/anchors/comments/{id}"),
    )
    .await?;
    assert_eq!(orphan["orphaned"], true, "{orphan}");
    assert_eq!(orphan["start"], Value::Null);
    assert_eq!(orphan["quote"], WORDS);
    assert_eq!(orphan["comments"][0]["body"], "Which fox?");
    let listed = get(&server, &token, "/api/rooms/anchors/comments").await?;
    assert_eq!(listed["threads"].as_array().map(Vec::len), Some(1));
    driver.shutdown().await
}

#[tokio::test]
async fn threads_change_live_for_connected_clients_and_follow_the_permissions() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = room_with_story(&server, &driver, "live", "a").await?;
    let editor = server.register("editor").await?;
    let viewer = server.register("viewer").await?;
    server.add_member("live", &editor, "editor").await?;
    server.add_member("live", &viewer, "viewer").await?;
    let wait_entry = |key: &str, field: &str, equals: Value| {
        driver.call(
            "waitMapEntry",
            json!({"client": "observer", "name": "comments", "key": key, "field": field, "equals": equals}),
        )
    };

    // A viewer may comment (comments do not change the text).
    let thread = open_thread(&server, &viewer.token, "live", on_words("Is this right?")).await?;
    let id = thread["id"].as_str().expect("id").to_owned();
    let seen = wait_entry(&id, "status", json!("open")).await?;
    assert_eq!(seen["value"]["quote"], WORDS);
    assert_eq!(seen["value"]["comments"][0]["body"], "Is this right?");

    let base = format!("/api/rooms/live/comments/{id}");
    let (status, replied) = post(
        &server,
        &editor.token,
        &format!("{base}/replies"),
        json!({"body": "Yes."}),
    )
    .await?;
    assert_eq!(status, 201, "{replied}");
    assert_eq!(replied["comments"].as_array().map(Vec::len), Some(2));
    let reply_id = replied["comments"][1]["id"]
        .as_str()
        .expect("reply id")
        .to_owned();

    // Only the author edits a comment.
    let reply_path = format!("{base}/replies/{reply_id}");
    let edit = |token: String, body: &'static str| {
        let path = reply_path.clone();
        let server = &server;
        async move {
            json(
                server,
                reqwest::Method::PATCH,
                &token,
                &path,
                Some(json!({"body": body})),
            )
            .await
        }
    };
    let (status, _) = edit(viewer.token.clone(), "No.").await?;
    assert_eq!(status, 403);
    let (status, edited) = edit(editor.token.clone(), "Yes, checked.").await?;
    assert_eq!(status, 200, "{edited}");
    assert!(edited["comments"][1]["edited_at_ms"].is_i64());
    // Edits reach clients live too.
    let entry = wait_entry(&id, "updated_at_ms", edited["updated_at_ms"].clone()).await?;
    assert_eq!(entry["value"]["comments"][1]["body"], "Yes, checked.");

    // Resolving needs the editor role or authorship; both status changes show live.
    let (status, _) = post(
        &server,
        &editor.token,
        &format!("{base}/resolve"),
        json!({}),
    )
    .await?;
    assert_eq!(status, 200);
    wait_entry(&id, "status", json!("resolved")).await?;
    let resolved = get(&server, &owner, &base).await?;
    assert_eq!(resolved["resolved_by"]["id"], editor.id.as_str());
    let (status, _) = post(&server, &viewer.token, &format!("{base}/reopen"), json!({})).await?;
    assert_eq!(status, 200, "the thread's author may reopen it");
    wait_entry(&id, "status", json!("open")).await?;
    let open = get(&server, &owner, "/api/rooms/live/comments?status=open").await?;
    assert_eq!(open["threads"].as_array().map(Vec::len), Some(1));
    let resolved_only = get(&server, &owner, "/api/rooms/live/comments?status=resolved").await?;
    assert_eq!(resolved_only["threads"].as_array().map(Vec::len), Some(0));

    // Deleting: not the editor's (someone else's thread), but the owner's right.
    let (status, _) = json(&server, reqwest::Method::DELETE, &editor.token, &base, None).await?;
    assert_eq!(status, 403);
    let (status, _) = json(&server, reqwest::Method::DELETE, &owner, &base, None).await?;
    assert_eq!(status, 204);
    // Changes reach clients in order: once a newer thread shows, the deletion has too.
    let newer = open_thread(&server, &editor.token, "live", on_words("Another")).await?;
    let newer_id = newer["id"].as_str().expect("id");
    wait_entry(newer_id, "status", json!("open")).await?;
    let map = driver
        .call("getMap", json!({"client": "observer", "name": "comments"}))
        .await?;
    assert!(
        map.get(&id).is_none(),
        "deleted thread still mirrored: {map}"
    );
    let (status, _) = json(&server, reqwest::Method::GET, &owner, &base, None).await?;
    assert_eq!(status, 404);

    // Bad input is refused clearly and creates nothing.
    for bad in [
        json!({"file": FILE, "start": 3, "end": 3, "body": "empty range"}),
        json!({"file": FILE, "start": 0, "end": 100_000, "body": "outside"}),
        json!({"file": "missing.md", "start": 0, "end": 1, "body": "no file"}),
        json!({"file": FILE, "start": 0, "end": 1, "body": "   "}),
    ] {
        let (status, body) = post(
            &server,
            &editor.token,
            "/api/rooms/live/comments",
            bad.clone(),
        )
        .await?;
        assert_eq!(status, 422, "{bad} → {body}");
        assert_eq!(body["error"]["code"], "validation_failed");
    }
    let all = get(&server, &owner, "/api/rooms/live/comments").await?;
    assert_eq!(all["threads"].as_array().map(Vec::len), Some(1));
    // The text itself was never touched by any of this.
    assert_eq!(
        driver.text("observer", FILE).await?,
        format!("{BEFORE}{WORDS}{AFTER}")
    );
    driver.shutdown().await
}

async fn notifications(server: &TandemServer, user: &TestUser) -> anyhow::Result<Value> {
    get(server, &user.token, "/api/notifications").await
}

fn count_of(page: &Value, kind: &str) -> usize {
    page["notifications"]
        .as_array()
        .map(|all| all.iter().filter(|n| n["kind"] == kind).count())
        .unwrap_or(0)
}

#[tokio::test]
async fn mentions_notify_each_mentioned_participant_once_and_only_participants() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner_token = room_with_story(&server, &driver, "mentions", "a").await?;
    let owner = server.owner().await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let carol = server.register("carol").await?;
    server.add_member("mentions", &alice, "editor").await?;
    server.add_member("mentions", &bob, "viewer").await?;

    // Bob named twice (by id and by @email) and Alice naming herself: one notification, for
    // Bob only.
    let mut body = on_words(&format!("@{} please look; cc @{}.", bob.email, alice.email));
    body["mentions"] = json!([bob.id]);
    let thread = open_thread(&server, &alice.token, "mentions", body).await?;
    let id = thread["id"].as_str().expect("id").to_owned();
    let mentioned: Vec<&str> = thread["comments"][0]["mentions"]
        .as_array()
        .expect("mentions")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(mentioned, vec![bob.id.as_str(), alice.id.as_str()]);
    let bobs = notifications(&server, &bob).await?;
    assert_eq!(count_of(&bobs, "mentioned"), 1, "{bobs}");
    assert_eq!(bobs["unread_count"], 1);
    let note = &bobs["notifications"][0];
    assert_eq!(note["room_id"], "mentions");
    assert_eq!(note["actor"]["id"], alice.id.as_str());
    assert_eq!(note["data"]["thread_id"], id.as_str());
    assert_eq!(
        count_of(&notifications(&server, &alice).await?, "mentioned"),
        0
    );

    // Carol is not a participant: mentioning her is refused and nothing is created.
    let before = get(&server, &owner_token, "/api/rooms/mentions/comments").await?;
    let (status, refused) = post(
        &server,
        &alice.token,
        "/api/rooms/mentions/comments",
        on_words(&format!("@{} what do you think?", carol.email)),
    )
    .await?;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]["fields"]["body"]
            .as_str()
            .unwrap_or("")
            .contains("not a participant")
    );
    let mut by_id = on_words("hello");
    by_id["mentions"] = json!([carol.id]);
    let (status, _) = post(&server, &alice.token, "/api/rooms/mentions/comments", by_id).await?;
    assert_eq!(status, 422);
    let after = get(&server, &owner_token, "/api/rooms/mentions/comments").await?;
    assert_eq!(before["threads"], after["threads"]);
    assert_eq!(
        notifications(&server, &carol).await?["notifications"],
        json!([])
    );

    // Editing notifies only the newly mentioned: the owner once, Bob not again.
    let comment_id = thread["comments"][0]["id"].as_str().expect("comment id");
    let path = format!("/api/rooms/mentions/comments/{id}/replies/{comment_id}");
    for text in [
        format!("@{} and @{} please look", bob.email, owner.email),
        format!("@{} and @{}, please look again", bob.email, owner.email),
    ] {
        let (status, body) = json(
            &server,
            reqwest::Method::PATCH,
            &alice.token,
            &path,
            Some(json!({"body": text})),
        )
        .await?;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        count_of(&notifications(&server, &owner).await?, "mentioned"),
        1
    );
    assert_eq!(
        count_of(&notifications(&server, &bob).await?, "mentioned"),
        1
    );

    // A reply mentioning Bob notifies him again (a new comment).
    let (status, _) = post(
        &server,
        &owner.token,
        &format!("/api/rooms/mentions/comments/{id}/replies"),
        json!({"body": format!("@{} see above", bob.email)}),
    )
    .await?;
    assert_eq!(status, 201);
    let bobs = notifications(&server, &bob).await?;
    assert_eq!(count_of(&bobs, "mentioned"), 2);
    assert_eq!(bobs["unread_count"], 2);

    // Read and unread.
    let first = bobs["notifications"][0]["id"].as_i64().expect("id");
    let (status, _) = post(
        &server,
        &bob.token,
        &format!("/api/notifications/{first}/read"),
        json!({}),
    )
    .await?;
    assert_eq!(status, 204);
    let bobs = notifications(&server, &bob).await?;
    assert_eq!(bobs["unread_count"], 1);
    assert_eq!(bobs["notifications"][0]["read"], true);
    let unread = get(&server, &bob.token, "/api/notifications?unread=true").await?;
    assert_eq!(unread["notifications"].as_array().map(Vec::len), Some(1));
    // Someone else's notification does not exist for you.
    let (status, _) = post(
        &server,
        &alice.token,
        &format!("/api/notifications/{first}/read"),
        json!({}),
    )
    .await?;
    assert_eq!(status, 404);
    let (status, _) = post(
        &server,
        &bob.token,
        "/api/notifications/read-all",
        json!({}),
    )
    .await?;
    assert_eq!(status, 204);
    assert_eq!(notifications(&server, &bob).await?["unread_count"], 0);
    driver.shutdown().await
}

#[tokio::test]
async fn adding_a_participant_by_email_notifies_them() -> Result {
    let server = TandemServer::start(&[]).await?;
    let owner_token = server.ensure_room("team").await?;
    let dana = server.register("dana").await?;
    let path = "/api/rooms/team/members";
    let (status, member) = post(
        &server,
        &owner_token,
        path,
        json!({"email": dana.email.to_uppercase(), "role": "editor"}),
    )
    .await?;
    assert_eq!(status, 201, "{member}");
    assert_eq!(member["role"], "editor");
    let (status, again) = post(
        &server,
        &owner_token,
        path,
        json!({"email": dana.email, "role": "viewer"}),
    )
    .await?;
    assert_eq!(status, 409, "{again}");
    let (status, _) = post(
        &server,
        &owner_token,
        path,
        json!({"email": "nobody@example.test", "role": "viewer"}),
    )
    .await?;
    assert_eq!(status, 404);
    let (status, _) = post(
        &server,
        &owner_token,
        path,
        json!({"email": dana.email, "role": "owner"}),
    )
    .await?;
    assert_eq!(status, 422);
    let page = notifications(&server, &dana).await?;
    assert_eq!(count_of(&page, "invited"), 1, "{page}");
    assert_eq!(page["notifications"][0]["data"]["role"], "editor");
    assert_eq!(page["notifications"][0]["room_id"], "team");
    // Dana can now open the room.
    get(&server, &dana.token, "/api/rooms/team").await?;
    Ok(())
}

#[tokio::test]
async fn the_activity_feed_records_who_did_what_newest_first_in_pages() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let token = room_with_story(&server, &driver, "feed", "a").await?;
    let thread = open_thread(&server, &token, "feed", on_words("Nice")).await?;
    let id = thread["id"].as_str().expect("id");
    let (status, _) = post(
        &server,
        &token,
        &format!("/api/rooms/feed/comments/{id}/resolve"),
        json!({}),
    )
    .await?;
    assert_eq!(status, 200);
    let (status, version) = post(
        &server,
        &token,
        "/api/rooms/feed/versions",
        json!({"label": "draft"}),
    )
    .await?;
    assert_eq!(status, 201);
    let (status, _) = post(
        &server,
        &token,
        &format!("/api/rooms/feed/versions/{}/restore", version["id"]),
        json!({}),
    )
    .await?;
    assert_eq!(status, 200);
    // Closing the last connection of the observer's account is a departure... but the
    // observer and the writer share the owner's account: close both.
    driver.call("destroy", json!({"client": "a"})).await?;
    driver
        .call("destroy", json!({"client": "observer"}))
        .await?;

    let expected = [
        "joined",
        "comment_created",
        "comment_resolved",
        "version_created",
        "version_restored",
        "left",
    ];
    // Events are recorded in the background: wait (bounded) until the last one is in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let feed = loop {
        let page = get(&server, &token, "/api/rooms/feed/activity?limit=200").await?;
        if page["events"][0]["kind"] == "left" || std::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let kinds: Vec<&str> = feed["events"]
        .as_array()
        .expect("events")
        .iter()
        .rev()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, expected, "{feed}");
    let owner = server.owner().await?;
    for event in feed["events"].as_array().expect("events") {
        assert_eq!(event["actor"]["id"], owner.id.as_str(), "{event}");
    }
    let restored = &feed["events"][1];
    assert_eq!(restored["data"]["restored_from"], version["id"]);
    let created = &feed["events"][4];
    assert_eq!(created["data"]["thread_id"], id);

    // Paging two at a time walks the same events, newest first, each once.
    let mut paged = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let path = match before {
            Some(b) => format!("/api/rooms/feed/activity?limit=2&before={b}"),
            None => "/api/rooms/feed/activity?limit=2".to_owned(),
        };
        let page = get(&server, &token, &path).await?;
        let events = page["events"].as_array().expect("events").clone();
        assert!(events.len() <= 2);
        paged.extend(events);
        match page["next_before"].as_i64() {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(Value::Array(paged), feed["events"]);
    let (status, _) = json(
        &server,
        reqwest::Method::GET,
        &token,
        "/api/rooms/feed/activity?limit=0",
        None,
    )
    .await?;
    assert_eq!(status, 400);
    driver.shutdown().await
}
