//! Configuration: every setting is a flag with an environment variable of the same meaning.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use crdt_store::{Durability, StoreConfig};

/// Tandem: a real-time collaborative editing server for Yjs clients.
// No `Debug`, like the `ServeArgs` it holds.
#[derive(Parser)]
#[command(name = "tandem", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand)]
// Parsed once at start-up; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run the AI assistant's peer as its own process, for a server started with
    /// `--ai-peer external`.
    AiPeer(AiPeerArgs),
}

/// Where the AI assistant's peer runs.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum AiPeerMode {
    /// Inside the server process.
    InProcess,
    /// In a `tandem ai-peer` process connecting to the server.
    External,
}

fn peer_secret(secret: &str) -> Result<crate::ai::control::PeerSecret, std::convert::Infallible> {
    Ok(crate::ai::control::PeerSecret::unchecked(secret))
}

/// `tandem ai-peer` flags.
#[derive(Args, Debug)]
pub struct AiPeerArgs {
    /// Base URL of the server (`http://host:port`).
    #[arg(
        long,
        env = "TANDEM_AI_PEER_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// The secret the server was given as --ai-peer-secret.
    #[arg(long, env = "TANDEM_AI_PEER_SECRET", hide_env_values = true, value_parser = peer_secret)]
    pub secret: crate::ai::control::PeerSecret,
    /// Log line format.
    #[arg(long, env = "TANDEM_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl AiPeerArgs {
    /// The peer process's settings.
    pub fn into_config(self) -> anyhow::Result<crate::ai::process::PeerProcessConfig> {
        self.secret.check().map_err(anyhow::Error::msg)?;
        Ok(crate::ai::process::PeerProcessConfig {
            server: self.server,
            secret: self.secret,
        })
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// See [`Durability`].
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum DurabilityArg {
    /// Committed before any other client receives it.
    Durable,
    /// Fanned out at once, committed within one group commit.
    Relaxed,
}

/// `tandem serve` flags. No `Debug`: they hold the JWT secret, the AI keys and URLs that may
/// carry passwords, as typed; [`Config`], which they become, redacts them in its `Debug`.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "TANDEM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory for the embedded SQLite database (`tandem.db`).
    #[arg(long, env = "TANDEM_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Database URL (`sqlite://…` or `postgres://…`); overrides the SQLite file in --data-dir.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// When an update counts as saved relative to other clients seeing it.
    #[arg(long, env = "TANDEM_DURABILITY", value_enum, default_value = "durable")]
    pub durability: DurabilityArg,
    /// Largest WebSocket message accepted, in bytes; larger ones close the connection (1009).
    #[arg(long, env = "TANDEM_MAX_MESSAGE_SIZE", default_value_t = 16 * 1024 * 1024)]
    pub max_message_size: usize,
    /// How often the server pings each connection.
    #[arg(long, env = "TANDEM_PING_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,
    /// A connection silent for this long (no message, no pong) is closed.
    #[arg(long, env = "TANDEM_PING_TIMEOUT", default_value = "45s", value_parser = humantime::parse_duration)]
    pub ping_timeout: Duration,
    /// Every open socket re-reads its credential and role at least this often (at a random
    /// point in the second half of each period), whatever events it heard: the backstop for
    /// access changes a node never heard of.
    #[arg(long, env = "TANDEM_ACCESS_RECHECK_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub access_recheck_interval: Duration,
    /// Re-checks of every socket at once (Redis came back, events were missed) are spread at
    /// random over this long, so they do not reach the database together.
    #[arg(long, env = "TANDEM_ACCESS_RECHECK_SPREAD", default_value = "2s", value_parser = humantime::parse_duration)]
    pub access_recheck_spread: Duration,
    /// A room with no connection for this long is flushed and evicted from memory.
    #[arg(long, env = "TANDEM_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Logged updates after which a room's log is compacted into its snapshot.
    #[arg(long, env = "TANDEM_COMPACT_AFTER", default_value_t = 1000)]
    pub compact_after: u64,
    /// An automatic version is taken this long after the first unversioned edit.
    #[arg(long, env = "TANDEM_AUTO_VERSION_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub auto_version_interval: Duration,
    /// Frames a connection may fall behind before it is closed (1013) to resync.
    #[arg(long, env = "TANDEM_SUBSCRIBER_QUEUE", default_value_t = 1024)]
    pub subscriber_queue: usize,
    /// Most updates per group commit.
    #[arg(long, env = "TANDEM_MAX_BATCH", default_value_t = 512)]
    pub max_batch: usize,
    /// Most bytes of update data per group commit; a larger update is written alone.
    #[arg(long, env = "TANDEM_MAX_BATCH_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_batch_bytes: usize,
    /// Most rooms in memory at once.
    #[arg(long, env = "TANDEM_MAX_ROOMS", default_value_t = 10_000)]
    pub max_rooms: usize,
    /// Most connections to one room.
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS_PER_ROOM", default_value_t = 1000)]
    pub max_connections_per_room: usize,
    /// Most levels values (arrays, maps) and shared types may nest in a document; an update
    /// nesting deeper is refused (1007), a stored document deeper is not opened (422).
    #[arg(long, env = "TANDEM_MAX_NESTING_DEPTH", default_value_t = protocol::update::DEFAULT_MAX_DEPTH)]
    pub max_nesting_depth: u32,
    /// Largest awareness state (its JSON, in bytes) one connection may announce; larger
    /// closes the connection (1009).
    #[arg(long, env = "TANDEM_MAX_AWARENESS_STATE", default_value_t = 64 * 1024)]
    pub max_awareness_state: usize,
    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "TANDEM_WORKERS")]
    pub workers: Option<usize>,
    /// How long shutdown waits for connections to close.
    #[arg(long, env = "TANDEM_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Log line format.
    #[arg(long, env = "TANDEM_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Secret for signing access tokens (HS256). Generated and stored in the database when
    /// not set; set it to rotate or to share one secret across nodes explicitly.
    #[arg(long, env = "TANDEM_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Lifetime of access tokens.
    #[arg(long, env = "TANDEM_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub access_token_ttl: Duration,
    /// Lifetime of a session without a refresh.
    #[arg(long, env = "TANDEM_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = humantime::parse_duration)]
    pub refresh_token_ttl: Duration,
    /// Failed logins (per email, within --login-lockout) that lock the email.
    #[arg(long, env = "TANDEM_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: u32,
    /// How long a locked email stays locked (also the window failures are counted in).
    #[arg(long, env = "TANDEM_LOGIN_LOCKOUT", default_value = "15m", value_parser = humantime::parse_duration)]
    pub login_lockout: Duration,
    /// Origins allowed by CORS, comma-separated (`*` for any); none when empty.
    #[arg(long, env = "TANDEM_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Directory of the built browser client, served at `/`.
    #[arg(long, env = "TANDEM_WEB_DIR", default_value = "server/web/dist")]
    pub web_dir: PathBuf,
    /// Redis URL; turns clustering on (nodes sharing one database and one Redis).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// This node's name in the cluster (default: random per start).
    #[arg(long, env = "TANDEM_NODE_ID")]
    pub node_id: Option<String>,
    /// Prefix of the Redis channels, so deployments can share one Redis.
    #[arg(long, env = "TANDEM_REDIS_PREFIX", default_value = "tandem")]
    pub redis_prefix: String,
    /// How often nodes compare each room's digest and repair differences.
    #[arg(long, env = "TANDEM_CLUSTER_SYNC_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub cluster_sync_interval: Duration,
    /// OpenAI-compatible API base URL of the AI assistant's model (e.g.
    /// `https://api.openai.com/v1`, or a local llama.cpp or vLLM server); none disables it.
    #[arg(long, env = "TANDEM_AI_BASE_URL")]
    pub ai_base_url: Option<String>,
    /// API key for --ai-base-url.
    #[arg(
        long,
        env = "TANDEM_AI_API_KEY",
        default_value = "",
        hide_env_values = true
    )]
    pub ai_api_key: String,
    /// Model name at --ai-base-url.
    #[arg(long, env = "TANDEM_AI_MODEL", default_value = "gpt-4o-mini")]
    pub ai_model: String,
    /// Fallback endpoints tried in order when the first fails: `URL|MODEL|KEY`, comma-separated.
    #[arg(
        long,
        env = "TANDEM_AI_FALLBACKS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub ai_fallbacks: Vec<String>,
    /// Time limit of one model request.
    #[arg(long, env = "TANDEM_AI_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub ai_timeout: Duration,
    /// Retries per endpoint on transient failures.
    #[arg(long, env = "TANDEM_AI_MAX_RETRIES", default_value_t = 2)]
    pub ai_max_retries: u32,
    /// AI requests per user per minute.
    #[arg(long, env = "TANDEM_AI_RATE_PER_MINUTE", default_value_t = 10)]
    pub ai_rate_per_minute: u32,
    /// AI requests per user per day.
    #[arg(long, env = "TANDEM_AI_RATE_PER_DAY", default_value_t = 100)]
    pub ai_rate_per_day: u32,
    /// Prompt budget in (estimated) tokens.
    #[arg(long, env = "TANDEM_AI_CONTEXT_TOKENS", default_value_t = 3000)]
    pub ai_context_tokens: u32,
    /// Where the assistant's peer runs: inside the server, or in a `tandem ai-peer` process
    /// that connects with --ai-peer-secret.
    #[arg(long, env = "TANDEM_AI_PEER", value_enum, default_value = "in-process")]
    pub ai_peer: AiPeerMode,
    /// Shared secret of the `tandem ai-peer` process (at least 16 bytes); required with
    /// `--ai-peer external`.
    #[arg(long, env = "TANDEM_AI_PEER_SECRET", hide_env_values = true, value_parser = peer_secret)]
    pub ai_peer_secret: Option<crate::ai::control::PeerSecret>,
    /// How long a node loading a room waits for its peers' state.
    #[arg(long, env = "TANDEM_CLUSTER_CATCH_UP_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub cluster_catch_up_timeout: Duration,
    /// Largest file accepted by an upload or inside an import, in bytes.
    #[arg(long, env = "TANDEM_MAX_FILE_SIZE", default_value_t = 2 * 1024 * 1024)]
    pub max_file_size: usize,
    /// Largest zip accepted by an import (and most bytes its files may hold), in bytes.
    #[arg(long, env = "TANDEM_MAX_IMPORT_SIZE", default_value_t = 32 * 1024 * 1024)]
    pub max_import_size: usize,
    /// Quiet time after a room's last change before webhooks get `document_changed`.
    #[arg(long, env = "TANDEM_WEBHOOK_DEBOUNCE", default_value = "2s", value_parser = humantime::parse_duration)]
    pub webhook_debounce: Duration,
    /// Attempts per webhook delivery before it is marked failed.
    #[arg(long, env = "TANDEM_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub webhook_max_attempts: u32,
    /// Wait before a failed webhook delivery's first retry; each retry waits twice as long.
    #[arg(long, env = "TANDEM_WEBHOOK_RETRY_BASE", default_value = "2s", value_parser = humantime::parse_duration)]
    pub webhook_retry_base: Duration,
    /// Time limit of one webhook delivery attempt.
    #[arg(long, env = "TANDEM_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Duration,
    /// Allow webhook endpoints on loopback, private and link-local addresses.
    #[arg(long, env = "TANDEM_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Most bytes of a webhook endpoint's response body that are read (and shown, as far as
    /// they fit, in the delivery's error); the rest is never read.
    #[arg(
        long,
        env = "TANDEM_WEBHOOK_MAX_RESPONSE_BYTES",
        default_value_t = 4096
    )]
    pub webhook_max_response_bytes: usize,
    /// HTTP proxy for webhook deliveries (`http://host:port`); without it deliveries connect
    /// directly and `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` are ignored.
    #[arg(long, env = "TANDEM_WEBHOOK_PROXY", hide_env_values = true, value_parser = webhook_proxy)]
    pub webhook_proxy: Option<reqwest::Url>,
    /// Password hashes (argon2id, 19 MiB of memory each) computed at once; further logins,
    /// registrations and password changes wait (default: one per CPU core).
    #[arg(long, env = "TANDEM_PASSWORD_HASH_CONCURRENCY")]
    pub password_hash_concurrency: Option<usize>,
    /// How long a request waits for a free password-hashing slot before 503 `server_busy`.
    #[arg(long, env = "TANDEM_PASSWORD_HASH_WAIT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub password_hash_wait: Duration,
    /// Logins, registrations and refreshes per client address per minute, together (429
    /// `rate_limited`).
    #[arg(long, env = "TANDEM_AUTH_RATE_PER_MINUTE", default_value_t = 30)]
    pub auth_rate_per_minute: u32,
    /// How many of those a client address may send in a burst.
    #[arg(long, env = "TANDEM_AUTH_BURST", default_value_t = 10)]
    pub auth_burst: u32,
    /// WebSocket connections one client address may hold open (429 `too_many_connections`).
    #[arg(long, env = "TANDEM_WS_CONNECTIONS_PER_IP", default_value_t = 100)]
    pub ws_connections_per_ip: usize,
    /// WebSocket upgrade attempts per client address per minute (429 `rate_limited`).
    #[arg(long, env = "TANDEM_WS_UPGRADES_PER_MINUTE", default_value_t = 120)]
    pub ws_upgrades_per_minute: u32,
    /// How many upgrades a client address may attempt in a burst.
    #[arg(long, env = "TANDEM_WS_UPGRADE_BURST", default_value_t = 40)]
    pub ws_upgrade_burst: u32,
    /// Time limit of receiving one request head (the WebSocket handshake included), from its
    /// first byte, on every request of a connection; slower clients get 408 and are closed.
    #[arg(long, env = "TANDEM_REQUEST_HEAD_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_head_timeout: Duration,
    /// Time limit of receiving one request body, from the end of its head; slower clients
    /// get 408 `request_timeout` and are closed. WebSockets are not affected.
    #[arg(long, env = "TANDEM_REQUEST_BODY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub request_body_timeout: Duration,
    /// How long an idle HTTP connection is kept open for its next request.
    #[arg(long, env = "TANDEM_KEEP_ALIVE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub keep_alive: Duration,
    /// How long a closing HTTP connection waits for the client to acknowledge before the
    /// socket is dropped.
    #[arg(long, env = "TANDEM_CLIENT_DISCONNECT_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub client_disconnect_timeout: Duration,
}

