//! Redis killed for three seconds under a bounded load through the gateway.
//!
//! One outage is run once per test binary (the scenario below, on its own
//! runtime whose threads are named `outage-*`), and each test asserts one
//! behaviour on what it recorded: 503 problem+json within a second during
//! the outage, no panic and no service task ended, every service serving
//! again within two seconds of Redis returning, every acknowledged config
//! write still there, `/svc/...` routed from the gateway's last table
//! throughout, and the SDK's `Registration` registering its instance again
//! once Redis is back (its 1 s lease ran out during the outage).

use std::{
    sync::{Arc, Mutex, Once, OnceLock},
    time::{Duration, Instant},
};

use mcp_testkit::{RedisServer, prefix};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::{
    self, ControlPlane, Sample, Upstream, Watched, client, collect, load, sample, token,
};

/// How long Redis stays down.
const OUTAGE: Duration = Duration::from_secs(3);
/// The contract: every service answers 503 within this during the outage…
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// …and serves again within this of Redis returning.
const HEAL_WITHIN: Duration = Duration::from_secs(2);
/// How long the load keeps running after Redis returns.
const AFTER: Duration = Duration::from_secs(3);

/// The control-plane targets (each service's `/readyz` and the gateway's `/api/...`).
const CONTROL_TARGETS: [&str; 8] = [
    "readyz registry-svc",
    "readyz config-svc",
    "readyz health-svc",
    "readyz gateway",
    "PUT /api/v1/config/namespaces/resilience/keys/w/{i}",
    "GET /api/v1/config/namespaces/resilience/keys/w/0",
    "GET /api/v1/registry/services",
    "GET /api/v1/health/summary",
];
const SVC_TARGET: &str = "GET /svc/echo/ping";

/// What the outage scenario saw.
struct Report {
    /// Redis killed (and its port silent) at this instant…
    down: Instant,
    /// …started again at this one…
    restarting: Instant,
    /// …and answering PING at this one.
    back: Instant,
    samples: Vec<Sample>,
    /// Config writes answered 200/201: key, value, version.
    acknowledged: Vec<(String, Value, u64, Instant)>,
    /// The same keys read back directly from config-svc after the outage: status, entry.
    read_back: Vec<(u16, Value)>,
    /// Panics on the scenario's threads.
    panics: Vec<String>,
    /// Each service's task, after the outage: name, ended.
    ended: Vec<(&'static str, bool)>,
    /// Each service's graceful stop at the end: name, result.
    stopped: Vec<(&'static str, Result<(), String>)>,
    /// The SDK-registered instance before the outage, as registry-svc lists it.
    sdk_before: Value,
    /// The same instance once registered again after the outage (`None`: not within 5 s).
    sdk_after: Option<Value>,
}

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Record every panic on a thread of the scenario (its runtime's threads are `outage-*`).
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            if name.starts_with("outage-") {
                PANICS.lock().unwrap().push(format!("{name}: {info}"));
            }
            previous(info);
        }));
    });
}

/// The scenario's report, run once per test binary.
fn report() -> &'static Report {
    static REPORT: OnceLock<Result<Report, String>> = OnceLock::new();
    let result = REPORT.get_or_init(|| {
        count_panics();
        std::thread::Builder::new()
            .name("outage-main".into())
            .spawn(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("outage-worker")
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(scenario())
            })
            .unwrap()
            .join()
            .map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            })
    });
    match result {
        Ok(report) => report,
        Err(why) => panic!("the outage scenario itself failed: {why}"),
    }
}

