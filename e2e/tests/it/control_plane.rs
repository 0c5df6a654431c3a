//! The gateway in front of the real control plane (registry-svc and
//! config-svc in-process): long polls cannot open the circuit, a client's
//! `Connection` header cannot strip the forwarded identity, the gateway's
//! `/metrics` needs a token and forgets instances that left. (That
//! `X-Forwarded-Proto` says `https` behind TLS is the gateway's own `tls`
//! test: it needs no control plane.)

use std::time::{Duration, Instant};

use crate::common::{bearer, client, echo, gateway, token};
use clap::Parser;
use mcp_testkit::{TestService, prefix, redis};
use serde_json::{Value, json};

async fn registry_svc(prefix: &str) -> TestService {
    let mut args = vec!["registry-svc".to_owned()];
    args.extend(mcp_testkit::common_args(&redis().url(), prefix));
    let settings = registry_svc::Settings::try_parse_from(args).unwrap();
    mcp_testkit::spawn(move |listener, shutdown| registry_svc::run(settings, listener, shutdown))
        .await
}

async fn config_svc(prefix: &str) -> TestService {
    let mut args = vec!["config-svc".to_owned()];
    args.extend(mcp_testkit::common_args(&redis().url(), prefix));
    let settings = config_svc::Settings::try_parse_from(args).unwrap();
    mcp_testkit::spawn(move |listener, shutdown| config_svc::run(settings, listener, shutdown))
        .await
}

fn admin() -> String {
    bearer(&token("root", "admin"))
}

