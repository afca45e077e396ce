//! Accounts, roles and access, observed through real `yjs` + `y-websocket` clients and HTTP.

use anyhow::Context;
use e2e::{TandemServer, YjsDriver, expired_access_token};
use serde_json::{Value, json};

type Result = anyhow::Result<()>;

/// Sends `request`; returns the status and the JSON body (`Null` when there is none).
async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Sends `request`; returns the status and the body as text, for searching it.
async fn send_text(request: reqwest::RequestBuilder) -> anyhow::Result<(u16, String)> {
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.text().await?))
}

/// The server's current content of `room`, read with `token`.
async fn document(server: &TandemServer, room: &str, token: &str) -> anyhow::Result<Value> {
    let (status, body) = send(
        reqwest::Client::new()
            .get(server.http(&format!("/api/rooms/{room}/document")))
            .bearer_auth(token),
    )
    .await?;
    anyhow::ensure!(status == 200, "document of {room}: {status} {body}");
    Ok(body)
}

/// The code of the first close the server sent `client` since it connected (whether or not
/// it has happened yet).
async fn first_close(driver: &YjsDriver, client: &str) -> anyhow::Result<u64> {
    let close = driver
        .call("waitClose", json!({"client": client, "index": 0}))
        .await?;
    close["code"]
        .as_u64()
        .with_context(|| format!("{client} closed without a code: {close}"))
}

/// Waits until `client` is told its update was refused; returns the reason.
async fn permission_denied(driver: &YjsDriver, client: &str) -> anyhow::Result<String> {
    let reason = driver
        .call("waitPermissionDenied", json!({"client": client}))
        .await?;
    Ok(reason.as_str().context("no reason")?.to_owned())
}

/// `POST /api/auth/refresh` with `refresh_token`.
async fn refresh(server: &TandemServer, refresh_token: &str) -> anyhow::Result<(u16, Value)> {
    send(
        reqwest::Client::new()
            .post(server.http("/api/auth/refresh"))
            .json(&json!({"refresh_token": refresh_token})),
    )
    .await
}

/// The status of `GET /api/me` with `token`.
async fn me_status(server: &TandemServer, token: &str) -> anyhow::Result<u16> {
    Ok(send(
        reqwest::Client::new()
            .get(server.http("/api/me"))
            .bearer_auth(token),
    )
    .await?
    .0)
}

/// The string field `name` of a JSON object.
fn field<'a>(value: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    value[name]
        .as_str()
        .with_context(|| format!("no {name} in {value}"))
}

#[tokio::test]
async fn a_viewer_is_refused_and_their_edit_reaches_neither_the_server_nor_others() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = server.ensure_room("read-only").await?;
    let viewer = server.register("viewer").await?;
    server.add_member("read-only", &viewer, "viewer").await?;
    driver.connect("owner", &server, "read-only").await?;
    driver.connect("witness", &server, "read-only").await?;
    driver
        .connect_with_token("viewer", &server, "read-only", &viewer.token)
        .await?;
    driver.insert("owner", "text", 0, "shared").await?;
    driver.wait_text("viewer", "text", "shared").await?;

    driver.insert("viewer", "text", 0, "vandalism ").await?;
    let reason = permission_denied(&driver, "viewer").await?;
    assert!(reason.starts_with("read-only"), "{reason:?}");
    // The refusal answers the viewer's update, so the server has handled it; an edit made
    // after the refusal reaches the others after anything that update could have caused.
    driver.insert("owner", "text", 6, "!").await?;
    driver.wait_text("witness", "text", "shared!").await?;
    assert_eq!(
        document(&server, "read-only", &owner).await?["text"],
        "shared!"
    );
    driver.shutdown().await
}

