//! Storage that cannot stall, and rooms that end: compaction past an update whose dependency
//! never arrives, group commits capped by bytes, an update the database refuses isolated
//! from its batch, and deletion that nothing racing it survives.

use std::time::Duration;

use bytes::Bytes;
use crdt_store::storage::LogEntry;
use crdt_store::{ApplyError, ConnectionId, Delivery, Durability, RoomId, Storage, StoreConfig};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::json;

use crate::support::{
    ClientDoc, EVENT_LIMIT, TestDb, hold_write_lock, let_other_tasks_run, log_rows, logged_updates,
    next_delivery, next_update, room_id, snapshot_row, stored_text, test_config,
};

/// Appends `updates` to `room` in one transaction, in order.
async fn append_rows(storage: &Storage, room: &RoomId, updates: &[&Bytes]) {
    let entries: Vec<LogEntry<'_>> = updates
        .iter()
        .map(|update| LogEntry { room, update })
        .collect();
    storage.append(&entries).await.expect("append");
}

/// The snapshot's pending part, read with plain SQL.
async fn pending_part(raw: &DatabaseConnection, room: &RoomId) -> Option<Vec<u8>> {
    let row = raw
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            "SELECT pending FROM room_snapshots WHERE room_id = ?",
            [room.as_str().into()],
        ))
        .await
        .expect("snapshot row")?;
    row.try_get::<Option<Vec<u8>>>("", "pending")
        .expect("pending column")
}

/// Polls `done` until it holds, failing the test after [`EVENT_LIMIT`].
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + EVENT_LIMIT;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An update built on one that is never logged waits for it forever; compaction goes on all
/// the same. Every compaction deletes every row it read (so none is read twice), the text
/// that can show does, the waiting part is kept beside the snapshot, and once the dependency
/// arrives the whole text shows.
#[tokio::test]
async fn a_dependency_that_never_arrives_does_not_stop_compaction() {
    let db = TestDb::new().await;
    let raw = db.raw().await;
    let room = room_id("waiting");
    let lost = ClientDoc::with_id(1);
    let builder = ClientDoc::with_id(2);
    let writer = ClientDoc::with_id(3);
    let missing = lost.append("other", "missing ");
    builder.apply(&missing);
    let waiting = builder.append("other", "dependent");

    append_rows(&db.storage, &room, &[&waiting]).await;
    let mut expected = String::new();
    for round in 0..5 {
        let updates: Vec<Bytes> = (0..20)
            .map(|i| {
                let text = format!("<{round}.{i}>");
                expected.push_str(&text);
                writer.append("t", &text)
            })
            .collect();
        let refs: Vec<&Bytes> = updates.iter().collect();
        append_rows(&db.storage, &room, &refs).await;
        assert!(
            db.storage.compact(&room).await.expect("compact"),
            "round {round}"
        );
        assert!(
            log_rows(&raw, &room).await.is_empty(),
            "round {round}: every row read was folded and deleted"
        );
        assert_eq!(stored_text(&db.storage, &room, "t").await, expected);
        assert_eq!(stored_text(&db.storage, &room, "other").await, "");
        assert!(pending_part(&raw, &room).await.is_some(), "round {round}");
    }
    assert!(
        !db.storage.compact(&room).await.expect("compact"),
        "an empty log is not compacted again"
    );

    append_rows(&db.storage, &room, &[&missing]).await;
    assert!(db.storage.compact(&room).await.expect("compact"));
    assert_eq!(
        stored_text(&db.storage, &room, "other").await,
        "missing dependent"
    );
    assert_eq!(stored_text(&db.storage, &room, "t").await, expected);
    assert_eq!(
        pending_part(&raw, &room).await,
        None,
        "nothing waits any more"
    );
}

