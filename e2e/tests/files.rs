//! Multi-file rooms over REST: every change reaches connected `yjs` clients live; uploads,
//! downloads, zip export and import round-trip byte for byte; bad input is refused clearly
//! and changes nothing.

use std::io::{Cursor, Read, Write};

use e2e::api::{self, Response};
use e2e::{TandemServer, YjsDriver};
use reqwest::Method;
use serde_json::{Value, json};

type Result = anyhow::Result<()>;

async fn upload(
    server: &TandemServer,
    token: &str,
    room: &str,
    path: &str,
    bytes: &[u8],
) -> anyhow::Result<Response> {
    api::send(
        server,
        Method::PUT,
        Some(token),
        &format!("/api/rooms/{room}/files/{path}"),
        Some((bytes.to_vec(), "text/plain")),
    )
    .await
}

async fn download(
    server: &TandemServer,
    token: &str,
    room: &str,
    path: &str,
) -> anyhow::Result<Response> {
    api::send(
        server,
        Method::GET,
        Some(token),
        &format!("/api/rooms/{room}/files/{path}"),
        None,
    )
    .await
}

/// The `files` map of `room` as the server lists it: path → size.
async fn listing(
    server: &TandemServer,
    token: &str,
    room: &str,
) -> anyhow::Result<Vec<(String, u64)>> {
    let body = api::get(server, token, &format!("/api/rooms/{room}/files")).await?;
    Ok(body["files"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or_default().to_owned(),
                f["size_bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect())
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        if name.ends_with('/') {
            writer
                .add_directory(*name, zip::write::SimpleFileOptions::default())
                .expect("directory entry");
            continue;
        }
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        writer.write_all(bytes).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip archive");
    let mut entries = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).expect("entry");
        let name = entry.name().expect("entry name").into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("entry content");
        entries.push((name, content));
    }
    entries.sort();
    entries
}

async fn import(
    server: &TandemServer,
    token: &str,
    query: &str,
    zip: Vec<u8>,
) -> anyhow::Result<Response> {
    api::send(
        server,
        Method::POST,
        Some(token),
        &format!("/api/import?{query}"),
        Some((zip, "application/zip")),
    )
    .await
}

#[tokio::test]
async fn file_changes_over_rest_reach_connected_clients_live() -> Result {
    let server = TandemServer::start(&[]).await?;
    let driver = YjsDriver::start().await?;
    let room = "tree";
    let token = server.ensure_room(room).await?;
    driver.connect("alice", &server, room).await?;

    let (status, created) = api::json(
        &server,
        Method::POST,
        &token,
        &format!("/api/rooms/{room}/files"),
        Some(json!({"path": "src/main.rs", "content": "fn main() {}\n"})),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    driver.call("waitMapJson", json!({"client": "alice", "name": "files", "equals": {"src/main.rs": "fn main() {}\n"}})).await?;

    assert_eq!(
        upload(&server, &token, room, "docs/read me.md", b"# Hi\n")
            .await?
            .status,
        201
    );
    assert_eq!(
        upload(&server, &token, room, "docs/read me.md", b"# Hello\n")
            .await?
            .status,
        200
    );
    driver
        .call(
            "waitMapJson",
            json!({"client": "alice", "name": "files",
        "equals": {"src/main.rs": "fn main() {}\n", "docs/read me.md": "# Hello\n"}}),
        )
        .await?;
    assert_eq!(
        listing(&server, &token, room).await?,
        vec![
            ("docs/read me.md".to_owned(), 8),
            ("src/main.rs".to_owned(), 13)
        ]
    );

    let (status, renamed) = api::json(
        &server,
        Method::PATCH,
        &token,
        &format!("/api/rooms/{room}/files/src/main.rs"),
        Some(json!({"path": "src/lib.rs"})),
    )
    .await?;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["path"], "src/lib.rs");
    driver
        .call(
            "waitMapJson",
            json!({"client": "alice", "name": "files",
        "equals": {"src/lib.rs": "fn main() {}\n", "docs/read me.md": "# Hello\n"}}),
        )
        .await?;

    let deleted = api::send(
        &server,
        Method::DELETE,
        Some(&token),
        &format!("/api/rooms/{room}/files/docs/read me.md"),
        None,
    )
    .await?;
    assert_eq!(deleted.status, 204);
    driver
        .call(
            "waitMapJson",
            json!({"client": "alice", "name": "files", "equals": {"src/lib.rs": "fn main() {}\n"}}),
        )
        .await?;

    // Refusals say why and change nothing.
    let (status, body) = api::json(
        &server,
        Method::POST,
        &token,
        &format!("/api/rooms/{room}/files"),
        Some(json!({"path": "src/lib.rs"})),
    )
    .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("file_exists")),
        "{body}"
    );
    let (status, body) = api::json(
        &server,
        Method::POST,
        &token,
        &format!("/api/rooms/{room}/files"),
        Some(json!({"path": "../escape.txt"})),
    )
    .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_path")),
        "{body}"
    );
    let missing = api::send(
        &server,
        Method::DELETE,
        Some(&token),
        &format!("/api/rooms/{room}/files/nope.txt"),
        None,
    )
    .await?;
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (404, "not_found")
    );
    let (status, body) = api::json(
        &server,
        Method::PATCH,
        &token,
        &format!("/api/rooms/{room}/files/nope.txt"),
        Some(json!({"path": "other.txt"})),
    )
    .await?;
    assert_eq!(status, 404, "{body}");

    // A root text is a file too: it can be rewritten and downloaded, not deleted.
    driver.insert("alice", "notes", 0, "root text").await?;
    driver.connect("bob", &server, room).await?;
    driver.wait_text("bob", "notes", "root text").await?;
    assert_eq!(
        download(&server, &token, room, "notes").await?.body,
        b"root text"
    );
    let refused = api::send(
        &server,
        Method::DELETE,
        Some(&token),
        &format!("/api/rooms/{room}/files/notes"),
        None,
    )
    .await?;
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (409, "root_text")
    );
    assert_eq!(
        upload(&server, &token, room, "notes", b"root text, rewritten")
            .await?
            .status,
        200
    );
    driver
        .wait_text("alice", "notes", "root text, rewritten")
        .await?;

    // A viewer reads but never writes.
    let viewer = server.register("viewer").await?;
    server.add_member(room, &viewer, "viewer").await?;
    assert_eq!(
        download(&server, &viewer.token, room, "src/lib.rs")
            .await?
            .body,
        b"fn main() {}\n"
    );
    assert_eq!(
        upload(&server, &viewer.token, room, "src/lib.rs", b"vandalised")
            .await?
            .status,
        403
    );
    assert_eq!(
        download(&server, &token, room, "src/lib.rs").await?.body,
        b"fn main() {}\n"
    );

    // Every change is in the activity feed.
    let feed = api::get(&server, &token, &format!("/api/rooms/{room}/activity")).await?;
    let kinds: Vec<&str> = feed["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["kind"].as_str())
                .filter(|k| k.starts_with("file_"))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        kinds,
        [
            "file_deleted",
            "file_renamed",
            "file_created",
            "file_created"
        ],
        "{feed}"
    );
    driver.shutdown().await
}