#[tokio::test]
async fn a_demoted_editor_s_next_edit_is_refused() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let http = reqwest::Client::new();
    let owner = server.ensure_room("demotion").await?;
    let writer = server.register("writer").await?;
    server.add_member("demotion", &writer, "editor").await?;
    driver.connect("owner", &server, "demotion").await?;
    driver
        .connect_with_token("writer", &server, "demotion", &writer.token)
        .await?;
    driver.insert("writer", "text", 0, "draft").await?;
    driver.wait_text("owner", "text", "draft").await?;

    let (status, member) = send(
        http.put(server.http(&format!("/api/rooms/demotion/members/{}", writer.id)))
            .bearer_auth(&owner)
            .json(&json!({"role": "viewer"})),
    )
    .await?;
    assert_eq!(
        (status, &member["role"]),
        (200, &json!("viewer")),
        "{member}"
    );

    driver.insert("writer", "text", 5, " and more").await?;
    let reason = permission_denied(&driver, "writer").await?;
    assert!(reason.starts_with("read-only"), "{reason:?}");
    assert_eq!(
        document(&server, "demotion", &owner).await?["text"],
        "draft"
    );
    driver.shutdown().await
}

#[tokio::test]
async fn a_viewer_made_an_editor_is_reconnected_and_can_write() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = server.ensure_room("promotion").await?;
    let reader = server.register("reader").await?;
    server.add_member("promotion", &reader, "viewer").await?;
    driver.connect("owner", &server, "promotion").await?;
    driver
        .connect_with_token("reader", &server, "promotion", &reader.token)
        .await?;
    driver.insert("owner", "text", 0, "draft").await?;
    driver.wait_text("reader", "text", "draft").await?;

    let (status, member) = send(
        reqwest::Client::new()
            .put(server.http(&format!("/api/rooms/promotion/members/{}", reader.id)))
            .bearer_auth(&owner)
            .json(&json!({"role": "editor"})),
    )
    .await?;
    assert_eq!(
        (status, &member["role"]),
        (200, &json!("editor")),
        "{member}"
    );
    // Not a 44xx code: y-websocket reconnects by itself, and the new socket may write.
    assert_eq!(first_close(&driver, "reader").await?, 4205);
    driver.insert("reader", "text", 5, ", edited").await?;
    driver.wait_text("owner", "text", "draft, edited").await?;
    assert_eq!(
        document(&server, "promotion", &owner).await?["text"],
        "draft, edited"
    );
    driver.shutdown().await
}

#[tokio::test]
async fn removing_a_participant_closes_their_socket_with_4403() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = server.ensure_room("removal").await?;
    let member = server.register("member").await?;
    server.add_member("removal", &member, "editor").await?;
    driver
        .connect_with_token("member", &server, "removal", &member.token)
        .await?;

    let (status, body) = send(
        reqwest::Client::new()
            .delete(server.http(&format!("/api/rooms/removal/members/{}", member.id)))
            .bearer_auth(&owner),
    )
    .await?;
    assert_eq!(status, 204, "{body}");
    assert_eq!(first_close(&driver, "member").await?, 4403);
    assert_eq!(
        server
            .upgrade_status("removal", Some(&member.token))
            .await?,
        403
    );
    driver.shutdown().await
}

#[tokio::test]
async fn logout_closes_that_session_s_sockets_with_4401_and_no_others() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    server.ensure_room("logout").await?;
    let writer = server.register("writer").await?;
    server.add_member("logout", &writer, "editor").await?;
    let other_session = server.login(&writer).await?;
    driver.connect("owner", &server, "logout").await?;
    driver
        .connect_with_token("ending", &server, "logout", &writer.token)
        .await?;
    driver
        .connect_with_token("staying", &server, "logout", &other_session.token)
        .await?;

    let (status, body) = send(
        reqwest::Client::new()
            .post(server.http("/api/auth/logout"))
            .bearer_auth(&writer.token),
    )
    .await?;
    assert_eq!(status, 204, "{body}");
    assert_eq!(first_close(&driver, "ending").await?, 4401);
    assert_eq!(
        server.upgrade_status("logout", Some(&writer.token)).await?,
        401
    );

    // The account's other session is untouched: its edits still reach the room.
    driver.insert("staying", "text", 0, "still here").await?;
    driver.wait_text("owner", "text", "still here").await?;
    let status = driver.call("status", json!({"client": "staying"})).await?;
    assert_eq!(status["closeCount"], 0, "{status}");
    driver.shutdown().await
}

