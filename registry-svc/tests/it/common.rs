//! Helpers shared by registry-svc's integration tests: start a replica on a
//! prefix, register and heartbeat instances, read SSE watches.

use std::{pin::Pin, time::Duration};

use clap::Parser;
use futures_util::{Stream, StreamExt};
use mcp_testkit::TestService;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Start one registry-svc replica on `redis_url` under `prefix`, with
/// `extra` flags, a fast reaper and census.
pub async fn replica(redis_url: &str, prefix: &str, extra: &[&str]) -> TestService {
    let mut args = vec![
        "registry-svc".to_owned(),
        "--addr".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(mcp_testkit::common_args(redis_url, prefix));
    args.extend(mcp_testkit::egress_args());
    if !extra.contains(&"--reap-interval") {
        args.extend(["--reap-interval".into(), "100ms".into()]);
    }
    args.extend(["--census-interval".into(), "100ms".into()]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let settings = registry_svc::Settings::try_parse_from(args).expect("settings");
    mcp_testkit::spawn(move |listener, shutdown| registry_svc::run(settings, listener, shutdown))
        .await
}

/// A client with a bound on every request, so a hang fails the test, and
/// an `admin` internal credential (the gateway's; see `mcp_testkit::client`).
pub fn client() -> reqwest::Client {
    mcp_testkit::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `PUT` an instance; returns the status and body.
pub async fn register(app: &TestService, service: &str, id: &str, body: Value) -> (u16, Value) {
    let response = client()
        .put(app.at(&format!("/v1/services/{service}/instances/{id}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A plain registration body with a lease of `ttl` seconds.
pub fn body(ttl: u32) -> Value {
    json!({"host": "127.0.0.1", "port": 9000, "ttl_seconds": ttl})
}

/// `PUT …/heartbeat`; returns the status.
pub async fn heartbeat(app: &TestService, service: &str, id: &str) -> u16 {
    client()
        .put(app.at(&format!("/v1/services/{service}/instances/{id}/heartbeat")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Heartbeat `ids` every 200 ms until the returned token is cancelled.
pub fn keep_alive(app: &TestService, service: &str, ids: &[&str]) -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    let url = app.url.clone();
    let urls: Vec<String> = ids
        .iter()
        .map(|id| format!("{url}/v1/services/{service}/instances/{id}/heartbeat"))
        .collect();
    tokio::spawn(async move {
        let client = client();
        while !token.is_cancelled() {
            for url in &urls {
                let _ = client.put(url).send().await;
            }
            tokio::select! {
                _ = token.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    });
    stop
}

/// The `X-MCP-Index` a listing answered with.
pub fn index_of(response: &reqwest::Response) -> u64 {
    response.headers()["x-mcp-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// `GET` a path; returns the status and JSON body.
pub async fn get(app: &TestService, path: &str) -> (u16, Value) {
    let response = client().get(app.at(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The ids of `service`'s instances, as listed.
pub async fn ids(app: &TestService, service: &str) -> Vec<String> {
    let (_, body) = get(app, &format!("/v1/services/{service}/instances")).await;
    body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// An open SSE watch, read event by event.
pub struct Watch {
    stream: ByteStream,
    buffer: String,
}

impl Watch {
    /// Open `GET /v1/watch{query}`, optionally resuming after `last_event_id`.
    pub async fn open(app: &TestService, query: &str, last_event_id: Option<u64>) -> Self {
        // No overall timeout: a watch lives long; reads are bounded below.
        let client = mcp_testkit::client_builder().build().unwrap();
        let mut request = client.get(app.at(&format!("/v1/watch{query}")));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` if none comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(event) = self.parse_one() {
                return Some(event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??
                .ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    fn parse_one(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent {
                id: None,
                event: "message".into(),
                data: String::new(),
            };
            let mut any = false;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    event.id = v.trim().parse().ok();
                    any = true;
                } else if let Some(v) = line.strip_prefix("event:") {
                    event.event = v.trim().to_owned();
                    any = true;
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    any = true;
                }
            }
            if any {
                return Some(event);
            }
        }
    }
}

/// Run the ignored test `name` (its full path in this binary) alone in a
/// process of its own, for a scenario that asserts on process-wide state
/// (a metrics gauge every replica in the process sets); fails with the
/// child's output if it fails or outlasts `within` (then it is killed).
pub async fn alone(name: &str, within: Duration) {
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(within, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} did not finish within {within:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{name} failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A name that matches nothing would pass without running anything.
    assert!(stdout.contains("1 passed"), "{name} did not run:\n{stdout}");
}