async fn scenario() -> Report {
    let redis = Arc::new(RedisServer::start());
    let url = redis.url();
    let prefix = prefix();
    let registry = common::registry(&url, &prefix, &[]).await;
    let config = common::config(&url, &prefix).await;
    let health = common::health(&url, &prefix).await;
    // A circuit opened by the outage's 503s waits one second for its trial.
    let gateway = common::gateway(
        &url,
        &prefix,
        ControlPlane {
            registry: &registry.service.url,
            config: &config.service.url,
            health: &health.service.url,
        },
        // The default breaker (10 s open): a control-plane 503 during the
        // outage must not open circuits that keep `/api` shut afterwards.
        &[],
    )
    .await;
    let echo = Upstream::echo("echo").await;
    assert_eq!(
        common::register(
            &registry.service.url,
            "echo",
            "echo-1",
            echo.addr.port(),
            300
        )
        .await,
        201
    );
    assert!(common::wait_routable(&gateway, "echo", "echo-1").await);

    // An instance kept registered by the SDK through the gateway, with a
    // lease shorter than the outage.
    let sdk = mcp_client::Client::new(
        &gateway.service.url,
        Some(token("registry:read registry:write")),
    )
    .unwrap();
    let mut spec = mcp_client::InstanceSpec::new("127.0.0.1", echo.addr.port());
    spec.ttl_seconds = Some(1);
    let registration = mcp_client::Registration::start(sdk, "sdk", "sdk-1", spec);
    assert!(registration.connected(Duration::from_secs(5)).await);
    let sdk_instance = || {
        let url = registry.at("/v1/services/sdk/instances");
        async move {
            let listed: Value = client().get(url).send().await.ok()?.json().await.ok()?;
            listed["instances"].as_array()?.first().cloned()
        }
    };
    let sdk_before = sdk_instance().await.unwrap();

    let stop = CancellationToken::new();
    let bearer = token("config:read config:write registry:read health:read");
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let loops = vec![
        {
            let (gw, bearer, acked) = (
                gateway.service.url.clone(),
                bearer.clone(),
                acknowledged.clone(),
            );
            let http = client();
            load(2_000, Duration::from_millis(15), stop.clone(), move |i| {
                let (gw, bearer, acked, http) =
                    (gw.clone(), bearer.clone(), acked.clone(), http.clone());
                async move {
                    let key = format!("w/{i}");
                    let value = json!({"n": i, "text": "x".repeat(64)});
                    let (put, entry) = sample(
                        CONTROL_TARGETS[4],
                        http.put(format!(
                            "{gw}/api/v1/config/namespaces/resilience/keys/{key}"
                        ))
                        .bearer_auth(&bearer)
                        .json(&json!({"value": value})),
                    )
                    .await;
                    if matches!(put.status, Some(200 | 201)) {
                        let version = entry["version"].as_u64().unwrap_or(0);
                        acked
                            .lock()
                            .unwrap()
                            .push((key, value, version, put.finished()));
                    }
                    let (get, _) = sample(
                        CONTROL_TARGETS[5],
                        http.get(format!("{gw}/api/v1/config/namespaces/resilience/keys/w/0"))
                            .bearer_auth(&bearer),
                    )
                    .await;
                    vec![put, get]
                }
            })
        },
        {
            let (gw, bearer) = (gateway.service.url.clone(), bearer.clone());
            let http = client();
            load(2_000, Duration::from_millis(15), stop.clone(), move |_| {
                let (gw, bearer, http) = (gw.clone(), bearer.clone(), http.clone());
                async move {
                    let (services, _) = sample(
                        CONTROL_TARGETS[6],
                        http.get(format!("{gw}/api/v1/registry/services"))
                            .bearer_auth(&bearer),
                    )
                    .await;
                    let (summary, _) = sample(
                        CONTROL_TARGETS[7],
                        http.get(format!("{gw}/api/v1/health/summary"))
                            .bearer_auth(&bearer),
                    )
                    .await;
                    vec![services, summary]
                }
            })
        },
        {
            let (gw, bearer) = (gateway.service.url.clone(), bearer.clone());
            let http = client();
            load(2_000, Duration::from_millis(10), stop.clone(), move |_| {
                let request = http.get(format!("{gw}/svc/echo/ping")).bearer_auth(&bearer);
                async move { vec![sample(SVC_TARGET, request).await.0] }
            })
        },
        {
            let urls: Vec<(&'static str, String)> = [&registry, &config, &health, &gateway]
                .iter()
                .zip(&CONTROL_TARGETS[..4])
                .map(|(svc, target)| (*target, svc.at("/readyz")))
                .collect();
            let http = client();
            load(2_000, Duration::from_millis(15), stop.clone(), move |_| {
                let requests: Vec<_> = urls.iter().map(|(t, u)| (*t, http.get(u))).collect();
                async move {
                    let mut samples = Vec::new();
                    for (target, request) in requests {
                        samples.push(sample(target, request).await.0);
                    }
                    samples
                }
            })
        },
    ];

    tokio::time::sleep(Duration::from_millis(800)).await;
    let killer = redis.clone();
    tokio::task::spawn_blocking(move || killer.stop())
        .await
        .unwrap();
    let down = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let restarting = Instant::now();
    let starter = redis.clone();
    tokio::task::spawn_blocking(move || starter.restart())
        .await
        .unwrap();
    let back = Instant::now();
    let mut sdk_after = None;
    while sdk_after.is_none() && back.elapsed() < Duration::from_secs(5) {
        sdk_after = sdk_instance()
            .await
            .filter(|i| i["registered_at"] != sdk_before["registered_at"]);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(AFTER.saturating_sub(back.elapsed())).await;
    stop.cancel();
    registration.shutdown().await;
    let samples = collect(loops).await;

    let services: [(&'static str, Watched); 4] = [
        ("registry-svc", registry),
        ("config-svc", config),
        ("health-svc", health),
        ("gateway", gateway),
    ];
    let ended = services.iter().map(|(n, s)| (*n, s.ended())).collect();

    let acknowledged: Vec<_> = acknowledged.lock().unwrap().clone();
    let http = client();
    let mut read_back = Vec::new();
    for (key, _, _, _) in &acknowledged {
        let response = http
            .get(
                services[1]
                    .1
                    .at(&format!("/v1/namespaces/resilience/keys/{key}")),
            )
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        read_back.push((status, response.json().await.unwrap_or(Value::Null)));
    }

    let mut stopped = Vec::new();
    for (name, watched) in services {
        let result = tokio::time::timeout(Duration::from_secs(10), watched.service.stop())
            .await
            .map_err(|_| "did not stop within 10 s".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()));
        stopped.push((name, result));
    }
    echo.stop().await;
    // A panic is recorded by the hook before its task unwinds; let the last one land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Report {
        down,
        restarting,
        back,
        samples,
        acknowledged,
        read_back,
        panics: PANICS.lock().unwrap().clone(),
        ended,
        stopped,
        sdk_before,
        sdk_after,
    }
}

fn during_outage<'a>(report: &'a Report, target: &str) -> Vec<&'a Sample> {
    report
        .samples
        .iter()
        .filter(|s| {
            s.target == target && s.started >= report.down && s.finished() <= report.restarting
        })
        .collect()
}