/// Texts whose bytes must survive every step exactly: line endings, tabs, a byte-order
/// mark, characters outside the BMP, trailing spaces, an empty file.
const SAMPLES: [(&str, &[u8]); 6] = [
    ("crlf.txt", b"line one\r\nline two\r\n"),
    (
        "src/tabs.go",
        b"package main\n\nfunc main() {\n\tprintln(\"hi\")\n}\n",
    ),
    ("bom.csv", b"\xef\xbb\xbfa,b\n1,2\n"),
    (
        "deep/er/unicode.md",
        "caf\u{e9} \u{2615} \u{1f980} \u{10348} done  \n".as_bytes(),
    ),
    ("empty.txt", b""),
    ("no-newline", b"last line without newline"),
];

#[tokio::test]
async fn uploads_downloads_exports_and_imports_round_trip_byte_for_byte() -> Result {
    let server = TandemServer::start(&[]).await?;
    let room = "roundtrip";
    let token = server.ensure_room(room).await?;
    for (path, bytes) in SAMPLES {
        let response = upload(&server, &token, room, path, bytes).await?;
        assert_eq!(
            response.status,
            201,
            "{path}: {}",
            String::from_utf8_lossy(&response.body)
        );
    }
    for (path, bytes) in SAMPLES {
        let response = download(&server, &token, room, path).await?;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, bytes, "{path}");
        assert!(
            response.headers["content-disposition"]
                .to_str()?
                .starts_with("attachment")
        );
    }

    let export = api::send(
        &server,
        Method::GET,
        Some(&token),
        &format!("/api/rooms/{room}/export"),
        None,
    )
    .await?;
    assert_eq!(export.status, 200);
    assert_eq!(export.headers["content-type"], "application/zip");
    let mut expected: Vec<(String, Vec<u8>)> = SAMPLES
        .iter()
        .map(|(p, b)| ((*p).to_owned(), b.to_vec()))
        .collect();
    expected.sort();
    assert_eq!(unzip(&export.body), expected);

    let imported = import(
        &server,
        &token,
        "name=Imported&id=imported",
        export.body.clone(),
    )
    .await?;
    assert_eq!(
        imported.status,
        201,
        "{}",
        String::from_utf8_lossy(&imported.body)
    );
    assert_eq!(imported.json()["role"], "owner");
    for (path, bytes) in SAMPLES {
        assert_eq!(
            download(&server, &token, "imported", path).await?.body,
            bytes,
            "{path}"
        );
    }
    let again = api::send(
        &server,
        Method::GET,
        Some(&token),
        "/api/rooms/imported/export",
        None,
    )
    .await?;
    assert_eq!(unzip(&again.body), expected);

    // An imported room is an ordinary room: a yjs client sees its files.
    let driver = YjsDriver::start().await?;
    driver.connect("reader", &server, "imported").await?;
    let files = driver
        .call("getMap", json!({"client": "reader", "name": "files"}))
        .await?;
    assert_eq!(files["crlf.txt"], "line one\r\nline two\r\n");
    assert_eq!(files.as_object().map(|o| o.len()), Some(SAMPLES.len()));
    driver.shutdown().await
}

