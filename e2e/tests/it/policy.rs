//! Gateway policies as config, against the real parts: registry-svc and
//! config-svc in-process, two gateway replicas on one Redis prefix, real
//! upstreams on 127.0.0.1:0. Each policy is written through a gateway
//! (`/api/v1/config/namespaces/gateway/keys/…`) and must take effect on
//! both replicas within a second, and revert on rollback; an invalid one is
//! refused at write time and changes nothing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::common::{assert_ready, bearer, client, echo, gateway, service_args, token, upstream};
use axum::{Json, Router, extract::Request, routing::any};
use clap::Parser;
use mcp_testkit::{TestService, eventually, prefix, redis};
use serde_json::{Value, json};

/// Splits, retries, header rules and extra routes.
mod traffic;

/// A policy change must show on every replica within this time.
const APPLIED_WITHIN: Duration = Duration::from_secs(1);

struct Stack {
    prefix: String,
    _registry: TestService,
    _config: TestService,
    gateways: [TestService; 2],
}

async fn stack() -> Stack {
    let prefix = prefix();
    let settings =
        registry_svc::Settings::try_parse_from(service_args("registry-svc", &prefix)).unwrap();
    let registry = mcp_testkit::spawn(move |l, s| registry_svc::run(settings, l, s)).await;
    let settings =
        config_svc::Settings::try_parse_from(service_args("config-svc", &prefix)).unwrap();
    let config = mcp_testkit::spawn(move |l, s| config_svc::run(settings, l, s)).await;
    let flags = [
        "--registry-url",
        &registry.url,
        "--config-url",
        &config.url,
        "--health-url",
        "http://127.0.0.1:9",
        "--rate-limit-rps",
        "10000",
        "--rate-limit-burst",
        "10000",
    ];
    let first = gateway(&redis().url(), &prefix, &flags).await;
    let second = gateway(&redis().url(), &prefix, &flags).await;
    assert_ready([&registry, &config]).await;
    Stack {
        prefix,
        _registry: registry,
        _config: config,
        gateways: [first, second],
    }
}

const ADMIN: &str = "admin";

impl Stack {
    /// `method` `path` on the first gateway as `admin`; status and JSON.
    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client()
            .request(method, self.gateways[0].at(path))
            .header("authorization", bearer(&token("operator", ADMIN)));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Write `value` at `key` of namespace `gateway`.
    async fn write(&self, key: &str, value: Value) -> (u16, Value) {
        self.admin(
            "PUT",
            &format!("/api/v1/config/namespaces/gateway/keys/{key}"),
            Some(json!({ "value": value })),
        )
        .await
    }

    async fn rollback(&self, key: &str, version: u64) -> (u16, Value) {
        self.admin(
            "POST",
            &format!("/api/v1/config/namespaces/gateway/keys/{key}/rollback"),
            Some(json!({ "version": version })),
        )
        .await
    }

    /// Register `service`/`id` at `upstream` with `tags` and wait until both replicas route to it.
    async fn register(&self, service: &str, id: &str, upstream: &TestService, tags: &[&str]) {
        let (status, _) = self
            .admin(
                "PUT",
                &format!("/api/v1/registry/services/{service}/instances/{id}"),
                Some(json!({"host": "127.0.0.1", "port": upstream.addr.port(), "tags": tags})),
            )
            .await;
        assert!(status == 200 || status == 201, "register: {status}");
    }

    /// Wait until `check` holds on both replicas, within `APPLIED_WITHIN`.
    async fn on_both<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for gateway in &self.gateways {
            let url = gateway.url.clone();
            let held = eventually(APPLIED_WITHIN, || check(url.clone())).await;
            assert!(
                held,
                "{what} did not hold on {url} within {APPLIED_WITHIN:?}"
            );
        }
    }

    /// Wait (up to 5 s) until both replicas route `service` to `instances` instances.
    async fn routed(&self, service: &str, instances: usize) {
        for gateway in &self.gateways {
            let ok = eventually(Duration::from_secs(5), || async {
                let body: Value = client()
                    .get(gateway.at("/admin/upstreams"))
                    .header("authorization", bearer(&token("operator", ADMIN)))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                body["upstreams"].as_array().unwrap().iter().any(|u| {
                    u["name"] == service
                        && u["instances"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter(|i| i["status"] == "passing")
                            .count()
                            == instances
                })
            })
            .await;
            assert!(ok, "{service} not routed on {}", gateway.url);
        }
    }
}