#[tokio::test]
async fn an_expired_token_cannot_connect_and_receives_nothing() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let owner = server.ensure_room("sealed").await?;
    driver.connect("owner", &server, "sealed").await?;
    driver.insert("owner", "text", 0, "classified").await?;
    driver.connect("reader", &server, "sealed").await?;
    driver.wait_text("reader", "text", "classified").await?;

    // The same live session as the owner's token: only the expiry differs.
    let expired = expired_access_token(&owner)?;
    let (status, body) = send(
        reqwest::Client::new()
            .get(server.http("/api/rooms/sealed/document"))
            .bearer_auth(&expired),
    )
    .await?;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("token_expired")),
        "{body}"
    );
    assert_eq!(server.upgrade_status("sealed", Some(&expired)).await?, 401);

    // y-websocket retries a refused upgrade, so the failure shows as a connect that never
    // syncs; the driver's error names the status of the last refusal.
    let refused = driver
        .call(
            "connect",
            json!({"client": "late", "url": server.ws_url(), "room": "sealed",
                   "params": {"token": expired}, "timeoutMs": 2000}),
        )
        .await;
    let error = refused
        .err()
        .context("an expired token connected")?
        .to_string();
    assert!(error.contains("401"), "{error}");
    assert_eq!(driver.text("late", "text").await?, "");
    let status = driver.call("status", json!({"client": "late"})).await?;
    assert_eq!(status["synced"], false, "{status}");
    driver.call("destroy", json!({"client": "late"})).await?;
    driver.shutdown().await
}

#[tokio::test]
async fn a_share_link_reads_one_room_never_writes_and_revoking_it_closes_the_socket() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let http = reqwest::Client::new();
    let owner = server.ensure_room("published").await?;
    server.ensure_room("unpublished").await?;
    driver.connect("owner", &server, "published").await?;
    driver.insert("owner", "text", 0, "public notes").await?;

    let (status, link) = send(
        http.post(server.http("/api/rooms/published/share-links"))
            .bearer_auth(&owner)
            .json(&json!({})),
    )
    .await?;
    assert_eq!(status, 201, "{link}");
    let share = link["token"].as_str().context("share token")?.to_owned();
    assert!(share.starts_with("shr_"), "{share}");
    driver
        .connect_with_token("guest", &server, "published", &share)
        .await?;
    driver.wait_text("guest", "text", "public notes").await?;

    driver.insert("guest", "text", 0, "graffiti ").await?;
    let reason = permission_denied(&driver, "guest").await?;
    assert!(reason.starts_with("read-only"), "{reason:?}");
    assert_eq!(
        document(&server, "published", &share).await?["text"],
        "public notes"
    );
    for (request, what) in [
        (
            http.post(server.http("/api/rooms/published/versions"))
                .json(&json!({"label": "by a guest"})),
            "checkpoint",
        ),
        (
            http.get(server.http("/api/rooms/unpublished/document")),
            "another room",
        ),
        (http.get(server.http("/api/me")), "an account"),
    ] {
        let (status, body) = send(request.bearer_auth(&share)).await?;
        assert_eq!(status, 403, "{what}: {body}");
    }

    let link_id = link["id"].as_str().context("link id")?;
    let (status, body) = send(
        http.delete(server.http(&format!("/api/rooms/published/share-links/{link_id}")))
            .bearer_auth(&owner),
    )
    .await?;
    assert_eq!(status, 204, "{body}");
    assert_eq!(first_close(&driver, "guest").await?, 4401);
    let (status, body) = send(
        http.get(server.http("/api/rooms/published/document"))
            .bearer_auth(&share),
    )
    .await?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(server.upgrade_status("published", Some(&share)).await?, 401);
    driver.shutdown().await
}

#[tokio::test]
async fn failed_logins_lock_the_email_even_for_the_right_password() -> Result {
    let server = TandemServer::start(&["--login-max-failures", "3"]).await?;
    let http = reqwest::Client::new();
    let user = server.register("forgetful").await?;
    let login = |password: &str| {
        http.post(server.http("/api/auth/login"))
            .json(&json!({"email": user.email, "password": password}))
    };
    for attempt in 1..=2 {
        let (status, body) = send(login("not-the-password")).await?;
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &json!("invalid_credentials")),
            "attempt {attempt}: {body}"
        );
    }
    // The failure that reaches the limit may already answer that the email is locked.
    let (status, body) = send(login("not-the-password")).await?;
    assert!(status == 401 || status == 429, "attempt 3: {status} {body}");

    let response = login(&user.password).send().await?;
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .context("no Retry-After")?
        .to_str()?
        .parse()?;
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["code"], "login_locked", "{body}");
    assert_eq!(body["error"]["retry_after_seconds"], retry_after, "{body}");
    // The default lockout is 15 minutes.
    assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");

    // The lock belongs to the email, not to the server.
    let bystander = server.register("bystander").await?;
    server.login(&bystander).await?;
    Ok(())
}

