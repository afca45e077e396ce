//! Who may call what: every endpoint of the API, called by every kind of principal, checked
//! against one table.
//!
//! Each row of [`TABLE`] is one endpoint and the status each principal must get. A separate
//! test compares the table with `/api/openapi.json`, so an endpoint added without a row fails.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::{Context, Result, bail, ensure};
use e2e::{TandemServer, TestUser, expired_access_token};
use serde_json::{Value, json};

/// The principals every row is called by, in the order they call: least privileged first,
/// so a request that destroys something (the room, a membership, an invite) succeeds last.
#[derive(Clone, Copy, Debug)]
enum Principal {
    /// No token at all.
    Anonymous,
    /// The owner's access token from a session that has logged out.
    Revoked,
    /// A correctly signed token naming the owner's live session, past its expiry.
    Expired,
    /// The share token (`shr_…`) of the row's room.
    ShareLink,
    /// A registered user with no role in the room.
    Stranger,
    /// A participant with the viewer role.
    Viewer,
    /// A participant with the editor role.
    Editor,
    /// The room's owner.
    Owner,
}

/// Column order of [`Row::expect`].
const PRINCIPALS: [Principal; 8] = [
    Principal::Anonymous,
    Principal::Revoked,
    Principal::Expired,
    Principal::ShareLink,
    Principal::Stranger,
    Principal::Viewer,
    Principal::Editor,
    Principal::Owner,
];

/// Whose accounts a row is called with.
#[derive(Clone, Copy)]
enum Accounts {
    /// The accounts all rows share.
    Shared,
    /// Accounts of the row's own: the request ends the caller's sessions or changes their
    /// password, which would break the shared accounts for the rows after it.
    Own,
}

/// One endpoint and what each principal gets from it.
struct Row {
    method: &'static str,
    /// Path with placeholders (see [`RowFixture::fill`]); `/ws/…` is a WebSocket upgrade.
    path: &'static str,
    /// JSON body with the same placeholders.
    body: Option<&'static str>,
    accounts: Accounts,
    /// Expected status per principal, in [`PRINCIPALS`] order.
    expect: [u16; 8],
}

const fn row(
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    expect: [u16; 8],
) -> Row {
    Row {
        method,
        path,
        body,
        accounts: Accounts::Shared,
        expect,
    }
}

impl Row {
    const fn with_own_accounts(self) -> Row {
        Row {
            accounts: Accounts::Own,
            ..self
        }
    }
}

