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
use mcp_shared::registry::{Check, CheckType, HealthStatus, Instance};
pub use mcp_testkit::registry::Registry;
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
    registry: &Registry,
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
