//! What is committed survives a restart, and each durability mode orders commit and fan-out
//! the way it promises.

use crdt_store::{Delivery, Durability, RoomRegistry, StoreConfig};

use crate::support::{
    ClientDoc, TestDb, delivered_already, hold_write_lock, let_other_tasks_run, logged_updates,
    next_update, room_id, start_registry, stored_text, test_config,
};

async fn registry_with(db: &TestDb, durability: Durability) -> RoomRegistry {
    db.start(StoreConfig {
        durability,
        ..test_config()
    })
    .await
    .0
}

#[tokio::test]
async fn committed_edits_survive_a_restart() {
    let db = TestDb::new().await;
    let (registry, _) = db.start(test_config()).await;
    let notes = room_id("notes");
    let other = room_id("other room");
    let mut alice = registry.connect(&notes).await.expect("connect");
    let mut bob = registry.connect(&notes).await.expect("connect");
    let alice_doc = ClientDoc::new();
    let bob_doc = ClientDoc::new();

    let hello = alice_doc.insert("t", 0, "hello");
    alice.apply_update(hello, None).await.expect("apply");
    bob_doc.apply(&next_update(&mut bob).await);
    let world = bob_doc.append("t", " wörld 🌍");
    bob.apply_update(world, None).await.expect("apply");
    alice_doc.apply(&next_update(&mut alice).await);
    let title = alice_doc.insert("title", 0, "Greeting");
    alice.apply_update(title, None).await.expect("apply");
    bob_doc.apply(&next_update(&mut bob).await);

    let elsewhere = registry.connect(&other).await.expect("connect");
    let other_doc = ClientDoc::new();
    elsewhere
        .apply_update(other_doc.insert("t", 0, "unrelated"), None)
        .await
        .expect("apply");

    let before = alice.room().to_json().unwrap();
    assert_eq!(before["t"], "hello wörld 🌍");
    assert_eq!(before["title"], "Greeting");
    assert_eq!(alice_doc.text("t"), bob_doc.text("t"));
    drop((alice, bob, elsewhere));
    registry.shutdown().await;
    // Each applied update is one row of its room's log.
    assert_eq!(
        db.storage.load(&notes).await.expect("load").updates.len(),
        3
    );
    assert_eq!(
        db.storage.load(&other).await.expect("load").updates.len(),
        1
    );

    let (restarted, metrics) = start_registry(test_config(), db.reopen().await).await;
    let reloaded = restarted.connect(&notes).await.expect("reload");
    assert_eq!(reloaded.room().to_json().unwrap(), before);
    let reloaded_doc = ClientDoc::new();
    reloaded_doc.apply(&reloaded.room().encode_state());
    {
        use yrs::{ReadTxn, Transact};
        assert_eq!(
            reloaded_doc.doc.transact().state_vector(),
            alice_doc.doc.transact().state_vector()
        );
    }
    let reloaded_other = restarted.connect(&other).await.expect("reload");
    assert_eq!(
        reloaded_other.room().to_json().unwrap(),
        serde_json::json!({"t": "unrelated"})
    );
    assert_eq!(metrics.counter("tandem_room_loads_total"), 2);
}

/// Durable mode: a subscriber hears of an update only once it is committed. The writer is
/// held off with the database's write lock, so "not yet committed" lasts as long as the test
/// needs.
#[tokio::test]
async fn durable_mode_delivers_an_update_only_after_its_commit() {
    let db = TestDb::new().await;
    let raw = db.raw().await;
    let registry = registry_with(&db, Durability::Durable).await;
    let room = room_id("durable");
    let author = registry.connect(&room).await.expect("connect");
    let mut reader = registry.connect(&room).await.expect("connect");
    let client = ClientDoc::new();

    for i in 0..5 {
        let update = client.append("t", &format!("<{i}>"));
        author
            .apply_update(update.clone(), None)
            .await
            .expect("apply");
        assert_eq!(next_update(&mut reader).await, update);
        // By the time the frame arrives, the update is in the database.
        let stored = logged_updates(&db.storage, &room).await;
        assert!(
            stored.contains(&update.to_vec()),
            "update {i} delivered before its commit"
        );
    }

    let lock = hold_write_lock(&raw).await;
    let blocked = client.append("t", "<held>");
    // The author's apply answers once the update is committed, so it waits too.
    let author_room = author.room().clone();
    let applying = {
        let blocked = blocked.clone();
        tokio::spawn(async move {
            author_room
                .apply_update(crdt_store::ConnectionId::SERVER, blocked, None, None)
                .await
        })
    };
    let_other_tasks_run().await;
    assert!(
        delivered_already(&mut reader).is_none(),
        "delivered while the commit could not happen"
    );
    assert!(!applying.is_finished(), "answered before the commit");
    let stored = logged_updates(&db.storage, &room).await;
    assert!(!stored.contains(&blocked.to_vec()));

    lock.rollback().await.expect("release the lock");
    assert_eq!(next_update(&mut reader).await, blocked);
    applying.await.expect("task").expect("apply");
    let stored = logged_updates(&db.storage, &room).await;
    assert_eq!(stored.last(), Some(&blocked.to_vec()));
}

