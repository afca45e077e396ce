//! Logs (tracing) and metrics (Prometheus).

use metrics::{Counter, Gauge, counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global log subscriber. `RUST_LOG` overrides the default filter.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,actix_server=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Another subscriber may exist already (tests); keeping it is fine.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Installs the Prometheus recorder; metrics registered before this are lost, so the
/// application calls it before building anything that records.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    const LATENCY_BUCKETS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];
    const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_updates".into()), BATCH_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    // Only the first application of a process installs its recorder (tests start several);
    // the others render an empty registry.
    let _ = metrics::set_global_recorder(recorder);
    Ok(handle)
}

/// Metrics of the WebSocket sessions, registered once and cloned into each session.
#[derive(Clone)]
pub struct SessionMetrics {
    /// `tandem_connections`: open WebSocket connections.
    pub connections: Gauge,
    /// `tandem_updates_fanned_out_total`: frames delivered to subscribers.
    pub fanned_out: Counter,
}

impl SessionMetrics {
    /// Registers the session metrics.
    pub fn register() -> Self {
        Self {
            connections: gauge!("tandem_connections"),
            fanned_out: counter!("tandem_updates_fanned_out_total"),
        }
    }
}

/// Counts a frame or connection refused, by reason (`tandem_frames_refused_total`).
pub fn refused(reason: &'static str) {
    counter!("tandem_frames_refused_total", "reason" => reason).increment(1);
}
