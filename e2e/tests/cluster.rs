//! Several nodes sharing one database and one Redis, behind a load balancer.

use e2e::{LoadBalancer, RedisServer, TandemServer, YjsDriver, seed};
use serde_json::json;

type Result = anyhow::Result<()>;

/// Three nodes on one database and one Redis, with anti-entropy every 500 ms.
async fn cluster(redis: &RedisServer, extra: &[&str]) -> anyhow::Result<Vec<TandemServer>> {
    let url = redis.url();
    let mut args = vec![
        "--redis-url",
        url.as_str(),
        "--cluster-sync-interval",
        "500ms",
    ];
    args.extend_from_slice(extra);
    let node = |name: &'static str| [&args[..], &["--node-id", name]].concat();
    let first = TandemServer::start(&node("node-1")).await?;
    let database = first.database_url().to_owned();
    let second = TandemServer::start_on(Some(&database), &node("node-2")).await?;
    let third = TandemServer::start_on(Some(&database), &node("node-3")).await?;
    Ok(vec![first, second, third])
}

async fn random_edits(driver: &YjsDriver, clients: &[String], seed: u64, count: u32) -> Result {
    let edits = clients.iter().enumerate().map(|(i, client)| {
        driver.call(
            "randomEdits",
            json!({"client": client, "text": "text", "seed": seed + i as u64, "count": count}),
        )
    });
    for result in futures_util::future::join_all(edits).await {
        result?;
    }
    Ok(())
}

#[tokio::test]
async fn clients_on_three_nodes_converge_and_see_each_others_presence() -> Result {
    let seed = seed("clients_on_three_nodes_converge_and_see_each_others_presence");
    let redis = RedisServer::start().await?;
    let nodes = cluster(&redis, &[]).await?;
    let token = nodes[0].ensure_room("shared").await?;
    let driver = YjsDriver::start().await?;
    let clients: Vec<String> = (0..9).map(|i| format!("c{i}")).collect();
    let mut ids = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        ids.push(
            driver
                .connect_url(client, &nodes[i % 3].ws_url(), "shared", &token)
                .await?,
        );
    }
    random_edits(&driver, &clients, seed, 30).await?;
    let text = driver.wait_converged(&clients, "text").await?;
    assert!(!text.is_empty());

    // Presence crosses nodes: c0 is on node 1, c2 on node 3.
    driver
        .call(
            "setAwareness",
            json!({"client": "c0", "state": {"cursor": 7}}),
        )
        .await?;
    driver
        .call(
            "waitAwareness",
            json!({"client": "c2", "clientId": ids[0], "present": true}),
        )
        .await?;
    // And leaves with its client.
    driver.call("destroy", json!({"client": "c0"})).await?;
    for observer in ["c3", "c2"] {
        driver
            .call(
                "waitAwareness",
                json!({"client": observer, "clientId": ids[0], "present": false}),
            )
            .await?;
    }
    driver.shutdown().await
}

#[tokio::test]
async fn a_client_joining_another_node_sees_edits_not_yet_stored() -> Result {
    let redis = RedisServer::start().await?;
    // Relaxed durability: node 1 fans out before it commits.
    let nodes = cluster(&redis, &["--durability", "relaxed"]).await?;
    let token = nodes[0].ensure_room("fresh").await?;
    let driver = YjsDriver::start().await?;
    driver
        .connect_url("writer", &nodes[0].ws_url(), "fresh", &token)
        .await?;
    driver
        .insert("writer", "text", 0, "written on node 1")
        .await?;
    driver
        .connect_url("reader", &nodes[1].ws_url(), "fresh", &token)
        .await?;
    // The first sync from node 2 already holds the edit.
    assert_eq!(driver.text("reader", "text").await?, "written on node 1");
    driver.shutdown().await
}

