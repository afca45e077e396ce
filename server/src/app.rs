//! Building, running and stopping the server.
//!
//! Start-up connects the database and runs every migration (the store's tables and the
//! server's), then hands the store a clone of the connection: the server keeps its own
//! handle for the tables it owns. Shared state is built once here, outside actix's
//! per-worker factory, and cloned into every worker: all workers see the same rooms.

use std::net::{SocketAddr, TcpListener};

use actix_service::{IntoServiceFactory as _, ServiceFactoryExt as _};
use actix_web::dev::{AppConfig, Server, ServerHandle};
use actix_web::{App, web};
use anyhow::Context;
use crdt_store::{RoomRegistry, Storage};
use metrics_exporter_prometheus::PrometheusHandle;
use migrations::{Migrator, MigratorTrait};
use sea_orm::{Database, DatabaseConnection};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::accounts::access::AccessEvents;
use crate::accounts::auth::Auth;
use crate::clock::{Clock, system_clock};
use crate::cluster::RedisBus;
use crate::collab::activity::Activity;
use crate::collab::presence::Presence;
use crate::config::{Config, SessionConfig};
use crate::http;
use crate::http::head_deadline::HeadDeadlineStream;
use crate::http::limits::ClientLimits;
use crate::telemetry::{SessionMetrics, install_metrics};

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database: the server's own handle (the store has a clone).
    database: DatabaseConnection,
    /// The clock every handler reads the time of day from, through [`AppState::now`] (see
    /// [`crate::clock`]).
    clock: Clock,
    /// All rooms.
    pub registry: RoomRegistry,
    /// WebSocket session settings.
    pub session: SessionConfig,
    /// Session metric handles.
    pub session_metrics: SessionMetrics,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Cancelled when the server starts shutting down; sessions close with 1001.
    pub shutdown: CancellationToken,
    /// Accounts and tokens.
    pub auth: Auth,
    /// Access changes announced to open sockets.
    pub events: AccessEvents,
    /// Who is connected where.
    pub presence: Presence,
    /// Room events: the activity feed and its listeners.
    pub activity: Activity,
    /// Serialises the writes of each room's `comments` mirror.
    pub comments: crate::collab::CommentMirror,
    /// The cluster bus, when clustered.
    pub cluster: Option<RedisBus>,
    /// The AI assistant (answers "not configured" without a provider).
    pub ai: Option<crate::ai::Ai>,
    /// Limits of file uploads and imports.
    pub file_limits: crate::config::FileLimits,
    /// Webhook registrations and deliveries.
    pub webhooks: crate::collab::webhooks::Webhooks,
    /// Per-client rate limits and WebSocket caps.
    pub client_limits: ClientLimits,
    /// HTTP connection and request timeouts.
    pub http: crate::config::HttpTimeouts,
}

impl AppState {
    /// The database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.database
    }

    /// Now, in milliseconds since the Unix epoch, by the server's one clock.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }
}

/// A bound, not yet running server.
pub struct Application {
    server: Server,
    address: SocketAddr,
    state: AppState,
}

impl Application {
    /// Connects to the database (running migrations), starts the room registry, and binds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, system_clock()).await
    }

    /// [`Application::build`] with the clock every part of the server reads the time of day
    /// from (see [`crate::clock`]); tests pass one they control.
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let metrics = install_metrics()?;
        // The AI provider's HTTP client uses rustls without a built-in crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let synchronous_full = config.store.durability == crdt_store::Durability::Durable;
        let database = connect_database(&config.database_url, synchronous_full).await?;
        let auth = Auth::init(database.clone(), config.auth.clone(), clock.clone())
            .await
            .context("initialising authentication")?;
        let shutdown = CancellationToken::new();
        // The bus keeps running through the final flush and stops with the process.
        let stop_bus = CancellationToken::new();
        let cluster = match &config.cluster {
            Some(cluster) => {
                let (bus, tasks) = RedisBus::new(cluster.clone()).context("configuring redis")?;
                info!(node = %cluster.node_id, "clustering through redis");
                actix_web::rt::spawn(bus.clone().run(tasks, stop_bus.clone()));
                Some(bus)
            }
            None => None,
        };
        let registry = RoomRegistry::start_with_bus(
            config.store.clone(),
            Storage::new(database.clone()),
            cluster
                .clone()
                .map(|bus| std::sync::Arc::new(bus) as std::sync::Arc<dyn crdt_store::RoomBus>),
        );
        let activity = Activity::start(database.clone(), clock.clone(), &registry);
        let webhooks = crate::collab::webhooks::Webhooks::start(
            config.webhooks.clone(),
            database.clone(),
            clock.clone(),
            activity.subscribe(),
        );
        let state = AppState {
            database,
            clock,
            registry,
            session: config.session.clone(),
            session_metrics: SessionMetrics::register(),
            metrics,
            shutdown,
            auth,
            events: AccessEvents::new(1024),
            presence: Presence::new(activity.clone()),
            activity,
            comments: Default::default(),
            cluster,
            ai: None,
            file_limits: config.file_limits,
            webhooks,
            client_limits: ClientLimits::new(config.client_limits),
            http: config.http,
        };
        state.auth.announce_revocations_on(state.events.clone());
        if let Some(bus) = &state.cluster {
            bus.connect_access_events(&state.events);
        }
        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        let address = listener.local_addr()?;
        let ai = crate::ai::Ai::new(
            config.ai.clone(),
            state.auth.clone(),
            state.db().clone(),
            state.registry.clone(),
            state.shutdown.child_token(),
        )
        .await
        .context("setting up the AI assistant")?;
        // The assistant joins rooms through this server's own WebSocket endpoint.
        let reachable = if address.ip().is_unspecified() {
            std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), address.port())
        } else {
            address
        };
        ai.set_ws_base(format!("ws://{reachable}"));
        let state = AppState {
            ai: Some(ai),
            ..state
        };
        let server = serve(
            listener,
            &config,
            state.clone(),
            web::Data::new(http::web_client::WebAssets::new(config.web_dir.clone())),
        )?;
        Ok(Self {
            server,
            address,
            state,
        })
    }

    /// The shared state (for tests that inspect it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs the server until `stop` is cancelled, then shuts down like on SIGTERM. For running
    /// an application inside a test process.
    pub async fn run_until(self, stop: CancellationToken) -> anyhow::Result<()> {
        let Self { server, state, .. } = self;
        let handle = server.handle();
        let shutdown = state.shutdown.clone();
        actix_web::rt::spawn(async move {
            stop.cancelled().await;
            self::stop(&shutdown, &handle).await;
        });
        server.await?;
        if let Some(ai) = &state.ai {
            ai.stopped().await;
        }
        state.registry.shutdown().await;
        // Events of the final flush reach the webhooks before they stop.
        state.activity.sync().await;
        state.webhooks.stop().await;
        Ok(())
    }

    /// The address actually bound (useful with port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully: stop accepting, close
    /// every socket with 1001, commit everything pending, version unversioned edits.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            server,
            address,
            state,
        } = self;
        // Tests and scripts read this line to learn the port; keep its shape stable.
        println!("tandem listening on http://{address}");
        info!(%address, "listening");
        let handle = server.handle();
        let shutdown = state.shutdown.clone();
        actix_web::rt::spawn(async move {
            wait_for_signal().await;
            stop(&shutdown, &handle).await;
        });
        server.await?;
        // The assistant's peers and control connection ended when shutdown began.
        if let Some(ai) = &state.ai {
            ai.stopped().await;
        }
        state.registry.shutdown().await;
        // Events of the final flush reach the webhooks before they stop.
        state.activity.sync().await;
        state.webhooks.stop().await;
        info!("shutdown complete");
        Ok(())
    }
}

