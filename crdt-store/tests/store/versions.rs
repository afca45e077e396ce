//! Versions: a named checkpoint can be restored as a small forward edit that every client
//! receives, and the restore is recorded as a version of its own.

use crdt_store::{RestoreError, VersionKind};
use serde_json::json;
use yrs::updates::decoder::Decode;
use yrs::{ReadTxn, StateVector, Transact};

use crate::support::{
    ClientDoc, TestDb, doc_from, next_update, room_id, start_registry, test_config,
};

const DRAFT: &str = "the quick brown fox jumps over the lazy dog";

fn state_vector_of(state: &[u8]) -> StateVector {
    doc_from(state).transact().state_vector()
}

#[tokio::test]
async fn restoring_a_named_version_is_a_small_forward_edit() {
    let db = TestDb::new().await;
    let (registry, _) = db.start(test_config()).await;
    let room = room_id("story");
    let mut writer = registry.connect(&room).await.expect("connect");
    let mut reader = registry.connect(&room).await.expect("connect");
    let writer_doc = ClientDoc::new();
    let reader_doc = ClientDoc::new();

    let first = writer_doc.insert("t", 0, DRAFT);
    writer.apply_update(first, None).await.expect("apply");
    reader_doc.apply(&next_update(&mut reader).await);
    let draft = writer
        .room()
        .create_version(VersionKind::Named, Some("draft".to_owned()))
        .await
        .expect("named version");
    assert_eq!(draft.kind, VersionKind::Named);

    // Rework the text: "quick" becomes "slow", and a long tail is added.
    let edits = [
        writer_doc.remove("t", 4, 5),
        writer_doc.insert("t", 4, "slow"),
        writer_doc.append("t", ", and then it ran far away into the dark forest"),
    ];
    for edit in edits {
        writer.apply_update(edit, None).await.expect("apply");
        reader_doc.apply(&next_update(&mut reader).await);
    }
    assert_ne!(reader_doc.text("t"), DRAFT);

    let before = state_vector_of(&writer.room().encode_state());
    let (stored_draft, data) = db
        .storage
        .get_version(&room, draft.id)
        .await
        .expect("get version")
        .expect("the draft exists");
    assert_eq!(stored_draft, draft);
    let restored = writer
        .room()
        .restore(&data, "back to the draft".to_owned())
        .await
        .expect("restore");
    assert_eq!(restored.kind, VersionKind::Restore);
    assert_eq!(restored.label.as_deref(), Some("back to the draft"));
    assert_eq!(writer.room().to_json().unwrap(), json!({ "t": DRAFT }));

    // Every connection receives the restore, and it brings their copies to the draft.
    let restore_update = next_update(&mut reader).await;
    assert_eq!(next_update(&mut writer).await, restore_update);
    reader_doc.apply(&restore_update);
    writer_doc.apply(&restore_update);
    assert_eq!(reader_doc.text("t"), DRAFT);
    assert_eq!(writer_doc.text("t"), DRAFT);

    // A forward edit by one new client, inserting only what the rework had removed: "quick".
    let after = state_vector_of(&writer.room().encode_state());
    let grown: Vec<(u64, u32)> = after
        .iter()
        .map(|(client, clock)| (client.get(), clock - before.get(client)))
        .filter(|(_, grown)| *grown > 0)
        .collect();
    assert_eq!(grown.len(), 1, "the server edits as one client: {grown:?}");
    let (_, inserted) = grown[0];
    assert_eq!(inserted, "quick".len() as u32);
    assert!((inserted as usize) < DRAFT.len() / 4);
    let update = yrs::Update::decode_v1(&restore_update).expect("restore update decodes");
    assert_eq!(update.state_vector().iter().count(), 1);

    let versions = db.storage.list_versions(&room).await.expect("versions");
    let kinds: Vec<_> = versions.iter().map(|v| (v.id, v.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (restored.id, VersionKind::Restore),
            (draft.id, VersionKind::Named)
        ]
    );
    let (_, restore_data) = db
        .storage
        .get_version(&room, restored.id)
        .await
        .expect("get version")
        .expect("the restore version exists");
    assert_eq!(
        crdt_store::document::to_json(&doc_from(&restore_data)).unwrap(),
        json!({ "t": DRAFT })
    );
    // Versions belong to their room.
    assert!(
        db.storage
            .get_version(&room_id("elsewhere"), draft.id)
            .await
            .expect("get version")
            .is_none()
    );

    // The restore is an edit like any other: it is stored.
    drop((writer, reader));
    registry.shutdown().await;
    let (restarted, _) = start_registry(test_config(), db.reopen().await).await;
    let reloaded = restarted.connect(&room).await.expect("reload");
    assert_eq!(reloaded.room().to_json().unwrap(), json!({ "t": DRAFT }));
}

#[tokio::test]
async fn a_corrupt_version_is_refused_and_changes_nothing() {
    let db = TestDb::new().await;
    let (registry, _) = db.start(test_config()).await;
    let room = room_id("careful");
    let connection = registry.connect(&room).await.expect("connect");
    let client = ClientDoc::new();
    connection
        .apply_update(client.insert("t", 0, "current"), None)
        .await
        .expect("apply");
    let state_before = connection.room().encode_state();

    let refused = connection
        .room()
        .restore(&[0xFF, 0xFF, 0xFF], "nonsense".to_owned())
        .await;
    assert!(
        matches!(refused, Err(RestoreError::Version(_))),
        "{refused:?}"
    );
    assert_eq!(connection.room().encode_state(), state_before);
    assert!(
        db.storage
            .list_versions(&room)
            .await
            .expect("versions")
            .is_empty()
    );
}

/// A version holds what the document shows. An update still waiting for a dependency stays
/// in the live document (and arrives with it later), not in the version: yrs would append it
/// to the encoded state, and integrating that again does not always give the same text.
#[tokio::test]
async fn a_version_holds_what_the_document_shows_not_what_waits_for_a_dependency() {
    let db = TestDb::new().await;
    let (registry, _) = db.start(test_config()).await;
    let room = room_id("gap");
    let connection = registry.connect(&room).await.expect("connect");
    let (first, second, third) = (ClientDoc::new(), ClientDoc::new(), ClientDoc::new());
    let intro = third.append("t", "intro ");
    let hello = first.append("t", "hello");
    second.apply(&hello);
    let world = second.append("t", " world");
    connection
        .room()
        .apply_remote_update(&intro)
        .expect("intro");
    connection
        .room()
        .apply_remote_update(&world)
        .expect("waits for hello");

    let version = connection
        .room()
        .create_version(VersionKind::Named, None)
        .await
        .expect("version");
    let (_, data) = db
        .storage
        .get_version(&room, version.id)
        .await
        .expect("get version")
        .expect("it exists");
    let stored = doc_from(&data);
    assert!(!stored.transact().has_missing_updates());
    assert_eq!(
        crdt_store::document::to_json(&stored).unwrap()["t"],
        json!("intro ")
    );
    assert!(
        !doc_from(&connection.room().encode_state())
            .transact()
            .has_missing_updates()
    );

    // The live document still completes when the dependency arrives.
    connection
        .room()
        .apply_remote_update(&hello)
        .expect("hello");
    let text = connection.room().to_json().unwrap()["t"].clone();
    assert!(
        text.as_str().is_some_and(|t| t.contains("hello world")),
        "{text}"
    );
}
