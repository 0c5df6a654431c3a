//! The stack on a 3-primary Redis Cluster, every key of it in one hash slot.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use mcp_testkit::prefix;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::common::{
    self, ControlPlane, Upstream, client, register, sse_events, token, wait_routable,
};

/// A 3-primary Redis Cluster on loopback (no replicas), ready.
struct Cluster {
    nodes: Vec<Proc>,
}

impl Cluster {
    fn start() -> Self {
        let nodes: Vec<Proc> = (0..3)
            .map(|_| {
                redis_node(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("timeout")
            .args(["30", "redis-cli", "--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            created.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let ok = wait_until(Duration::from_secs(20), || {
            nodes
                .iter()
                .all(|n| cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
        assert!(ok, "the cluster never reached cluster_state:ok");
        Self { nodes }
    }

    fn list(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_runs_on_a_redis_cluster() {
    let cluster = Cluster::start();
    let list = cluster.list();
    let flags = ["--redis-cluster-nodes", list.as_str()];
    let prefix = prefix();
    let registry = common::registry(IGNORED_URL, &prefix, &flags).await;
    let config = common::config_with(IGNORED_URL, &prefix, &flags).await;
    let health = common::health_with(IGNORED_URL, &prefix, &flags).await;
    let gw = common::gateway(
        IGNORED_URL,
        &prefix,
        ControlPlane {
            registry: &registry.service.url,
            config: &config.service.url,
            health: &health.service.url,
        },
        &flags,
    )
    .await;
    let stop = CancellationToken::new();
    let mut watch = sse_events(config.at("/v1/watch?namespace=cl"), stop.clone()).await;

    // Registry: register, list, route through the gateway.
    let echo = Upstream::echo("echo").await;
    assert_eq!(
        register(&registry.service.url, "echo", "e-1", echo.addr.port(), 60).await,
        201
    );
    assert!(wait_routable(&gw, "echo", "e-1").await);
    let bearer = token("admin");
    let http = client();
    let routed = http
        .get(gw.at("/svc/echo/ping"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(routed.status(), 200);
    let listed: Value = http
        .get(gw.at("/api/v1/registry/services/echo/instances"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["instances"][0]["id"], "e-1", "{listed}");

    // Config: put twice (CAS on the second), read, history, watch.
    let put = |value: Value, if_match: Option<&str>| {
        let mut request = http
            .put(gw.at("/api/v1/config/namespaces/cl/keys/db/pool"))
            .bearer_auth(&bearer)
            .json(&json!({ "value": value }));
        if let Some(tag) = if_match {
            request = request.header("If-Match", tag);
        }
        request.send()
    };
    assert_eq!(put(json!({"max": 1}), None).await.unwrap().status(), 201);
    assert_eq!(
        put(json!({"max": 2}), Some("\"1\""))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        put(json!({"max": 3}), Some("\"1\""))
            .await
            .unwrap()
            .status(),
        412
    );
    let entry: Value = http
        .get(gw.at("/api/v1/config/namespaces/cl/keys/db/pool"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entry["version"], 2, "{entry}");
    assert_eq!(entry["value"], json!({"max": 2}));
    let history = http
        .get(gw.at("/api/v1/config/namespaces/cl/keys/db/pool/history"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(history.status(), 200);
    let events = drain(&mut watch, Duration::from_secs(1)).await;
    let puts: Vec<u64> = events
        .iter()
        .filter(|(kind, _)| kind == "put")
        .filter_map(|(_, data)| data["version"].as_u64())
        .collect();
    assert_eq!(puts, vec![1, 2], "{events:?}");
    // The health summary answers through the gateway.
    let summary = http
        .get(gw.at("/api/v1/health/summary"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(summary.status(), 200);

    // Every key of the stack sits in the one slot of `{prefix}`, on one node.
    let pattern = format!("{{{prefix}}}:*");
    let per_node: Vec<usize> = cluster
        .nodes
        .iter()
        .map(|n| {
            cli(n.port, &["KEYS", &pattern])
                .lines()
                .filter(|l| !l.is_empty())
                .count()
        })
        .collect();
    assert_eq!(
        per_node.iter().filter(|&&n| n > 0).count(),
        1,
        "keys spread over nodes: {per_node:?}"
    );
    let slot = cli(
        cluster.nodes[0].port,
        &["CLUSTER", "KEYSLOT", &format!("{{{prefix}}}")],
    );
    assert_eq!(
        slot,
        mcp_shared::store::key_slot(&format!("{{{prefix}}}:reg:revision")).to_string()
    );
    // No key outside the hash tag.
    for n in &cluster.nodes {
        let stray = cli(n.port, &["KEYS", &format!("{prefix}:*")]);
        assert!(stray.is_empty(), "keys without the hash tag: {stray}");
    }
    stop.cancel();
}
