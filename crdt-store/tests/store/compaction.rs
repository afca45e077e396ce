//! Compaction folds a room's log into its snapshot in one transaction: nothing merged is lost,
//! nothing appended meanwhile is deleted, and racing compactions cannot double-apply a row.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use bytes::Bytes;
use crdt_store::storage::LogEntry;
use crdt_store::{RoomId, Storage, StoreConfig};
use tokio::time::Instant;

use crate::support::{
    ClientDoc, EVENT_LIMIT, TestDb, doc_from, log_rows, room_id, snapshot_row, start_registry,
    stored_rows, stored_text, test_config,
};

/// Appends `count` edits of `client` to `room` directly through storage, one row each.
async fn append_edits(storage: &Storage, client: &ClientDoc, room: &RoomId, count: usize) {
    for i in 0..count {
        let update = client.append("t", &format!("<{i}>"));
        storage
            .append(&[LogEntry {
                room,
                update: &update,
            }])
            .await
            .expect("append");
    }
}

/// Waits until `room`'s log holds `expected` rows (a compaction the store started by itself
/// has finished), failing the test after [`EVENT_LIMIT`].
async fn wait_for_log_len(storage: &Storage, room: &RoomId, expected: u64) {
    let deadline = Instant::now() + EVENT_LIMIT;
    loop {
        let len = storage.log_len(room).await.expect("log length");
        if len == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "log of {room} still holds {len} rows, expected {expected}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn the_registry_folds_a_long_log_into_the_snapshot() {
    const THRESHOLD: u64 = 10;
    let db = TestDb::new().await;
    let (registry, metrics) = db
        .start(StoreConfig {
            compact_after_updates: THRESHOLD,
            ..test_config()
        })
        .await;
    let room = room_id("compacted");
    let connection = registry.connect(&room).await.expect("connect");
    let client = ClientDoc::new();
    for i in 1..=35u64 {
        connection
            .apply_update(client.append("t", &format!("<{i}>")), None)
            .await
            .expect("apply");
        // After the flush the writer has committed the update and, on every tenth, started a
        // compaction; no update is applied while one runs, so each one merges the whole log.
        registry.flush().await;
        wait_for_log_len(&db.storage, &room, i % THRESHOLD).await;
    }
    assert_eq!(metrics.counter("tandem_compactions_total"), 3);
    let (marker, snapshot) = snapshot_row(&db.raw().await, &room)
        .await
        .expect("a snapshot exists");
    let snapshot_text = crdt_store::document::to_json(&doc_from(&snapshot)).unwrap()["t"].clone();
    let expected_in_snapshot: String = (1..=30).map(|i| format!("<{i}>")).collect();
    assert_eq!(snapshot_text, expected_in_snapshot.as_str());
    let rows = log_rows(&db.raw().await, &room).await;
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|(id, _)| *id > marker));

    // What the database holds rebuilds the document a fresh process would serve.
    assert_eq!(stored_text(&db.storage, &room, "t").await, client.text("t"));
    let (restarted, _) = start_registry(test_config(), db.reopen().await).await;
    let reloaded = restarted.connect(&room).await.expect("reload");
    assert_eq!(
        reloaded.room().to_json().unwrap(),
        connection.room().to_json().unwrap()
    );
    assert_eq!(
        reloaded.room().to_json().unwrap()["t"].as_str(),
        Some(client.text("t").as_str())
    );
}

#[tokio::test]
async fn compaction_merges_the_log_and_reports_whether_it_did() {
    let db = TestDb::new().await;
    let room = room_id("direct");
    let client = ClientDoc::new();
    assert!(
        !db.storage.compact(&room).await.expect("compact"),
        "nothing to merge"
    );

    append_edits(&db.storage, &client, &room, 30).await;
    assert_eq!(db.storage.log_len(&room).await.expect("len"), 30);
    assert!(db.storage.compact(&room).await.expect("compact"));
    assert_eq!(db.storage.log_len(&room).await.expect("len"), 0);
    assert!(
        !db.storage.compact(&room).await.expect("compact"),
        "nothing new"
    );
    assert_eq!(stored_text(&db.storage, &room, "t").await, client.text("t"));

    // A second round replaces the existing snapshot.
    append_edits(&db.storage, &client, &room, 7).await;
    let last_id = log_rows(&db.raw().await, &room)
        .await
        .last()
        .expect("rows")
        .0;
    assert!(db.storage.compact(&room).await.expect("compact"));
    let (marker, _) = snapshot_row(&db.raw().await, &room)
        .await
        .expect("snapshot");
    assert_eq!(marker, last_id);
    assert!(log_rows(&db.raw().await, &room).await.is_empty());
    assert_eq!(stored_text(&db.storage, &room, "t").await, client.text("t"));
}

