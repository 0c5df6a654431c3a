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
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use mcp_testkit::{free_port, prefix};
use serde_json::{Value, json};

use crate::common::{self, Sample, client};

mod cluster;
mod failover;

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

/// Each failed answer of `target`: a 503 problem+json, answered after the
/// kill and started before that target's first success after it (plus `slack`
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
        // A request still in flight when the primary died may fail (its
        // connection breaks: "broken pipe"); one answered before the kill may not.
        assert!(
            s.finished() >= killed,
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
