//! What every store test needs: its own SQLite database, a registry whose metrics it can
//! read, client-side documents, and bounded waits on a connection's frames.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use crdt_store::{
    Delivery, RoomConnection, RoomId, RoomRegistry, Storage, StoreConfig, doc_options, new_doc,
};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use migrations::{Migrator, MigratorTrait};
use protocol::Message;
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use tempfile::TempDir;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

/// How long a test waits for an event that should come promptly. Reaching it is a failure,
/// never a way to let time pass.
pub const EVENT_LIMIT: Duration = Duration::from_secs(10);

/// A database of its own in a temporary directory, deleted with the value.
pub struct TestDb {
    dir: TempDir,
    /// The store's handle on the database.
    pub storage: Storage,
}

impl TestDb {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let storage = connect_and_migrate(&db_url(&dir)).await;
        Self { dir, storage }
    }

    /// A second, independent connection pool on the same file, as another server process
    /// (or the same one after a restart) would open it.
    pub async fn reopen(&self) -> Storage {
        connect_and_migrate(&db_url(&self.dir)).await
    }

    /// A plain connection for SQL the store itself never issues (inspection, corruption).
    pub async fn raw(&self) -> DatabaseConnection {
        Database::connect(db_url(&self.dir))
            .await
            .expect("raw SQLite connection")
    }

    /// Starts a registry on this database, with its metrics recorded by the returned probe.
    pub async fn start(&self, config: StoreConfig) -> (RoomRegistry, MetricsProbe) {
        start_registry(config, self.storage.clone()).await
    }
}

fn db_url(dir: &TempDir) -> String {
    format!("sqlite://{}/t.db", dir.path().display())
}

/// Opens `url` the way the binary does at start-up (the store's connection options in
/// durable mode, then every migration) and hands the connection to the store. The store
/// itself neither connects nor migrates, so its tests do what the binary does; `migrations`
/// is a dev-dependency for this alone.
async fn connect_and_migrate(url: &str) -> Storage {
    let db = Database::connect(Storage::connect_options(url, true))
        .await
        .expect("SQLite database opens");
    Migrator::up(&db, None)
        .await
        .expect("SQLite database migrates");
    Storage::new(db)
}

/// Starts a registry over `storage`, with its metrics recorded by the returned probe.
///
/// Maintenance then runs only when the test calls [`RoomRegistry::maintain`]: the background
/// pass would otherwise take its first tick at a moment the test does not control (whenever
/// the runtime next turns its timers, possibly after rooms were loaded) and race the test's
/// own passes. `shutdown` stops that pass and nothing else; with no room loaded yet it has
/// nothing to version or flush, and the writer keeps committing afterwards.
pub async fn start_registry(config: StoreConfig, storage: Storage) -> (RoomRegistry, MetricsProbe) {
    let probe = MetricsProbe::default();
    // The store registers its metric handles once, inside `start`; registered under this
    // local recorder, they report to this probe alone, so parallel tests do not mix counts.
    let registry = metrics::with_local_recorder(&probe, || RoomRegistry::start(config, storage));
    registry.shutdown().await;
    (registry, probe)
}

/// The configuration tests start from: the defaults, which leave an edited room alone (no
/// eviction, no automatic version) unless a test moves the clock.
pub fn test_config() -> StoreConfig {
    StoreConfig::default()
}

pub fn room_id(name: &str) -> RoomId {
    RoomId::parse(name).expect("valid room name")
}

/// Counters, gauges and histograms reported through the `metrics` facade, by name.
#[derive(Clone, Default)]
pub struct MetricsProbe {
    values: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
    samples: Arc<Mutex<HashMap<String, Arc<Samples>>>>,
}

/// Every value a histogram recorded, in order.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl metrics::HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(value);
    }
}

impl MetricsProbe {
    fn cell(&self, key: &Key) -> Arc<AtomicU64> {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.entry(key.name().to_owned()).or_default().clone()
    }

    fn read(&self, name: &str) -> Option<u64> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.get(name).map(|v| v.load(Ordering::SeqCst))
    }

    /// The value of a counter (0 if never registered).
    pub fn counter(&self, name: &str) -> u64 {
        self.read(name).unwrap_or(0)
    }

    /// The value of a gauge (0.0 if never registered).
    pub fn gauge(&self, name: &str) -> f64 {
        self.read(name).map_or(0.0, f64::from_bits)
    }

    /// Every value a histogram recorded so far, in order.
    pub fn histogram(&self, name: &str) -> Vec<f64> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.get(name).map_or_else(Vec::new, |s| {
            s.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
        })
    }
}

impl Recorder for MetricsProbe {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        Histogram::from_arc(samples.entry(key.name().to_owned()).or_default().clone())
    }
}

/// A client's own copy of a document, configured like the server's.
pub struct ClientDoc {
    pub doc: Doc,
}

impl ClientDoc {
    pub fn new() -> Self {
        Self { doc: new_doc() }
    }

    /// A copy with a fixed client id, for histories that must replay identically.
    pub fn with_id(id: u64) -> Self {
        let doc = Doc::with_options(yrs::Options {
            client_id: yrs::block::ClientID::new(id),
            ..doc_options()
        });
        Self { doc }
    }

    /// Inserts `text` at UTF-16 offset `at` of root text `root`; returns the v1 update.
    pub fn insert(&self, root: &str, at: u32, text: &str) -> Bytes {
        let root = self.doc.get_or_insert_text(root);
        let mut txn = self.doc.transact_mut();
        root.insert(&mut txn, at, text);
        Bytes::from(txn.encode_update_v1())
    }

    /// Appends `text` to root text `root`; returns the v1 update.
    pub fn append(&self, root: &str, text: &str) -> Bytes {
        self.insert(root, self.len(root), text)
    }

