//! What a test through the gateway needs around the gateway itself, shared by
//! the gateway's own tests and the whole-stack tests (`mcp-e2e`):
//!
//! - [`start`]: a gateway in-process on `127.0.0.1:0` with the test secret,
//!   a test's Redis prefix and its extra flags, live before it returns. The
//!   caller passes `gateway::run` (the testkit does not link the gateway);
//! - [`upstream`] and [`echo`]: upstreams behind it on `127.0.0.1:0`;
//! - [`token`], [`bearer`] and [`client`]: a caller in front of it.

use std::{collections::BTreeMap, future::Future, time::Duration};

use axum::{Json, Router, extract::Request, http::HeaderMap, routing::any};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{JWT_SECRET, TestService};

/// Start a gateway with the test secret, `prefix` on `redis_url`, loopback-only
/// egress and `extra` flags: `run` is `gateway::run`, whose settings type the
/// arguments are parsed into. Waits until `/healthz` answers 200.
pub async fn start<S, F, Fut>(redis_url: &str, prefix: &str, extra: &[&str], run: F) -> TestService
where
    S: clap::Parser,
    F: FnOnce(S, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let mut args = vec!["gateway".to_owned()];
    args.extend(crate::common_args(redis_url, prefix));
    args.extend(crate::egress_args());
    let has_key = extra.iter().any(|a| {
        a.starts_with("--jwt-public-key-file")
            || a.starts_with("--jwt-jwks-url")
            || a.starts_with("--jwt-secret")
    });
    if !has_key {
        args.extend(["--jwt-secret".to_owned(), JWT_SECRET.to_owned()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let settings = S::try_parse_from(args).expect("settings");
    let service = crate::spawn(|listener, shutdown| run(settings, listener, shutdown)).await;
    let ready = service
        .answers_ok_within("/healthz", Duration::from_secs(5))
        .await;
    assert!(ready, "gateway did not come up");
    service
}

/// An upstream serving `router` on 127.0.0.1:0.
pub async fn upstream(router: Router) -> TestService {
    crate::spawn(
        |listener: TcpListener, shutdown: CancellationToken| async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        },
    )
    .await
}

/// An upstream that answers every request with what it received:
/// `{"method","path","query","headers":{name: value}, "upstream": name}`.
pub async fn echo(name: &'static str) -> TestService {
    upstream(
        Router::new().fallback(any(move |request: Request| async move {
            Json(describe(
                name,
                request.method().as_str(),
                request.uri(),
                request.headers(),
            ))
        })),
    )
    .await
}

/// What [`echo`] answers.
fn describe(
    name: &str,
    method: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> serde_json::Value {
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    serde_json::json!({
        "upstream": name,
        "method": method,
        "path": uri.path(),
        "query": uri.query(),
        "headers": headers,
    })
}

/// A token the gateway under [`start`] accepts: for `sub` with `scopes`.
pub fn token(sub: &str, scopes: &str) -> String {
    crate::token(JWT_SECRET, sub, scopes)
}

/// Bearer header value.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A new client (no connection pool shared across tests) with no credential
/// of its own, unlike [`crate::client`], and a 20 s bound on every request.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}