/// Through the registry: a room whose first update waits for a dependency keeps its log
/// near `compact_after` however long it is edited.
#[tokio::test]
async fn a_rooms_log_stays_bounded_behind_a_missing_dependency() {
    let db = TestDb::new().await;
    let (registry, _) = db
        .start(StoreConfig {
            compact_after_updates: 10,
            ..test_config()
        })
        .await;
    let room = room_id("bounded");
    let connection = registry.connect(&room).await.expect("connect");
    let lost = ClientDoc::with_id(1);
    let builder = ClientDoc::with_id(2);
    builder.apply(&lost.append("other", "missing"));
    connection
        .apply_update(builder.append("other", "!"), None)
        .await
        .expect("apply");
    let writer = ClientDoc::with_id(3);
    for i in 0..200 {
        connection
            .apply_update(writer.append("t", &format!("{i},")), None)
            .await
            .expect("apply");
    }
    registry.flush().await;
    // Without folding past the waiting update, all 201 rows would stay in the log.
    eventually("the log is compacted", || async {
        db.storage.log_len(&room).await.expect("log length") < 30
    })
    .await;
    let snapshot = snapshot_row(&db.raw().await, &room).await;
    assert!(snapshot.is_some(), "the room was compacted");
    assert_eq!(
        stored_text(&db.storage, &room, "t").await,
        writer.text("t"),
        "everything that can show is stored"
    );
}

/// A group commit holds at most `max_batch_bytes` of updates (an update larger than that is
/// written alone), and everything queued is committed.
#[tokio::test]
async fn group_commits_are_capped_by_bytes() {
    let db = TestDb::new().await;
    let raw = db.raw().await;
    let client = ClientDoc::new();
    let updates: Vec<Bytes> = (0..12)
        .map(|i| client.append("t", &format!("{i:02}{}", "x".repeat(1000))))
        .collect();
    let size = updates[1].len();
    let oversized = client.append("t", &"y".repeat(10 * size));
    let (registry, metrics) = db
        .start(StoreConfig {
            durability: Durability::Relaxed,
            max_batch_bytes: size * 5 / 2,
            ..test_config()
        })
        .await;
    let room = room_id("capped");
    let connection = registry.connect(&room).await.expect("connect");

    // Held back, everything queues up and is taken by the writer at once.
    let lock = hold_write_lock(&raw).await;
    for update in updates.iter().take(6) {
        connection
            .apply_update(update.clone(), None)
            .await
            .expect("apply");
    }
    connection
        .apply_update(oversized.clone(), None)
        .await
        .expect("apply");
    for update in updates.iter().skip(6) {
        connection
            .apply_update(update.clone(), None)
            .await
            .expect("apply");
    }
    let_other_tasks_run().await;
    lock.rollback().await.expect("release the lock");
    registry.flush().await;

    let batches = metrics.histogram("tandem_persist_batch_updates");
    assert_eq!(batches.iter().sum::<f64>(), 13.0, "{batches:?}");
    assert!(
        batches.iter().all(|&n| n <= 2.0),
        "at most two updates fit under the cap: {batches:?}"
    );
    assert!(batches.len() >= 7, "{batches:?}");
    let mut expected: Vec<Vec<u8>> = updates[..6].iter().map(|u| u.to_vec()).collect();
    expected.push(oversized.to_vec());
    expected.extend(updates[6..].iter().map(|u| u.to_vec()));
    assert_eq!(logged_updates(&db.storage, &room).await, expected);
}

/// Makes the database refuse, for good, every update whose bytes contain `marker`: a trigger
/// stands for a value the database cannot take (too large, a violated constraint).
async fn refuse_updates_containing(raw: &DatabaseConnection, marker: &str) {
    raw.execute_unprepared(&format!(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON room_updates \
         WHEN instr(NEW.data, CAST('{marker}' AS BLOB)) > 0 \
         BEGIN SELECT RAISE(ABORT, 'this update cannot be stored'); END"
    ))
    .await
    .expect("create trigger");
}

