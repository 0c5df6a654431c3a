//! Trust and scopes against the real parts: registry-svc, config-svc and
//! health-svc in-process behind a real gateway, all sharing the testkit's
//! `MCP_INTERNAL_SECRET`.
//!
//! - The control plane trusts only the gateway: an instance registered at
//!   config-svc's own address does not open config-svc to `/svc/…`; a
//!   direct call without the internal credential (or with one signed with
//!   another secret, expired, or for another audience) is a 401, while the
//!   probes and the document stay open.
//! - Scopes narrowed to a name allow that name only, and listings and
//!   watches show only what the token may read (`narrowed_scopes`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{assert_ready, bearer, client, gateway, service_args, token};
use clap::Parser;
use mcp_testkit::{INTERNAL_SECRET, TestService, prefix, redis};
use serde_json::{Value, json};

mod narrowed_scopes;

/// The control plane and a gateway in front of it, under one prefix.
struct Stack {
    prefix: String,
    registry: TestService,
    config: TestService,
    health: Option<TestService>,
    gateway: TestService,
}

/// Start registry-svc, config-svc, health-svc (when `with_health`; its
/// replica heartbeat writes to Redis) and a gateway pointed at them.
async fn stack(with_health: bool) -> Stack {
    let prefix = prefix();
    let settings =
        registry_svc::Settings::try_parse_from(service_args("registry-svc", &prefix)).unwrap();
    let registry = mcp_testkit::spawn(move |l, s| registry_svc::run(settings, l, s)).await;
    let settings =
        config_svc::Settings::try_parse_from(service_args("config-svc", &prefix)).unwrap();
    let config = mcp_testkit::spawn(move |l, s| config_svc::run(settings, l, s)).await;
    let health = if with_health {
        let settings =
            health_svc::Settings::try_parse_from(service_args("health-svc", &prefix)).unwrap();
        Some(mcp_testkit::spawn(move |l, s| health_svc::run(settings, l, s)).await)
    } else {
        None
    };
    let health_url = health
        .as_ref()
        .map_or_else(|| "http://127.0.0.1:9".to_owned(), |h| h.url.clone());
    let gateway = gateway(
        &redis().url(),
        &prefix,
        &[
            "--registry-url",
            &registry.url,
            "--config-url",
            &config.url,
            "--health-url",
            &health_url,
            "--rate-limit-rps",
            "10000",
            "--rate-limit-burst",
            "10000",
        ],
    )
    .await;
    assert_ready([&registry, &config].into_iter().chain(health.as_ref())).await;
    Stack {
        prefix,
        registry,
        config,
        health,
        gateway,
    }
}

