//! Sentinel failover under steady load: the primary is SIGKILLed and no
//! acknowledged write is lost, `/svc` never fails, watchers see each change
//! once (see the parent module's docs).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mcp_testkit::{eventually, prefix};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::common::{
    self, ControlPlane, Sample, Upstream, client, collect, load, register, sample, sse_events,
    token, wait_routable,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_failover_under_load_loses_no_acknowledged_write() {
    let mut set = SentinelSet::start();
    let list = set.list();
    let ha = [
        "--redis-sentinels",
        list.as_str(),
        "--redis-sentinel-master",
        MASTER,
        "--redis-min-replicas-ack",
        "1",
    ];
    let prefix = prefix();
    let registry = common::registry(IGNORED_URL, &prefix, &ha).await;
    let mut config_flags = ha.to_vec();
    config_flags.extend(["--history-limit", "100000"]);
    let config = common::config_with(IGNORED_URL, &prefix, &config_flags).await;
    let health = common::health_with(IGNORED_URL, &prefix, &ha).await;
    let gw = common::gateway(
        IGNORED_URL,
        &prefix,
        ControlPlane {
            registry: &registry.service.url,
            config: &config.service.url,
            health: &health.service.url,
        },
        &ha,
    )
    .await;
    let echo = Upstream::echo("echo").await;
    assert_eq!(
        register(&registry.service.url, "echo", "e-1", echo.addr.port(), 60).await,
        201
    );
    assert!(wait_routable(&gw, "echo", "e-1").await);

    let stop = CancellationToken::new();
    // The watchers outlive the load: they must still get its last events.
    let watching = CancellationToken::new();
    let _stop_watching = watching.clone().drop_guard();
    let mut config_watch = sse_events(config.at("/v1/watch?namespace=ha"), watching.clone()).await;
    let mut registry_watch =
        sse_events(registry.at("/v1/watch?service=fleet"), watching.clone()).await;
    // The watches may not follow the feeds yet when they answer: probe each until it sees a
    // change (bounded), so no acknowledged change below predates them.
    let probe = client();
    let mut live = (false, false);
    for n in 0..20 {
        if !live.0 {
            let put = probe
                .put(config.at("/v1/namespaces/ha/keys/probe"))
                .json(&serde_json::json!({ "value": n }))
                .send()
                .await
                .unwrap();
            assert!(put.status().is_success());
        }
        if !live.1 {
            let id = format!("probe-{n}");
            assert_eq!(
                register(&registry.service.url, "fleet", &id, echo.addr.port(), 60).await,
                201
            );
        }
        let quiet = Duration::from_millis(300);
        live.0 = live.0 || !drain(&mut config_watch, quiet).await.is_empty();
        live.1 = live.1 || !drain(&mut registry_watch, quiet).await.is_empty();
        if live.0 && live.1 {
            break;
        }
    }
    assert!(live.0 && live.1, "the watches never went live: {live:?}");
    let acks = Arc::new(Mutex::new(Acks::default()));
    let bearer = token("admin");
    let gw_url = gw.service.url.clone();
    let http = client();
    let port = echo.addr.port();
    let mut loops = Vec::new();
    {
        let (acks, http, gw, bearer) = (acks.clone(), http.clone(), gw_url.clone(), bearer.clone());
        loops.push(load(
            3000,
            Duration::from_millis(15),
            stop.clone(),
            move |i| {
                let (acks, http, gw, bearer) =
                    (acks.clone(), http.clone(), gw.clone(), bearer.clone());
                async move {
                    let key = format!("k{i}");
                    let put = http
                        .put(format!("{gw}/api/v1/config/namespaces/ha/keys/{key}"))
                        .bearer_auth(&bearer)
                        .json(&json!({"value": i}));
                    let (s1, body) = sample("config put", put).await;
                    if s1.ok() {
                        let version = body["version"].as_u64().unwrap();
                        acks.lock().unwrap().config.push((key, version, i as i64));
                    }
                    let hot = http
                        .put(format!("{gw}/api/v1/config/namespaces/ha/keys/hot"))
                        .bearer_auth(&bearer)
                        .json(&json!({"value": i}));
                    let (s2, body) = sample("config put hot", hot).await;
                    if s2.ok() {
                        let version = body["version"].as_u64().unwrap();
                        acks.lock()
                            .unwrap()
                            .config
                            .push(("hot".to_owned(), version, i as i64));
                    }
                    vec![s1, s2]
                }
            },
        ));
    }
    {
        let (acks, http, gw, bearer) = (acks.clone(), http.clone(), gw_url.clone(), bearer.clone());
        loops.push(load(
            3000,
            Duration::from_millis(15),
            stop.clone(),
            move |i| {
                let (acks, http, gw, bearer) =
                    (acks.clone(), http.clone(), gw.clone(), bearer.clone());
                async move {
                    let id = format!("f{i}");
                    let put = http
                        .put(format!(
                            "{gw}/api/v1/registry/services/fleet/instances/{id}"
                        ))
                        .bearer_auth(&bearer)
                        .json(&json!({"host": "127.0.0.1", "port": port, "ttl_seconds": 300}));
                    let (s1, _) = sample("register", put).await;
                    if s1.ok() {
                        acks.lock().unwrap().registered.push(id);
                    }
                    let beat = http
                        .put(format!(
                            "{gw}/api/v1/registry/services/echo/instances/e-1/heartbeat"
                        ))
                        .bearer_auth(&bearer);
                    let (s2, _) = sample("heartbeat", beat).await;
                    vec![s1, s2]
                }
            },
        ));
    }
    {
        let (http, gw, bearer) = (http.clone(), gw_url.clone(), bearer.clone());
        loops.push(load(
            6000,
            Duration::from_millis(5),
            stop.clone(),
            move |_| {
                let (http, gw, bearer) = (http.clone(), gw.clone(), bearer.clone());
                async move {
                    let get = http.get(format!("{gw}/svc/echo/ping")).bearer_auth(&bearer);
                    vec![sample("svc", get).await.0]
                }
            },
        ));
    }

    // Steady load first, then the primary dies.
    let warm = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || async {
            acks.lock().unwrap().config.len() >= 40 || warm.elapsed() > Duration::from_secs(3)
        })
        .await
    );
    let old_primary = set.primary.port;
    let killed = Instant::now();
    set.primary.kill();
    // Load goes on until every target has succeeded again, then 2 s more.
    let before = acks.lock().unwrap().config.len();
    assert!(before > 0, "no config write acknowledged before the kill");
    let promoted = eventually(Duration::from_secs(30), || async {
        set.named_primary() == Some(set.replica.port)
    })
    .await;
    assert!(
        promoted,
        "the Sentinels never promoted the replica: {}",
        std::fs::read_to_string(set.sentinels[0].dir.path().join("log")).unwrap_or_default()
    );
    let promoted = killed.elapsed();
    // A supervisor brings the dead node back, as a replica of the new
    // primary (empty: it kept nothing on disk): with one replica and
    // REDIS_MIN_REPLICAS_ACK=1, writes wait for it.
    let new_primary = set.replica.port.to_string();
    let agreed = eventually(Duration::from_secs(10), || async {
        set.sentinels.iter().all(|s| {
            cli(s.port, &["SENTINEL", "get-master-addr-by-name", MASTER])
                .lines()
                .nth(1)
                == Some(new_primary.as_str())
        })
    })
    .await;
    assert!(agreed, "the Sentinels never agreed on the new primary");
    set.primary = redis_node_at(old_primary, &["--replicaof", "127.0.0.1", &new_primary]);
    let written = eventually(Duration::from_secs(30), || async {
        acks.lock().unwrap().config.len() > before
    })
    .await;
    assert!(written, "no config write acknowledged after the failover");
    println!(
        "a config write acknowledged again {:?} after the kill",
        killed.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.cancel();
    let samples = collect(loops).await;

    // /svc: routed from the last table throughout.
    let svc: Vec<&Sample> = samples.iter().filter(|s| s.target == "svc").collect();
    let svc_failed: Vec<&&Sample> = svc.iter().filter(|s| !s.ok()).collect();
    if !svc_failed.is_empty() {
        for s in &set.sentinels {
            println!(
                "sentinel {} log:\n{}",
                s.port,
                std::fs::read_to_string(s.dir.path().join("log")).unwrap_or_default()
            );
        }
    }
    assert!(
        svc_failed.is_empty(),
        "{} of {} /svc calls failed, from {:?} to {:?} after the kill: {:?}",
        svc_failed.len(),
        svc.len(),
        svc_failed
            .first()
            .map(|s| s.started.saturating_duration_since(killed)),
        svc_failed
            .last()
            .map(|s| s.started.saturating_duration_since(killed)),
        svc_failed.first()
    );
    // API: 503 problem+json only during the failover, then success with no restart.
    let slack = Duration::from_millis(1500);
    let mut window = Duration::ZERO;
    for target in ["config put", "config put hot", "register", "heartbeat"] {
        let back = check_failures(&samples, target, killed, slack)
            .unwrap_or_else(|| panic!("{target} never succeeded after the kill"));
        window = window.max(back - killed);
    }
    let failed = samples.iter().filter(|s| !s.ok()).count();
    println!(
        "sentinel failover: primary {old_primary} killed; Sentinels named the replica after \
         {promoted:?}; the old node restarted as a replica then; every API target answering \
         again {window:?} after the kill; \
         {failed} API answers were 503 of {} requests; /svc: 0 failures of {}",
        samples.len() - svc.len(),
        svc.len()
    );
    assert!(
        window < Duration::from_secs(15),
        "API calls failed for {window:?} after the kill"
    );

    // Every acknowledged config write is there with its version (and the
    // hot key's history holds each acknowledged version with its value).
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    let direct = client();
    let history: Value = direct
        .get(config.at("/v1/namespaces/ha/keys/hot/history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions: HashMap<u64, Value> = history["versions"]
        .as_array()
        .or_else(|| history["history"].as_array())
        .or_else(|| history.as_array())
        .unwrap_or_else(|| panic!("unexpected history body: {history}"))
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["value"].clone()))
        .collect();
    for (key, version, value) in &acks.config {
        if key == "hot" {
            assert_eq!(
                versions.get(version),
                Some(&json!(value)),
                "acknowledged hot version {version} missing from the history"
            );
            continue;
        }
        let entry: Value = direct
            .get(config.at(&format!("/v1/namespaces/ha/keys/{key}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(entry["version"], json!(version), "{key}: {entry}");
        assert_eq!(entry["value"], json!(value), "{key}: {entry}");
    }
    // No registered instance is lost.
    let listed: Value = direct
        .get(registry.at("/v1/services/fleet/instances"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    for id in &acks.registered {
        assert!(ids.contains(&id.as_str()), "registered {id} was lost");
    }
    assert!(
        common::admin_instance(&gw, "echo", "e-1").await.is_some(),
        "the heartbeating instance was lost"
    );

    // Watchers: each acknowledged change exactly once, or a reset.
    let config_events = drain(&mut config_watch, Duration::from_secs(2)).await;
    let registry_events = drain(&mut registry_watch, Duration::from_secs(2)).await;
    for (what, events) in [("config", &config_events), ("registry", &registry_events)] {
        if events.iter().any(|(kind, _)| kind == "reset") {
            println!("{what} watcher got a reset (the new primary lacked history)");
            continue;
        }
        let mut seen: BTreeMap<(String, u64), usize> = BTreeMap::new();
        let mut revisions = Vec::new();
        for (kind, data) in events {
            let revision = data["revision"]
                .as_u64()
                .or_else(|| data["instance"]["revision"].as_u64());
            revisions.push(revision.unwrap_or_default());
            let name = if what == "config" {
                data["key"].as_str().unwrap_or_default().to_owned()
            } else {
                format!("{kind}:{}", data["id"].as_str().unwrap_or_default())
            };
            let version = data["version"].as_u64().unwrap_or_default();
            *seen.entry((name, version)).or_default() += 1;
        }
        let missing: Vec<String> = if what == "config" {
            acks.config
                .iter()
                .filter(|(k, v, _)| seen.get(&(k.clone(), *v)) != Some(&1))
                .map(|(k, v, _)| format!("{k}@{v}"))
                .collect()
        } else {
            Vec::new()
        };
        println!(
            "{what} watcher: {} events, revisions {:?}..{:?}, kinds {:?}; not seen once: {} {:?}",
            events.len(),
            revisions.first(),
            revisions.last(),
            events
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<std::collections::BTreeSet<_>>(),
            missing.len(),
            missing.iter().take(10).collect::<Vec<_>>()
        );
        if what == "config" {
            for (key, version, _) in &acks.config {
                assert_eq!(
                    seen.get(&(key.clone(), *version)),
                    Some(&1),
                    "config watcher: {key} v{version} not seen exactly once"
                );
            }
        } else {
            for id in &acks.registered {
                assert_eq!(
                    seen.get(&(format!("registered:{id}"), 0)),
                    Some(&1),
                    "registry watcher: {id} not seen exactly once"
                );
            }
        }
        let mut sorted = revisions.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), revisions.len(), "{what}: a revision repeated");
    }
    drop(set);
}
