//! `loadgen`: drives a running Tandem server with many rooms of `y-websocket`-like clients
//! and measures fan-out latency, throughput, and the server's CPU and memory.
//!
//! Each of `--rooms` rooms gets `--clients` connections: one writer and the rest observers.
//! Every client does the y-protocols handshake (answers the server's step 1 with an empty
//! step 2, sends its own empty step 1 and waits for the server's step 2). The writer then
//! inserts one latency [`Marker`] into root text `text` of its own small `yrs` document
//! `--rate` times a second and sends the transaction's real v1 update. Observers never
//! decode updates: they read the marker straight from the frame bytes.
//!
//! Phases, all on one clock (`Schedule`):
//! 1. connect every client, `--connect-concurrency` at a time, and sample the server's RSS
//!    before and after (idle memory per connection);
//! 2. writers start, staggered across one period so the rooms do not tick in lock-step;
//! 3. `--warmup`, then the measured window of `--duration`: server CPU is sampled at both
//!    ends, and only edits sent inside the window count towards latency;
//! 4. writers stop; observers keep reading for `--drain` so late frames still count, then
//!    every client closes.
//!
//! With `--observer-url` the writers connect to `--url` and the observers to
//! `--observer-url`: two nodes of one cluster, so the latency is that of cross-node fan-out
//! (writer → node A → the cluster bus → node B → observer).
//!
//! Exits with status 1 when a client fails to connect, sees a malformed frame, is closed by
//! the server, or an edit sent in the window never reaches one of its observers or reaches
//! one after a later edit. Repeated frames are counted but are not failures.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use benches::marker::Marker;
use benches::process::ProcessSample;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::{Doc, Text, Transact};

/// `[sync, step 1, state vector of length 1: zero clients]`: "I have nothing".
const EMPTY_SYNC_STEP1: &[u8] = &[0, 0, 1, 0];
/// `[sync, step 2, update of length 2: zero structs, zero deletes]`: "you lack nothing".
const EMPTY_SYNC_STEP2: &[u8] = &[0, 1, 2, 0, 0];
/// Message type `sync` and its sub-types, as the first two bytes of a frame.
const MSG_SYNC: u8 = 0;
const SYNC_STEP1: u8 = 0;
const SYNC_STEP2: u8 = 1;
const SYNC_UPDATE: u8 = 2;
/// Message type `awareness`: the server may send who is here; the generator ignores it.
const MSG_AWARENESS: u8 = 1;
/// The root text every writer edits.
const ROOT: &str = "text";
/// How many distinct error messages the report lists.
const ERRORS_LISTED: usize = 8;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Drives a Tandem server with rooms of one writer and many observers.
#[derive(Parser, Debug)]
#[command(name = "loadgen")]
struct Args {
    /// Server base URL; clients connect to `{url}/ws/{room}`.
    #[arg(long, default_value = "ws://127.0.0.1:8080")]
    url: String,
    /// Base URL the observers connect to instead of `--url` (another node of the same
    /// cluster); writers stay on `--url`, so latency is measured across nodes.
    #[arg(long)]
    observer_url: Option<String>,
    /// Number of rooms.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Connections per room, the writer included (at least 2).
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Edits per second each room's writer sends.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Load before the measured window starts.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Length of the measured window.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long observers keep reading after the writers stop, for late frames.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// The server's process id, to sample its RSS and CPU time from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connections opened concurrently while ramping up.
    #[arg(long, default_value_t = 50)]
    connect_concurrency: usize,
    /// Longest one connection may take to connect and finish the sync handshake.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Access token for servers that require one (sent as `?token=`): an access token or
    /// API key that may edit every room of the run.
    #[arg(long, env = "LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Room names are `{prefix}-{index}`; the default is unique per run so runs against the
    /// same server never share a document.
    #[arg(long)]
    room_prefix: Option<String>,
    /// Also print the results as one JSON line (after the table).
    #[arg(long)]
    json: bool,
}

impl Args {
    fn validate(&self) -> anyhow::Result<()> {
        if self.rooms == 0 {
            bail!("--rooms must be at least 1");
        }
        if self.clients < 2 {
            bail!("--clients must be at least 2: one writer and one observer");
        }
        if !(self.rate > 0.0 && self.rate <= 10_000.0) {
            bail!("--rate must be in (0, 10000]");
        }
        if self.duration.is_zero() {
            bail!("--duration must be positive");
        }
        if self.connect_concurrency == 0 {
            bail!("--connect-concurrency must be at least 1");
        }
        Ok(())
    }
}

