//! Where clients may write: every write of an update is located and checked against the
//! connection's grant before anything is applied; a refused update changes nothing and
//! reaches nobody.

use std::sync::Arc;

use bytes::Bytes;
use crdt_store::writes::{WriteGrant, suggestion_field};
use crdt_store::{ApplyError, RoomConnection, writes::WriteDenied};
use serde_json::json;
use yrs::{Any, Map, MapPrelim, Out, ReadTxn, Text, Transact, WriteTxn};

use crate::support::{ClientDoc, TestDb, delivered_already, next_update, room_id, test_config};

fn grant(content: bool, suggest: bool, who: &str) -> WriteGrant {
    WriteGrant {
        content,
        suggest,
        decide: false,
        author: Arc::from(format!("user:{who}")),
        author_name: Arc::from(who),
    }
}

/// A new suggestion `id` written by `client`, claiming to be by `claimed` and accepted.
fn forged_suggestion(client: &ClientDoc, id: &str, claimed: &str) -> Bytes {
    let mut txn = client.doc.transact_mut();
    let suggestions = txn.get_or_insert_map("suggestions");
    suggestions.insert(
        &mut txn,
        id,
        MapPrelim::from([
            ("file", Any::from("t")),
            ("replacement", Any::from("better")),
            (suggestion_field::AUTHOR, Any::from(claimed)),
            (suggestion_field::AUTHOR_ID, Any::from(claimed)),
            (suggestion_field::STATUS, Any::from("accepted")),
        ]),
    );
    Bytes::from(txn.encode_update_v1())
}

fn set_field(client: &ClientDoc, id: &str, field: &str, value: &str) -> Bytes {
    let mut txn = client.doc.transact_mut();
    let suggestions = txn.get_or_insert_map("suggestions");
    let Some(Out::YMap(entry)) = suggestions.get(&txn, id) else {
        panic!("suggestion {id} is in the client's copy");
    };
    entry.insert(&mut txn, field, value);
    Bytes::from(txn.encode_update_v1())
}