    /// Removes `len` UTF-16 units at `at` of root text `root`; returns the v1 update.
    pub fn remove(&self, root: &str, at: u32, len: u32) -> Bytes {
        let root = self.doc.get_or_insert_text(root);
        let mut txn = self.doc.transact_mut();
        root.remove_range(&mut txn, at, len);
        Bytes::from(txn.encode_update_v1())
    }

    pub fn text(&self, root: &str) -> String {
        let root = self.doc.get_or_insert_text(root);
        root.get_string(&self.doc.transact())
    }

    /// Length of root text `root` in UTF-16 units.
    pub fn len(&self, root: &str) -> u32 {
        let root = self.doc.get_or_insert_text(root);
        root.len(&self.doc.transact())
    }

    /// Applies everything `other` has that this copy lacks, as a sync step 2 would.
    pub fn catch_up_with(&self, other: &ClientDoc) {
        let missing = {
            let have = self.doc.transact().state_vector();
            other.doc.transact().encode_diff_v1(&have)
        };
        self.apply(&missing);
    }

    pub fn apply(&self, update: &[u8]) {
        apply_to(&self.doc, update);
    }
}

pub fn apply_to(doc: &Doc, update: &[u8]) {
    let update = Update::decode_v1(update).expect("update decodes");
    doc.transact_mut()
        .apply_update(update)
        .expect("update applies");
}

/// A fresh document holding exactly `state` (a v1 update).
pub fn doc_from(state: &[u8]) -> Doc {
    let doc = new_doc();
    apply_to(&doc, state);
    doc
}

/// The next delivery of `connection`; fails the test if none comes within [`EVENT_LIMIT`].
pub async fn next_delivery(connection: &mut RoomConnection) -> Delivery {
    tokio::time::timeout(EVENT_LIMIT, connection.recv())
        .await
        .expect("a delivery within the limit")
        .expect("the room is still open")
}

/// The next frame of `connection`; fails the test on a lag or if none comes in time.
pub async fn next_frame(connection: &mut RoomConnection) -> Bytes {
    match next_delivery(connection).await {
        Delivery::Frame(frame) => frame,
        Delivery::Lagged => panic!("connection lagged"),
    }
}

/// The next frame of `connection`, decoded.
pub async fn next_message(connection: &mut RoomConnection) -> Message {
    protocol::decode_message(&next_frame(connection).await).expect("the store sends valid frames")
}

/// The update payload of the next frame; fails if it is another message.
pub async fn next_update(connection: &mut RoomConnection) -> Bytes {
    match next_message(connection).await {
        Message::Update(update) => update,
        other => panic!("expected an update frame, got {other:?}"),
    }
}

/// What `connection` has already been handed, without waiting: `None` if nothing is queued.
pub fn delivered_already(connection: &mut RoomConnection) -> Option<Delivery> {
    poll_once(connection.recv()).map(|delivery| delivery.expect("the room is still open"))
}

/// Polls `future` exactly once.
pub fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Takes SQLite's write lock on a separate connection, so the store's writer cannot commit
/// until the returned transaction ends. Readers are not blocked (write-ahead log).
pub async fn hold_write_lock(raw: &DatabaseConnection) -> DatabaseTransaction {
    raw.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
    .expect("write lock")
}

/// Lets every task that is ready run (the writer among them) before the test goes on. On the
/// single-threaded test runtime, each yield runs every other task that was woken.
pub async fn let_other_tasks_run() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Every row of `room`'s update log as `(id, data)`, read with plain SQL.
pub async fn log_rows(db: &impl ConnectionTrait, room: &RoomId) -> Vec<(i64, Vec<u8>)> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT id, data FROM room_updates WHERE room_id = ? ORDER BY id",
            [room.as_str().into()],
        ))
        .await
        .expect("log rows");
    rows.iter()
        .map(|row| {
            (
                row.try_get::<i64>("", "id").expect("id"),
                row.try_get::<Vec<u8>>("", "data").expect("data"),
            )
        })
        .collect()
}

/// `room`'s snapshot as `(last_update_id, data)`, read with plain SQL.
pub async fn snapshot_row(db: &impl ConnectionTrait, room: &RoomId) -> Option<(i64, Vec<u8>)> {
    db.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "SELECT last_update_id, data FROM room_snapshots WHERE room_id = ?",
        [room.as_str().into()],
    ))
    .await
    .expect("snapshot row")
    .map(|row| {
        (
            row.try_get::<i64>("", "last_update_id").expect("marker"),
            row.try_get::<Vec<u8>>("", "data").expect("data"),
        )
    })
}

/// `room`'s snapshot and log together, read in one transaction so they form one state.
pub async fn stored_rows(
    db: &DatabaseConnection,
    room: &RoomId,
) -> (Option<(i64, Vec<u8>)>, Vec<(i64, Vec<u8>)>) {
    let txn = db.begin().await.expect("read transaction");
    let snapshot = snapshot_row(&txn, room).await;
    let rows = log_rows(&txn, room).await;
    txn.commit().await.expect("end read transaction");
    (snapshot, rows)
}

/// The updates logged for `room` after its snapshot, oldest first.
pub async fn logged_updates(storage: &Storage, room: &RoomId) -> Vec<Vec<u8>> {
    storage.load(room).await.expect("load").updates
}

/// The text of root `root` of what `storage` holds for `room`, rebuilt from the snapshot, its
/// pending part and the log exactly as a load would.
pub async fn stored_text(storage: &Storage, room: &RoomId, root: &str) -> String {
    let stored = storage.load(room).await.expect("load");
    let doc = new_doc();
    for bytes in stored.pieces() {
        apply_to(&doc, bytes);
    }
    let text = doc.get_or_insert_text(root);
    text.get_string(&doc.transact())
}
