//! Metric handles, registered once and cloned where needed so the hot path only touches
//! atomics (never the registry's name lookup).

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

/// The store's metrics. Exported by whatever recorder the binary installs.
#[derive(Clone)]
pub struct StoreMetrics {
    /// `tandem_rooms_in_memory`
    pub rooms_in_memory: Gauge,
    /// `tandem_room_loads_total`
    pub room_loads: Counter,
    /// `tandem_room_load_failures_total`
    pub room_load_failures: Counter,
    /// `tandem_room_evictions_total`
    pub room_evictions: Counter,
    /// `tandem_updates_applied_total`
    pub updates_applied: Counter,
    /// `tandem_persist_batch_seconds`
    pub persist_batch_seconds: Histogram,
    /// `tandem_persist_batch_updates`
    pub persist_batch_updates: Histogram,
    /// `tandem_persist_backlog`: commands waiting for the writer.
    pub persist_backlog: Gauge,
    /// `tandem_persist_failures_total`
    pub persist_failures: Counter,
    /// `tandem_persist_refused_total`: updates the database refused for good, dropped and
    /// refused to their senders.
    pub persist_refused: Counter,
    /// `tandem_compactions_total`
    pub compactions: Counter,
    /// `tandem_versions_created_total`
    pub versions_created: Counter,
}

impl StoreMetrics {
    /// Registers (or looks up) every store metric.
    pub fn register() -> Self {
        Self {
            rooms_in_memory: gauge!("tandem_rooms_in_memory"),
            room_loads: counter!("tandem_room_loads_total"),
            room_load_failures: counter!("tandem_room_load_failures_total"),
            room_evictions: counter!("tandem_room_evictions_total"),
            updates_applied: counter!("tandem_updates_applied_total"),
            persist_batch_seconds: histogram!("tandem_persist_batch_seconds"),
            persist_batch_updates: histogram!("tandem_persist_batch_updates"),
            persist_backlog: gauge!("tandem_persist_backlog"),
            persist_failures: counter!("tandem_persist_failures_total"),
            persist_refused: counter!("tandem_persist_refused_total"),
            compactions: counter!("tandem_compactions_total"),
            versions_created: counter!("tandem_versions_created_total"),
        }
    }
}
