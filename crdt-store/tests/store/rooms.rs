//! Rooms in memory: loaded once, never served from corrupt data, never changed by a bad
//! update, honest about lag, tidy about awareness, evicted when idle.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crdt_store::storage::LogEntry;
use crdt_store::{
    ApplyError, Delivery, Durability, JoinError, RoomConnection, StorageError, StoreConfig,
    VersionKind,
};
use protocol::{AwarenessUpdate, AwarenessUpdateEntry, Message};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use yrs::ClientID;

use crate::support::{
    ClientDoc, TestDb, delivered_already, doc_from, hold_write_lock, let_other_tasks_run,
    next_delivery, next_message, next_update, room_id, stored_rows, stored_text, test_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_load_a_cold_room_once() {
    let db = TestDb::new().await;
    let room = room_id("cold");
    let author = ClientDoc::new();
    for word in ["stored ", "before ", "start"] {
        let update = author.append("t", word);
        db.storage
            .append(&[LogEntry {
                room: &room,
                update: &update,
            }])
            .await
            .expect("append");
    }

    let (registry, metrics) = db.start(test_config()).await;
    let joins: Vec<_> = (0..20)
        .map(|_| {
            let registry = registry.clone();
            let room = room.clone();
            tokio::spawn(async move { registry.connect(&room).await })
        })
        .collect();
    let mut connections = Vec::new();
    for join in joins {
        connections.push(join.await.expect("join task").expect("connect"));
    }

    assert_eq!(metrics.counter("tandem_room_loads_total"), 1);
    assert_eq!(metrics.gauge("tandem_rooms_in_memory"), 1.0);
    assert_eq!(registry.rooms_in_memory(), 1);
    for connection in &connections {
        assert_eq!(
            connection.room().to_json().unwrap(),
            json!({"t": "stored before start"})
        );
    }
    // One document behind all of them: an edit through one reaches the nineteen others.
    let update = author.append("t", "!");
    let (first, others) = connections.split_first_mut().expect("twenty connections");
    first
        .apply_update(update.clone(), None)
        .await
        .expect("apply");
    for other in others {
        assert_eq!(next_update(other).await, update);
    }
    assert_eq!(
        first.room().to_json().unwrap(),
        json!({"t": "stored before start!"})
    );
}

#[tokio::test]
async fn a_corrupt_room_is_refused_and_its_data_left_alone() {
    let db = TestDb::new().await;
    let raw = db.raw().await;
    let room = room_id("corrupt");
    let author = ClientDoc::new();
    let good = author.insert("t", 0, "real content");
    db.storage
        .append(&[LogEntry {
            room: &room,
            update: &good,
        }])
        .await
        .expect("append");
    // Bytes this server never wrote: a varuint that never ends.
    raw.execute_unprepared(
        "INSERT INTO room_updates (room_id, data, created_at) \
         VALUES ('corrupt', X'FFFFFFFF', 0)",
    )
    .await
    .expect("insert garbage");
    let stored_before = stored_rows(&raw, &room).await;
    assert_eq!(stored_before.1.len(), 2);

    let (registry, metrics) = db.start(test_config()).await;
    for attempt in 1..=2u64 {
        match registry.connect(&room).await {
            Err(JoinError::Load(StorageError::Corrupt { room: refused, .. })) => {
                assert_eq!(refused, room);
            }
            Err(other) => panic!("attempt {attempt}: wrong error {other:?}"),
            Ok(_) => panic!("attempt {attempt}: a corrupt room was served"),
        }
        // A failed load is not remembered as a blank room: each join tries again.
        assert_eq!(metrics.counter("tandem_room_load_failures_total"), attempt);
    }
    assert!(matches!(
        registry.lease(&room).await,
        Err(JoinError::Load(StorageError::Corrupt { .. }))
    ));
    assert_eq!(metrics.counter("tandem_room_loads_total"), 0);
    assert_eq!(registry.rooms_in_memory(), 0);
    assert!(matches!(
        db.storage.compact(&room).await,
        Err(StorageError::Corrupt { .. })
    ));

    registry.maintain().await;
    registry.shutdown().await;
    // Nothing was written over what is stored: the garbage row is still there, next to the
    // good one, and no snapshot or version replaced them.
    assert_eq!(stored_rows(&raw, &room).await, stored_before);
    assert!(stored_before.0.is_none());
    assert!(
        db.storage
            .list_versions(&room)
            .await
            .expect("versions")
            .is_empty()
    );
}

#[tokio::test]
async fn a_malformed_update_is_refused_and_changes_nothing() {
    let db = TestDb::new().await;
    let (registry, metrics) = db.start(test_config()).await;
    let room = room_id("guarded");
    let author = registry.connect(&room).await.expect("connect");
    let mut reader = registry.connect(&room).await.expect("connect");
    let client = ClientDoc::new();
    let good = client.insert("t", 0, "kept");
    author
        .apply_update(good.clone(), None)
        .await
        .expect("apply");
    assert_eq!(next_update(&mut reader).await, good);
    registry.flush().await;
    let state_before = author.room().encode_state();
    let log_before = db.storage.load(&room).await.expect("load").updates;
    let applied_before = metrics.counter("tandem_updates_applied_total");

    let next = client.append("t", " and more");
    let truncated = next.slice(..next.len() - 2);
    for garbage in [Bytes::from_static(&[0xFF, 0xFF, 0xFF]), truncated] {
        let refused = author.apply_update(garbage.clone(), None).await;
        assert!(
            matches!(
                refused,
                Err(ApplyError::Refused(protocol::UpdateError::Malformed(_)))
            ),
            "{garbage:?} gave {refused:?}"
        );
    }

    registry.flush().await;
    assert_eq!(author.room().encode_state(), state_before);
    assert_eq!(
        db.storage.load(&room).await.expect("load").updates,
        log_before
    );
    assert_eq!(
        metrics.counter("tandem_updates_applied_total"),
        applied_before
    );
    assert!(
        delivered_already(&mut reader).is_none(),
        "a refused update was fanned out"
    );
    // The room still takes good updates afterwards.
    author
        .apply_update(next.clone(), None)
        .await
        .expect("apply");
    assert_eq!(next_update(&mut reader).await, next);
}

/// One v1 update of `client` at clock 0 holding one item: `null` inside the item `6:0`.
fn null_inside_6_0(client: u64) -> Bytes {
    use yrs::encoding::write::Write;
    let mut update = Vec::new();
    update.write_var(1u32); // one client
    update.write_var(1u32); // one struct
    update.write_var(client);
    update.write_var(0u32); // clock
    update.write_u8(8); // values, placed by parent id
    update.write_var(0u32); // parent by id: 6:0
    update.write_var(6u64);
    update.write_var(0u32);
    update.write_var(1u32); // one value: null
    update.write_u8(126);
    update.write_var(0u32); // no deletions
    Bytes::from(update)
}

/// A child may wait in a room for a parent that is not there yet; when the parent arrives as
/// text, `yrs` refuses it midway, after integrating part of it. The room is then discarded
/// (its connections resync) and loads again from storage, which holds none of that update.
#[tokio::test]
async fn a_parent_that_arrives_as_text_for_a_waiting_child_reloads_the_room() {
    let db = TestDb::new().await;
    let (registry, _metrics) = db.start(test_config()).await;
    let room = room_id("orphan");
    let author = registry.connect(&room).await.expect("connect");
    let mut reader = registry.connect(&room).await.expect("connect");
    let waiting = null_inside_6_0(5);
    author
        .apply_update(waiting.clone(), None)
        .await
        .expect("a child may wait for its parent");
    assert_eq!(next_update(&mut reader).await, waiting);
    let parent_as_text = ClientDoc::with_id(6).insert("t", 0, "x");
    assert!(matches!(
        author.apply_update(parent_as_text, None).await,
        Err(ApplyError::Rejected(_))
    ));
    assert!(
        matches!(next_delivery(&mut reader).await, Delivery::Lagged),
        "the room's connections resync"
    );
    assert!(
        author
            .apply_update(ClientDoc::new().append("u", "no"), None)
            .await
            .is_err(),
        "the discarded copy takes no edits"
    );

    let author = registry.connect(&room).await.expect("connect again");
    let mut reader = registry.connect(&room).await.expect("connect again");
    assert_eq!(
        author.room().to_json().unwrap(),
        json!({}),
        "nothing of the refused update is in the room loaded again"
    );
    let fine = ClientDoc::new().append("t", "fine");
    author
        .apply_update(fine.clone(), None)
        .await
        .expect("a later update commits");
    assert_eq!(next_update(&mut reader).await, fine);
    assert_eq!(author.room().to_json().unwrap(), json!({ "t": "fine" }));
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_told_so() {
    let db = TestDb::new().await;
    let (registry, _) = db
        .start(StoreConfig {
            subscriber_queue: 4,
            ..test_config()
        })
        .await;
    let room = room_id("busy");
    let author = registry.connect(&room).await.expect("connect");
    let mut reader = registry.connect(&room).await.expect("connect");
    let client = ClientDoc::new();

    // As many frames as the queue holds arrive intact and in order.
    let mut sent = Vec::new();
    for i in 0..4 {
        let update = client.append("t", &format!("<{i}>"));
        author
            .apply_update(update.clone(), None)
            .await
            .expect("apply");
        sent.push(update);
    }
    registry.flush().await;
    for update in &sent {
        assert_eq!(next_update(&mut reader).await, *update);
    }

    // One more than it holds, unread: the reader learns it lagged instead of skipping ahead.
    for i in 4..9 {
        let update = client.append("t", &format!("<{i}>"));
        author.apply_update(update, None).await.expect("apply");
    }
    registry.flush().await;
    assert!(matches!(next_delivery(&mut reader).await, Delivery::Lagged));
}

fn awareness(client: u64, clock: u32, state: &Value) -> (AwarenessUpdate, Bytes) {
    let update = AwarenessUpdate {
        clients: HashMap::from([(
            ClientID::new(client),
            AwarenessUpdateEntry {
                clock,
                json: Arc::from(state.to_string()),
            },
        )]),
    };
    let frame = protocol::encode_awareness_frame(&update);
    (update, frame)
}

/// The awareness entries of the next frame of `connection`, as client → (clock, state).
async fn next_awareness(connection: &mut RoomConnection) -> HashMap<u64, (u32, Value)> {
    match next_message(connection).await {
        Message::Awareness(update) => update
            .clients
            .into_iter()
            .map(|(client, entry)| {
                let state = serde_json::from_str(&entry.json).expect("awareness state is JSON");
                (client.get(), (entry.clock, state))
            })
            .collect(),
        other => panic!("expected awareness, got {other:?}"),
    }
}

/// The room's current awareness, as a newly joined client would be sent it.
fn room_awareness(connection: &RoomConnection) -> HashMap<u64, Value> {
    let Some(frame) = connection.room().awareness_frame() else {
        return HashMap::new();
    };
    match protocol::decode_message(&frame).expect("valid frame") {
        Message::Awareness(update) => update
            .clients
            .into_iter()
            .map(|(client, entry)| {
                let state = serde_json::from_str(&entry.json).expect("awareness state is JSON");
                (client.get(), state)
            })
            .collect(),
        other => panic!("expected awareness, got {other:?}"),
    }
}

#[tokio::test]
async fn awareness_of_a_closed_connection_is_removed_for_everyone() {
    let db = TestDb::new().await;
    let (registry, _) = db.start(test_config()).await;
    let room = room_id("presence");
    let mut alice = registry.connect(&room).await.expect("connect");
    let mut bob = registry.connect(&room).await.expect("connect");
    let alice_state = json!({"user": {"name": "alice", "color": "#ff0000"}});
    let bob_state = json!({"user": {"name": "bob"}});

    let (update, frame) = awareness(1234, 1, &alice_state);
    alice.apply_awareness(update, frame, None).unwrap();
    assert_eq!(
        next_awareness(&mut bob).await,
        HashMap::from([(1234, (1, alice_state.clone()))])
    );
    let (update, frame) = awareness(99, 3, &bob_state);
    bob.apply_awareness(update, frame, None).unwrap();
    // Alice hears her own echo, then Bob.
    assert_eq!(next_awareness(&mut alice).await[&1234].1, alice_state);
    assert_eq!(next_awareness(&mut alice).await[&99].1, bob_state);
    assert_eq!(next_awareness(&mut bob).await[&99].1, bob_state);

    // Nobody may erase another's presence by sending `null` for it.
    let (update, frame) = awareness(99, 4, &Value::Null);
    alice.apply_awareness(update, frame, None).unwrap();
    assert!(delivered_already(&mut bob).is_none());
    assert_eq!(
        room_awareness(&bob),
        HashMap::from([(1234, alice_state), (99, bob_state.clone())])
    );

    drop(alice);
    let removal = next_awareness(&mut bob).await;
    let (clock, state) = &removal[&1234];
    assert_eq!(removal.len(), 1);
    assert_eq!(*state, Value::Null);
    assert!(*clock > 1, "a removal must outrank the state it removes");
    assert_eq!(room_awareness(&bob), HashMap::from([(99, bob_state)]));
}

/// Joins `room`, applies `edits` (appended to root `t`), and closes the connection again.
async fn edit_and_leave(
    registry: &crdt_store::RoomRegistry,
    room: &crdt_store::RoomId,
    edits: &[&str],
) -> ClientDoc {
    let connection = registry.connect(room).await.expect("connect");
    let client = ClientDoc::new();
    client.apply(&connection.room().encode_state());
    for edit in edits {
        connection
            .apply_update(client.append("t", edit), None)
            .await
            .expect("apply");
    }
    client
}

#[tokio::test]
async fn an_idle_room_is_versioned_persisted_and_evicted() {
    const IDLE: Duration = Duration::from_secs(60);
    let db = TestDb::new().await;
    let (registry, metrics) = db
        .start(StoreConfig {
            idle_timeout: IDLE,
            ..test_config()
        })
        .await;
    let room = room_id("idle");

    let held = registry.connect(&room).await.expect("connect");
    let client = edit_and_leave(&registry, &room, &["written ", "then left"]).await;
    let content = held.room().to_json().unwrap();
    assert_eq!(content, json!({"t": "written then left"}));
    advance_clock(IDLE * 2).await;
    registry.maintain().await;
    assert_eq!(
        registry.rooms_in_memory(),
        1,
        "evicted while a connection held it"
    );
    drop(held);

    advance_clock(IDLE - Duration::from_secs(1)).await;
    registry.maintain().await;
    assert_eq!(
        registry.rooms_in_memory(),
        1,
        "evicted before its idle timeout"
    );
    assert!(
        db.storage
            .list_versions(&room)
            .await
            .expect("versions")
            .is_empty()
    );

    advance_clock(Duration::from_secs(2)).await;
    registry.maintain().await;
    assert_eq!(registry.rooms_in_memory(), 0);
    assert_eq!(metrics.counter("tandem_room_evictions_total"), 1);
    assert_eq!(metrics.gauge("tandem_rooms_in_memory"), 0.0);

    // The edits are stored, and an automatic version covers them.
    assert_eq!(stored_text(&db.storage, &room, "t").await, client.text("t"));
    let versions = db.storage.list_versions(&room).await.expect("versions");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].kind, VersionKind::Auto);
    let (_, data) = db
        .storage
        .get_version(&room, versions[0].id)
        .await
        .expect("get version")
        .expect("version exists");
    assert_eq!(
        crdt_store::document::to_json(&doc_from(&data)).unwrap(),
        content
    );

    // Joining again loads the same content afresh.
    let rejoined = registry.connect(&room).await.expect("rejoin");
    assert_eq!(rejoined.room().to_json().unwrap(), content);
    assert_eq!(metrics.counter("tandem_room_loads_total"), 2);

    // A room evicted without new edits gets no second version.
    drop(rejoined);
    advance_clock(IDLE * 2).await;
    registry.maintain().await;
    assert_eq!(registry.rooms_in_memory(), 0);
    assert_eq!(
        db.storage
            .list_versions(&room)
            .await
            .expect("versions")
            .len(),
        1
    );
}