/// Connects to the database at `url` with the store's connection options and brings its
/// schema up to date with every migration, before anything reads or writes it.
async fn connect_database(url: &str, synchronous_full: bool) -> anyhow::Result<DatabaseConnection> {
    let database = Database::connect(Storage::connect_options(url, synchronous_full))
        .await
        .context("opening the database")?;
    Migrator::up(&database, None)
        .await
        .context("migrating the database")?;
    Ok(database)
}

/// Runs the HTTP server on `listener`: actix-web's application over actix-http's HTTP/1
/// service, with every accepted connection wrapped in a [`HeadDeadlineStream`] so each request
/// head (not only the first of a connection) must arrive within `--request-head-timeout`.
/// This is what `HttpServer::listen` assembles, plus that wrapper.
fn serve(
    listener: TcpListener,
    config: &Config,
    shared: AppState,
    web_assets: web::Data<http::web_client::WebAssets>,
) -> anyhow::Result<Server> {
    let cors_origins = config.cors_origins.clone();
    let http = config.http;
    let local_addr = listener.local_addr()?;
    let builder = actix_server::ServerBuilder::default();
    let graceful_shutdown = builder.graceful_shutdown_signal();
    let server = builder
        .workers(config.workers)
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout.as_secs().max(1))
        .listen("tandem-http", listener, move || {
            let shared = shared.clone();
            let web_assets = web_assets.clone();
            let cors_origins = cors_origins.clone();
            let app = App::new()
                .app_data(web::Data::new(shared))
                .app_data(web_assets)
                .wrap(http::security_headers())
                .wrap(http::cors(&cors_origins))
                .wrap(actix_web::middleware::from_fn(
                    crate::http::body_deadline::enforce,
                ))
                .configure(http::configure)
                .into_factory()
                .map_err(|err| err.error_response());
            let graceful_shutdown = graceful_shutdown.clone();
            let h1 = actix_http::HttpService::build()
                // Idle kept-alive connections close at once when shutdown begins.
                .graceful_shutdown_signal(move || {
                    let signal = graceful_shutdown.clone();
                    async move { signal.notified().await }
                })
                .keep_alive(http.keep_alive)
                .client_request_timeout(http.request_head_timeout)
                .client_disconnect_timeout(http.client_disconnect_timeout)
                .local_addr(local_addr)
                // The app config's host is only a fallback for URL generation when a request
                // has no `Host` header; nothing here generates URLs.
                .h1(actix_service::map_config(app, |()| AppConfig::default()));
            let head_timeout = http.request_head_timeout;
            actix_service::fn_service(move |io: tokio::net::TcpStream| async move {
                let peer = io.peer_addr().ok();
                Ok::<_, actix_http::error::DispatchError>((
                    HeadDeadlineStream::new(io, head_timeout),
                    peer,
                ))
            })
            .and_then(h1)
        })?
        .run();
    Ok(server)
}

async fn stop(shutdown: &CancellationToken, handle: &ServerHandle) {
    info!("shutting down: closing connections");
    shutdown.cancel();
    handle.stop(true).await;
}

/// Resolves on SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops on signals, just not gracefully.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}
