//! Shared test helpers: a switchable fake HTTP server, a stand-in for
//! registry-svc's register (writing Redis in the documented schema), and
//! starting health-svc in-process.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::StatusCode, http::Uri, routing::get};
use clap::Parser;
use health_svc::Settings;
use mcp_shared::{
    events::EventLog,
    registry::{
        self, Check, CheckType, HealthStatus, Instance, RegistryKeys, stored_tail,
        writes::RegistryWrites,
    },
};
use mcp_testkit::{TestService, common_args, spawn};
use tokio_util::sync::CancellationToken;

/// A fake instance: answers every path with a switchable status after a
/// switchable delay, and records when each path was hit.
pub struct FakeServer {
    pub addr: SocketAddr,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    hits: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    shutdown: CancellationToken,
}

#[derive(Clone)]
struct FakeState {
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    hits: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
}

async fn answer(State(state): State<FakeState>, uri: Uri) -> (StatusCode, String) {
    state
        .hits
        .lock()
        .unwrap()
        .entry(uri.path().to_owned())
        .or_default()
        .push(Instant::now());
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap();
    (status, format!("fake says {}", status.as_u16()))
}

impl FakeServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = FakeState {
            status: Arc::new(AtomicU16::new(200)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            hits: Arc::default(),
        };
        let app = Router::new()
            .route("/", get(answer))
            .route("/{*rest}", get(answer))
            .with_state(state.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .ok();
        });
        Self {
            addr,
            status: state.status,
            delay_ms: state.delay_ms,
            hits: state.hits,
            shutdown,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// When `path` was hit, oldest first.
    pub fn hits(&self, path: &str) -> Vec<Instant> {
        self.hits
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    mcp_testkit::free_port()
}

pub fn http_check(path: &str) -> Check {
    Check {
        kind: CheckType::Http,
        path: Some(path.to_owned()),
        interval_seconds: 1,
        timeout_ms: 300,
        deregister_critical_after_seconds: None,
    }
}

pub fn tcp_check() -> Check {
    Check {
        kind: CheckType::Tcp,
        path: None,
        interval_seconds: 1,
        timeout_ms: 300,
        deregister_critical_after_seconds: None,
    }
}

pub fn instance(service: &str, id: &str, port: u16, check: Option<Check>) -> Instance {
    Instance {
        status: HealthStatus::Unknown,
        revision: 0,
        id: id.to_owned(),
        service: service.to_owned(),
        host: "127.0.0.1".to_owned(),
        port,
        tags: vec![],
        metadata: BTreeMap::new(),
        ttl_seconds: 300,
        check,
        registered_at: mcp_shared::time::now_rfc3339(),
        expires_at: None,
    }
}

/// Direct access to the registry's keys under one prefix; registrations go
/// through the registry's own writer, as registry-svc's do.
pub struct Registry {
    conn: redis::aio::MultiplexedConnection,
    keys: RegistryKeys,
    writes: RegistryWrites,
    pub prefix: String,
}

impl Registry {
    pub async fn new(url: &str, prefix: &str) -> Self {
        let conn = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let handle = mcp_shared::Redis::new(url, prefix, Duration::from_secs(2)).unwrap();
        let log = EventLog::new(handle.clone(), registry::LOG_NAME, 10_000);
        Self {
            conn,
            keys: RegistryKeys::new(handle.clone()),
            writes: RegistryWrites::new(handle, log),
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// Register (or re-register) as registry-svc does, lease of 5 minutes;
    /// the revision of the change.
    pub async fn register(&mut self, instance: &Instance) -> u64 {
        let tail = stored_tail(instance).unwrap();
        self.writes
            .register(
                &instance.service,
                &instance.id,
                &tail,
                300_000,
                instance.check.is_some(),
            )
            .await
            .unwrap()
            .revision
    }

    /// The stored instance, as discovery would read it.
    pub async fn stored(&mut self, service: &str, id: &str) -> Option<Instance> {
        let json: Option<String> = redis::cmd("HGET")
            .arg(self.keys.instances(service))
            .arg(id)
            .query_async(&mut self.conn)
            .await
            .unwrap();
        json.map(|j| serde_json::from_str(&j).unwrap())
    }

    pub async fn stored_json(&mut self, service: &str, id: &str) -> Option<String> {
        redis::cmd("HGET")
            .arg(self.keys.instances(service))
            .arg(id)
            .query_async(&mut self.conn)
            .await
            .unwrap()
    }

    pub async fn status(&mut self, service: &str, id: &str) -> Option<HealthStatus> {
        self.stored(service, id).await.map(|i| i.status)
    }

    /// `(kind, data)` of every event on the registry's stream.
    pub async fn events(&mut self) -> Vec<(String, String)> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.key("reg:events"))
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn)
            .await
            .unwrap();
        reply
            .ids
            .iter()
            .map(|e| {
                let field = |name: &str| match e.map.get(name) {
                    Some(redis::Value::BulkString(b)) => String::from_utf8(b.clone()).unwrap(),
                    _ => String::new(),
                };
                (field("kind"), field("data"))
            })
            .collect()
    }

    pub async fn raw(&mut self, args: &[&str]) -> redis::Value {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut self.conn).await.unwrap()
    }
}

/// Settings for health-svc under test: fast replica heartbeats.
pub fn settings(redis_url: &str, prefix: &str, extra: &[&str]) -> Settings {
    let mut args = vec!["health-svc".to_owned()];
    args.extend(common_args(redis_url, prefix));
    args.extend(mcp_testkit::egress_args());
    args.extend(["--replica-heartbeat", "200ms", "--addr", "127.0.0.1:0"].map(str::to_owned));
    if !extra.contains(&"--replica-ttl") {
        args.extend(["--replica-ttl", "1s"].map(str::to_owned));
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Settings::try_parse_from(args).unwrap()
}

pub async fn start(redis_url: &str, prefix: &str, extra: &[&str]) -> TestService {
    let settings = settings(redis_url, prefix, extra);
    spawn(move |listener, shutdown| health_svc::run(settings, listener, shutdown)).await
}

pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let response = mcp_testkit::client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Wait until the stored status of `service/id` is `status`.
pub async fn wait_status(
    registry: &mut Registry,
    service: &str,
    id: &str,
    status: HealthStatus,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if registry.status(service, id).await == Some(status) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