/// A client joining while the room is being evicted waits for the eviction to finish and then
/// loads the room afresh, with every edit the old copy had (in relaxed mode, some of them
/// were not committed when the eviction began).
#[tokio::test]
async fn a_join_during_eviction_waits_and_loads_every_edit() {
    let db = TestDb::new().await;
    let raw = db.raw().await;
    let (registry, metrics) = db
        .start(StoreConfig {
            durability: Durability::Relaxed,
            idle_timeout: Duration::ZERO,
            ..test_config()
        })
        .await;
    let room = room_id("leaving");
    edit_and_leave(&registry, &room, &["committed"]).await;
    registry.flush().await;

    // Hold commits back: the next edit is fanned out but not yet stored when eviction starts.
    let lock = hold_write_lock(&raw).await;
    let client = edit_and_leave(&registry, &room, &[" and pending"]).await;
    let eviction = tokio::spawn({
        let registry = registry.clone();
        async move { registry.maintain().await }
    });
    let_other_tasks_run().await;
    let join = tokio::spawn({
        let registry = registry.clone();
        let room = room.clone();
        async move {
            registry
                .connect(&room)
                .await
                .map(|c| c.room().to_json().unwrap())
        }
    });
    let_other_tasks_run().await;
    assert!(
        !eviction.is_finished(),
        "eviction finished without committing"
    );
    assert!(!join.is_finished(), "a join was served during the eviction");

    lock.rollback().await.expect("release the lock");
    eviction.await.expect("eviction task");
    let content = join.await.expect("join task").expect("connect");
    assert_eq!(content, json!({"t": client.text("t")}));
    assert_eq!(content, json!({"t": "committed and pending"}));
    assert_eq!(metrics.counter("tandem_room_evictions_total"), 1);
    assert_eq!(metrics.counter("tandem_room_loads_total"), 2);
}