#[tokio::test]
async fn refresh_rotates_and_reusing_the_old_token_revokes_the_session() -> Result {
    let server = TandemServer::start(&[]).await?;
    let user = server.register("rotating").await?;

    let (status, rotated) = refresh(&server, &user.refresh_token).await?;
    assert_eq!(status, 200, "{rotated}");
    let (access, next_refresh) = (
        field(&rotated, "access_token")?,
        field(&rotated, "refresh_token")?,
    );
    assert_ne!(next_refresh, user.refresh_token);
    assert_eq!(me_status(&server, access).await?, 200);

    // Someone presents the rotated token: the session is presumed stolen and ends.
    let (status, body) = refresh(&server, &user.refresh_token).await?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(me_status(&server, access).await?, 401);
    let (status, body) = refresh(&server, next_refresh).await?;
    assert_eq!(status, 401, "{body}");
    Ok(())
}

#[tokio::test]
async fn reusing_a_refresh_token_rotated_twice_also_revokes_the_session() -> Result {
    let server = TandemServer::start(&[]).await?;
    let user = server.register("rotating").await?;
    let (status, first) = refresh(&server, &user.refresh_token).await?;
    assert_eq!(status, 200, "{first}");
    let (status, second) = refresh(&server, field(&first, "refresh_token")?).await?;
    assert_eq!(status, 200, "{second}");
    let access = field(&second, "access_token")?;
    assert_eq!(me_status(&server, access).await?, 200);

    // The oldest token was rotated too: presenting it is as suspicious as the last one.
    let (status, body) = refresh(&server, &user.refresh_token).await?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        me_status(&server, access).await?,
        401,
        "a refresh token rotated twice was presented again, yet the session lives on"
    );
    let (status, body) = refresh(&server, field(&second, "refresh_token")?).await?;
    assert_eq!(status, 401, "the newest refresh token still works: {body}");
    Ok(())
}

#[tokio::test]
async fn changing_the_password_revokes_every_other_session() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let http = reqwest::Client::new();
    server.ensure_room("password").await?;
    let user = server.register("careful").await?;
    server.add_member("password", &user, "editor").await?;
    let other = server.login(&user).await?;
    driver
        .connect_with_token("other", &server, "password", &other.token)
        .await?;
    let change = |current: &str| {
        http.post(server.http("/api/auth/password"))
            .bearer_auth(&user.token)
            .json(&json!({"current_password": current, "new_password": "a-brand-new-password"}))
    };

    let (status, body) = send(change("not-the-password")).await?;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_credentials")),
        "{body}"
    );
    assert_eq!(me_status(&server, &other.token).await?, 200);

    let (status, body) = send(change(&user.password)).await?;
    assert_eq!(status, 204, "{body}");
    assert_eq!(first_close(&driver, "other").await?, 4401);
    assert_eq!(me_status(&server, &other.token).await?, 401);
    assert_eq!(refresh(&server, &other.refresh_token).await?.0, 401);
    assert_eq!(me_status(&server, &user.token).await?, 200);

    let login = |password: &str| {
        http.post(server.http("/api/auth/login"))
            .json(&json!({"email": user.email, "password": password}))
    };
    assert_eq!(send(login(&user.password)).await?.0, 401);
    assert_eq!(send(login("a-brand-new-password")).await?.0, 200);
    driver.shutdown().await
}