/// Two nodes compacting the same room at once: whichever wins, every update survives exactly
/// once and the log ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_compactions_lose_nothing() {
    let db = TestDb::new().await;
    let other_node = db.reopen().await;
    let room = room_id("raced");
    let client = ClientDoc::new();
    for round in 0..8 {
        append_edits(&db.storage, &client, &room, 20).await;
        let (first, second) = tokio::join!(db.storage.compact(&room), other_node.compact(&room));
        // One merges; the other, queued behind it, finds nothing left and says so.
        let mut outcomes = [
            first.expect("first compaction"),
            second.expect("second compaction"),
        ];
        outcomes.sort();
        assert_eq!(outcomes, [false, true], "round {round}");
        assert_eq!(
            db.storage.log_len(&room).await.expect("len"),
            0,
            "round {round}"
        );
        assert_eq!(
            stored_text(&other_node, &room, "t").await,
            client.text("t"),
            "round {round}"
        );
    }
}

/// An update can reach the log before one it builds on: a node answers a peer's sync request
/// from memory, and the peer's client may edit on top before the first node commits. The
/// dependent row is folded all the same: what waits for its dependency is kept beside the
/// snapshot, not shown, and integrated once what it needs is logged.
#[tokio::test]
async fn an_update_logged_before_its_dependency_waits_beside_the_snapshot() {
    let db = TestDb::new().await;
    let room = room_id("gap");
    let first = ClientDoc::new();
    let second = ClientDoc::new();
    let hello = first.append("t", "hello");
    second.apply(&hello);
    let world = second.append("t", " world");

    append_rows(&db.storage, &room, &[&world]).await;
    assert!(db.storage.compact(&room).await.expect("compact"));
    assert_eq!(db.storage.log_len(&room).await.expect("len"), 0);
    assert_eq!(
        stored_text(&db.storage, &room, "t").await,
        "",
        "nothing shows yet"
    );

    let more = second.append("t", "!");
    append_rows(&db.storage, &room, &[&hello, &more]).await;
    assert!(db.storage.compact(&room).await.expect("compact"));
    assert_eq!(db.storage.log_len(&room).await.expect("len"), 0);
    assert_eq!(stored_text(&db.storage, &room, "t").await, "hello world!");
}

/// Random edits by four clients passing each other's updates around, logged in an order that
/// often puts an update before the ones it builds on, then appended in random chunks with a
/// compaction after each: what is stored always rebuilds the clients' converged text. (Among
/// these histories is one where folding a pending update into the snapshot changed the text.)
///
/// Whenever the rows applied one by one leave nothing waiting, what is stored shows what they
/// show. While something waits, the text may differ: yrs integrates a waiting update only
/// when what it lacks arrives in a later one, so which waiting structs show depends on the
/// order they are applied in (Yjs differs again), and the part kept beside the snapshot is
/// applied as one update. What must converge is the end.
#[tokio::test]
async fn compacting_a_log_written_out_of_causal_order_loses_nothing() {
    for seed in 1..=30u64 {
        let mut rng = XorShift(seed * 7919 + 1);
        let clients: Vec<ClientDoc> = (100..104).map(ClientDoc::with_id).collect();
        let mut log: Vec<Bytes> = Vec::new();
        let mut held: Vec<Bytes> = Vec::new();
        for _ in 0..120 {
            let author = rng.below(4) as usize;
            let len = clients[author].len("t");
            let update = if len > 0 && rng.below(3) == 0 {
                let at = rng.below(u64::from(len)) as u32;
                let count = (rng.below(4) as u32 + 1).min(len - at);
                clients[author].remove("t", at, count)
            } else {
                let at = rng.below(u64::from(len) + 1) as u32;
                clients[author].insert("t", at, &"abcdefgh"[..rng.below(5) as usize + 1])
            };
            for (i, other) in clients.iter().enumerate() {
                if i != author && rng.below(2) == 0 {
                    other.catch_up_with(&clients[author]);
                }
            }
            // Its node is slow a third of the time: the row comes later.
            if rng.below(3) == 0 {
                held.push(update);
            } else {
                log.push(update);
            }
            if rng.below(4) == 0 {
                log.append(&mut held);
            }
        }
        log.append(&mut held);
        for a in &clients {
            for b in &clients {
                a.catch_up_with(b);
            }
        }
        let converged = clients[0].text("t");

        let db = TestDb::new().await;
        let room = room_id("shuffled");
        let mut appended = 0;
        while appended < log.len() {
            let end = (appended + rng.below(15) as usize + 1).min(log.len());
            let chunk: Vec<&[u8]> = log[appended..end].iter().map(|u| &u[..]).collect();
            append_rows(&db.storage, &room, &chunk).await;
            appended = end;
            db.storage.compact(&room).await.expect("compact");
            if let Some(expected) = complete_text_of(&log[..appended]) {
                assert_eq!(
                    stored_text(&db.storage, &room, "t").await,
                    expected,
                    "seed {seed}, {appended} rows appended"
                );
            }
        }
        assert_eq!(
            db.storage.log_len(&room).await.expect("len"),
            0,
            "seed {seed}"
        );
        assert_eq!(
            stored_text(&db.storage, &room, "t").await,
            converged,
            "seed {seed}"
        );
    }
}