/// One update the database refuses, in a batch with other rooms' updates: it alone is
/// dropped, its sender is told, nobody receives it, and the writer goes on with the rest and
/// with everything after.
#[tokio::test]
async fn an_update_the_database_refuses_is_isolated_and_refused_to_its_sender() {
    let db = TestDb::new().await;
    let raw = db.raw().await;
    refuse_updates_containing(&raw, "POISON").await;
    let (registry, metrics) = db.start(test_config()).await;
    let healthy = room_id("healthy");
    let poisoned = room_id("poisoned");
    let healthy_author = registry.connect(&healthy).await.expect("connect");
    let mut healthy_reader = registry.connect(&healthy).await.expect("connect");
    let poisoned_author = registry.connect(&poisoned).await.expect("connect");
    let mut poisoned_reader = registry.connect(&poisoned).await.expect("connect");
    let healthy_doc = ClientDoc::new();
    let poisoned_doc = ClientDoc::new();

    // All three wait behind the lock, so the writer takes them as one batch.
    let lock = hold_write_lock(&raw).await;
    let first = healthy_doc.append("t", "first ");
    let poison = poisoned_doc.append("t", "POISON");
    let second = healthy_doc.append("t", "second");
    let apply = |room: crdt_store::Room, update: Bytes| {
        tokio::spawn(async move {
            room.apply_update(ConnectionId::SERVER, update, None, None)
                .await
        })
    };
    let first_applied = apply(healthy_author.room().clone(), first.clone());
    let_other_tasks_run().await;
    let poison_applied = apply(poisoned_author.room().clone(), poison.clone());
    let_other_tasks_run().await;
    let second_applied = apply(healthy_author.room().clone(), second.clone());
    let_other_tasks_run().await;
    lock.rollback().await.expect("release the lock");

    first_applied.await.expect("task").expect("first commits");
    second_applied.await.expect("task").expect("second commits");
    match poison_applied.await.expect("task") {
        Err(ApplyError::NotPersisted(reason)) => {
            assert!(reason.contains("cannot be stored"), "{reason}");
        }
        other => panic!("the refused update was answered {other:?}"),
    }
    assert_eq!(next_update(&mut healthy_reader).await, first);
    assert_eq!(next_update(&mut healthy_reader).await, second);
    // The poisoned room's copy in memory holds what storage refused: its connections are
    // told to resync, and nobody receives the update.
    assert!(
        matches!(next_delivery(&mut poisoned_reader).await, Delivery::Lagged),
        "the poisoned room's connections resync"
    );
    assert_eq!(metrics.counter("tandem_persist_refused_total"), 1);
    assert_eq!(
        logged_updates(&db.storage, &healthy).await,
        vec![first.to_vec(), second.to_vec()]
    );
    assert!(logged_updates(&db.storage, &poisoned).await.is_empty());

    // The writer is not stuck: the room, loaded again from storage, shows nothing of the
    // refused update and takes the next good one.
    assert!(
        poisoned_author
            .apply_update(poison.clone(), None)
            .await
            .is_err()
    );
    let author = registry.connect(&poisoned).await.expect("connect again");
    let mut reader = registry.connect(&poisoned).await.expect("connect again");
    assert_eq!(author.room().to_json().unwrap(), json!({}));
    let fine = ClientDoc::new().append("t", "fine");
    author
        .apply_update(fine.clone(), None)
        .await
        .expect("a later update commits");
    assert_eq!(next_update(&mut reader).await, fine);
    drop(poisoned_reader);
}

/// Deleting a room: the open connection's later edits are refused and never stored, what it
/// had sent is gone with the rest, and the id re-created starts empty.
#[tokio::test]
async fn a_deleted_room_refuses_late_writes_and_comes_back_empty() {
    let db = TestDb::new().await;
    let raw = db.raw().await;
    let (registry, _) = db.start(test_config()).await;
    let room = room_id("doomed");
    let connection = registry.connect(&room).await.expect("connect");
    let client = ClientDoc::new();
    connection
        .apply_update(client.append("t", "secret"), None)
        .await
        .expect("apply");
    connection
        .room()
        .create_version(crdt_store::VersionKind::Named, Some("v".into()))
        .await
        .expect("version");
    db.storage.compact(&room).await.expect("compact");
    connection
        .apply_update(client.append("t", " more"), None)
        .await
        .expect("apply");

    registry.delete_room(&room).await.expect("delete");
    assert!(connection.room().is_deleted());
    match connection
        .apply_update(client.append("t", " late"), None)
        .await
    {
        Err(ApplyError::RoomDeleted) => {}
        other => panic!("a late edit was answered {other:?}"),
    }
    assert!(
        connection
            .room()
            .create_version(crdt_store::VersionKind::Named, None)
            .await
            .is_err(),
        "a deleted room takes no version"
    );
    registry.flush().await;
    assert!(log_rows(&raw, &room).await.is_empty());
    assert!(snapshot_row(&raw, &room).await.is_none());
    assert!(
        db.storage
            .list_versions(&room)
            .await
            .expect("versions")
            .is_empty()
    );

    let again = registry.connect(&room).await.expect("connect again");
    assert_eq!(again.room().to_json().unwrap(), json!({}));
}
