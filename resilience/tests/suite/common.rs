//! What every resilience test builds on: the four services in-process with
//! a flag that says whether their task has ended, axum upstreams that can be
//! stopped and started again on the same port, a black hole, bounded load
//! loops that record every answer, and small readers of `/admin/upstreams`
//! and registry SSE watches.
#![allow(dead_code)]

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Json, Router, routing::any};
use clap::Parser;
use futures_util::StreamExt as _;
use mcp_testkit::{JWT_SECRET, TestService, eventually};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// A port nothing listens on, for control-plane areas a test does not use.
pub const UNUSED: &str = "http://127.0.0.1:9";

/// A token with `scopes` for the test secret.
pub fn token(scopes: &str) -> String {
    mcp_testkit::token(JWT_SECRET, "resilience", scopes)
}

/// A client with a bound on every request, so a hang fails instead of
/// stalling; its requests carry an `admin` internal credential unless they
/// set their own `Authorization` (those to the gateway do).
pub fn client() -> reqwest::Client {
    mcp_testkit::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A service started in-process, with a flag set when its `run` task ends
/// (returns, panics or is aborted).
pub struct Watched {
    /// The running service.
    pub service: TestService,
    ended: Arc<AtomicBool>,
}

impl Watched {
    /// `{url}{path}`.
    pub fn at(&self, path: &str) -> String {
        self.service.at(path)
    }

    /// Whether the service's task has ended.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }
}

/// Sets its flag when dropped: at the end of the future it lives in, however it ends.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn watched<F, Fut>(run: F) -> Watched
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let ended = Arc::new(AtomicBool::new(false));
    let flag = ended.clone();
    let service = mcp_testkit::spawn(move |listener, shutdown| {
        let running = run(listener, shutdown);
        async move {
            let _ended = SetOnDrop(flag);
            running.await
        }
    })
    .await;
    let ready = eventually(Duration::from_secs(10), || async {
        reqwest::get(service.at("/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "{} did not become ready", service.url);
    Watched { service, ended }
}

fn args(name: &str, redis_url: &str, prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![name.to_owned()];
    args.extend(mcp_testkit::common_args(redis_url, prefix));
    if name != "config-svc" {
        args.extend(mcp_testkit::egress_args());
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// registry-svc on `redis_url` under `prefix`, default settings plus `extra`.
pub async fn registry(redis_url: &str, prefix: &str, extra: &[&str]) -> Watched {
    let settings =
        registry_svc::Settings::try_parse_from(args("registry-svc", redis_url, prefix, extra))
            .unwrap();
    watched(move |l, s| registry_svc::run(settings, l, s)).await
}

/// config-svc on `redis_url` under `prefix`, default settings.
pub async fn config(redis_url: &str, prefix: &str) -> Watched {
    config_with(redis_url, prefix, &[]).await
}

/// config-svc on `redis_url` under `prefix`, default settings plus `extra`.
pub async fn config_with(redis_url: &str, prefix: &str, extra: &[&str]) -> Watched {
    let settings =
        config_svc::Settings::try_parse_from(args("config-svc", redis_url, prefix, extra)).unwrap();
    watched(move |l, s| config_svc::run(settings, l, s)).await
}

/// health-svc on `redis_url` under `prefix`, default settings.
pub async fn health(redis_url: &str, prefix: &str) -> Watched {
    health_with(redis_url, prefix, &[]).await
}

/// health-svc on `redis_url` under `prefix`, default settings plus `extra`.
pub async fn health_with(redis_url: &str, prefix: &str, extra: &[&str]) -> Watched {
    let settings =
        health_svc::Settings::try_parse_from(args("health-svc", redis_url, prefix, extra)).unwrap();
    watched(move |l, s| health_svc::run(settings, l, s)).await
}

/// Where the gateway sends `/api/v1/{registry,config,health}` (comma lists).
pub struct ControlPlane<'a> {
    pub registry: &'a str,
    pub config: &'a str,
    pub health: &'a str,
}

/// The gateway with the test secret, rate limiting out of the way (high,
/// still on), and `extra` flags.
pub async fn gateway(
    redis_url: &str,
    prefix: &str,
    control: ControlPlane<'_>,
    extra: &[&str],
) -> Watched {
    let mut flags = vec![
        "--jwt-secret",
        JWT_SECRET,
        "--registry-url",
        control.registry,
        "--config-url",
        control.config,
        "--health-url",
        control.health,
        "--rate-limit-rps",
        "100000",
        "--rate-limit-burst",
        "100000",
    ];
    flags.extend_from_slice(extra);
    let settings =
        gateway::Settings::try_parse_from(args("gateway", redis_url, prefix, &flags)).unwrap();
    watched(move |l, s| gateway::run(settings, l, s)).await
}

/// A test upstream: an axum server answering `{"upstream": name}` to every
/// request on a fixed address, which can be stopped and started again there.
pub struct Upstream {
    pub name: &'static str,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl Upstream {
    /// Serve `router` on 127.0.0.1:0.
    pub async fn start(name: &'static str, router: Router) -> Self {
        Self::start_at(name, "127.0.0.1:0".parse().unwrap(), router).await
    }

    /// An upstream answering `{"upstream": name}` to everything.
    pub async fn echo(name: &'static str) -> Self {
        Self::start(name, echo_router(name)).await
    }

    async fn start_at(name: &'static str, addr: SocketAddr, router: Router) -> Self {
        // The port was ours a moment ago; a few tries cover a slow release.
        let mut listener = None;
        for _ in 0..100 {
            match TcpListener::bind(addr).await {
                Ok(bound) => {
                    listener = Some(bound);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let listener = listener.unwrap_or_else(|| panic!("cannot bind {addr} again"));
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let drain = shutdown.clone();
        let handle = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { drain.cancelled().await })
                .await
        });
        Self {
            name,
            addr,
            shutdown,
            handle: Some(handle),
        }
    }

    /// Stop gracefully (in-flight requests finish), then start again on the same port.
    pub async fn restart(self) -> Self {
        let (name, addr) = (self.name, self.addr);
        self.stop().await;
        Self::start_at(name, addr, echo_router(name)).await
    }

    /// Stop gracefully and wait until it has.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let handle = self.handle.take().unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(10), handle).await;
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "upstream did not stop cleanly"
        );
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `{"upstream": name}` for every request.
pub fn echo_router(name: &'static str) -> Router {
    Router::new().fallback(any(
        move || async move { Json(json!({ "upstream": name })) },
    ))
}

/// A black hole: accepts TCP connections and holds them, never reading or
/// answering, until dropped (at most 256 connections are held).
pub struct BlackHole {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl BlackHole {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while held.len() < 256 {
                tokio::select! {
                    _ = token.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => held.push(socket),
                        Err(_) => break,
                    },
                }
            }
            token.cancelled().await;
        });
        Self { addr, stop }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Register `service`/`id` at 127.0.0.1:`port` (no check: `passing` while the lease lives).
pub async fn register(registry: &str, service: &str, id: &str, port: u16, ttl: u32) -> u16 {
    client()
        .put(format!("{registry}/v1/services/{service}/instances/{id}"))
        .json(&json!({"host": "127.0.0.1", "port": port, "ttl_seconds": ttl}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Deregister `service`/`id`.
pub async fn deregister(registry: &str, service: &str, id: &str) -> u16 {
    client()
        .delete(format!("{registry}/v1/services/{service}/instances/{id}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The instances the gateway lists for `upstream` in `/admin/upstreams`
/// (empty when it does not know it).
pub async fn admin_instances(gateway: &Watched, upstream: &str) -> Vec<Value> {
    let view: Value = client()
        .get(gateway.at("/admin/upstreams"))
        .bearer_auth(token("admin"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    view["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == upstream)
        .and_then(|u| u["instances"].as_array().cloned())
        .unwrap_or_default()
}

/// The instance `id` of `upstream` as `/admin/upstreams` shows it.
pub async fn admin_instance(gateway: &Watched, upstream: &str, id: &str) -> Option<Value> {
    admin_instances(gateway, upstream)
        .await
        .into_iter()
        .find(|i| i["id"] == id)
}

/// Wait until the gateway routes `id` of `service` (listed as `passing`).
pub async fn wait_routable(gateway: &Watched, service: &str, id: &str) -> bool {
    eventually(Duration::from_secs(10), || async {
        admin_instance(gateway, service, id)
            .await
            .is_some_and(|i| i["status"] == "passing")
    })
    .await
}

/// One answer seen by a load loop.
#[derive(Debug, Clone)]
pub struct Sample {
    /// What was asked (a label of the test's choosing).
    pub target: &'static str,
    pub started: Instant,
    pub elapsed: Duration,
    /// `None` when no HTTP answer came (transport error, client timeout).
    pub status: Option<u16>,
    pub problem_json: bool,
    /// The body, cut to 300 bytes (for messages).
    pub body: String,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    pub fn finished(&self) -> Instant {
        self.started + self.elapsed
    }
}

/// Send `request` and record what came back.
pub async fn sample(target: &'static str, request: reqwest::RequestBuilder) -> (Sample, Value) {
    let started = Instant::now();
    let (status, problem_json, body) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let problem_json = response
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "application/problem+json");
            (Some(status), problem_json, response.text().await.ok())
        }
        Err(error) => (None, false, Some(error.to_string())),
    };
    let elapsed = started.elapsed();
    let body = body.unwrap_or_default();
    let value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut cut = body;
    cut.truncate(300);
    (
        Sample {
            target,
            started,
            elapsed,
            status,
            problem_json,
            body: cut,
        },
        value,
    )
}

/// A bounded load loop: at most `max` rounds, `pause` apart, until `stop`;
/// `round(i)` sends one or more requests and returns their samples.
pub fn load<F, Fut>(
    max: usize,
    pause: Duration,
    stop: CancellationToken,
    mut round: F,
) -> JoinHandle<Vec<Sample>>
where
    F: FnMut(usize) -> Fut + Send + 'static,
    Fut: Future<Output = Vec<Sample>> + Send,
{
    tokio::spawn(async move {
        let mut samples = Vec::new();
        for i in 0..max {
            if stop.is_cancelled() {
                break;
            }
            samples.extend(round(i).await);
            tokio::time::sleep(pause).await;
        }
        samples
    })
}

/// Wait for every load loop and put their samples together (a panicked loop fails the test).
pub async fn collect(loops: Vec<JoinHandle<Vec<Sample>>>) -> Vec<Sample> {
    let mut all = Vec::new();
    for handle in loops {
        all.extend(handle.await.expect("load loop"));
    }
    all
}

/// Open the SSE watch at `url` and read its events (`event:` kind, `data:`
/// JSON) into a channel until the stream ends or `stop` fires.
///
/// The watch is opened (and its status checked) here, in the caller's task,
/// so a failure to open fails the test; the reader task asserts nothing: a
/// stream that ends or breaks closes the channel, which the caller sees as
/// `None` from `recv`.
pub async fn sse_events(
    url: String,
    stop: CancellationToken,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Value)> {
    let response = mcp_testkit::client_builder()
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot open the watch {url}: {e}"));
    assert_eq!(response.status(), 200, "opening the watch {url}");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        let (mut kind, mut data) = (String::new(), String::new());
        loop {
            let chunk = tokio::select! {
                _ = stop.cancelled() => return,
                chunk = stream.next() => chunk,
            };
            let Some(Ok(chunk)) = chunk else { return };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find('\n') {
                let line = buffer[..end].trim_end_matches('\r').to_owned();
                buffer.drain(..=end);
                if let Some(value) = line.strip_prefix("event:") {
                    kind = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim());
                } else if line.is_empty() && !kind.is_empty() {
                    let value = serde_json::from_str(&data).unwrap_or(Value::Null);
                    if tx.send((std::mem::take(&mut kind), value)).is_err() {
                        return;
                    }
                    data.clear();
                } else if line.is_empty() {
                    data.clear();
                }
            }
        }
    });
    rx
}