/// The instants every client works to. Created once all clients are connected.
struct Schedule {
    /// Zero of every marker's `sent_micros`.
    epoch: Instant,
    /// Writers start (each with its own offset within the first period).
    start: Instant,
    /// The measured window opens: edits sent from here on count.
    measure_start: Instant,
    /// The measured window closes: writers stop here.
    measure_end: Instant,
    /// Observers stop reading and everyone closes.
    stop: Instant,
}

impl Schedule {
    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    fn in_window_micros(&self, micros: u64) -> bool {
        (self.micros(self.measure_start)..self.micros(self.measure_end)).contains(&micros)
    }
}

/// What one client saw.
#[derive(Default)]
struct ClientReport {
    /// Writer: edits sent in the window.
    sent_in_window: u64,
    /// Writer: edits sent in total.
    sent_total: u64,
    /// Observer: edits received whose send time was in the window.
    received_sent_in_window: u64,
    /// Observer: edits received while the window was open (for throughput and CPU ratios).
    received_during_window: u64,
    /// Observer: edits received in total.
    received_total: u64,
    /// Observer: markers that skipped ahead of the next expected sequence number.
    sequence_gaps: u64,
    /// Observer: markers at or below one already seen (a repeated or late frame); they are
    /// not timed and do not count as deliveries.
    repeated: u64,
    /// Observer: fan-out latency in microseconds of each edit sent in the window.
    latencies_micros: Vec<u32>,
    /// Why this client ended early, if it did.
    error: Option<ClientError>,
}

/// Why a client stopped before the end of the run.
enum ClientError {
    /// The server closed the connection (close frame, or the stream ended).
    Closed(String),
    /// A frame that is not what the protocol allows, or an I/O error.
    Protocol(String),
}

impl ClientError {
    fn message(&self) -> &str {
        match self {
            ClientError::Closed(m) | ClientError::Protocol(m) => m,
        }
    }
}

/// Connects one client to `url` and completes the sync handshake. `room` names the room in
/// errors (the URL may carry a token).
async fn connect_client(url: &str, room: &str) -> anyhow::Result<Socket> {
    // Small buffers: thousands of connections each only ever see frames of a few bytes
    // (tungstenite's defaults are 128 KiB each, eagerly allocated).
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .with_context(|| format!("connecting to room {room}"))?;
    socket
        .send(WsMessage::binary(EMPTY_SYNC_STEP1))
        .await
        .context("sending sync step 1")?;
    let (mut answered_step1, mut got_step2) = (false, false);
    while !(answered_step1 && got_step2) {
        let message = socket
            .next()
            .await
            .context("connection ended during the handshake")?
            .context("reading the handshake")?;
        let WsMessage::Binary(frame) = message else {
            match message {
                WsMessage::Close(close) => bail!("closed during the handshake: {close:?}"),
                WsMessage::Text(_) => bail!("text frame during the handshake"),
                _ => continue,
            }
        };
        match frame.as_ref() {
            [MSG_SYNC, SYNC_STEP1, ..] => {
                socket
                    .send(WsMessage::binary(EMPTY_SYNC_STEP2))
                    .await
                    .context("sending sync step 2")?;
                answered_step1 = true;
            }
            [MSG_SYNC, SYNC_STEP2, ..] => got_step2 = true,
            [MSG_SYNC, SYNC_UPDATE, ..] | [MSG_AWARENESS, ..] => {}
            other => bail!("unexpected frame during the handshake: {other:?}"),
        }
    }
    Ok(socket)
}

/// Handles a frame that is not a latency-carrying update (both writers and observers).
fn check_other_message(message: WsMessage) -> Result<(), ClientError> {
    match message {
        WsMessage::Binary(frame) => match frame.as_ref() {
            [MSG_SYNC, SYNC_STEP1 | SYNC_STEP2 | SYNC_UPDATE, ..] | [MSG_AWARENESS, ..] => {
                protocol::decode_message(&frame)
                    .map(drop)
                    .map_err(|err| ClientError::Protocol(format!("malformed frame: {err}")))
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected message type {:?}",
                other.first()
            ))),
        },
        WsMessage::Close(close) => Err(ClientError::Closed(match close {
            Some(frame) => format!(
                "closed by server: {} {}",
                u16::from(frame.code),
                frame.reason
            ),
            None => "closed by server without a code".to_owned(),
        })),
        WsMessage::Text(_) => Err(ClientError::Protocol("text frame".to_owned())),
        // tungstenite answers pings itself on the next read.
        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => Ok(()),
    }
}