#[tokio::test]
async fn killing_a_node_loses_nothing_its_clients_reconnect_elsewhere() -> Result {
    let seed = seed("killing_a_node_loses_nothing_its_clients_reconnect_elsewhere");
    let redis = RedisServer::start().await?;
    let mut nodes = cluster(&redis, &[]).await?;
    let token = nodes[0].ensure_room("crash").await?;
    let balancer =
        LoadBalancer::start(nodes.iter().map(|n| n.address().to_owned()).collect()).await?;
    let driver = YjsDriver::start().await?;
    let clients: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    for client in &clients {
        driver
            .connect_url(client, &balancer.ws_url(), "crash", &token)
            .await?;
    }
    random_edits(&driver, &clients, seed, 20).await?;
    driver.wait_converged(&clients, "text").await?;

    // Node 1 dies mid-editing; its clients reconnect through the balancer to the others.
    balancer.set_backends(nodes[1..].iter().map(|n| n.address().to_owned()).collect());
    let (killed, edited) = tokio::join!(
        nodes[0].kill(),
        random_edits(&driver, &clients, seed + 100, 20)
    );
    killed?;
    edited?;
    let text = driver.wait_converged(&clients, "text").await?;

    // Everything every client saw is stored: a node started afresh serves it.
    for node in &mut nodes[1..] {
        node.stop().await?;
    }
    let fresh = TandemServer::start_on(Some(nodes[0].database_url()), &[]).await?;
    driver
        .connect_url("after", &fresh.ws_url(), "crash", &token)
        .await?;
    assert_eq!(driver.text("after", "text").await?, text);
    driver.shutdown().await
}

#[tokio::test]
async fn nodes_reconverge_after_redis_comes_back() -> Result {
    let seed = seed("nodes_reconverge_after_redis_comes_back");
    let mut redis = RedisServer::start().await?;
    let nodes = cluster(&redis, &[]).await?;
    let token = nodes[0].ensure_room("outage").await?;
    let driver = YjsDriver::start().await?;
    let clients: Vec<String> = (0..3).map(|i| format!("c{i}")).collect();
    for (i, client) in clients.iter().enumerate() {
        driver
            .connect_url(client, &nodes[i].ws_url(), "outage", &token)
            .await?;
    }
    driver.insert("c0", "text", 0, "before. ").await?;
    driver.wait_converged(&clients, "text").await?;

    redis.stop().await?;
    // Every node keeps serving its own clients, and says it is degraded.
    let ready: serde_json::Value = reqwest::get(nodes[1].http("/readyz")).await?.json().await?;
    assert_eq!(ready["status"], "degraded", "{ready}");
    random_edits(&driver, &clients, seed, 15).await?;

    redis.restart().await?;
    let text = driver.wait_converged(&clients, "text").await?;
    assert!(text.contains("before. ") || text.len() > 8, "{text:?}");
    let ready: serde_json::Value = reqwest::get(nodes[1].http("/readyz")).await?.json().await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    driver.shutdown().await
}

#[tokio::test]
async fn two_nodes_compacting_one_room_lose_nothing() -> Result {
    let seed = seed("two_nodes_compacting_one_room_lose_nothing");
    let redis = RedisServer::start().await?;
    let nodes = cluster(&redis, &["--compact-after", "5"]).await?;
    let token = nodes[0].ensure_room("compact").await?;
    let driver = YjsDriver::start().await?;
    let clients: Vec<String> = (0..4).map(|i| format!("c{i}")).collect();
    for (i, client) in clients.iter().enumerate() {
        driver
            .connect_url(client, &nodes[i % 2].ws_url(), "compact", &token)
            .await?;
    }
    random_edits(&driver, &clients, seed, 60).await?;
    let text = driver.wait_converged(&clients, "text").await?;
    // Both nodes log and compact; when they race for the same rows one of them finds the
    // snapshot moved and backs off, so only the total is certain.
    let compactions = nodes[0].metric("tandem_compactions_total").await?
        + nodes[1].metric("tandem_compactions_total").await?;
    assert!(compactions > 0.0);

    let fresh = TandemServer::start_on(Some(nodes[0].database_url()), &[]).await?;
    driver
        .connect_url("after", &fresh.ws_url(), "compact", &token)
        .await?;
    assert_eq!(driver.text("after", "text").await?, text);
    driver.shutdown().await
}

#[tokio::test]
async fn removing_a_participant_on_one_node_closes_their_socket_on_another() -> Result {
    let redis = RedisServer::start().await?;
    let nodes = cluster(&redis, &[]).await?;
    nodes[0].ensure_room("access").await?;
    let member = nodes[0].register("member").await?;
    nodes[0].add_member("access", &member, "editor").await?;
    let driver = YjsDriver::start().await?;
    driver
        .connect_url("member", &nodes[2].ws_url(), "access", &member.token)
        .await?;
    let owner = nodes[0].owner().await?;
    let close = driver.call("waitClose", json!({"client": "member"}));
    let removal = reqwest::Client::new()
        .delete(nodes[0].http(&format!("/api/rooms/access/members/{}", member.id)))
        .bearer_auth(&owner.token)
        .send();
    let (close, removal) = tokio::join!(close, removal);
    assert_eq!(removal?.status().as_u16(), 204);
    assert_eq!(close?["code"], json!(4403));
    driver.shutdown().await
}