/// A proxy URL reqwest accepts: `http` or `https`, with a host.
fn webhook_proxy(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|err| format!("not a URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("the proxy must be an http:// or https:// URL with a host".into());
    }
    reqwest::Proxy::all(url.clone()).map_err(|err| err.to_string())?;
    Ok(url)
}

/// Timeouts of HTTP connections.
#[derive(Clone, Copy, Debug)]
pub struct HttpTimeouts {
    /// Limit of receiving one request head, from its first byte.
    pub request_head_timeout: Duration,
    /// Limit of receiving one request body, from the end of its head.
    pub request_body_timeout: Duration,
    /// Idle keep-alive.
    pub keep_alive: Duration,
    /// Limit of a closing connection's shutdown.
    pub client_disconnect_timeout: Duration,
}

/// Settings of the WebSocket sessions.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Largest accepted message.
    pub max_message_size: usize,
    /// Ping period.
    pub ping_interval: Duration,
    /// Silence after which a connection is closed.
    pub ping_timeout: Duration,
    /// Longest time a socket goes without re-checking its access.
    pub access_recheck_interval: Duration,
    /// Window over which re-checks of every socket at once are spread.
    pub access_recheck_spread: Duration,
}

/// Limits of uploads and imports.
#[derive(Clone, Copy, Debug)]
pub struct FileLimits {
    /// Largest file, in bytes (uploads and each file of an import).
    pub max_file_size: usize,
    /// Largest zip accepted by an import, and most bytes its files may hold in all.
    pub max_import_size: usize,
}