/// What `socket.next()` returned, with the end of the stream and read failures as errors.
fn received(
    message: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>,
) -> Result<WsMessage, ClientError> {
    match message {
        None => Err(ClientError::Closed("connection ended".to_owned())),
        Some(Err(err)) => Err(ClientError::Protocol(format!("read failed: {err}"))),
        Some(Ok(message)) => Ok(message),
    }
}

/// The writer of room `room`: one marker edit per tick until the window closes.
async fn run_writer(
    mut socket: Socket,
    room: usize,
    rooms: usize,
    period: Duration,
    schedule: Arc<Schedule>,
) -> ClientReport {
    let mut report = ClientReport::default();
    let doc = Doc::new();
    let text = doc.get_or_insert_text(ROOT);
    let offset = period.mul_f64(room as f64 / rooms as f64);
    let mut ticks = tokio::time::interval_at(schedule.start + offset, period);
    // A writer delayed by a busy machine catches up, so the offered load stays as asked.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut sequence = 0u64;
    let outcome: Result<(), ClientError> = async {
        loop {
            tokio::select! {
                at = ticks.tick() => {
                    if at >= schedule.measure_end {
                        return Ok(());
                    }
                    let now = Instant::now();
                    let marker = Marker { sequence, sent_micros: schedule.micros(now) };
                    let frame = {
                        let mut txn = doc.transact_mut();
                        let end = text.len(&txn);
                        text.insert(&mut txn, end, &marker.to_text());
                        protocol::encode_update_frame(&txn.encode_update_v1())
                    };
                    socket
                        .send(WsMessage::Binary(frame))
                        .await
                        .map_err(|err| ClientError::Protocol(format!("send failed: {err}")))?;
                    sequence += 1;
                    report.sent_total += 1;
                    if schedule.in_window_micros(marker.sent_micros) {
                        report.sent_in_window += 1;
                    }
                }
                message = socket.next() => check_other_message(received(message)?)?,
            }
        }
    }
    .await;
    report.error = outcome.err();
    if report.error.is_none() {
        // Stay connected while observers drain, so the room's membership does not change
        // under the last frames of the window.
        report.error = idle_until(&mut socket, schedule.stop).await.err();
    }
    close_quietly(socket).await;
    report
}

async fn idle_until(socket: &mut Socket, until: Instant) -> Result<(), ClientError> {
    loop {
        tokio::select! {
            _ = sleep_until(until) => return Ok(()),
            message = socket.next() => check_other_message(received(message)?)?,
        }
    }
}

/// An observer: reads until `schedule.stop`, timing every marker it receives.
async fn run_observer(mut socket: Socket, schedule: Arc<Schedule>) -> ClientReport {
    let mut report = ClientReport::default();
    let (window_start, window_end) = (
        schedule.micros(schedule.measure_start),
        schedule.micros(schedule.measure_end),
    );
    let mut next_sequence = 0u64;
    let outcome: Result<(), ClientError> = async {
        loop {
            let message = tokio::select! {
                _ = sleep_until(schedule.stop) => return Ok(()),
                message = socket.next() => received(message)?,
            };
            let frame = match message {
                WsMessage::Binary(frame) if frame.starts_with(&[MSG_SYNC, SYNC_UPDATE]) => frame,
                other => {
                    check_other_message(other)?;
                    continue;
                }
            };
            let received_micros = schedule.micros(Instant::now());
            let marker = Marker::find_in_frame(&frame).ok_or_else(|| {
                ClientError::Protocol(format!(
                    "update frame without a marker ({} bytes)",
                    frame.len()
                ))
            })?;
            report.received_total += 1;
            if marker.sequence < next_sequence {
                // A frame with an edit this observer already has: a node may send an edit
                // again (e.g. when repairing a replica); the first arrival counts.
                report.repeated += 1;
                continue;
            }
            if marker.sequence > next_sequence {
                report.sequence_gaps += 1;
            }
            next_sequence = marker.sequence + 1;
            if (window_start..window_end).contains(&received_micros) {
                report.received_during_window += 1;
            }
            if (window_start..window_end).contains(&marker.sent_micros) {
                report.received_sent_in_window += 1;
                let latency = received_micros.saturating_sub(marker.sent_micros);
                report
                    .latencies_micros
                    .push(latency.min(u64::from(u32::MAX)) as u32);
            }
        }
    }
    .await;
    report.error = outcome.err();
    close_quietly(socket).await;
    report
}

