//! The browser client (`server/web/`), served by the built binary and driven in Debian's
//! headless Chromium through `playwright-core`: each scenario is a Node script under
//! `e2e/js/browser/` that exits non-zero naming what failed, and saves screenshots of its
//! final state under `e2e/artifacts/`. The HTTP side of serving the client (fallback to
//! `index.html`, caching, the message when it is not built) is checked directly.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use e2e::llm::{LlmStandIn, ScriptedReply};
use e2e::{TandemServer, workspace_root};
use tokio::process::Command;

type Result = anyhow::Result<()>;

/// A scenario that takes longer than this is stuck.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

/// The built client; `scripts/test` builds it before the cargo tests.
fn web_dist() -> PathBuf {
    let dist = workspace_root().join("server/web/dist");
    assert!(
        dist.join("index.html").exists(),
        "{} is not built: run `npm ci && npm run build` in server/web (scripts/test does)",
        dist.display()
    );
    dist
}

async fn web_server(extra: &[&str]) -> anyhow::Result<TandemServer> {
    let dist = web_dist();
    let mut args = vec!["--web-dir", dist.to_str().expect("UTF-8 path")];
    args.extend_from_slice(extra);
    TandemServer::start(&args).await
}

/// Runs `e2e/js/browser/{name}.mjs` against `server`; fails with its output unless it
/// exits 0.
async fn scenario(name: &str, server: &TandemServer) -> Result {
    let js = workspace_root().join("e2e/js");
    ensure!(
        js.join("node_modules/playwright-core").exists(),
        "e2e/js/node_modules is missing playwright-core: run `npm ci` in e2e/js (the test script does)"
    );
    let mut command = Command::new("node");
    command
        .arg(js.join("browser").join(format!("{name}.mjs")))
        .current_dir(&js)
        .env("TANDEM_URL", server.http(""))
        .env("TANDEM_ARTIFACTS", workspace_root().join("e2e/artifacts"))
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCENARIO_TIMEOUT, command.output())
        .await
        .with_context(|| format!("browser scenario {name} did not finish in time"))?
        .context("starting node")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    ensure!(
        output.status.success(),
        "browser scenario {name} failed ({}):\n{stderr}\n{stdout}\nserver log:\n{}",
        output.status,
        server.logs()
    );
    Ok(())
}

#[tokio::test]
async fn two_people_typing_at_once_converge_and_see_each_others_named_cursors() -> Result {
    let server = web_server(&[]).await?;
    scenario("two-users", &server).await
}

/// Also: made a viewer by the owner while editing, a person's next keystroke turns their room
/// read-only (reloaded with the server's text); made an editor again, the room reopens
/// editable by itself.
#[tokio::test]
async fn a_viewer_cannot_type_and_an_invite_link_grants_editing() -> Result {
    let server = web_server(&[]).await?;
    scenario("viewer-invite", &server).await
}

#[tokio::test]
async fn edits_made_offline_merge_when_the_browser_comes_back() -> Result {
    let server = web_server(&[]).await?;
    scenario("offline", &server).await
}

#[tokio::test]
async fn restoring_a_version_from_the_panel_reaches_both_people() -> Result {
    let server = web_server(&[]).await?;
    scenario("restore", &server).await
}

