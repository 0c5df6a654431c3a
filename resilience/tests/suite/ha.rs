//! Highly available Redis, against real processes on loopback.
//!
//! - Sentinel: a primary, a replica and three `redis-sentinel`s; the stack
//!   runs on Sentinel with `REDIS_MIN_REPLICAS_ACK=1`, and under steady load
//!   (registrations, heartbeats, config writes, `/svc` calls) the primary is
//!   killed with SIGKILL. `/svc` never fails, API calls answer 503
//!   problem+json only during the failover and then succeed with no
//!   restart, every acknowledged write is there afterwards, and watchers see
//!   each acknowledged change exactly once (or a `reset`). The failover time
//!   is printed (README "High availability").
//! - `WAIT`: with the replica gone, a write answers 503 instead of a false
//!   success; the latency cost of `REDIS_MIN_REPLICAS_ACK=1` is printed.
//! - Cluster: a 3-primary Redis Cluster; registry, config and gateway basics
//!   pass, with every key of the stack in one hash slot.
//!
//! Every process runs under a watchdog that SIGKILLs it when the test (or
//! its process) ends; every wait is bounded.

use std::{
    collections::{BTreeMap, HashMap},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mcp_testkit::{eventually, free_port, prefix};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::{
    self, ControlPlane, Sample, Upstream, client, collect, load, register, sample, sse_events,
    token, wait_routable,
};

/// The name the Sentinels monitor the primary under.
const MASTER: &str = "mymaster";

/// A redis-server or redis-sentinel on a free loopback port, in a
/// directory of its own, SIGKILLed on [`Proc::kill`], on drop, and when the
/// test process dies (a shell watchdog reading our end of its stdin).
struct Proc {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Proc {
    fn spawn_in(
        dir: tempfile::TempDir,
        port: u16,
        program: &str,
        first: Option<String>,
        args: &[String],
    ) -> Self {
        let script = format!(
            r#"{program} "$@" & r=$!; cat >/dev/null; kill -9 $r 2>/dev/null; wait $r 2>/dev/null; exit 0"#
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(first)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let proc = Self {
            port,
            dir,
            child: Some(child),
        };
        assert!(
            wait_until(Duration::from_secs(10), || cli(port, &["PING"]) == "PONG"),
            "{program} did not answer on {port}: {}",
            std::fs::read_to_string(proc.dir.path().join("log")).unwrap_or_default()
        );
        proc
    }

    /// SIGKILL, now.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One command through `redis-cli` (raw output, trimmed), bounded in time.
fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("timeout")
        .args(["5", "redis-cli", "--raw", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Err(_) => String::new(),
    }
}

/// Poll `check` every 50 ms for at most `within`.
fn wait_until(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A redis-server with no persistence (a replica's copy is the durability
/// under test), plus `extra` flags.
fn redis_node(extra: &[&str]) -> Proc {
    redis_node_at(free_port(), extra)
}

/// [`redis_node`] on `port`.
fn redis_node_at(port: u16, extra: &[&str]) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let mut args = strings(&[
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        // A replica (re)joining gets its copy at once, not after 5 s.
        "--repl-diskless-sync-delay",
        "0",
        "--daemonize",
        "no",
        "--logfile",
        "log",
        "--dir",
        &dir.path().to_string_lossy(),
    ]);
    args.extend(strings(extra));
    Proc::spawn_in(dir, port, "redis-server", None, &args)
}

/// A redis-sentinel monitoring the primary at `primary` (quorum 2, down
/// after 1 s): its config file is written to its own directory (Sentinel
/// rewrites it).
fn sentinel(primary: u16) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\nprotected-mode no\n\
             dir {dir}\nlogfile log\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {MASTER} 1000\n\
             sentinel failover-timeout {MASTER} 10000\n\
             sentinel parallel-syncs {MASTER} 1\n",
            dir = dir.path().display()
        ),
    )
    .unwrap();
    Proc::spawn_in(
        dir,
        port,
        "redis-sentinel",
        Some(conf.to_string_lossy().into_owned()),
        &[],
    )
}

/// A primary, a replica in sync and three Sentinels that know both and each other.
struct SentinelSet {
    primary: Proc,
    replica: Proc,
    sentinels: Vec<Proc>,
}

impl SentinelSet {
    fn start() -> Self {
        let primary = redis_node(&[]);
        let replica = redis_node(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
        assert!(
            wait_until(Duration::from_secs(10), || cli(
                replica.port,
                &["INFO", "replication"]
            )
            .contains("master_link_status:up")),
            "the replica never synced"
        );
        let sentinels: Vec<Proc> = (0..3).map(|_| sentinel(primary.port)).collect();
        let replica_port = replica.port.to_string();
        let ready = wait_until(Duration::from_secs(30), || {
            sentinels.iter().all(|s| {
                let replicas = cli(s.port, &["SENTINEL", "replicas", MASTER]);
                let peers = cli(s.port, &["SENTINEL", "sentinels", MASTER]);
                replicas.lines().any(|l| l == replica_port)
                    && sentinels
                        .iter()
                        .filter(|o| o.port != s.port)
                        .all(|o| peers.lines().any(|l| l == o.port.to_string()))
            })
        });
        assert!(ready, "the Sentinels never saw the replica and each other");
        Self {
            primary,
            replica,
            sentinels,
        }
    }

    /// `--redis-sentinels` for the stack.
    fn list(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the primary the Sentinels name now.
    fn named_primary(&self) -> Option<u16> {
        let reply = cli(
            self.sentinels[0].port,
            &["SENTINEL", "get-master-addr-by-name", MASTER],
        );
        reply.lines().nth(1)?.parse().ok()
    }
}

/// A port nothing listens on: in Sentinel and Cluster mode only the
/// credentials of `REDIS_URL` are used, never its host.
const IGNORED_URL: &str = "redis://127.0.0.1:9";

/// Acknowledged writes, recorded by the load loops.
#[derive(Default)]
struct Acks {
    /// Config key → (version, value) of each 2xx answer.
    config: Vec<(String, u64, i64)>,
    /// Instance ids whose registration answered 2xx.
    registered: Vec<String>,
}

/// Each failed answer of `target`: a 503 problem+json, started after the
/// kill and before that target's first success after it (plus `slack`
/// for requests already on their way). Returns the target's recovery.
fn check_failures(
    samples: &[Sample],
    target: &str,
    killed: Instant,
    slack: Duration,
) -> Option<Instant> {
    let of: Vec<&Sample> = samples.iter().filter(|s| s.target == target).collect();
    let recovered = of
        .iter()
        .filter(|s| s.ok() && s.started > killed)
        .map(|s| s.finished())
        .min();
    for s in of.iter().filter(|s| !s.ok()) {
        assert!(
            s.status == Some(503) && s.problem_json,
            "{target}: not a 503 problem+json: {s:?}"
        );
        assert!(
            s.started >= killed,
            "{target} failed before the kill: {s:?}"
        );
        let recovered = recovered.unwrap_or_else(|| panic!("{target} never recovered"));
        assert!(
            s.started <= recovered + slack,
            "{target} failed after it had recovered ({:?} after the kill): {s:?}",
            s.started - killed
        );
    }
    recovered
}

/// Drain SSE events until none has come for `quiet` (at most 10 s).
async fn drain(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
    quiet: Duration,
) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(quiet, rx.recv()).await {
            Ok(Some(event)) => events.push(event),
            _ => break,
        }
    }
    events
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_replicas_ack_waits_for_a_replica_or_answers_503() {
    let primary = redis_node(&[]);
    let mut replica = redis_node(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    assert!(wait_until(Duration::from_secs(10), || cli(
        replica.port,
        &["INFO", "replication"]
    )
    .contains("master_link_status:up")));
    let url = format!("redis://127.0.0.1:{}", primary.port);
    let prefix = prefix();
    let plain = common::config_with(&url, &prefix, &[]).await;
    let acked = common::config_with(&url, &prefix, &["--redis-min-replicas-ack", "1"]).await;
    // For the latency figures only: the same setting with a longer bound, so
    // a replica slowed by a loaded CI machine costs time, not a 503.
    let measured = common::config_with(
        &url,
        &prefix,
        &["--redis-min-replicas-ack", "1", "--redis-timeout", "5s"],
    )
    .await;
    let http = client();

    // The latency cost of waiting for one replica (loopback, same host).
    let mut timings = Vec::new();
    for (label, svc) in [
        ("REDIS_MIN_REPLICAS_ACK=0", &plain),
        ("REDIS_MIN_REPLICAS_ACK=1", &measured),
    ] {
        let mut took = Vec::new();
        for i in 0..300 {
            let started = Instant::now();
            let response = http
                .put(svc.at(&format!("/v1/namespaces/lat/keys/k{}", i % 20)))
                .json(&json!({"value": i}))
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_success(),
                "{label}: {}",
                response.status()
            );
            took.push(started.elapsed());
        }
        took.sort();
        let (p50, p99) = (took[took.len() / 2], took[took.len() * 99 / 100]);
        println!(
            "config PUT latency with {label}: p50 {p50:?}, p99 {p99:?} (300 writes, loopback)"
        );
        timings.push(p50);
    }

    // With the replica gone, a write waits out its bound and answers 503
    // problem+json: never a success no replica has.
    replica.kill();
    let started = Instant::now();
    let response = http
        .put(acked.at("/v1/namespaces/lat/keys/after"))
        .json(&json!({"value": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("REDIS_MIN_REPLICAS_ACK"),
        "{problem}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Without the setting the same write is acknowledged by the primary alone.
    let response = http
        .put(plain.at("/v1/namespaces/lat/keys/after"))
        .json(&json!({"value": 2}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    drop(primary);
}

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