/// Maintenance passes may overlap (the background one and one a caller runs): a room is
/// still evicted, versioned and counted once.
#[tokio::test]
async fn overlapping_maintenance_passes_evict_a_room_once() {
    let db = TestDb::new().await;
    let (registry, metrics) = db
        .start(StoreConfig {
            idle_timeout: Duration::ZERO,
            ..test_config()
        })
        .await;
    let room = room_id("contested");
    edit_and_leave(&registry, &room, &["some edit"]).await;
    assert_eq!(metrics.gauge("tandem_rooms_in_memory"), 1.0);

    tokio::join!(registry.maintain(), registry.maintain());
    assert_eq!(registry.rooms_in_memory(), 0);
    assert_eq!(metrics.counter("tandem_room_evictions_total"), 1);
    assert_eq!(metrics.gauge("tandem_rooms_in_memory"), 0.0);
    assert_eq!(
        db.storage
            .list_versions(&room)
            .await
            .expect("versions")
            .len(),
        1
    );
}

#[tokio::test]
async fn edits_get_an_automatic_version_once_per_interval() {
    const INTERVAL: Duration = Duration::from_secs(600);
    let db = TestDb::new().await;
    let (registry, _) = db
        .start(StoreConfig {
            auto_version_interval: INTERVAL,
            ..test_config()
        })
        .await;
    let room = room_id("versioned");
    let connection = registry.connect(&room).await.expect("connect");
    let client = ClientDoc::new();
    connection
        .apply_update(client.insert("t", 0, "first"), None)
        .await
        .expect("apply");

    advance_clock(INTERVAL - Duration::from_secs(1)).await;
    registry.maintain().await;
    assert!(
        db.storage
            .list_versions(&room)
            .await
            .expect("versions")
            .is_empty()
    );
    advance_clock(Duration::from_secs(1)).await;
    registry.maintain().await;
    let versions = db.storage.list_versions(&room).await.expect("versions");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].kind, VersionKind::Auto);

    // Nothing new: no new version, however long it stays quiet.
    advance_clock(INTERVAL * 3).await;
    registry.maintain().await;
    assert_eq!(
        db.storage
            .list_versions(&room)
            .await
            .expect("versions")
            .len(),
        1
    );

    connection
        .apply_update(client.append("t", ", second"), None)
        .await
        .expect("apply");
    advance_clock(INTERVAL).await;
    registry.maintain().await;
    let versions = db.storage.list_versions(&room).await.expect("versions");
    assert_eq!(versions.len(), 2);
    let (_, newest) = db
        .storage
        .get_version(&room, versions[0].id)
        .await
        .expect("get version")
        .expect("version exists");
    assert_eq!(
        crdt_store::document::to_json(&doc_from(&newest)).unwrap(),
        json!({"t": "first, second"})
    );
}

/// Moves the runtime's clock forward by `by` at once. The clock runs again afterwards: the
/// database driver keeps its own timeouts, which a stopped clock would trip.
async fn advance_clock(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}