async fn close_quietly(mut socket: Socket) {
    // The server may already be gone; a close that does not finish quickly is abandoned.
    let _ = timeout(Duration::from_secs(2), socket.close(None)).await;
}

/// Escapes everything but RFC 3986's unreserved characters, for a query parameter.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Samples `pid` if one was given; a failed read is reported once and treated as absent.
fn sample(pid: Option<u32>) -> Option<ProcessSample> {
    let pid = pid?;
    match ProcessSample::read(pid) {
        Ok(sample) => Some(sample),
        Err(err) => {
            eprintln!("warning: cannot read /proc/{pid}: {err}");
            None
        }
    }
}

#[derive(Serialize)]
struct Results {
    url: String,
    observer_url: Option<String>,
    rooms: usize,
    clients_per_room: usize,
    connections: usize,
    rate_per_room: f64,
    warmup_s: f64,
    duration_s: f64,
    connect_s: f64,
    edits_sent_total: u64,
    edits_sent_in_window: u64,
    received_total: u64,
    expected_deliveries: u64,
    deliveries: u64,
    missing_deliveries: u64,
    sequence_gaps: u64,
    repeated: u64,
    delivered_per_s: f64,
    latency_ms: Option<LatencyMs>,
    errors: usize,
    closed_by_server: usize,
    error_examples: Vec<String>,
    server: Option<ServerUsage>,
    loadgen_cpu_percent: Option<f64>,
}

#[derive(Serialize)]
struct LatencyMs {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

#[derive(Serialize)]
struct ServerUsage {
    rss_before_connect_kib: u64,
    rss_idle_kib: u64,
    rss_end_kib: u64,
    idle_rss_per_connection_bytes: f64,
    cpu_in_window_s: f64,
    cpu_percent: f64,
    cpu_us_per_delivery: Option<f64>,
}

impl LatencyMs {
    fn from_samples(mut samples: Vec<u32>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            f64::from(samples[index]) / 1000.0
        };
        Some(Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        })
    }
}