impl Stack {
    /// `method` on the gateway's `path` with a token of `scopes`, JSON `body`;
    /// the status and the JSON answer (Null when none).
    async fn call(
        &self,
        method: &str,
        path: &str,
        scopes: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client()
            .request(method, self.gateway.at(path))
            .header("authorization", bearer(&token("tester", scopes)));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Register `service`/`id` at `port` through the gateway with `scopes`.
    async fn register(&self, service: &str, id: &str, port: u16, scopes: &str) -> (u16, Value) {
        self.call(
            "PUT",
            &format!("/api/v1/registry/services/{service}/instances/{id}"),
            scopes,
            Some(json!({"host": "127.0.0.1", "port": port, "ttl_seconds": 300})),
        )
        .await
    }

    /// Put `value` at `ns`/`key` through the gateway with `scopes`.
    async fn put(&self, ns: &str, key: &str, value: Value, scopes: &str) -> (u16, Value) {
        self.call(
            "PUT",
            &format!("/api/v1/config/namespaces/{ns}/keys/{key}"),
            scopes,
            Some(json!({"value": value})),
        )
        .await
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Assert a 401 problem+json with a `Bearer` challenge; returns its body text.
async fn assert_unauthorized(response: reqwest::Response, what: &str) -> String {
    assert_eq!(response.status(), 401, "{what}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn an_instance_registered_at_config_svc_address_does_not_open_config_svc_to_svc_calls() {
    let stack = stack(true).await;
    let (status, _) = stack
        .put("secrets", "db", json!("s3cret-password"), "config:write")
        .await;
    assert_eq!(status, 201);
    // The attacker: `registry:write` registers instances at config-svc's own
    // address: one without a check (passing at once, so `/svc` routes to
    // it), one whose HTTP check reads the secret's path.
    let (status, _) = stack
        .register("sneaky", "s-1", stack.config.addr.port(), "registry:write")
        .await;
    assert_eq!(status, 201);
    let (status, _) = stack
        .call(
            "PUT",
            "/api/v1/registry/services/sneaky-check/instances/s-2",
            "registry:write",
            Some(
                json!({"host": "127.0.0.1", "port": stack.config.addr.port(), "ttl_seconds": 300,
                "check": {"type": "http", "path": "/v1/namespaces/secrets/keys/db",
                          "interval_seconds": 1, "timeout_ms": 500}}),
            ),
        )
        .await;
    assert_eq!(status, 201);

    // Any valid token tries config-svc through `/svc/sneaky/…` (once the
    // gateway's routing table has the instance). Two locks stand in the
    // way: the gateway's egress rules refuse its control plane (403, before
    // connecting), and behind them config-svc itself answers 401 to anything
    // without the gateway's internal credential (the health check below
    // reaches it and shows that).
    let http = client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let answer = loop {
        let response = http
            .get(
                stack
                    .gateway
                    .at("/svc/sneaky/v1/namespaces/secrets/keys/db"),
            )
            .header("authorization", bearer(&token("mallory", "")))
            .send()
            .await
            .unwrap();
        if response.status() != 404 && response.status() != 503 {
            break response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway did not route /svc/sneaky"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(answer.status(), 403);
    let body = answer.text().await.unwrap();
    assert!(body.contains("config-svc"), "{body}");
    assert!(!body.contains("s3cret-password"), "{body}");
    // health-svc keeps writing its own results; the config data is what
    // must not change.
    let config_keys = |prefix: &str| {
        redis()
            .snapshot(prefix)
            .into_iter()
            .filter(|(key, _)| key.contains(":cfg:"))
            .collect::<Vec<_>>()
    };
    let before = config_keys(&stack.prefix);

    for (method, path) in [
        ("GET", "/svc/sneaky/v1/namespaces"),
        ("PUT", "/svc/sneaky/v1/namespaces/secrets/keys/db"),
        ("DELETE", "/svc/sneaky/v1/namespaces/secrets/keys/db"),
    ] {
        let response = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                stack.gateway.at(path),
            )
            .header("authorization", bearer(&token("mallory", "admin")))
            .header("x-auth-subject", "admin")
            .json(&json!({"value": "owned"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{method} {path}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("s3cret-password"), "{body}");
    }

    // The probe does reach config-svc (health-svc is not told to protect
    // it here), and config-svc refuses it: the output is the 401, never the
    // secret, in the API and so in no log line either.
    // Bounded: 8 s of polling, then fail.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut output = String::new();
    while output.is_empty() && tokio::time::Instant::now() < deadline {
        let (_, body) = stack
            .call(
                "GET",
                "/api/v1/health/services/sneaky-check",
                "health:read",
                None,
            )
            .await;
        output = body["instances"][0]["output"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if output.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let probed = !output.is_empty();
    assert!(probed, "health-svc never probed the instance");
    assert!(output.starts_with("HTTP 401"), "{output}");
    assert!(!output.contains("s3cret-password"), "{output}");
    assert_eq!(
        config_keys(&stack.prefix),
        before,
        "a refused request changed the config data"
    );
    // The secret is still there, unchanged, for whoever may read it.
    let (status, entry) = stack
        .call(
            "GET",
            "/api/v1/config/namespaces/secrets/keys/db",
            "config:read",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(entry["value"], "s3cret-password");
    assert_eq!(entry["version"], 1);
}

#[tokio::test]
async fn every_service_refuses_a_direct_call_without_the_credential_and_keeps_its_probes_open() {
    let stack = stack(true).await;
    let health = stack.health.as_ref().unwrap();
    let before = redis().snapshot(&format!("{}:{}", stack.prefix, config_svc::store::LOG_NAME));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let calls = [
        ("GET", stack.registry.at("/v1/services")),
        ("PUT", stack.registry.at("/v1/services/echo/instances/e-1")),
        ("GET", stack.registry.at("/v1/watch")),
        ("GET", stack.config.at("/v1/namespaces")),
        ("PUT", stack.config.at("/v1/namespaces/app/keys/k")),
        ("GET", health.at("/v1/summary")),
        ("GET", health.at("/v1/services/echo")),
    ];
    for (method, url) in &calls {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        // No credential, and a forged identity header does not stand in for one.
        let response = http
            .request(method.clone(), url)
            .header("x-auth-subject", "admin")
            .header("x-auth-scopes", "admin")
            .json(&json!({"host": "127.0.0.1", "port": 80, "value": 1}))
            .send()
            .await
            .unwrap();
        let body = assert_unauthorized(response, &format!("{method} {url}")).await;
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["status"], 401);
        // The client's own (gateway) token is no internal credential either.
        let response = http
            .request(method.clone(), url)
            .header("authorization", bearer(&token("root", "admin")))
            .json(&json!({"host": "127.0.0.1", "port": 80, "value": 1}))
            .send()
            .await
            .unwrap();
        assert_unauthorized(response, &format!("{method} {url} with a client token")).await;
    }
    assert!(
        !redis()
            .keys(&stack.prefix)
            .iter()
            .any(|k| k.contains("echo")),
        "a refused registration was written"
    );
    assert_eq!(
        redis().snapshot(&format!("{}:{}", stack.prefix, config_svc::store::LOG_NAME)),
        before
    );
    for service in [&stack.registry, &stack.config, health] {
        for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
            let response = http.get(service.at(path)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{}{path}", service.url);
        }
    }
}

#[tokio::test]
async fn internal_tokens_signed_with_another_secret_expired_or_for_another_audience_are_refused() {
    let stack = stack(false).await;
    let sign = |secret: &str, claims: Value| mcp_testkit::mint_token(secret, &claims);
    let now = now();
    let good = json!({"iss": "mcp-gateway", "aud": "mcp-internal", "sub": "a", "scope": "admin",
        "iat": now, "exp": now + 60});
    let mut expired = good.clone();
    expired["iat"] = json!(now - 600);
    expired["exp"] = json!(now - 300);
    let mut audience = good.clone();
    audience["aud"] = json!("someone-else");
    let mut issuer = good.clone();
    issuer["iss"] = json!("mallory");
    let refused = [
        (
            "another secret",
            sign("another-secret-another-secret-another", good.clone()),
        ),
        ("expired", sign(INTERNAL_SECRET, expired)),
        ("another audience", sign(INTERNAL_SECRET, audience)),
        ("another issuer", sign(INTERNAL_SECRET, issuer)),
    ];
    let http = reqwest::Client::new();
    for service in [&stack.registry, &stack.config] {
        let url = if service.url == stack.registry.url {
            service.at("/v1/services")
        } else {
            service.at("/v1/namespaces")
        };
        for (what, token) in &refused {
            let response = http
                .get(&url)
                .bearer_auth(token)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap();
            assert_unauthorized(response, what).await;
        }
        let response = http
            .get(&url)
            .bearer_auth(sign(INTERNAL_SECRET, good.clone()))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "a good credential at {url}");
    }
}