#[test]
fn redis_outage_answers_503_problem_json_within_a_second() {
    let report = report();
    for target in CONTROL_TARGETS {
        let samples = during_outage(report, target);
        assert!(
            !samples.is_empty(),
            "no request to {target} during the outage"
        );
        let slowest = samples.iter().map(|s| s.elapsed).max().unwrap_or_default();
        eprintln!(
            "{target}: {} requests during the outage, slowest {slowest:?}",
            samples.len()
        );
        for s in samples {
            assert!(
                s.status == Some(503) && s.problem_json,
                "{target} during the outage: {:?} {} (problem+json: {})",
                s.status,
                s.body,
                s.problem_json
            );
            assert!(
                s.elapsed < ANSWER_WITHIN,
                "{target} took {:?} to answer during the outage",
                s.elapsed
            );
        }
    }
}

#[test]
fn redis_outage_panics_nothing_and_ends_no_service() {
    let report = report();
    assert!(report.panics.is_empty(), "panics: {:#?}", report.panics);
    for (name, ended) in &report.ended {
        assert!(!ended, "{name}'s task ended during the outage");
    }
    for (name, stopped) in &report.stopped {
        assert!(stopped.is_ok(), "{name} did not stop cleanly: {stopped:?}");
    }
}

#[test]
fn every_service_serves_again_within_two_seconds_of_redis_returning() {
    let report = report();
    let healed_by = report.back + HEAL_WITHIN;
    for target in CONTROL_TARGETS {
        let after: Vec<&Sample> = report
            .samples
            .iter()
            .filter(|s| s.target == target && s.started >= healed_by)
            .collect();
        assert!(!after.is_empty(), "no request to {target} after healing");
        let healed = report
            .samples
            .iter()
            .filter(|s| s.target == target && s.started >= report.back)
            .rev()
            .take_while(|s| s.ok())
            .last()
            .map(|s| s.started - report.back);
        eprintln!("{target}: serving again {healed:?} after Redis returned");
        for s in after {
            assert!(
                s.ok(),
                "{target} {:?} after Redis returned: {:?} {}",
                s.started - report.back,
                s.status,
                s.body
            );
        }
    }
}

#[test]
fn config_writes_acknowledged_before_the_outage_are_all_still_there() {
    let report = report();
    let before = report
        .acknowledged
        .iter()
        .filter(|(_, _, _, at)| *at < report.down)
        .count();
    assert!(
        before >= 5,
        "only {before} writes were acknowledged before the outage"
    );
    for ((key, value, version, _), (status, entry)) in
        report.acknowledged.iter().zip(&report.read_back)
    {
        assert_eq!(*status, 200, "acknowledged write {key} is gone: {entry}");
        assert_eq!(&entry["value"], value, "{key} lost its value");
        assert_eq!(
            entry["version"].as_u64(),
            Some(*version),
            "{key} changed version"
        );
    }
}

#[test]
fn gateway_keeps_routing_svc_from_its_last_table_during_the_outage() {
    let report = report();
    let samples = during_outage(report, SVC_TARGET);
    assert!(
        samples.len() >= 10,
        "only {} /svc requests during the outage",
        samples.len()
    );
    for s in samples {
        assert!(
            s.ok() && s.body.contains("\"echo\""),
            "/svc/echo during the outage: {:?} {}",
            s.status,
            s.body
        );
    }
}

#[test]
fn sdk_registrations_register_their_instances_again_after_the_outage() {
    let report = report();
    let after = report.sdk_after.as_ref().unwrap_or_else(|| {
        panic!(
            "sdk-1 (1 s lease, lost during the outage) was not registered again within 5 s; before: {}",
            report.sdk_before
        )
    });
    assert_eq!(after["id"], "sdk-1");
    assert_eq!(after["status"], "passing");
}