fn print_table(results: &Results) {
    let row = |name: &str, value: String| println!("  {name:<34} {value}");
    println!(
        "loadgen: {} rooms x {} clients = {} connections, {} edits/s per room, {:?} warmup, {:?} measured",
        results.rooms,
        results.clients_per_room,
        results.connections,
        results.rate_per_room,
        Duration::from_secs_f64(results.warmup_s),
        Duration::from_secs_f64(results.duration_s),
    );
    if let Some(observer_url) = &results.observer_url {
        row(
            "writers / observers connect to",
            format!("{} / {observer_url}", results.url),
        );
    }
    row(
        "connect + handshake, all clients",
        format!("{:.2} s", results.connect_s),
    );
    row(
        "edits sent in window (whole run)",
        format!(
            "{} ({})",
            results.edits_sent_in_window, results.edits_sent_total
        ),
    );
    row(
        "updates received (whole run)",
        results.received_total.to_string(),
    );
    row(
        "deliveries (expected)",
        format!("{} ({})", results.deliveries, results.expected_deliveries),
    );
    row("missing deliveries", results.missing_deliveries.to_string());
    row("sequence gaps", results.sequence_gaps.to_string());
    row("repeated or late (not timed)", results.repeated.to_string());
    row(
        "delivered updates/s",
        format!("{:.0}", results.delivered_per_s),
    );
    match &results.latency_ms {
        Some(l) => row(
            "fan-out latency ms p50/p90/p99",
            format!("{:.2} / {:.2} / {:.2}", l.p50, l.p90, l.p99),
        ),
        None => row("fan-out latency", "no samples".to_owned()),
    }
    if let Some(l) = &results.latency_ms {
        row(
            "fan-out latency ms p99.9/max",
            format!("{:.2} / {:.2}", l.p999, l.max),
        );
    }
    row(
        "errors / closed by server",
        format!("{} / {}", results.errors, results.closed_by_server),
    );
    for example in &results.error_examples {
        row("  e.g.", example.clone());
    }
    match &results.server {
        Some(s) => {
            row(
                "server RSS before/idle/end",
                format!(
                    "{:.1} / {:.1} / {:.1} MiB",
                    s.rss_before_connect_kib as f64 / 1024.0,
                    s.rss_idle_kib as f64 / 1024.0,
                    s.rss_end_kib as f64 / 1024.0
                ),
            );
            row(
                "server idle RSS per connection",
                format!("{:.0} bytes", s.idle_rss_per_connection_bytes),
            );
            row(
                "server CPU in window",
                format!(
                    "{:.2} s ({:.0}% of one core)",
                    s.cpu_in_window_s, s.cpu_percent
                ),
            );
            row(
                "server CPU per delivered update",
                s.cpu_us_per_delivery
                    .map_or("n/a".to_owned(), |us| format!("{us:.2} us")),
            );
        }
        None => row("server usage", "not sampled (no --server-pid)".to_owned()),
    }
    if let Some(percent) = results.loadgen_cpu_percent {
        row(
            "loadgen CPU in window",
            format!("{percent:.0}% of one core"),
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("loadgen: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the whole scenario; `Ok(false)` when it ran but saw errors or lost deliveries.
async fn run(args: Args) -> anyhow::Result<bool> {
    args.validate()?;
    let connections = args.rooms * args.clients;
    let prefix = args
        .room_prefix
        .clone()
        .unwrap_or_else(|| format!("load-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let base_url = args.url.trim_end_matches('/').to_owned();
    let observer_base_url = args.observer_url.as_deref().map_or_else(
        || base_url.clone(),
        |url| url.trim_end_matches('/').to_owned(),
    );
    let period = Duration::from_secs_f64(1.0 / args.rate);

    let before_connect = sample(args.server_pid);
    if observer_base_url == base_url {
        eprintln!("loadgen: connecting {connections} clients to {base_url} ({prefix}-*)");
    } else {
        eprintln!(
            "loadgen: connecting {connections} clients ({prefix}-*): writers to {base_url}, \
             observers to {observer_base_url}"
        );
    }
    let connect_started = Instant::now();
    let connect_timeout = args.connect_timeout;
    let token = args.token.as_deref().map(percent_encode);
    let mut connected: Vec<(usize, usize, Socket)> = Vec::with_capacity(connections);
    let mut attempts = futures_util::stream::iter(
        (0..args.rooms).flat_map(|room| (0..args.clients).map(move |client| (room, client))),
    )
    .map(|(room, client)| {
        let room_name = format!("{prefix}-{room}");
        // Client 0 of each room is its writer.
        let base = if client == 0 {
            &base_url
        } else {
            &observer_base_url
        };
        let mut url = format!("{base}/ws/{room_name}");
        if let Some(token) = &token {
            url.push_str("?token=");
            url.push_str(token);
        }
        async move {
            let outcome = match timeout(connect_timeout, connect_client(&url, &room_name)).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!(
                    "handshake in room {room_name} took over {connect_timeout:?}"
                )),
            };
            (room, client, outcome)
        }
    })
    .buffer_unordered(args.connect_concurrency);
    let mut connect_failures = Vec::new();
    while let Some((room, client, outcome)) = attempts.next().await {
        match outcome {
            Ok(socket) => connected.push((room, client, socket)),
            Err(err) => connect_failures.push(format!("{err:#}")),
        }
    }
    drop(attempts);
    let connect_s = connect_started.elapsed().as_secs_f64();
    if !connect_failures.is_empty() {
        eprintln!(
            "loadgen: {} of {connections} connections failed; first: {}",
            connect_failures.len(),
            connect_failures[0]
        );
        for (_, _, socket) in connected {
            close_quietly(socket).await;
        }
        return Ok(false);
    }
    eprintln!("loadgen: all {connections} connected in {connect_s:.2} s");

    // Let the server finish whatever joining left behind before calling its memory idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = sample(args.server_pid);

    let now = Instant::now();
    let start = now + Duration::from_millis(200);
    let measure_start = start + args.warmup;
    let measure_end = measure_start + args.duration;
    let schedule = Arc::new(Schedule {
        epoch: now,
        start,
        measure_start,
        measure_end,
        stop: measure_end + args.drain,
    });
    let mut clients = JoinSet::new();
    for (room, client, socket) in connected {
        let schedule = schedule.clone();
        if client == 0 {
            clients.spawn(run_writer(socket, room, args.rooms, period, schedule));
        } else {
            clients.spawn(run_observer(socket, schedule));
        }
    }
    eprintln!(
        "loadgen: writing; warmup {:?}, measuring {:?}",
        args.warmup, args.duration
    );

    sleep_until(measure_start).await;
    let (server_start, self_start) = (sample(args.server_pid), ProcessSample::read_self().ok());
    sleep_until(measure_end).await;
    let (server_end, self_end) = (sample(args.server_pid), ProcessSample::read_self().ok());

    // Every client returns by `stop` plus its close; anything later is hung.
    let mut reports = Vec::with_capacity(connections);
    let join_deadline = schedule.stop + Duration::from_secs(10);
    while let Ok(Some(joined)) = timeout(
        join_deadline.saturating_duration_since(Instant::now()),
        clients.join_next(),
    )
    .await
    {
        reports.push(joined.context("a client task panicked")?);
    }
    let hung = connections - reports.len();
    clients.abort_all();

    let results = summarize(
        &args,
        connections,
        connect_s,
        hung,
        reports,
        [before_connect, idle, server_start, server_end],
        self_start.zip(self_end),
    );
    print_table(&results);
    if args.json {
        println!("{}", serde_json::to_string(&results)?);
    }
    Ok(results.errors == 0 && results.missing_deliveries == 0 && results.sequence_gaps == 0)
}

fn summarize(
    args: &Args,
    connections: usize,
    connect_s: f64,
    hung: usize,
    reports: Vec<ClientReport>,
    [before_connect, idle, server_start, server_end]: [Option<ProcessSample>; 4],
    loadgen_cpu: Option<(ProcessSample, ProcessSample)>,
) -> Results {
    let observers_per_room = (args.clients - 1) as u64;
    let (mut edits_sent_in_window, mut deliveries, mut during_window, mut gaps) = (0, 0, 0, 0);
    let (mut edits_sent_total, mut received_total, mut repeated) = (0, 0, 0);
    let mut latencies = Vec::new();
    let mut errors_by_message: BTreeMap<String, usize> = BTreeMap::new();
    let (mut errors, mut closed_by_server) = (hung, 0);
    if hung > 0 {
        errors_by_message.insert(format!("{hung} clients did not finish in time"), hung);
    }
    for report in reports {
        edits_sent_in_window += report.sent_in_window;
        edits_sent_total += report.sent_total;
        received_total += report.received_total;
        deliveries += report.received_sent_in_window;
        during_window += report.received_during_window;
        gaps += report.sequence_gaps;
        repeated += report.repeated;
        latencies.extend_from_slice(&report.latencies_micros);
        if let Some(error) = report.error {
            errors += 1;
            if matches!(error, ClientError::Closed(_)) {
                closed_by_server += 1;
            }
            *errors_by_message
                .entry(error.message().to_owned())
                .or_default() += 1;
        }
    }
    let mut error_examples: Vec<(String, usize)> = errors_by_message.into_iter().collect();
    error_examples.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    let expected_deliveries = edits_sent_in_window * observers_per_room;
    let window_s = args.duration.as_secs_f64();
    let server = match (before_connect, idle, server_start, server_end) {
        (Some(before), Some(idle), Some(start), Some(end)) => {
            let cpu_in_window_s = end.cpu.saturating_sub(start.cpu).as_secs_f64();
            Some(ServerUsage {
                rss_before_connect_kib: before.rss_bytes / 1024,
                rss_idle_kib: idle.rss_bytes / 1024,
                rss_end_kib: end.rss_bytes / 1024,
                idle_rss_per_connection_bytes: idle.rss_bytes.saturating_sub(before.rss_bytes)
                    as f64
                    / connections as f64,
                cpu_in_window_s,
                cpu_percent: 100.0 * cpu_in_window_s / window_s,
                cpu_us_per_delivery: (during_window > 0)
                    .then(|| cpu_in_window_s * 1e6 / during_window as f64),
            })
        }
        _ => None,
    };
    Results {
        url: args.url.clone(),
        observer_url: args.observer_url.clone(),
        rooms: args.rooms,
        clients_per_room: args.clients,
        connections,
        rate_per_room: args.rate,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: window_s,
        connect_s,
        edits_sent_total,
        edits_sent_in_window,
        received_total,
        expected_deliveries,
        deliveries,
        missing_deliveries: expected_deliveries.saturating_sub(deliveries),
        sequence_gaps: gaps,
        repeated,
        delivered_per_s: during_window as f64 / window_s,
        latency_ms: LatencyMs::from_samples(latencies),
        errors,
        closed_by_server,
        error_examples: error_examples
            .into_iter()
            .take(ERRORS_LISTED)
            .map(|(message, count)| format!("{count} x {message}"))
            .collect(),
        server,
        loadgen_cpu_percent: loadgen_cpu
            .map(|(start, end)| 100.0 * end.cpu.saturating_sub(start.cpu).as_secs_f64() / window_s),
    }
}