/// Everything the server runs with, resolved.
#[derive(Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The database URL (SQLite file under the data dir unless overridden).
    pub database_url: String,
    /// Room store settings.
    pub store: StoreConfig,
    /// Session settings.
    pub session: SessionConfig,
    /// HTTP workers.
    pub workers: usize,
    /// Graceful shutdown limit.
    pub shutdown_timeout: Duration,
    /// Authentication.
    pub auth: crate::accounts::auth::AuthConfig,
    /// Origins allowed by CORS.
    pub cors_origins: Vec<String>,
    /// Directory of the built browser client.
    pub web_dir: PathBuf,
    /// Clustering, when a Redis URL is configured.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// The AI assistant.
    pub ai: crate::ai::AiConfig,
    /// Limits of file uploads and imports.
    pub file_limits: FileLimits,
    /// Webhook deliveries.
    pub webhooks: crate::collab::webhooks::WebhookConfig,
    /// Per-client limits.
    pub client_limits: crate::http::limits::ClientLimitsConfig,
    /// HTTP connection timeouts.
    pub http: HttpTimeouts,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written out so that no secret reaches a log line: see `crate::redact`.
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &crate::redact::Url(&self.database_url))
            .field("store", &self.store)
            .field("session", &self.session)
            .field("workers", &self.workers)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("auth", &self.auth)
            .field("cors_origins", &self.cors_origins)
            .field("web_dir", &self.web_dir)
            .field("cluster", &self.cluster)
            .field("ai", &self.ai)
            .field("file_limits", &self.file_limits)
            .field("webhooks", &self.webhooks)
            .field("client_limits", &self.client_limits)
            .field("http", &self.http)
            .finish()
    }
}