#[tokio::test]
async fn oversized_binary_and_escaping_input_is_refused_and_changes_nothing() -> Result {
    let server =
        TandemServer::start(&["--max-file-size", "1024", "--max-import-size", "65536"]).await?;
    let room = "guarded";
    let token = server.ensure_room(room).await?;
    assert_eq!(
        upload(&server, &token, room, "ok.txt", &[b'a'; 1024])
            .await?
            .status,
        201
    );

    let too_big = upload(&server, &token, room, "big.txt", &[b'a'; 1025]).await?;
    assert_eq!(
        (too_big.status, too_big.error_code().as_str()),
        (413, "file_too_large")
    );
    let too_big = upload(&server, &token, room, "ok.txt", &[b'b'; 4096]).await?;
    assert_eq!(too_big.status, 413);
    for binary in [&b"PNG\x00\x01\x02"[..], &b"\xff\xfe\xfd not utf-8"[..]] {
        let refused = upload(&server, &token, room, "image.png", binary).await?;
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (415, "binary_file")
        );
    }
    for bad in ["a/../../etc/passwd", "a//b", "dir/"] {
        let refused = upload(&server, &token, room, bad, b"text").await?;
        assert!(
            refused.status == 422 || refused.status == 404,
            "{bad}: {} {}",
            refused.status,
            String::from_utf8_lossy(&refused.body)
        );
    }
    assert_eq!(
        listing(&server, &token, room).await?,
        vec![("ok.txt".to_owned(), 1024)]
    );
    assert_eq!(
        download(&server, &token, room, "ok.txt").await?.body,
        vec![b'a'; 1024]
    );

    // Imports: the whole archive is refused, and no room created, when any entry is bad.
    let cases: [(&str, Vec<u8>, u16, &str); 6] = [
        (
            "escape",
            zip_of(&[("fine.txt", b"ok"), ("../evil.txt", b"x")]),
            422,
            "invalid_path",
        ),
        (
            "absolute",
            zip_of(&[("/etc/cron.d/evil", b"x")]),
            422,
            "invalid_path",
        ),
        (
            "backslash",
            zip_of(&[("..\\evil.txt", b"x")]),
            422,
            "invalid_path",
        ),
        (
            "binary",
            zip_of(&[("fine.txt", b"ok"), ("blob.bin", b"\x00\x01")]),
            415,
            "binary_file",
        ),
        (
            "big-entry",
            zip_of(&[("big.txt", &[b'z'; 2048])]),
            413,
            "file_too_large",
        ),
        (
            "not-a-zip",
            b"just some text, not an archive".to_vec(),
            400,
            "invalid_zip",
        ),
    ];
    for (id, zip, status, code) in cases {
        let refused = import(&server, &token, &format!("name={id}&id={id}"), zip).await?;
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (status, code),
            "{id}: {}",
            String::from_utf8_lossy(&refused.body)
        );
        let (status, _) = api::json(
            &server,
            Method::GET,
            &token,
            &format!("/api/rooms/{id}"),
            None,
        )
        .await?;
        assert_eq!(status, 404, "{id}: a refused import left a room behind");
    }
    let huge = import(&server, &token, "name=huge&id=huge", vec![0u8; 70_000]).await?;
    assert_eq!(
        (huge.status, huge.error_code().as_str()),
        (413, "payload_too_large")
    );

    // Directory entries are fine and skipped.
    let fine = import(
        &server,
        &token,
        "name=dirs&id=dirs",
        zip_of(&[("src/", b""), ("src/a.txt", b"a")]),
    )
    .await?;
    assert_eq!(fine.status, 201, "{}", String::from_utf8_lossy(&fine.body));
    assert_eq!(
        listing(&server, &token, "dirs").await?,
        vec![("src/a.txt".to_owned(), 1)]
    );
    let (status, body): (u16, Value) =
        api::json(&server, Method::GET, &token, "/api/rooms/dirs", None).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}