/// Status of GET `url` with an optional token.
async fn status_of(url: &str, token: Option<&str>) -> u16 {
    let mut request = client().get(url);
    if let Some(token) = token {
        request = request.header("authorization", bearer(token));
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_public_service_answers_without_a_token_on_both_replicas_until_rolled_back() {
    let stack = stack().await;
    let shop = echo("shop").await;
    stack.register("shop", "shop-1", &shop, &[]).await;
    stack.routed("shop", 1).await;
    assert_eq!(
        status_of(&stack.gateways[0].at("/svc/shop/x"), None).await,
        401
    );

    let (status, first) = stack.write("services/shop", json!({})).await;
    assert_eq!(status, 201, "{first}");
    let (status, _) = stack
        .write("services/shop", json!({"auth": {"mode": "none"}}))
        .await;
    assert_eq!(status, 200);
    stack
        .on_both("public access", |url| async move {
            status_of(&format!("{url}/svc/shop/x"), None).await == 200
        })
        .await;
    // A token that is sent is still checked.
    assert_eq!(
        status_of(&stack.gateways[1].at("/svc/shop/x"), Some("not-a-jwt")).await,
        401
    );
    let (status, policies) = stack.admin("GET", "/admin/policies", None).await;
    assert_eq!(status, 200);
    let shop_view = policies["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "shop")
        .unwrap()
        .clone();
    assert_eq!(shop_view["version"], 2);
    assert_eq!(shop_view["effective"]["auth"], "none");
    assert_eq!(shop_view["updated_by"], "operator");

    let (status, _) = stack.rollback("services/shop", 1).await;
    assert_eq!(status, 200);
    stack
        .on_both("token required again", |url| async move {
            status_of(&format!("{url}/svc/shop/x"), None).await == 401
        })
        .await;
}

#[tokio::test]
async fn a_limit_of_5_rps_gives_429s_to_one_subject_and_not_to_another_service() {
    let stack = stack().await;
    let (limited, free) = (echo("limited").await, echo("free").await);
    stack.register("limited", "l-1", &limited, &[]).await;
    stack.register("free", "f-1", &free, &[]).await;
    stack.routed("limited", 1).await;
    stack.routed("free", 1).await;
    let (status, _) = stack
        .write(
            "services/limited",
            json!({"rate_limit": {"rps": 5, "burst": 5}}),
        )
        .await;
    assert_eq!(status, 201);
    let alice = token("alice", "");
    let bob = token("bob", "");
    stack
        .on_both("the limit", |url| {
            let alice = alice.clone();
            async move {
                let mut limited = 0;
                for _ in 0..12 {
                    if status_of(&format!("{url}/svc/limited/x"), Some(&alice)).await == 429 {
                        limited += 1;
                    }
                }
                limited > 0
            }
        })
        .await;
    // Bob has a bucket of his own, and the other service is not limited.
    assert_eq!(
        status_of(&stack.gateways[0].at("/svc/limited/x"), Some(&bob)).await,
        200
    );
    for _ in 0..30 {
        assert_eq!(
            status_of(&stack.gateways[0].at("/svc/free/x"), Some(&alice)).await,
            200
        );
    }
    // The 429 is the gateway's problem+json with the policy's limit. Alice's
    // bucket refills (a token per 200 ms) while the requests above run: take
    // it down again first (bounded, as above).
    let mut refused = None;
    for _ in 0..12 {
        let response = client()
            .get(stack.gateways[0].at("/svc/limited/x"))
            .header("authorization", bearer(&alice))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
    }
    let response = refused.expect("no 429 for alice within 12 requests");
    assert_eq!(response.status(), 429);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(response.headers()["ratelimit-limit"], "5");
}

#[tokio::test]
async fn an_invalid_policy_is_refused_with_pointers_and_the_previous_one_keeps_serving() {
    let stack = stack().await;
    let open = echo("open").await;
    stack.register("open", "o-1", &open, &[]).await;
    stack.routed("open", 1).await;
    let (status, _) = stack
        .write("services/open", json!({"auth": {"mode": "none"}}))
        .await;
    assert_eq!(status, 201);
    stack
        .on_both("public access", |url| async move {
            status_of(&format!("{url}/svc/open/x"), None).await == 200
        })
        .await;

    let before = redis().snapshot(&stack.prefix);
    for (value, pointer) in [
        (json!({"rate_limit": {"rps": 0}}), "/value/rate_limit/rps"),
        (json!({"auth": {"mode": "nobody"}}), "/value/auth/mode"),
        (json!({"timeout": 5}), "/value"),
        (
            json!({"request_headers": {"set": {"x-auth-subject": "root"}}}),
            "/value/request_headers/set/x-auth-subject",
        ),
    ] {
        let (status, problem) = stack.write("services/open", value.clone()).await;
        assert_eq!(status, 422, "{value}: {problem}");
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == pointer),
            "{value}: {problem}"
        );
    }
    // A key outside `services/` and `routes/` is refused too.
    let (status, _) = stack.write("other/x", json!({})).await;
    assert_eq!(status, 400);
    // A dry run validates and writes nothing.
    let (status, dry) = stack
        .admin(
            "PUT",
            "/api/v1/config/namespaces/gateway/keys/services/open?dry_run=true",
            Some(json!({"value": {"timeout_ms": 100}})),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    // The namespace's schema is the project's.
    let (status, _) = stack
        .admin(
            "PUT",
            "/api/v1/config/namespaces/gateway/schema",
            Some(json!({"type": "object"})),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = stack
        .admin("DELETE", "/api/v1/config/namespaces/gateway/schema", None)
        .await;
    assert_eq!(status, 409);
    assert_eq!(redis().snapshot(&stack.prefix), before);
    // Writing needs `config:write:gateway` (or admin).
    let response = client()
        .put(stack.gateways[0].at("/api/v1/config/namespaces/gateway/keys/services/open"))
        .header("authorization", bearer(&token("dev", "config:write:shop")))
        .json(&json!({"value": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // The OpenAPI document describes the policy schema.
    let document: Value = client()
        .get(stack.gateways[0].at("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["GatewayServicePolicy"]["type"], "object",
        "{schemas}"
    );
    assert!(schemas["GatewayRoute"]["properties"]["path_prefix"].is_object());
    assert!(document["paths"]["/admin/policies"]["get"].is_object());
    // The previous policy still serves on both replicas.
    for gateway in &stack.gateways {
        assert_eq!(status_of(&gateway.at("/svc/open/x"), None).await, 200);
    }
}

#[tokio::test]
async fn methods_body_size_cors_and_timeout_take_effect() {
    let stack = stack().await;
    let slow_hits = Arc::new(AtomicU64::new(0));
    let hits = slow_hits.clone();
    let slow = upstream(Router::new().fallback(any(move |request: Request| {
        let hits = hits.clone();
        async move {
            hits.fetch_add(1, Ordering::Relaxed);
            if request.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
            Json(json!({"upstream": "web"}))
        }
    })))
    .await;
    stack.register("web", "w-1", &slow, &[]).await;
    stack.routed("web", 1).await;
    let (status, body) = stack
        .write(
            "services/web",
            json!({"methods": ["GET", "POST"], "max_body_bytes": 10, "timeout_ms": 200,
                   "cors": {"origins": ["http://app.example.com"], "max_age_seconds": 60}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let user = token("u", "");
    stack
        .on_both("the method list", |url| {
            let user = user.clone();
            async move {
                let response = client()
                    .delete(format!("{url}/svc/web/x"))
                    .header("authorization", bearer(&user))
                    .send()
                    .await
                    .unwrap();
                response.status() == 405 && response.headers()["allow"] == "GET, POST"
            }
        })
        .await;
    let gateway = &stack.gateways[0];
    let response = client()
        .post(gateway.at("/svc/web/x"))
        .header("authorization", bearer(&user))
        .body("x".repeat(100))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        status_of(&gateway.at("/svc/web/slow"), Some(&user)).await,
        504
    );
    // The preflight is answered at the gateway, without a token.
    let response = client()
        .request(reqwest::Method::OPTIONS, gateway.at("/svc/web/x"))
        .header("origin", "http://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://app.example.com"
    );
    assert_eq!(response.headers()["access-control-max-age"], "60");
    let response = client()
        .get(gateway.at("/svc/web/x"))
        .header("authorization", bearer(&user))
        .header("origin", "http://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://app.example.com"
    );
    let metrics = client()
        .get(gateway.at("/metrics"))
        .header("authorization", bearer(&token("ops", "metrics:read")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gateway_requests_total{service=\"web\",route=\"svc\",status=\"2xx\"}"),
        "{metrics}"
    );
}