/// The text a document holding exactly `updates` shows, when applying them one by one
/// leaves nothing waiting (every struct integrated, so no order can show another text).
fn complete_text_of(updates: &[Bytes]) -> Option<String> {
    let doc = ClientDoc::new();
    for update in updates {
        doc.apply(update);
    }
    let waits = {
        let txn = yrs::Transact::transact(&doc.doc);
        let store = yrs::ReadTxn::store(&txn);
        store.pending_update().is_some() || store.pending_ds().is_some()
    };
    (!waits).then(|| doc.text("t"))
}

/// Appends `updates` to `room` in one transaction, in order.
async fn append_rows(storage: &Storage, room: &RoomId, updates: &[&[u8]]) {
    let entries: Vec<LogEntry<'_>> = updates
        .iter()
        .map(|update| LogEntry { room, update })
        .collect();
    storage.append(&entries).await.expect("append");
}

/// A tiny deterministic generator: each seed replays the same history.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Compaction while the log keeps growing (in this room, and in every other one: each group
/// commit is a write): every attempt succeeds, and rows appended meanwhile are either merged
/// or left in the log, never deleted unmerged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_succeeds_while_updates_are_appended() {
    let db = TestDb::new().await;
    let compactor = db.reopen().await;
    let room = room_id("busy");
    let client = ClientDoc::new();
    append_edits(&db.storage, &client, &room, 20).await;

    let writer = {
        let storage = db.storage.clone();
        let room = room.clone();
        tokio::spawn(async move {
            let client = client;
            append_edits(&storage, &client, &room, 150).await;
            client
        })
    };
    let mut attempts = 0;
    while !writer.is_finished() {
        attempts += 1;
        let outcome = compactor.compact(&room).await;
        assert!(outcome.is_ok(), "attempt {attempts}: {outcome:?}");
        let (snapshot, rows) = stored_rows(&db.raw().await, &room).await;
        let (marker, _) = snapshot.expect("the first attempt wrote a snapshot");
        assert!(rows.iter().all(|(id, _)| *id > marker));
    }
    let client = writer.await.expect("writer task");
    // The last attempt in the loop may have merged everything already.
    compactor.compact(&room).await.expect("final compaction");
    assert_eq!(db.storage.log_len(&room).await.expect("len"), 0);
    assert_eq!(stored_text(&db.storage, &room, "t").await, client.text("t"));
}

/// Polls `future` until it completes or has been pending `budget` times, then drops it.
async fn run_for_polls<F: Future>(future: F, budget: usize) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut pending = 0;
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending if pending == budget => Poll::Ready(None),
        Poll::Pending => {
            pending += 1;
            Poll::Pending
        }
    })
    .await
}

/// A compaction interrupted at any of its await points (the task cancelled, the process gone)
/// leaves either the old state or the new one, never a mix.
#[tokio::test]
async fn an_interrupted_compaction_leaves_the_old_state_or_the_new() {
    let db = TestDb::new().await;
    let raw = db.raw().await;
    let room = room_id("interrupted");
    let client = ClientDoc::new();
    append_edits(&db.storage, &client, &room, 12).await;
    let (no_snapshot, rows_before) = stored_rows(&raw, &room).await;
    assert!(no_snapshot.is_none());
    let last_id = rows_before.last().expect("rows").0;
    let expected = client.text("t");

    let mut interrupted = 0;
    loop {
        assert!(interrupted < 10_000, "compaction never finished");
        let finished = run_for_polls(db.storage.compact(&room), interrupted).await;
        // A dropped transaction is rolled back, or committed if its commit was already on
        // its way; either way the two tables are read together, as one state.
        let (snapshot, rows) = stored_rows(&raw, &room).await;
        match &snapshot {
            None => assert_eq!(rows, rows_before, "after {interrupted} polls: log changed"),
            Some((marker, _)) => {
                assert_eq!(*marker, last_id, "after {interrupted} polls");
                assert!(
                    rows.is_empty(),
                    "after {interrupted} polls: merged rows kept"
                );
            }
        }
        assert_eq!(stored_text(&db.storage, &room, "t").await, expected);
        match finished {
            // It ran to the end: it merged, unless an interrupted attempt had committed
            // just before being dropped.
            Some(outcome) => {
                let merged = outcome.expect("compaction");
                assert!(merged || interrupted > 0);
                assert!(snapshot.is_some());
                break;
            }
            None => interrupted += 1,
        }
    }
    assert!(interrupted > 0, "compaction never reached an await point");
}