async fn denied(connection: &RoomConnection, update: Bytes, grant: &WriteGrant) -> WriteDenied {
    match connection.apply_update_as(update, None, grant).await {
        Err(ApplyError::Denied(denied)) => denied,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn each_connection_writes_only_where_its_grant_allows() {
    let db = TestDb::new().await;
    let (registry, _metrics) = db.start(test_config()).await;
    let room = room_id("writes");
    let editor = registry.connect(&room).await.expect("connect");
    let suggester = registry.connect(&room).await.expect("connect");
    let mut reader = registry.connect(&room).await.expect("connect");
    let editing = grant(true, true, "ed");
    let suggesting = grant(false, true, "sue");
    let reading = grant(false, false, "vi");

    let ed = ClientDoc::new();
    let typed = ed.insert("t", 0, "hello");
    editor
        .apply_update_as(typed.clone(), None, &editing)
        .await
        .expect("an editor types");
    assert_eq!(next_update(&mut reader).await, typed);
    // Typing next to what is there is located through the room's document.
    let more = ed.append("t", " world");
    editor
        .apply_update_as(more.clone(), None, &editing)
        .await
        .expect("an editor types on");
    assert_eq!(next_update(&mut reader).await, more);

    // Nobody writes the comment mirror; text is the editor's, not the suggester's.
    let sue = ClientDoc::new();
    sue.catch_up_with(&ed);
    let comment = {
        let mut txn = ed.doc.transact_mut();
        txn.get_or_insert_map("comments")
            .insert(&mut txn, "c1", "forged");
        Bytes::from(txn.encode_update_v1())
    };
    assert_eq!(
        denied(&editor, comment, &editing).await,
        WriteDenied::Comments
    );
    assert_eq!(
        denied(&suggester, sue.append("t", "!"), &suggesting).await,
        WriteDenied::Content
    );
    let sue = ClientDoc::new();
    sue.catch_up_with(&ed);
    assert_eq!(
        denied(&suggester, sue.remove("t", 0, 1), &suggesting).await,
        WriteDenied::Content,
        "deleting text is writing it"
    );
    assert_eq!(
        denied(
            &suggester,
            forged_suggestion(&ClientDoc::new(), "s0", "x"),
            &reading
        )
        .await,
        WriteDenied::Suggest
    );
    assert!(
        delivered_already(&mut reader).is_none(),
        "a refused update was delivered"
    );
    assert_eq!(
        editor.room().to_json().unwrap(),
        json!({ "t": "hello world" })
    );

    // A suggester's suggestion goes through, stamped by the server whatever it claimed.
    let sue = ClientDoc::new();
    sue.catch_up_with(&ed);
    suggester
        .apply_update_as(
            forged_suggestion(&sue, "s1", "AI assistant"),
            None,
            &suggesting,
        )
        .await
        .expect("a suggester suggests");
    let delivered = next_update(&mut reader).await;
    let stored = editor.room().to_json().unwrap();
    let s1 = &stored["suggestions"]["s1"];
    assert_eq!(s1[suggestion_field::AUTHOR], "sue", "{stored}");
    assert_eq!(s1[suggestion_field::AUTHOR_ID], "user:sue", "{stored}");
    assert_eq!(s1[suggestion_field::STATUS], "pending", "{stored}");
    assert_eq!(s1["replacement"], "better", "{stored}");
    sue.apply(&delivered);

    // Its content is its author's alone; its status is the server's.
    let ed_view = ClientDoc::new();
    ed_view.catch_up_with(&sue);
    assert!(matches!(
        denied(
            &editor,
            set_field(&ed_view, "s1", "replacement", "mine"),
            &editing
        )
        .await,
        WriteDenied::NotTheAuthor(_)
    ));
    let sue2 = ClientDoc::new();
    sue2.catch_up_with(&sue);
    assert_eq!(
        denied(
            &suggester,
            set_field(&sue2, "s1", suggestion_field::STATUS, "accepted"),
            &suggesting
        )
        .await,
        WriteDenied::ServerOwned(suggestion_field::STATUS.to_owned())
    );
    let sue3 = ClientDoc::new();
    sue3.catch_up_with(&sue);
    suggester
        .apply_update_as(
            set_field(&sue3, "s1", "replacement", "best"),
            None,
            &suggesting,
        )
        .await
        .expect("its author edits it");
    next_update(&mut reader).await;
    // And withdraws it; nobody else may.
    let ed_view = ClientDoc::new();
    ed_view.catch_up_with(&sue3);
    let withdraw = {
        let mut txn = sue3.doc.transact_mut();
        txn.get_or_insert_map("suggestions").remove(&mut txn, "s1");
        Bytes::from(txn.encode_update_v1())
    };
    let not_yours = {
        let mut txn = ed_view.doc.transact_mut();
        txn.get_or_insert_map("suggestions").remove(&mut txn, "s1");
        Bytes::from(txn.encode_update_v1())
    };
    assert!(matches!(
        denied(&editor, not_yours, &editing).await,
        WriteDenied::NotTheAuthor(_)
    ));
    suggester
        .apply_update_as(withdraw, None, &suggesting)
        .await
        .expect("its author withdraws it");
    next_update(&mut reader).await;
    assert_eq!(
        editor.room().to_json().unwrap(),
        json!({ "t": "hello world", "suggestions": {} })
    );
}

#[tokio::test]
async fn writes_are_located_after_server_edits_and_after_a_reload() {
    let db = TestDb::new().await;
    let (registry, _metrics) = db.start(test_config()).await;
    let room = room_id("relocated");
    let editing = grant(true, false, "ed");
    {
        let editor = registry.connect(&room).await.expect("connect");
        // The server writes (a restore, an import, the comment mirror) outside the check.
        editor
            .room()
            .edit(|txn| {
                txn.get_or_insert_text("t").insert(txn, 0, "server");
            })
            .await
            .expect("server edit");
        let ed = ClientDoc::new();
        ed.apply(&editor.room().encode_state());
        editor
            .apply_update_as(ed.append("t", " text"), None, &editing)
            .await
            .expect("typing after the server's text is located");
        let forged = {
            let mut txn = ed.doc.transact_mut();
            txn.get_or_insert_map("comments").insert(&mut txn, "c", "x");
            Bytes::from(txn.encode_update_v1())
        };
        assert_eq!(
            denied(&editor, forged, &editing).await,
            WriteDenied::Comments
        );
    }
    registry.flush().await;
    drop(registry);

    let (registry, _metrics) = db.start(test_config()).await;
    let editor = registry.connect(&room).await.expect("connect again");
    let ed = ClientDoc::new();
    ed.apply(&editor.room().encode_state());
    editor
        .apply_update_as(ed.insert("t", 3, "-"), None, &editing)
        .await
        .expect("typing into what was loaded is located");
    assert_eq!(
        editor.room().to_json().unwrap(),
        json!({ "t": "ser-ver text" })
    );
}

/// An editor's update may arrive before what it builds on, when that comes from a client the
/// room has never seen (it waits, and lands where its dependency does, checked then); one
/// building on a future item of a client the room knows is refused: those are predictable
/// (the server's own next edit of the comment mirror), so nobody can say where it lands.
#[tokio::test]
async fn updates_may_wait_only_for_clients_the_room_has_never_seen() {
    let db = TestDb::new().await;
    let (registry, _metrics) = db.start(test_config()).await;
    let room = room_id("waiting");
    let editor = registry.connect(&room).await.expect("connect");
    let editing = grant(true, true, "ed");
    let suggesting = grant(false, true, "sue");

    let lost = ClientDoc::with_id(41);
    let builder = ClientDoc::with_id(42);
    let missing = lost.append("t", "missing ");
    builder.apply(&missing);
    let dependent = builder.append("t", "dependent");
    assert_eq!(
        denied(&editor, dependent.clone(), &suggesting).await,
        WriteDenied::Unknown,
        "only who may edit the content may send what has to wait"
    );
    editor
        .apply_update_as(dependent, None, &editing)
        .await
        .expect("an update may wait for a client the room has not seen");
    editor
        .apply_update_as(missing, None, &editing)
        .await
        .expect("its dependency arrives");
    assert_eq!(
        editor.room().to_json().unwrap(),
        json!({ "t": "missing dependent" })
    );

    // The room knows client 41 now: something hanging off its next item is refused.
    let ahead = lost.append("t", " more");
    let after = {
        let next = ClientDoc::with_id(43);
        next.apply(
            &lost
                .doc
                .transact()
                .encode_state_as_update_v1(&Default::default()),
        );
        next.append("t", "!")
    };
    assert_eq!(denied(&editor, after, &editing).await, WriteDenied::Unknown);
    editor
        .apply_update_as(ahead, None, &editing)
        .await
        .expect("the item itself arrives");
}
