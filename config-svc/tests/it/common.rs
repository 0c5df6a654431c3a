//! Helpers shared by the config-svc test suites.

use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt;
use mcp_testkit::{TestService, common_args, spawn};
use serde_json::Value;

/// Start config-svc on `redis_url` under `prefix`, with extra flags.
pub async fn start(redis_url: &str, prefix: &str, extra: &[&str]) -> TestService {
    let mut args = vec!["config-svc".to_owned()];
    args.extend(common_args(redis_url, prefix));
    args.extend(["--client-status-interval".to_owned(), "50ms".to_owned()]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let settings = config_svc::Settings::try_parse_from(args).expect("settings");
    spawn(move |listener, shutdown| config_svc::run(settings, listener, shutdown)).await
}

/// `{url}/v1/namespaces/{ns}/keys/{key}`.
pub fn key_url(svc: &TestService, ns: &str, key: &str) -> String {
    svc.at(&format!("/v1/namespaces/{ns}/keys/{key}"))
}

/// PUT `{"value": value}`.
pub async fn put(
    http: &reqwest::Client,
    svc: &TestService,
    ns: &str,
    key: &str,
    value: Value,
) -> reqwest::Response {
    http.put(key_url(svc, ns, key))
        .json(&serde_json::json!({ "value": value }))
        .send()
        .await
        .unwrap()
}

/// The ETag header as text.
pub fn etag(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("etag")
        .expect("etag header")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Assert problem+json with `status`; returns the body.
pub async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/problem+json"),
        "{content_type}"
    );
    response.json().await.unwrap()
}

/// Send one request over a raw TCP connection, with the path exactly as
/// given (HTTP clients normalize `..` and `%2E%2E` away). Returns the status
/// and the body.
pub async fn raw_request(svc: &TestService, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(svc.addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        svc.addr,
        mcp_testkit::internal_bearer("test", "admin"),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// Reads events from a streaming response.
pub struct SseReader {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseReader {
    /// Open `GET url` as an event stream with optional `Last-Event-ID`.
    pub async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Self {
        let mut request = http.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        Self {
            stream: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), waiting at most 10 s.
    pub async fn next(&mut self) -> SseEvent {
        tokio::time::timeout(Duration::from_secs(10), self.next_inner())
            .await
            .expect("an event within 10 s")
    }

    async fn next_inner(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: "message".to_owned(),
                    data: String::new(),
                };
                let mut data = Vec::new();
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                        any = true;
                    }
                }
                if any {
                    event.data = data.join("\n");
                    return event;
                }
                continue;
            }
            let chunk = self.stream.next().await.expect("stream open").unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