#[tokio::test]
async fn an_accepted_ai_refactor_changes_the_text_for_both_people() -> Result {
    let stand_in = LlmStandIn::start().await?;
    stand_in.set_default(ScriptedReply::slow(
        &[
            "Here is a clearer version:\n",
            "```js\n",
            "let total = a + b;\n",
            "```\n",
            "Same behaviour, spaced out.",
        ],
        // Long enough for the browsers to see the assistant at work.
        Duration::from_millis(1500),
        Duration::from_millis(100),
    ));
    let base = stand_in.base_url();
    let server = web_server(&["--ai-base-url", &base, "--ai-model", "stand-in"]).await?;
    scenario("ai", &server).await?;
    // The model saw two requests, each with the line selected for it as the selection.
    let requests = stand_in.requests();
    ensure!(requests.len() == 2, "model requests: {requests:?}");
    for (request, selected) in requests.iter().zip(["let total=a+b;", "let x = 1;"]) {
        let marked = format!("Selected code:\n```\n{selected}\n```");
        let messages = request["messages"].as_array().into_iter().flatten();
        ensure!(
            messages
                .filter_map(|m| m["content"].as_str())
                .any(|text| text.contains(&marked)),
            "the selection {selected:?} did not reach the model: {request}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn rooms_are_renamed_forked_and_deleted_across_access_token_refreshes() -> Result {
    let server = web_server(&["--access-token-ttl", "3s"]).await?;
    scenario("rooms", &server).await
}

#[tokio::test]
async fn at_phone_width_the_editor_and_controls_fit_without_sideways_scrolling() -> Result {
    let server = web_server(&[]).await?;
    scenario("phone", &server).await
}

#[tokio::test]
async fn the_client_is_served_with_its_routes_and_the_api_keeps_its_404() -> Result {
    let dist = tempfile::tempdir()?;
    std::fs::create_dir(dist.path().join("assets"))?;
    std::fs::write(dist.path().join("index.html"), "<!doctype html><p>app</p>")?;
    std::fs::write(dist.path().join("assets/app-1a2b3c.js"), "console.log(1)")?;
    // The build's gzip copy (any bytes do: this checks which file is sent, not gzip).
    std::fs::write(dist.path().join("assets/app-1a2b3c.js.gz"), "gzip bytes")?;
    std::fs::write(dist.path().join("robots.txt"), "User-agent: *")?;
    let server = TandemServer::start(&["--web-dir", dist.path().to_str().expect("UTF-8")]).await?;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(server.http(path)).send();

    for route in [
        "/",
        "/rooms/abc",
        "/invite/inv_x",
        "/share/shr_x",
        "/deep/er/path",
    ] {
        let res = get(route).await?;
        assert_eq!(res.status(), 200, "{route}");
        assert_eq!(
            res.headers()["content-type"],
            "text/html; charset=utf-8",
            "{route}"
        );
        assert_eq!(res.headers()["cache-control"], "no-store", "{route}");
        assert_eq!(res.headers()["x-frame-options"], "DENY", "{route}");
        assert_eq!(res.text().await?, "<!doctype html><p>app</p>", "{route}");
    }

    let asset = get("/assets/app-1a2b3c.js").await?;
    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(asset.headers()["x-content-type-options"], "nosniff");
    assert_eq!(asset.text().await?, "console.log(1)");
    let gzipped = http
        .get(server.http("/assets/app-1a2b3c.js"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await?;
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(
        gzipped.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(
        gzipped.headers()["vary"]
            .to_str()?
            .contains("Accept-Encoding"),
        "{:?}",
        gzipped.headers()
    );
    assert_eq!(gzipped.text().await?, "gzip bytes");
    // Without a gzip copy the file goes as it is.
    let plain = http
        .get(server.http("/robots.txt"))
        .header("accept-encoding", "gzip")
        .send()
        .await?;
    assert!(plain.headers().get("content-encoding").is_none());
    let robots = get("/robots.txt").await?;
    assert_eq!(robots.headers()["cache-control"], "no-store");
    assert_eq!(robots.text().await?, "User-agent: *");

    // A missing asset is a 404, never index.html run as a script.
    let missing = get("/assets/gone-000.js").await?;
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await?.contains("no such asset"));
    // Nothing outside the directory.
    for escape in [
        "/../Cargo.toml",
        "/assets/%2e%2e/%2e%2e/Cargo.toml",
        "/.hidden",
    ] {
        let res = get(escape).await?;
        let body = res.text().await?;
        assert!(!body.contains("[package]"), "{escape}: {body}");
    }

    // The server's own paths are untouched.
    let unknown = get("/api/nope").await?;
    assert_eq!(unknown.status(), 404);
    let body: serde_json::Value = unknown.json().await?;
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(get("/ws").await?.status(), 404);
    assert_eq!(get("/healthz").await?.status(), 200);
    assert_eq!(get("/readyz").await?.status(), 200);
    assert_eq!(get("/metrics").await?.status(), 200);
    let posted = http.post(server.http("/rooms/abc")).send().await?;
    assert_eq!(posted.status(), 404);
    Ok(())
}

#[tokio::test]
async fn without_a_built_client_the_root_says_how_to_build_it() -> Result {
    let nowhere = tempfile::tempdir()?;
    let missing = nowhere.path().join("dist");
    let server = TandemServer::start(&["--web-dir", missing.to_str().expect("UTF-8")]).await?;
    for route in ["/", "/rooms/abc"] {
        let res = reqwest::get(server.http(route)).await?;
        assert_eq!(res.status(), 404, "{route}");
        assert_eq!(
            res.headers()["content-type"],
            "text/plain; charset=utf-8",
            "{route}"
        );
        let text = res.text().await?;
        assert!(text.contains("web app is not built"), "{text}");
        assert!(text.contains("npm run build"), "{text}");
    }
    // The API works regardless.
    let owner = server.owner().await?;
    assert!(!owner.token.is_empty());
    Ok(())
}