#[tokio::test]
async fn invites_grant_their_role_and_stop_when_used_up_or_revoked() -> Result {
    let server = TandemServer::start(&[]).await?;
    let http = reqwest::Client::new();
    let owner = server.ensure_room("team").await?;
    let (alice, bob) = tokio::try_join!(server.register("alice"), server.register("bob"))?;
    let invite = |body: Value| {
        http.post(server.http("/api/rooms/team/invites"))
            .bearer_auth(&owner)
            .json(&body)
    };
    let accept = |token: &str, user: &e2e::TestUser| {
        http.post(server.http(&format!("/api/invites/{token}/accept")))
            .bearer_auth(&user.token)
    };

    let (status, single_use) = send(invite(json!({"role": "editor", "max_uses": 1}))).await?;
    assert_eq!(status, 201, "{single_use}");
    assert_eq!(
        (
            &single_use["role"],
            &single_use["max_uses"],
            &single_use["uses"]
        ),
        (&json!("editor"), &json!(1), &json!(0)),
        "{single_use}"
    );
    let token = field(&single_use, "token")?;
    let (status, joined) = send(accept(token, &alice)).await?;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(
        (&joined["id"], &joined["role"]),
        (&json!("team"), &json!("editor"))
    );
    let (status, body) = send(accept(token, &bob)).await?;
    assert_eq!(
        (status, &body["error"]["code"]),
        (410, &json!("invite_unusable")),
        "{body}"
    );

    let (_, revoked) = send(invite(json!({"role": "editor"}))).await?;
    let revoked_id = field(&revoked, "id")?;
    let (status, body) = send(
        http.delete(server.http(&format!("/api/rooms/team/invites/{revoked_id}")))
            .bearer_auth(&owner),
    )
    .await?;
    assert_eq!(status, 204, "{body}");
    let (status, body) = send(accept(field(&revoked, "token")?, &bob)).await?;
    assert_eq!(status, 410, "{body}");

    let (_, viewer_invite) = send(invite(json!({"role": "viewer"}))).await?;
    let (status, joined) = send(accept(field(&viewer_invite, "token")?, &bob)).await?;
    assert_eq!(
        (status, &joined["role"]),
        (200, &json!("viewer")),
        "{joined}"
    );

    // The roles granted are the roles enforced.
    let (_, members) = send(
        http.get(server.http("/api/rooms/team/members"))
            .bearer_auth(&owner),
    )
    .await?;
    let role_of = |id: &str| {
        members["members"]
            .as_array()
            .and_then(|all| all.iter().find(|m| m["user_id"] == id))
            .map(|m| m["role"].clone())
    };
    assert_eq!(role_of(&alice.id), Some(json!("editor")), "{members}");
    assert_eq!(role_of(&bob.id), Some(json!("viewer")), "{members}");
    let checkpoint = |user: &e2e::TestUser| {
        http.post(server.http("/api/rooms/team/versions"))
            .bearer_auth(&user.token)
            .json(&json!({"label": "mine"}))
    };
    assert_eq!(send(checkpoint(&alice)).await?.0, 201);
    assert_eq!(send(checkpoint(&bob)).await?.0, 403);

    let (_, listed) = send(
        http.get(server.http("/api/rooms/team/invites"))
            .bearer_auth(&owner),
    )
    .await?;
    let listed_invite = |id: &str| {
        listed["invites"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["id"] == id))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        listed_invite(field(&single_use, "id")?)["uses"],
        1,
        "{listed}"
    );
    assert!(
        listed_invite(revoked_id)["revoked_at_ms"].is_i64(),
        "{listed}"
    );
    Ok(())
}