/// Every endpoint. Public endpoints ignore the caller; a missing, revoked or expired token is
/// 401 everywhere else. Account endpoints need a logged-in user: a share link (or API key) is
/// 403 there. Room endpoints need a role: 403 without one, or with too small a one; a share
/// link acts as a viewer of its one room.
// Kept out of rustfmt so the expected statuses line up in columns.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    //                                                                 anon revk expd shar strg view edit ownr
    row("POST", "/api/auth/register",
        Some(r#"{"email": "{unique}@example.test", "password": "a-long-password", "display_name": "New"}"#),
                                                                      [201, 201, 201, 201, 201, 201, 201, 201]),
    row("POST", "/api/auth/login",
        Some(r#"{"email": "{target_email}", "password": "{target_password}"}"#),
                                                                      [200, 200, 200, 200, 200, 200, 200, 200]),
    row("POST", "/api/auth/refresh", Some(r#"{"refresh_token": "{refresh_token}"}"#),
                                                                      [200, 200, 200, 200, 200, 200, 200, 200]),
    row("POST", "/api/auth/logout", None,
                                                                      [401, 401, 401, 403, 204, 204, 204, 204]).with_own_accounts(),
    row("POST", "/api/auth/password",
        Some(r#"{"current_password": "{caller_password}", "new_password": "{caller_password}"}"#),
                                                                      [401, 401, 401, 403, 204, 204, 204, 204]).with_own_accounts(),
    row("GET", "/api/me", None,                                       [401, 401, 401, 403, 200, 200, 200, 200]),
    // A key may only name rooms its maker takes part in (422 otherwise).
    row("POST", "/api/api-keys", Some(r#"{"name": "bot", "role": "editor", "rooms": ["{room}"]}"#),
                                                                      [401, 401, 401, 403, 422, 201, 201, 201]),
    row("GET", "/api/api-keys", None,                                 [401, 401, 401, 403, 200, 200, 200, 200]),
    // `{key_id}` is the owner's key: to anyone else it does not exist.
    row("DELETE", "/api/api-keys/{key_id}", None,                     [401, 401, 401, 403, 404, 404, 404, 204]),

    row("POST", "/api/rooms", Some(r#"{"name": "Another room"}"#),    [401, 401, 401, 403, 201, 201, 201, 201]),
    row("GET", "/api/rooms", None,                                    [401, 401, 401, 403, 200, 200, 200, 200]),
    row("GET", "/api/rooms/{room}", None,                             [401, 401, 401, 200, 403, 200, 200, 200]),
    row("PATCH", "/api/rooms/{room}", Some(r#"{"name": "Renamed"}"#), [401, 401, 401, 403, 403, 403, 403, 200]),
    row("DELETE", "/api/rooms/{room}", None,                          [401, 401, 401, 403, 403, 403, 403, 204]),
    row("POST", "/api/rooms/{room}/fork", Some("{}"),                 [401, 401, 401, 403, 403, 201, 201, 201]),
    row("GET", "/api/rooms/{room}/members", None,                     [401, 401, 401, 200, 403, 200, 200, 200]),
    row("POST", "/api/rooms/{room}/members", Some(r#"{"email": "{stranger_email}", "role": "viewer"}"#),
                                                                      [401, 401, 401, 403, 403, 403, 403, 201]),
    row("PUT", "/api/rooms/{room}/members/{user_id}", Some(r#"{"role": "editor"}"#),
                                                                      [401, 401, 401, 403, 403, 403, 403, 200]),
    row("DELETE", "/api/rooms/{room}/members/{user_id}", None,        [401, 401, 401, 403, 403, 403, 403, 204]),
    row("POST", "/api/rooms/{room}/transfer", Some(r#"{"user_id": "{user_id}"}"#),
                                                                      [401, 401, 401, 403, 403, 403, 403, 204]),

    row("POST", "/api/rooms/{room}/invites", Some(r#"{"role": "viewer"}"#),
                                                                      [401, 401, 401, 403, 403, 403, 403, 201]),
    row("GET", "/api/rooms/{room}/invites", None,                     [401, 401, 401, 403, 403, 403, 403, 200]),
    row("DELETE", "/api/rooms/{room}/invites/{invite_id}", None,      [401, 401, 401, 403, 403, 403, 403, 204]),
    row("POST", "/api/invites/{token}/accept", None,                  [401, 401, 401, 403, 200, 200, 200, 200]),
    row("POST", "/api/rooms/{room}/share-links", Some("{}"),          [401, 401, 401, 403, 403, 403, 403, 201]),
    row("GET", "/api/rooms/{room}/share-links", None,                 [401, 401, 401, 403, 403, 403, 403, 200]),
    row("DELETE", "/api/rooms/{room}/share-links/{link_id}", None,    [401, 401, 401, 403, 403, 403, 403, 204]),
    // The room a share token opens: only a share token has one to name.
    row("GET", "/api/share-links/current", None,                      [401, 401, 401, 200, 403, 403, 403, 403]),

    // Comments: any participant with an account may comment (a share link has none); only
    // authors edit, authors or owners delete, editors (or the author) resolve. `{thread}` is
    // the owner's thread with the owner's comment `{comment}`.
    row("GET", "/api/rooms/{room}/comments", None,                    [401, 401, 401, 200, 403, 200, 200, 200]),
    row("POST", "/api/rooms/{room}/comments", Some(r#"{"file": "notes", "start": 0, "end": 5, "body": "hi"}"#),
                                                                      [401, 401, 401, 403, 403, 201, 201, 201]),
    row("GET", "/api/rooms/{room}/comments/{thread}", None,           [401, 401, 401, 200, 403, 200, 200, 200]),
    row("DELETE", "/api/rooms/{room}/comments/{thread}", None,        [401, 401, 401, 403, 403, 403, 403, 204]),
    row("POST", "/api/rooms/{room}/comments/{thread}/replies", Some(r#"{"body": "reply"}"#),
                                                                      [401, 401, 401, 403, 403, 201, 201, 201]),
    row("PATCH", "/api/rooms/{room}/comments/{thread}/replies/{comment}", Some(r#"{"body": "edited"}"#),
                                                                      [401, 401, 401, 403, 403, 403, 403, 200]),
    row("DELETE", "/api/rooms/{room}/comments/{thread}/replies/{comment}", None,
                                                                      [401, 401, 401, 403, 403, 403, 403, 204]),
    row("POST", "/api/rooms/{room}/comments/{thread}/resolve", None,  [401, 401, 401, 403, 403, 403, 200, 200]),
    row("POST", "/api/rooms/{room}/comments/{thread}/reopen", None,   [401, 401, 401, 403, 403, 403, 200, 200]),
    row("GET", "/api/notifications", None,                            [401, 401, 401, 403, 200, 200, 200, 200]),
    row("POST", "/api/notifications/read-all", None,                  [401, 401, 401, 403, 204, 204, 204, 204]),
    // `{notification}` is the owner's (the editor mentioned them): to anyone else it does
    // not exist.
    row("POST", "/api/notifications/{notification}/read", None,       [401, 401, 401, 403, 404, 404, 404, 204]),
    row("GET", "/api/rooms/{room}/activity", None,                    [401, 401, 401, 200, 403, 200, 200, 200]),
    row("GET", "/api/rooms/{room}/document", None,                    [401, 401, 401, 200, 403, 200, 200, 200]),
    row("GET", "/api/rooms/{room}/versions", None,                    [401, 401, 401, 200, 403, 200, 200, 200]),
    row("POST", "/api/rooms/{room}/versions", Some(r#"{"label": "checkpoint"}"#),
                                                                      [401, 401, 401, 403, 403, 403, 201, 201]),
    row("GET", "/api/rooms/{room}/versions/{version}", None,          [401, 401, 401, 200, 403, 200, 200, 200]),
    row("POST", "/api/rooms/{room}/versions/{version}/restore", None, [401, 401, 401, 403, 403, 403, 200, 200]),

    // No model is configured here: whoever may ask is told so (503 `ai_not_configured`).
    row("POST", "/api/rooms/{room}/ai/chat", Some(r#"{"message": "hi"}"#),
                                                                      [401, 401, 401, 403, 403, 403, 503, 503]),
    row("GET", "/api/rooms/{room}/ai/status", None,                   [401, 401, 401, 200, 403, 200, 200, 200]),
    row("GET", "/api/rooms/{room}/ai/conversations", None,            [401, 401, 401, 200, 403, 200, 200, 200]),
    row("GET", "/api/rooms/{room}/ai/conversations/{missing}", None,  [401, 401, 401, 404, 403, 404, 404, 404]),
    row("POST", "/api/rooms/{room}/ai/conversations/{missing}/regenerate", None,
                                                                      [401, 401, 401, 403, 403, 403, 404, 404]),
    row("POST", "/api/rooms/{room}/ai/undo", Some(r#"{"since_version": {version}}"#),
                                                                      [401, 401, 401, 403, 403, 403, 200, 200]),
    row("POST", "/api/rooms/{room}/suggestions/{missing}/accept", None,
                                                                      [401, 401, 401, 403, 403, 403, 404, 404]),
    row("POST", "/api/rooms/{room}/suggestions/{missing}/reject", None,
                                                                      [401, 401, 401, 403, 403, 403, 404, 404]),
    row("GET", "/api/usage", None,                                    [401, 401, 401, 403, 200, 200, 200, 200]),

    // Files: `{file}` is a file of the row's room made for the calling principal, so one
    // caller's rename or delete leaves the next caller's file alone. An import body that is
    // no zip gets 400 from whoever may import.
    row("GET", "/api/rooms/{room}/files", None,                       [401, 401, 401, 200, 403, 200, 200, 200]),
    row("POST", "/api/rooms/{room}/files", Some(r#"{"path": "new-{unique}.txt"}"#),
                                                                      [401, 401, 401, 403, 403, 403, 201, 201]),
    row("GET", "/api/rooms/{room}/files/{file}", None,                [401, 401, 401, 200, 403, 200, 200, 200]),
    row("PUT", "/api/rooms/{room}/files/{file}", Some(r#"{"any": "text"}"#),
                                                                      [401, 401, 401, 403, 403, 403, 200, 200]),
    row("PATCH", "/api/rooms/{room}/files/{file}", Some(r#"{"path": "moved-{unique}.txt"}"#),
                                                                      [401, 401, 401, 403, 403, 403, 200, 200]),
    row("DELETE", "/api/rooms/{room}/files/{file}", None,             [401, 401, 401, 403, 403, 403, 204, 204]),
    row("GET", "/api/rooms/{room}/export", None,                      [401, 401, 401, 200, 403, 200, 200, 200]),
    row("POST", "/api/import?name=Imported", Some("{}"),              [401, 401, 401, 403, 400, 400, 400, 400]),

    // Webhooks are the owner's; `{webhook}` is one the owner registered.
    row("POST", "/api/rooms/{room}/webhooks", Some(r#"{"url": "https://hooks.example.test/{unique}"}"#),
                                                                      [401, 401, 401, 403, 403, 403, 403, 201]),
    row("GET", "/api/rooms/{room}/webhooks", None,                    [401, 401, 401, 403, 403, 403, 403, 200]),
    row("GET", "/api/rooms/{room}/webhooks/{webhook}/deliveries", None,
                                                                      [401, 401, 401, 403, 403, 403, 403, 200]),
    row("DELETE", "/api/rooms/{room}/webhooks/{webhook}", None,       [401, 401, 401, 403, 403, 403, 403, 204]),

    row("GET", "/ws/{room}", None,                                    [401, 401, 401, 101, 403, 101, 101, 101]),
];

/// `/api/rooms/{room}/versions/{id}` and `…/{version}` name the same route: placeholders are
/// compared by position, not by name.
fn route_shape(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let mut shape = String::with_capacity(path.len());
    let mut in_placeholder = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_placeholder = true;
                shape.push_str("{}");
            }
            '}' => in_placeholder = false,
            _ if in_placeholder => {}
            _ => shape.push(c),
        }
    }
    shape
}

#[tokio::test]
async fn the_table_has_a_row_for_exactly_the_endpoints_of_the_openapi_document() -> Result<()> {
    let server = TandemServer::start(&[]).await?;
    let document: Value = reqwest::get(server.http("/api/openapi.json"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut documented = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().context("no paths")? {
        for method in operations
            .as_object()
            .context("path without operations")?
            .keys()
        {
            documented.insert((method.to_uppercase(), route_shape(path)));
        }
    }
    ensure!(
        !documented.is_empty(),
        "the OpenAPI document lists no endpoint"
    );

    let mut tabled = BTreeSet::new();
    for row in TABLE {
        let endpoint = (row.method.to_owned(), route_shape(row.path));
        ensure!(
            tabled.insert(endpoint),
            "two rows for {} {}",
            row.method,
            row.path
        );
    }
    let without_row: Vec<_> = documented.difference(&tabled).collect();
    let undocumented: Vec<_> = tabled.difference(&documented).collect();
    assert!(
        without_row.is_empty() && undocumented.is_empty(),
        "endpoints without a row: {without_row:?}; rows for endpoints the OpenAPI document \
         does not list: {undocumented:?}"
    );
    Ok(())
}

#[tokio::test]
async fn every_endpoint_answers_every_principal_as_the_table_says() -> Result<()> {
    let server = TandemServer::start(&[]).await?;
    let http = reqwest::Client::new();
    let shared = Cast::register(&server).await?;
    let mut mismatches = Vec::new();
    for (index, row) in TABLE.iter().enumerate() {
        let own;
        let cast = match row.accounts {
            Accounts::Shared => &shared,
            Accounts::Own => {
                own = Cast::register(&server).await?;
                &own
            }
        };
        let fixture = RowFixture::build(&server, &http, cast, index)
            .await
            .with_context(|| format!("fixture for {} {}", row.method, row.path))?;
        for (principal, expected) in PRINCIPALS.into_iter().zip(row.expect) {
            let (status, body) = fixture
                .call(row, principal)
                .await
                .with_context(|| format!("{} {} as {principal:?}", row.method, row.path))?;
            if status != expected {
                mismatches.push(Mismatch {
                    row,
                    principal,
                    expected,
                    status,
                    body,
                });
            }
        }
    }
    if !mismatches.is_empty() {
        let report = render(&mismatches);
        eprintln!("{report}");
        panic!(
            "{} of the table's statuses differ:\n{report}",
            mismatches.len()
        );
    }
    Ok(())
}

/// One status that differs from the table.
struct Mismatch<'a> {
    row: &'a Row,
    principal: Principal,
    expected: u16,
    status: u16,
    body: String,
}

fn render(mismatches: &[Mismatch<'_>]) -> String {
    let mut table = format!(
        "{:<7} {:<48} {:<10} {:>8} {:>6}  response\n",
        "method", "path", "principal", "expected", "actual"
    );
    for m in mismatches {
        let body: String = m.body.chars().take(120).collect();
        // Writing to a String cannot fail.
        let _ = writeln!(
            table,
            "{:<7} {:<48} {:<10} {:>8} {:>6}  {body}",
            m.row.method,
            m.row.path,
            format!("{:?}", m.principal),
            m.expected,
            m.status,
        );
    }
    table
}

/// The accounts a row is called with.
struct Cast {
    stranger: TestUser,
    viewer: TestUser,
    editor: TestUser,
    owner: TestUser,
    /// A participant (a viewer) whom rows promote, remove, hand the room to, or log in as.
    target: TestUser,
    /// The owner's access token from a second session, logged out.
    revoked_token: String,
    /// The owner's access token, expired.
    expired_token: String,
}

impl Cast {
    async fn register(server: &TandemServer) -> Result<Self> {
        let (stranger, viewer, editor, owner, target) = tokio::try_join!(
            server.register("stranger"),
            server.register("viewer"),
            server.register("editor"),
            server.register("owner"),
            server.register("target"),
        )?;
        let revoked = server.login(&owner).await?;
        let logout = reqwest::Client::new()
            .post(server.http("/api/auth/logout"))
            .bearer_auth(&revoked.token)
            .send()
            .await?;
        ensure!(
            logout.status().as_u16() == 204,
            "logout: {}",
            logout.status()
        );
        let expired_token = expired_access_token(&owner.token)?;
        // The expired column means something only if expiry is what refuses the token.
        let me: Value = reqwest::Client::new()
            .get(server.http("/api/me"))
            .bearer_auth(&expired_token)
            .send()
            .await?
            .json()
            .await?;
        ensure!(
            me["error"]["code"] == "token_expired",
            "the minted token is refused for another reason: {me}"
        );
        Ok(Self {
            expired_token,
            revoked_token: revoked.token,
            stranger,
            viewer,
            editor,
            owner,
            target,
        })
    }
}

/// A fresh room for one row, with everything its placeholders name.
struct RowFixture<'a> {
    server: &'a TandemServer,
    http: &'a reqwest::Client,
    cast: &'a Cast,
    room: String,
    /// An unlimited viewer invite (the viewer and the target joined through it).
    invite_id: String,
    invite_token: String,
    /// The share link whose token the share-link principal holds.
    link_id: String,
    share_token: String,
    /// An API key of the owner.
    key_id: String,
    /// A version of the room.
    version: i64,
    /// The owner's comment thread on the room's text `notes`, its first comment, and the
    /// owner's notification of being mentioned by the editor (rows that name them only).
    thread: String,
    comment: String,
    notification: String,
    /// A webhook of the owner's (rows that name it only).
    webhook: String,
}

impl<'a> RowFixture<'a> {
    async fn build(
        server: &'a TandemServer,
        http: &'a reqwest::Client,
        cast: &'a Cast,
        index: usize,
    ) -> Result<Self> {
        let room = format!("authz-{index}");
        let as_owner = |method: reqwest::Method, path: String, body: Value| {
            let request = http
                .request(method, server.http(&path))
                .bearer_auth(&cast.owner.token)
                .json(&body);
            async move {
                let response = request.send().await?;
                let status = response.status();
                let text = response.text().await?;
                ensure!(status.is_success(), "{path}: {status} {text}");
                Ok::<Value, anyhow::Error>(serde_json::from_str(&text).unwrap_or(Value::Null))
            }
        };
        let post = reqwest::Method::POST;
        as_owner(
            post.clone(),
            "/api/rooms".into(),
            json!({"id": room, "name": room}),
        )
        .await?;
        let invites = format!("/api/rooms/{room}/invites");
        let viewer_invite =
            as_owner(post.clone(), invites.clone(), json!({"role": "viewer"})).await?;
        let editor_invite = as_owner(post.clone(), invites, json!({"role": "editor"})).await?;
        let invite_token = text_field(&viewer_invite, "token")?;
        let accept = |user: &TestUser, token: &str| {
            http.post(server.http(&format!("/api/invites/{token}/accept")))
                .bearer_auth(&user.token)
                .send()
        };
        for (user, invite) in [
            (&cast.viewer, &viewer_invite),
            (&cast.target, &viewer_invite),
            (&cast.editor, &editor_invite),
        ] {
            accept(user, &text_field(invite, "token")?)
                .await?
                .error_for_status()?;
        }
        let link = as_owner(
            post.clone(),
            format!("/api/rooms/{room}/share-links"),
            json!({}),
        )
        .await?;
        let key = as_owner(
            post.clone(),
            "/api/api-keys".into(),
            json!({"name": "fixture", "role": "viewer", "rooms": [room]}),
        )
        .await?;
        let version = as_owner(
            post.clone(),
            format!("/api/rooms/{room}/versions"),
            json!({"label": "fixture"}),
        )
        .await?;
        let (mut thread, mut comment, mut notification) = Default::default();
        let row = &TABLE[index];
        if ["{thread}", "{comment}", "{notification}", "/comments"]
            .iter()
            .any(|p| row.path.contains(p))
        {
            server
                .write_text(&room, &cast.owner.token, "notes", "hello world")
                .await?;
            let opened = as_owner(
                post,
                format!("/api/rooms/{room}/comments"),
                json!({"file": "notes", "start": 0, "end": 5, "body": "fixture"}),
            )
            .await?;
            thread = text_field(&opened, "id")?;
            comment = text_field(&opened["comments"][0], "id")?;
            let mention = http
                .post(server.http(&format!("/api/rooms/{room}/comments")))
                .bearer_auth(&cast.editor.token)
                .json(&json!({"file": "notes", "start": 6, "end": 11, "body": "see", "mentions": [cast.owner.id]}))
                .send()
                .await?
                .error_for_status()?;
            drop(mention);
            let notes: Value = http
                .get(server.http("/api/notifications"))
                .bearer_auth(&cast.owner.token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            notification = notes["notifications"][0]["id"]
                .as_i64()
                .context("the owner's notification")?
                .to_string();
        }
        let mut webhook = String::new();
        if row.path.contains("{webhook}") {
            let created = as_owner(
                reqwest::Method::POST,
                format!("/api/rooms/{room}/webhooks"),
                json!({"url": "https://hooks.example.test/fixture"}),
            )
            .await?;
            webhook = text_field(&created, "id")?;
        }
        if row.path.contains("{file}") {
            for principal in PRINCIPALS {
                as_owner(
                    reqwest::Method::POST,
                    format!("/api/rooms/{room}/files"),
                    json!({"path": file_of(principal), "content": "fixture"}),
                )
                .await?;
            }
        }
        Ok(Self {
            webhook,
            server,
            http,
            cast,
            invite_id: text_field(&viewer_invite, "id")?,
            invite_token,
            link_id: text_field(&link, "id")?,
            share_token: text_field(&link, "token")?,
            key_id: text_field(&key, "id")?,
            version: version["id"].as_i64().context("version id")?,
            thread,
            comment,
            notification,
            room,
        })
    }

    /// The bearer token `principal` calls with.
    fn token(&self, principal: Principal) -> Option<&str> {
        let cast = self.cast;
        match principal {
            Principal::Anonymous => None,
            Principal::Revoked => Some(&cast.revoked_token),
            Principal::Expired => Some(&cast.expired_token),
            Principal::ShareLink => Some(&self.share_token),
            Principal::Stranger => Some(&cast.stranger.token),
            Principal::Viewer => Some(&cast.viewer.token),
            Principal::Editor => Some(&cast.editor.token),
            Principal::Owner => Some(&cast.owner.token),
        }
    }

    /// Replaces the placeholders of `template` for a call by `principal`:
    ///
    /// - `{room}`: the row's room; `{user_id}`: the target's account id;
    /// - `{invite_id}`, `{token}`: an unlimited viewer invite of the room and its token;
    /// - `{link_id}`: the share link of the share-link principal; `{key_id}`: an API key of
    ///   the owner; `{version}`: a version of the room;
    /// - `{thread}`, `{comment}`: the owner's comment thread and its comment;
    ///   `{notification}`: the owner's notification; `{stranger_email}`: the stranger's email;
    /// - `{webhook}`: a webhook of the owner's; `{file}`: a file made for the calling
    ///   principal;
    /// - `{unique}`: a fresh random number;
    /// - `{target_email}`, `{target_password}`: the target's credentials; `{refresh_token}`:
    ///   an unused refresh token of a new session of the target;
    /// - `{caller_password}`: the calling user's password (the owner's for principals
    ///   without an account of their own).
    async fn fill(&self, template: &str, principal: Principal) -> Result<String> {
        let cast = self.cast;
        let caller = match principal {
            Principal::Stranger => &cast.stranger,
            Principal::Viewer => &cast.viewer,
            Principal::Editor => &cast.editor,
            _ => &cast.owner,
        };
        let mut text = template
            .replace("{room}", &self.room)
            .replace("{user_id}", &cast.target.id)
            .replace("{invite_id}", &self.invite_id)
            .replace("{token}", &self.invite_token)
            .replace("{link_id}", &self.link_id)
            .replace("{key_id}", &self.key_id)
            .replace("{version}", &self.version.to_string())
            .replace("{thread}", &self.thread)
            .replace("{comment}", &self.comment)
            .replace("{notification}", &self.notification)
            .replace("{webhook}", &self.webhook)
            .replace("{file}", &file_of(principal))
            .replace("{stranger_email}", &cast.stranger.email)
            .replace("{missing}", "no-such-id")
            .replace("{unique}", &rand::random::<u64>().to_string())
            .replace("{target_email}", &cast.target.email)
            .replace("{target_password}", &cast.target.password)
            .replace("{caller_password}", &caller.password);
        if text.contains("{refresh_token}") {
            // A refresh token works once: each call needs a session of its own.
            let session = self.server.login(&cast.target).await?;
            text = text.replace("{refresh_token}", &session.refresh_token);
        }
        // JSON objects open with `{"`; a brace before a letter is a placeholder left over.
        if let Some((at, _)) = text
            .match_indices('{')
            .find(|(at, _)| text[at + 1..].starts_with(|c: char| c.is_ascii_lowercase()))
        {
            bail!("unknown placeholder in {template:?} at {}", &text[at..]);
        }
        Ok(text)
    }

    /// Calls `row` as `principal`; returns the status and the response body.
    async fn call(&self, row: &Row, principal: Principal) -> Result<(u16, String)> {
        let path = self.fill(row.path, principal).await?;
        let token = self.token(principal);
        if let Some(room) = path.strip_prefix("/ws/") {
            ensure!(row.method == "GET", "a WebSocket upgrade is a GET");
            return Ok((
                self.server.upgrade_status(room, token).await?,
                String::new(),
            ));
        }
        let method = reqwest::Method::from_bytes(row.method.as_bytes())?;
        let mut request = self.http.request(method, self.server.http(&path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = row.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(self.fill(body, principal).await?);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }
}

/// The file of a row's room that `principal`'s calls touch.
fn file_of(principal: Principal) -> String {
    format!("dir/{principal:?}.txt").to_lowercase()
}

fn text_field(value: &Value, field: &str) -> Result<String> {
    Ok(value[field]
        .as_str()
        .with_context(|| format!("no {field} in {value}"))?
        .to_owned())
}