/// The registry's circuit as `/admin/upstreams` shows it: (state, failures).
async fn registry_circuit(gw: &TestService) -> (String, u64) {
    let view: Value = client()
        .get(gw.at("/admin/upstreams"))
        .header("authorization", admin())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let registry = view["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "registry")
        .unwrap()
        .clone();
    let instance = &registry["instances"][0];
    (
        instance["circuit"].as_str().unwrap().to_owned(),
        instance["consecutive_failures"].as_u64().unwrap(),
    )
}

/// `GET` through the gateway with `auth`, bounded by `within`.
async fn get_within(url: String, auth: String, within: Duration) -> reqwest::Result<u16> {
    client()
        .get(url)
        .header("authorization", auth)
        .timeout(within)
        .send()
        .await
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn long_polls_with_a_disguised_or_default_wait_never_open_the_circuit() {
    let prefix = prefix();
    let registry = registry_svc(&prefix).await;
    // A short upstream timeout and a breaker that opens after 2 failures:
    // before the fix, 3 long polls were enough to shut `/api/v1/registry`.
    let gw = gateway(
        &redis().url(),
        &prefix,
        &[
            "--registry-url",
            &registry.url,
            "--upstream-timeout-ms",
            "300",
            "--cb-failure-threshold",
            "2",
            "--cb-open-seconds",
            "60",
        ],
    )
    .await;
    let reader = bearer(&token("reader", "registry:read"));
    let writer = bearer(&token("writer", "registry:write"));
    // Give the registry a revision, so an `index` at it really blocks.
    let registered = client()
        .put(gw.at("/api/v1/registry/services/seed/instances/s-1"))
        .header("authorization", &writer)
        .json(&json!({"host": "127.0.0.1", "port": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let listed = client()
        .get(gw.at("/api/v1/registry/services/quiet/instances"))
        .header("authorization", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200, "{:?}", listed.headers());
    let index: u64 = listed.headers()["x-mcp-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(index > 0);
    let quiet = |query: &str| {
        gw.at(&format!(
            "/api/v1/registry/services/quiet/instances?{query}"
        ))
    };

    // `%77ait` is `wait` to the registry: the gateway must give it that long.
    let disguised: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(get_within(
                quiet(&format!("index={index}&%77ait=1s")),
                reader.clone(),
                Duration::from_secs(10),
            ))
        })
        .collect();
    for poll in disguised {
        assert_eq!(
            poll.await.unwrap().unwrap(),
            200,
            "held for its wait, then answered"
        );
    }

    // No `wait`: the registry holds it for the default wait (5 minutes), and
    // so does the gateway; the client gives up first, which tells the breaker nothing.
    let defaults: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(get_within(
                quiet(&format!("index={index}")),
                reader.clone(),
                Duration::from_secs(1),
            ))
        })
        .collect();
    for poll in defaults {
        let held = poll.await.unwrap();
        assert!(
            held.as_ref().is_err_and(reqwest::Error::is_timeout),
            "a default-wait long poll is held, not cut by the gateway: {held:?}"
        );
    }

    // `index=0` never blocks.
    for _ in 0..3 {
        let started = Instant::now();
        let status = get_within(quiet("index=0"), reader.clone(), Duration::from_secs(3)).await;
        assert_eq!(status.unwrap(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    // The circuit is still closed, with no failure counted; an ordinary call passes.
    assert_eq!(registry_circuit(&gw).await, ("closed".to_owned(), 0));
    let status = get_within(
        gw.at("/api/v1/registry/services"),
        reader.clone(),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status.unwrap(), 200);
}

#[tokio::test]
async fn a_connection_header_cannot_strip_the_forwarded_identity() {
    let prefix = prefix();
    let config = config_svc(&prefix).await;
    let health = echo("health").await;
    let gw = gateway(
        &redis().url(),
        &prefix,
        &["--config-url", &config.url, "--health-url", &health.url],
    )
    .await;
    let alice = bearer(&token("alice", "config:read config:write health:read"));
    let hop = "keep-alive, x-auth-subject, x-auth-scopes, x-forwarded-for, x-forwarded-proto, x-forwarded-host";

    let written = client()
        .put(gw.at("/api/v1/config/namespaces/app/keys/owner"))
        .header("authorization", &alice)
        .header("connection", hop)
        .json(&json!({"value": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 201);
    let entry: Value = client()
        .get(gw.at("/api/v1/config/namespaces/app/keys/owner"))
        .header("authorization", &alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entry["updated_by"], "alice", "{entry}");

    // Every header the gateway sets reaches the upstream, whatever `Connection` names.
    let seen: Value = client()
        .get(gw.at("/api/v1/health/summary"))
        .header("authorization", &alice)
        .header("connection", hop)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let headers = &seen["headers"];
    assert_eq!(headers["x-auth-subject"], "alice", "{seen}");
    assert_eq!(
        headers["x-auth-scopes"], "config:read config:write health:read",
        "{seen}"
    );
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(headers["x-forwarded-proto"], "http", "{seen}");
    assert!(headers["x-forwarded-host"].is_string(), "{seen}");
}

async fn metrics(gw: &TestService, auth: Option<String>) -> reqwest::Response {
    let mut request = client().get(gw.at("/metrics"));
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_gateway_metrics_need_a_token() {
    let gw = gateway(&redis().url(), &prefix(), &[]).await;
    let before = redis().snapshot(&prefix());

    let anonymous = metrics(&gw, None).await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = anonymous.json().await.unwrap();
    assert_eq!(problem["status"], 401);

    let bad = metrics(&gw, Some("Bearer not-a-jwt".to_owned())).await;
    assert_eq!(bad.status(), 401);
    let unscoped = metrics(&gw, Some(bearer(&token("eve", "registry:read")))).await;
    assert_eq!(unscoped.status(), 403);
    let problem: Value = unscoped.json().await.unwrap();
    assert_eq!(problem["required_scope"], "metrics:read");

    for scope in ["metrics:read", "admin"] {
        let scraped = metrics(&gw, Some(bearer(&token("prometheus", scope)))).await;
        assert_eq!(scraped.status(), 200, "{scope}");
        let text = scraped.text().await.unwrap();
        assert!(text.contains("gateway_circuit_state{"), "{text}");
        assert!(text.contains("http_server_requests_total{"), "{text}");
    }
    assert_eq!(redis().snapshot(&prefix()), before);
    // The common endpoints stay open.
    assert_eq!(reqwest::get(gw.at("/healthz")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn instances_that_leave_the_registry_leave_no_series_in_the_gateway_metrics() {
    let prefix = prefix();
    let registry = registry_svc(&prefix).await;
    let target = echo("churn").await;
    let gw = gateway(&redis().url(), &prefix, &["--registry-url", &registry.url]).await;
    let writer = bearer(&token("writer", "registry:write"));
    let ids: Vec<String> = (0..20).map(|n| format!("churn-{n}")).collect();
    for id in &ids {
        let registered = client()
            .put(gw.at(&format!("/api/v1/registry/services/churn/instances/{id}")))
            .header("authorization", &writer)
            .json(&json!({"host": "127.0.0.1", "port": target.addr.port()}))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 201);
    }
    let scrape = || async { metrics(&gw, Some(admin())).await.text().await.unwrap() };
    let listed = mcp_testkit::eventually(Duration::from_secs(5), || async {
        let text = scrape().await;
        ids.iter()
            .all(|id| text.contains(&format!("instance_id=\"{id}\"")))
    })
    .await;
    assert!(listed, "every instance has its circuit series");
    // Traffic makes the upstream's counters.
    let routed = mcp_testkit::eventually(Duration::from_secs(5), || async {
        client()
            .get(gw.at("/svc/churn/x"))
            .header("authorization", admin())
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(routed);
    assert!(
        scrape()
            .await
            .contains(r#"gateway_upstream_requests_total{upstream="churn",outcome="2xx"} "#)
    );

    for id in &ids {
        let gone = client()
            .delete(gw.at(&format!("/api/v1/registry/services/churn/instances/{id}")))
            .header("authorization", &writer)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 204);
    }
    // (registry-svc runs in this process and shares its metrics recorder:
    // only the gateway's own series are looked at.)
    let forgotten = mcp_testkit::eventually(Duration::from_secs(5), || async {
        let text = scrape().await;
        !text.contains(r#"instance_id="churn-"#) && !text.contains(r#"upstream="churn""#)
    })
    .await;
    let text = scrape().await;
    assert!(forgotten, "series of departed instances remain:\n{text}");
    // The control plane's own series are still there.
    assert!(
        text.contains(r#"gateway_circuit_state{upstream="registry","#),
        "{text}"
    );
}