#[tokio::test]
async fn secrets_appear_in_no_response_and_not_in_the_log() -> Result {
    let server = TandemServer::start(&[]).await?;
    let http = reqwest::Client::new();
    let email = format!("keeper-{}@example.test", rand::random::<u32>());
    let password = "correct-horse-battery-staple";
    let wrong_password = "incorrect-horse-battery-staple";
    let new_password = "another-horse-battery-staple";
    // Everything a response must never show; extended as the test learns more secrets.
    let mut secrets: Vec<String> = vec![
        "$argon2".into(),
        password.into(),
        wrong_password.into(),
        new_password.into(),
    ];
    let check = |what: &str, text: &str, secrets: &[String]| {
        for secret in secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows {secret:?}: {text}"
            );
        }
    };

    let (status, text) = send_text(
        http.post(server.http("/api/auth/register"))
            .json(&json!({"email": email, "password": password, "display_name": "Keeper"})),
    )
    .await?;
    assert_eq!(status, 201, "{text}");
    check("register", &text, &secrets);
    let (status, text) = send_text(
        http.post(server.http("/api/auth/login"))
            .json(&json!({"email": email, "password": wrong_password})),
    )
    .await?;
    assert_eq!(status, 401, "{text}");
    check("failed login", &text, &secrets);
    let (status, text) = send_text(
        http.post(server.http("/api/auth/login"))
            .json(&json!({"email": email, "password": password})),
    )
    .await?;
    assert_eq!(status, 200, "{text}");
    check("login", &text, &secrets);
    let session: Value = serde_json::from_str(&text)?;
    let token = field(&session, "access_token")?.to_owned();
    secrets.push(token.clone());
    secrets.push(field(&session, "refresh_token")?.to_owned());
    let (status, rotated) = refresh(&server, field(&session, "refresh_token")?).await?;
    assert_eq!(status, 200, "{rotated}");
    let token_after_refresh = field(&rotated, "access_token")?.to_owned();
    secrets.push(field(&rotated, "refresh_token")?.to_owned());

    let (status, text) = send_text(http.get(server.http("/api/me")).bearer_auth(&token)).await?;
    assert_eq!(status, 200, "{text}");
    check("me", &text, &secrets);

    let (status, body) = send(
        http.post(server.http("/api/rooms"))
            .bearer_auth(&token)
            .json(&json!({"id": "vault", "name": "Vault"})),
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    let (status, created) = send(
        http.post(server.http("/api/api-keys"))
            .bearer_auth(&token)
            .json(&json!({"name": "deploy bot", "role": "editor", "rooms": ["vault"]})),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    let key = field(&created, "key")?.to_owned();
    assert!(key.starts_with("tdm_"), "{key}");
    secrets.push(key.clone());
    let (status, text) =
        send_text(http.get(server.http("/api/api-keys")).bearer_auth(&token)).await?;
    assert_eq!(status, 200, "{text}");
    check("the list of API keys", &text, &secrets);
    // Use the key, over HTTP and as `?token=`, so a logged URL would show it.
    document(&server, "vault", &key).await?;
    assert_eq!(server.upgrade_status("vault", Some(&key)).await?, 101);
    assert_eq!(server.upgrade_status("vault", Some(&token)).await?, 101);

    let member = server.register("member").await?;
    secrets.push(member.password.clone());
    let (status, invite) = send(
        http.post(server.http("/api/rooms/vault/invites"))
            .bearer_auth(&token)
            .json(&json!({"role": "viewer"})),
    )
    .await?;
    assert_eq!(status, 201, "{invite}");
    let invite_token = field(&invite, "token")?.to_owned();
    let (status, body) = send(
        http.post(server.http(&format!("/api/invites/{invite_token}/accept")))
            .bearer_auth(&member.token),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    secrets.push(invite_token);
    let (status, link) = send(
        http.post(server.http("/api/rooms/vault/share-links"))
            .bearer_auth(&token)
            .json(&json!({})),
    )
    .await?;
    assert_eq!(status, 201, "{link}");
    let share = field(&link, "token")?.to_owned();
    assert_eq!(server.upgrade_status("vault", Some(&share)).await?, 101);
    secrets.push(share);
    for path in [
        "/api/rooms/vault/members",
        "/api/rooms/vault",
        "/api/rooms/vault/invites",
        "/api/rooms/vault/share-links",
    ] {
        let (status, text) = send_text(http.get(server.http(path)).bearer_auth(&token)).await?;
        assert_eq!(status, 200, "{path}: {text}");
        check(path, &text, &secrets);
    }

    let (status, body) = send(
        http.post(server.http("/api/auth/password"))
            .bearer_auth(&token_after_refresh)
            .json(&json!({"current_password": password, "new_password": new_password})),
    )
    .await?;
    assert_eq!(status, 204, "{body}");

    let logs = server.logs();
    assert!(!logs.is_empty(), "the server logged nothing");
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "the server log shows {secret:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_fork_has_the_source_content_and_belongs_to_the_forker() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let http = reqwest::Client::new();
    let owner = server.ensure_room("original").await?;
    let forker = server.register("forker").await?;
    server.add_member("original", &forker, "viewer").await?;
    driver.connect("author", &server, "original").await?;
    driver.insert("author", "text", 0, "to be copied").await?;
    driver
        .connect_with_token("reader", &server, "original", &forker.token)
        .await?;
    driver.wait_text("reader", "text", "to be copied").await?;

    let (status, fork) = send(
        http.post(server.http("/api/rooms/original/fork"))
            .bearer_auth(&forker.token)
            .json(&json!({"id": "copy", "name": "Copy"})),
    )
    .await?;
    assert_eq!(status, 201, "{fork}");
    assert_eq!(
        (&fork["id"], &fork["role"]),
        (&json!("copy"), &json!("owner"))
    );
    assert_eq!(
        document(&server, "copy", &forker.token).await?["text"],
        "to be copied"
    );
    let (status, detail) = send(
        http.get(server.http("/api/rooms/copy"))
            .bearer_auth(&forker.token),
    )
    .await?;
    assert_eq!(status, 200, "{detail}");
    let participants: Vec<(&Value, &Value)> = detail["participants"]
        .as_array()
        .context("participants")?
        .iter()
        .map(|p| (&p["user_id"], &p["role"]))
        .collect();
    assert_eq!(participants, [(&json!(forker.id), &json!("owner"))]);
    // The source's owner has no part in the copy.
    let (status, body) = send(http.get(server.http("/api/rooms/copy")).bearer_auth(&owner)).await?;
    assert_eq!(status, 403, "{body}");

    // The copy lives on its own: editing it leaves the source alone.
    driver
        .connect_with_token("copy-editor", &server, "copy", &forker.token)
        .await?;
    driver
        .connect_with_token("copy-reader", &server, "copy", &forker.token)
        .await?;
    driver.insert("copy-editor", "text", 0, "changed, ").await?;
    driver
        .wait_text("copy-reader", "text", "changed, to be copied")
        .await?;
    assert_eq!(
        document(&server, "original", &owner).await?["text"],
        "to be copied"
    );
    driver.shutdown().await
}

#[tokio::test]
async fn deleting_a_room_removes_its_document_and_closes_sockets_with_4404() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let http = reqwest::Client::new();
    let owner = server.ensure_room("doomed").await?;
    let editor = server.register("editor").await?;
    server.add_member("doomed", &editor, "editor").await?;
    driver.connect("owner", &server, "doomed").await?;
    driver
        .connect_with_token("editor", &server, "doomed", &editor.token)
        .await?;
    driver.insert("owner", "text", 0, "soon gone").await?;
    driver.wait_text("editor", "text", "soon gone").await?;
    let (status, version) = send(
        http.post(server.http("/api/rooms/doomed/versions"))
            .bearer_auth(&owner)
            .json(&json!({"label": "last words"})),
    )
    .await?;
    assert_eq!(status, 201, "{version}");

    let (status, body) = send(
        http.delete(server.http("/api/rooms/doomed"))
            .bearer_auth(&owner),
    )
    .await?;
    assert_eq!(status, 204, "{body}");
    assert_eq!(first_close(&driver, "owner").await?, 4404);
    assert_eq!(first_close(&driver, "editor").await?, 4404);
    for path in ["/api/rooms/doomed/document", "/api/rooms/doomed"] {
        let (status, body) = send(http.get(server.http(path)).bearer_auth(&owner)).await?;
        assert_eq!(status, 404, "{path}: {body}");
    }
    assert_eq!(server.upgrade_status("doomed", Some(&owner)).await?, 404);

    // A new room with the same id starts from nothing: the old content is gone, not hidden.
    let (status, body) = send(
        http.post(server.http("/api/rooms"))
            .bearer_auth(&owner)
            .json(&json!({"id": "doomed", "name": "Reborn"})),
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    let content = document(&server, "doomed", &owner).await?;
    assert_eq!(content["text"].as_str().unwrap_or(""), "", "{content}");
    let (_, versions) = send(
        http.get(server.http("/api/rooms/doomed/versions"))
            .bearer_auth(&owner),
    )
    .await?;
    assert_eq!(versions["versions"], json!([]), "{versions}");
    let (_, members) = send(
        http.get(server.http("/api/rooms/doomed/members"))
            .bearer_auth(&owner),
    )
    .await?;
    assert_eq!(
        members["members"].as_array().map(Vec::len),
        Some(1),
        "{members}"
    );
    driver.shutdown().await
}