impl ServeArgs {
    /// Resolves defaults (creating the data directory when SQLite is used).
    pub fn into_config(self) -> anyhow::Result<Config> {
        let database_url = match self.database_url {
            Some(url) => url,
            None => {
                std::fs::create_dir_all(&self.data_dir).with_context(|| {
                    format!("creating data directory {}", self.data_dir.display())
                })?;
                format!("sqlite://{}", self.data_dir.join("tandem.db").display())
            }
        };
        let durability = match self.durability {
            DurabilityArg::Durable => Durability::Durable,
            DurabilityArg::Relaxed => Durability::Relaxed,
        };
        anyhow::ensure!(
            self.subscriber_queue > 0,
            "--subscriber-queue must be positive"
        );
        anyhow::ensure!(self.max_batch > 0, "--max-batch must be positive");
        anyhow::ensure!(
            (1..=crdt_store::document::STORED_DEPTH_GUARD).contains(&self.max_nesting_depth),
            "--max-nesting-depth must be between 1 and {}",
            crdt_store::document::STORED_DEPTH_GUARD
        );
        anyhow::ensure!(
            self.max_batch_bytes > 0,
            "--max-batch-bytes must be positive"
        );
        anyhow::ensure!(
            self.ping_timeout > self.ping_interval,
            "--ping-timeout must be longer than --ping-interval"
        );
        let ai_peer = match (self.ai_peer, self.ai_peer_secret) {
            (AiPeerMode::InProcess, _) => crate::ai::PeerMode::InProcess,
            (AiPeerMode::External, Some(secret)) => {
                secret.check().map_err(anyhow::Error::msg)?;
                crate::ai::PeerMode::External(secret)
            }
            (AiPeerMode::External, None) => {
                anyhow::bail!("--ai-peer external needs --ai-peer-secret (TANDEM_AI_PEER_SECRET)")
            }
        };
        anyhow::ensure!(
            !self.request_head_timeout.is_zero(),
            "--request-head-timeout must be positive"
        );
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Config {
            client_limits: crate::http::limits::ClientLimitsConfig {
                auth_rate: crate::http::limits::Rate {
                    per_minute: self.auth_rate_per_minute,
                    burst: self.auth_burst,
                },
                ws_upgrade_rate: crate::http::limits::Rate {
                    per_minute: self.ws_upgrades_per_minute,
                    burst: self.ws_upgrade_burst,
                },
                ws_connections_per_client: self.ws_connections_per_ip,
            },
            http: HttpTimeouts {
                request_head_timeout: self.request_head_timeout,
                request_body_timeout: self.request_body_timeout,
                keep_alive: self.keep_alive,
                client_disconnect_timeout: self.client_disconnect_timeout,
            },
            listen: self.listen,
            database_url,
            store: StoreConfig {
                durability,
                max_batch: self.max_batch,
                max_batch_bytes: self.max_batch_bytes,
                subscriber_queue: self.subscriber_queue,
                compact_after_updates: self.compact_after.max(1),
                idle_timeout: self.idle_timeout,
                auto_version_interval: self.auto_version_interval,
                max_rooms: self.max_rooms,
                max_connections_per_room: self.max_connections_per_room,
                update_limits: protocol::UpdateLimits {
                    max_depth: self.max_nesting_depth,
                },
                max_awareness_state: self.max_awareness_state,
                ..StoreConfig::default()
            },
            session: SessionConfig {
                max_message_size: self.max_message_size,
                ping_interval: self.ping_interval,
                ping_timeout: self.ping_timeout,
                // A zero interval would re-check in a busy loop.
                access_recheck_interval: self
                    .access_recheck_interval
                    .max(Duration::from_millis(100)),
                access_recheck_spread: self.access_recheck_spread,
            },
            workers: self
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            shutdown_timeout: self.shutdown_timeout,
            auth: crate::accounts::auth::AuthConfig {
                access_token_ttl: self.access_token_ttl,
                refresh_token_ttl: self.refresh_token_ttl,
                login: crate::accounts::auth::throttle::LoginPolicy {
                    max_failures: self.login_max_failures.max(1),
                    window: self.login_lockout,
                    lockout: self.login_lockout,
                },
                jwt_secret: self.jwt_secret,
                hashing: crate::accounts::auth::HashingLimits {
                    concurrency: self.password_hash_concurrency.unwrap_or(cores).max(1),
                    wait: self.password_hash_wait,
                },
            },
            cors_origins: self.cors_origins,
            webhooks: crate::collab::webhooks::WebhookConfig {
                debounce: self.webhook_debounce,
                max_attempts: self.webhook_max_attempts.max(1),
                retry_base: self.webhook_retry_base,
                timeout: self.webhook_timeout,
                allow_private_targets: self.webhook_allow_private,
                max_response_bytes: self.webhook_max_response_bytes,
                proxy: self.webhook_proxy,
            },
            file_limits: FileLimits {
                max_file_size: self.max_file_size,
                max_import_size: self.max_import_size,
            },
            web_dir: self.web_dir,
            ai: crate::ai::AiConfig {
                provider: self.ai_base_url.map(|base_url| {
                    let mut endpoints = vec![crate::ai::provider::Endpoint {
                        base_url,
                        api_key: self.ai_api_key.clone(),
                        model: self.ai_model.clone(),
                    }];
                    endpoints.extend(self.ai_fallbacks.iter().filter(|f| !f.is_empty()).map(|f| {
                        let mut parts = f.splitn(3, '|');
                        crate::ai::provider::Endpoint {
                            base_url: parts.next().unwrap_or_default().to_owned(),
                            model: parts.next().unwrap_or(&self.ai_model).to_owned(),
                            api_key: parts.next().unwrap_or_default().to_owned(),
                        }
                    }));
                    crate::ai::provider::ProviderConfig {
                        endpoints,
                        timeout: self.ai_timeout,
                        max_retries: self.ai_max_retries,
                    }
                }),
                per_minute: self.ai_rate_per_minute,
                per_day: self.ai_rate_per_day,
                context_tokens: self.ai_context_tokens.max(100),
                peer: ai_peer,
            },
            cluster: self
                .redis_url
                .map(|redis_url| crate::cluster::ClusterConfig {
                    redis_url,
                    node_id: self
                        .node_id
                        .unwrap_or_else(crate::accounts::auth::secrets::random_id),
                    channel_prefix: self.redis_prefix,
                    sync_interval: self.cluster_sync_interval,
                    catch_up_timeout: self.cluster_catch_up_timeout,
                }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_debug_shows_where_it_connects_and_no_secret() {
        let secrets = [
            "db-password-1",
            "jwt-secret-value-1",
            "redis-password-1",
            "ai-url-password-1",
            "ai-query-key-1",
            "ai-api-key-1",
            "fallback-key-1",
            "peer-secret-value-0001",
            "proxy-password-1",
        ];
        let Command::Serve(args) = Cli::try_parse_from([
            "tandem",
            "serve",
            "--database-url",
            "postgres://tandem:db-password-1@db:5432/tandem",
            "--jwt-secret",
            "jwt-secret-value-1",
            "--redis-url",
            "redis://:redis-password-1@cache:6379/",
            "--ai-base-url",
            "https://user:ai-url-password-1@api.example/v1?api_key=ai-query-key-1",
            "--ai-api-key",
            "ai-api-key-1",
            "--ai-fallbacks",
            "https://fallback.example/v1|small|fallback-key-1",
            "--ai-peer",
            "external",
            "--ai-peer-secret",
            "peer-secret-value-0001",
            "--webhook-proxy",
            "http://proxy-user:proxy-password-1@proxy:3128",
        ])
        .expect("a valid command line")
        .command
        else {
            unreachable!("parsed a `serve` command line");
        };
        let config = args.into_config().expect("a valid configuration");
        let shown = format!("{config:?}");
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        // What locates each service is still there.
        for place in [
            "db:5432/tandem",
            "cache:6379",
            "api.example/v1",
            "proxy:3128",
        ] {
            assert!(shown.contains(place), "{place} missing from {shown}");
        }
    }
}