/// What a peer node answers a sync request with may not be committed on that node yet: this
/// node logs it before its own clients see it. A live update a peer published (committed
/// there) is delivered without being logged again.
#[tokio::test]
async fn a_peers_sync_answer_is_logged_here_before_it_is_delivered() {
    let db = TestDb::new().await;
    let raw = db.raw().await;
    let registry = registry_with(&db, Durability::Durable).await;
    let room = room_id("repaired");
    let mut reader = registry.connect(&room).await.expect("connect");
    let peer_client = ClientDoc::new();

    let live = peer_client.append("t", "live ");
    reader.room().apply_remote_update(&live).expect("apply");
    assert_eq!(next_update(&mut reader).await, live);
    assert!(logged_updates(&db.storage, &room).await.is_empty());

    let lock = hold_write_lock(&raw).await;
    let answered = peer_client.append("t", "answered");
    let repair = {
        let room = reader.room().clone();
        let answered = answered.clone();
        tokio::spawn(async move { room.apply_repair(&answered).await })
    };
    let_other_tasks_run().await;
    assert!(
        delivered_already(&mut reader).is_none(),
        "delivered while the commit could not happen"
    );
    lock.rollback().await.expect("release the lock");
    assert_eq!(next_update(&mut reader).await, answered);
    assert!(repair.await.expect("task").expect("repair applies"));
    let stored = logged_updates(&db.storage, &room).await;
    assert_eq!(stored, vec![answered.to_vec()]);

    // An answer that brings nothing new is neither logged nor delivered.
    let room_handle = reader.room().clone();
    assert!(!room_handle.apply_repair(&answered).await.expect("repeat"));
    registry.flush().await;
    assert_eq!(logged_updates(&db.storage, &room).await.len(), 1);
    assert!(delivered_already(&mut reader).is_none());
}

/// Relaxed mode: fan-out does not wait for the commit, and a flush makes everything that was
/// fanned out durable.
#[tokio::test]
async fn relaxed_mode_delivers_before_the_commit_and_flush_commits() {
    let db = TestDb::new().await;
    let raw = db.raw().await;
    let registry = registry_with(&db, Durability::Relaxed).await;
    let room = room_id("relaxed");
    let author = registry.connect(&room).await.expect("connect");
    let mut reader = registry.connect(&room).await.expect("connect");
    let client = ClientDoc::new();

    let lock = hold_write_lock(&raw).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        let update = client.append("t", &format!("<{i}>"));
        author
            .apply_update(update.clone(), None)
            .await
            .expect("apply");
        // Already handed to the subscriber, although the writer cannot commit.
        match delivered_already(&mut reader) {
            Some(Delivery::Frame(frame)) => {
                assert_eq!(frame, protocol::encode_update_frame(&update));
            }
            _ => panic!("relaxed mode did not deliver update {i} at once"),
        }
        sent.push(update.to_vec());
    }
    assert!(logged_updates(&db.storage, &room).await.is_empty());

    lock.rollback().await.expect("release the lock");
    registry.flush().await;
    assert_eq!(logged_updates(&db.storage, &room).await, sent);
    assert_eq!(stored_text(&db.storage, &room, "t").await, "<0><1><2>");
}
