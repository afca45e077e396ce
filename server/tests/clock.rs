//! Time-dependent behaviour with the clock under the test's control: the application runs
//! in-process with a manual clock, and tests move time forward instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use clap::Parser;
use serde_json::{Value, json};
use server::app::Application;
use server::config::{Cli, Command};
use tokio_util::sync::CancellationToken;

/// A running in-process server and the clock it reads.
struct TestApp {
    base: String,
    now: Arc<AtomicI64>,
    http: reqwest::Client,
    stop: CancellationToken,
    _data: tempfile::TempDir,
}

impl TestApp {
    async fn start(extra: &[&str]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().to_str().unwrap().to_owned();
        let mut args = vec![
            "tandem",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
        ];
        args.extend_from_slice(extra);
        let Command::Serve(serve) = Cli::try_parse_from(args).unwrap().command else {
            unreachable!("parsed a `serve` command line");
        };
        let now = Arc::new(AtomicI64::new(1_800_000_000_000));
        let clock_source = now.clone();
        let app = Application::build_with_clock(
            serve.into_config().unwrap(),
            Arc::new(move || clock_source.load(Ordering::SeqCst)),
        )
        .await
        .unwrap();
        let base = format!("http://{}", app.address());
        let stop = CancellationToken::new();
        actix_web::rt::spawn(app.run_until(stop.clone()));
        Self {
            base,
            now,
            http: reqwest::Client::new(),
            stop,
            _data: data,
        }
    }

    fn advance_secs(&self, secs: i64) {
        self.now.fetch_add(secs * 1000, Ordering::SeqCst);
    }

    /// Now, by the clock the server reads.
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, email: &str) -> String {
        let (status, body) = self
            .post(
                "/api/auth/login",
                None,
                json!({"email": email, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn register(&self, email: &str) -> String {
        let (status, body) = self
            .post(
                "/api/auth/register",
                None,
                json!({"email": email, "password": "correct horse battery", "display_name": "T"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[actix_web::test]
async fn a_locked_email_unlocks_when_the_lockout_has_passed() {
    let app = TestApp::start(&["--login-max-failures", "3", "--login-lockout", "15m"]).await;
    app.register("ada@example.test").await;
    let wrong = json!({"email": "ada@example.test", "password": "not the password"});
    let right = json!({"email": "ada@example.test", "password": "correct horse battery"});
    for _ in 0..2 {
        assert_eq!(
            app.post("/api/auth/login", None, wrong.clone()).await.0,
            401
        );
    }
    let (status, body) = app.post("/api/auth/login", None, wrong.clone()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "login_locked");
    assert_eq!(body["error"]["retry_after_seconds"], 900);

    // Still locked one second before the end, even with the right password.
    app.advance_secs(899);
    let (status, body) = app.post("/api/auth/login", None, right.clone()).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["retry_after_seconds"], 1);

    app.advance_secs(1);
    let (status, body) = app.post("/api/auth/login", None, right).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());
}

#[actix_web::test]
async fn access_tokens_expire_and_refresh_tokens_renew_them() {
    let app = TestApp::start(&["--access-token-ttl", "15m", "--refresh-token-ttl", "1h"]).await;
    let (_, session) = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": "bo@example.test", "password": "correct horse battery", "display_name": "Bo"}),
        )
        .await;
    let token = session["access_token"].as_str().unwrap();
    assert_eq!(app.get("/api/me", token).await.0, 200);

    app.advance_secs(15 * 60);
    let (status, body) = app.get("/api/me", token).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_expired");

    let (status, renewed) = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": session["refresh_token"]}),
        )
        .await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(
        app.get("/api/me", renewed["access_token"].as_str().unwrap())
            .await
            .0,
        200
    );

    // A session unused for longer than the refresh lifetime is over.
    app.advance_secs(3601);
    let (status, body) = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": renewed["refresh_token"]}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_expired");
}

#[actix_web::test]
async fn invites_and_share_links_stop_working_when_they_expire() {
    let app = TestApp::start(&[]).await;
    let owner = app.register("owner@example.test").await;
    app.register("guest@example.test").await;
    let (status, _) = app
        .post("/api/rooms", Some(&owner), json!({"id": "r", "name": "R"}))
        .await;
    assert_eq!(status, 201);
    let (_, invite) = app
        .post(
            "/api/rooms/r/invites",
            Some(&owner),
            json!({"role": "editor", "expires_in": "7d"}),
        )
        .await;
    let (_, share) = app
        .post(
            "/api/rooms/r/share-links",
            Some(&owner),
            json!({"expires_in": "1h"}),
        )
        .await;
    let share_token = share["token"].as_str().unwrap();
    assert_eq!(app.get("/api/rooms/r/document", share_token).await.0, 200);

    app.advance_secs(3600);
    let (status, body) = app.get("/api/rooms/r/document", share_token).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_expired");

    app.advance_secs(7 * 86_400 - 3600);
    // Access tokens are short-lived: a week later the guest logs in again.
    let guest = app.login("guest@example.test").await;
    let accept = format!("/api/invites/{}/accept", invite["token"].as_str().unwrap());
    let (status, body) = app.post(&accept, Some(&guest), json!({})).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["code"], "invite_unusable");
    assert_eq!(app.get("/api/rooms/r", &guest).await.0, 403);
}

#[actix_web::test]
async fn an_invite_that_never_expires_still_works_years_later() {
    let app = TestApp::start(&[]).await;
    let owner = app.register("o@example.test").await;
    app.register("g@example.test").await;
    app.post("/api/rooms", Some(&owner), json!({"id": "r", "name": "R"}))
        .await;
    let (_, invite) = app
        .post(
            "/api/rooms/r/invites",
            Some(&owner),
            json!({"role": "viewer", "expires_in": "never"}),
        )
        .await;
    assert!(invite["expires_at_ms"].is_null());
    app.advance_secs(3 * 365 * 86_400);
    let guest = app.login("g@example.test").await;
    let accept = format!("/api/invites/{}/accept", invite["token"].as_str().unwrap());
    let (status, body) = app.post(&accept, Some(&guest), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "viewer");
}

#[actix_web::test]
async fn room_events_and_notifications_are_dated_by_the_server_clock() {
    let app = TestApp::start(&[]).await;
    let owner = app.register("owner@example.test").await;
    let guest = app.register("guest@example.test").await;
    app.post("/api/rooms", Some(&owner), json!({"id": "r", "name": "R"}))
        .await;
    // Within the access tokens' lifetime, so the tokens above still work.
    app.advance_secs(120);
    let (status, body) = app
        .post(
            "/api/rooms/r/members",
            Some(&owner),
            json!({"email": "guest@example.test", "role": "editor"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, page) = app.get("/api/notifications", &guest).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["notifications"][0]["kind"], "invited");
    assert_eq!(page["notifications"][0]["created_at_ms"], app.now_ms());

    app.advance_secs(60);
    let (status, body) = app
        .post(
            "/api/rooms/r/versions",
            Some(&owner),
            json!({"label": "checkpoint"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // The feed is written by a task of its own: wait (boundedly) for the event to land.
    let mut recorded = None;
    for _ in 0..500 {
        let (_, feed) = app.get("/api/rooms/r/activity", &owner).await;
        recorded = feed["events"]
            .as_array()
            .and_then(|events| events.iter().find(|e| e["kind"] == "version_created"))
            .cloned();
        if recorded.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let recorded = recorded.expect("the checkpoint reaches the activity feed");
    assert_eq!(recorded["created_at_ms"], app.now_ms());
}
