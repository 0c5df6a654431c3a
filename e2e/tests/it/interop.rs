//! Existing tools discover through MCP: a real Prometheus (Debian's
//! `prometheus` binary) with an `http_sd_configs` job against the gateway,
//! and an unmodified Consul client library (py-consul, from PyPI) against
//! the gateway's Consul-compatible API. Both run against the real control
//! plane in-process (registry-svc, config-svc, health-svc) and a real Redis.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::common::{bearer, client, gateway, token, upstream};
use axum::{Router, routing::get};
use clap::Parser;
use mcp_testkit::{TestService, prefix, redis};
use serde_json::{Value, json};

/// The control plane and the gateway in front of it.
struct Stack {
    gateway: TestService,
    prefix: String,
    _registry: TestService,
    _config: TestService,
    _health: TestService,
}

async fn stack(extra: &[&str]) -> Stack {
    let prefix = prefix();
    let url = redis().url();
    let args = |name: &str, egress: bool| {
        let mut args = vec![name.to_owned()];
        args.extend(mcp_testkit::common_args(&url, &prefix));
        if egress {
            args.extend(mcp_testkit::egress_args());
        }
        args
    };
    let registry_settings =
        registry_svc::Settings::try_parse_from(args("registry-svc", true)).unwrap();
    let registry = mcp_testkit::spawn(move |l, s| registry_svc::run(registry_settings, l, s)).await;
    let config_settings = config_svc::Settings::try_parse_from(args("config-svc", false)).unwrap();
    let config = mcp_testkit::spawn(move |l, s| config_svc::run(config_settings, l, s)).await;
    let health_settings = health_svc::Settings::try_parse_from(args("health-svc", true)).unwrap();
    let health = mcp_testkit::spawn(move |l, s| health_svc::run(health_settings, l, s)).await;
    let mut flags = vec![
        "--registry-url".to_owned(),
        registry.url.clone(),
        "--config-url".to_owned(),
        config.url.clone(),
        "--health-url".to_owned(),
        health.url.clone(),
    ];
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let gateway = gateway(&url, &prefix, &flags).await;
    Stack {
        gateway,
        prefix,
        _registry: registry,
        _config: config,
        _health: health,
    }
}

/// A child process killed (by its pid) and reaped when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scrape target: an HTTP server on port 0 serving `/metrics`.
async fn metrics_server(name: &'static str) -> TestService {
    upstream(Router::new().route(
        "/metrics",
        get(move || async move {
            format!("# TYPE interop_up gauge\ninterop_up{{server=\"{name}\"}} 1\n")
        }),
    ))
    .await
}

async fn register(gw: &TestService, auth: &str, service: &str, id: &str, port: u16) {
    let response = client()
        .put(gw.at(&format!(
            "/api/v1/registry/services/{service}/instances/{id}"
        )))
        .header("authorization", auth)
        .json(
            &json!({"host": "127.0.0.1", "port": port, "ttl_seconds": 300,
            "tags": ["interop"], "metadata": {"metrics_path": "/metrics"}}),
        )
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "register {id}: {}",
        response.status()
    );
}

/// The workspace's `target/` (where the test's scratch files go).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// A fresh scratch directory under `target/interop/`.
fn scratch(name: &str) -> PathBuf {
    let dir = target_dir()
        .join("interop")
        .join(format!("{name}-{}", prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The active targets of Prometheus's job `mcp`: (instance id, health).
async fn prometheus_targets(prometheus: &str) -> Vec<(String, String)> {
    let Ok(response) = client()
        .get(format!("{prometheus}/api/v1/targets?state=active"))
        .send()
        .await
    else {
        return vec![];
    };
    let body: Value = response.json().await.unwrap_or(Value::Null);
    body["data"]["activeTargets"]
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .filter(|t| t["labels"]["job"] == "mcp")
                .map(|t| {
                    (
                        t["labels"]["instance_id"].as_str().unwrap_or("").to_owned(),
                        t["health"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn prometheus_scrapes_every_registered_instance_through_http_sd() {
    let stack = stack(&[]).await;
    let gw = &stack.gateway;
    let writer = bearer(&token("deployer", "registry:write"));
    let (a, b) = (metrics_server("a").await, metrics_server("b").await);
    register(gw, &writer, "echo", "echo-a", a.addr.port()).await;
    register(gw, &writer, "echo", "echo-b", b.addr.port()).await;

    // Prometheus on a free port with its own config and storage.
    let dir = scratch("prometheus");
    let port = mcp_testkit::free_port();
    let sd_token = token("prometheus", "registry:read");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
         scrape_configs:\n\
         \x20 - job_name: mcp\n\
         \x20   http_sd_configs:\n\
         \x20     - url: {gw}/api/v1/registry/sd/prometheus\n\
         \x20       refresh_interval: 1s\n\
         \x20       authorization:\n\
         \x20         type: Bearer\n\
         \x20         credentials: {sd_token}\n\
         \x20   relabel_configs:\n\
         \x20     - source_labels: [__meta_mcp_instance_id]\n\
         \x20       target_label: instance_id\n",
        gw = gw.url,
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("Debian's `prometheus` (apt-get install prometheus; .ci/run installs it)");
    let _prometheus = ChildGuard(child);
    let prometheus = format!("http://127.0.0.1:{port}");

    let both_up = mcp_testkit::eventually(Duration::from_secs(60), || async {
        let mut targets = prometheus_targets(&prometheus).await;
        targets.sort();
        targets
            == [
                ("echo-a".to_owned(), "up".to_owned()),
                ("echo-b".to_owned(), "up".to_owned()),
            ]
    })
    .await;
    assert!(
        both_up,
        "Prometheus did not scrape both instances: {:?}; log in {}",
        prometheus_targets(&prometheus).await,
        dir.display()
    );

    let gone = client()
        .delete(gw.at("/api/v1/registry/services/echo/instances/echo-b"))
        .header("authorization", &writer)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    let one_left = mcp_testkit::eventually(Duration::from_secs(30), || async {
        prometheus_targets(&prometheus).await == [("echo-a".to_owned(), "up".to_owned())]
    })
    .await;
    assert!(
        one_left,
        "echo-b stayed in the targets: {:?}",
        prometheus_targets(&prometheus).await
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn discovery_answers_http_sd_groups_filtered_by_query_and_scopes() {
    let stack = stack(&[]).await;
    let gw = &stack.gateway;
    let writer = bearer(&token("deployer", "registry:write"));
    let a = metrics_server("a").await;
    register(gw, &writer, "echo", "echo-a", a.addr.port()).await;
    register(gw, &writer, "billing", "bill-1", a.addr.port()).await;

    let sd = |query: &'static str, scopes: &'static str| {
        let url = gw.at(&format!("/api/v1/registry/sd/prometheus{query}"));
        async move {
            let response = client()
                .get(url)
                .header("authorization", bearer(&token("p", scopes)))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let kind = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, kind, response.json::<Value>().await.unwrap())
        }
    };
    let (status, kind, all) = sd("", "registry:read").await;
    assert_eq!(status, 200);
    assert_eq!(kind.as_deref(), Some("application/json"));
    assert_eq!(all.as_array().unwrap().len(), 2);
    let echo = &all.as_array().unwrap()[1];
    assert_eq!(
        echo["targets"],
        json!([format!("127.0.0.1:{}", a.addr.port())])
    );
    assert_eq!(echo["labels"]["__meta_mcp_service"], "echo");
    assert_eq!(echo["labels"]["__meta_mcp_instance_id"], "echo-a");
    assert_eq!(echo["labels"]["__meta_mcp_tags"], ",interop,");
    assert_eq!(echo["labels"]["__meta_mcp_meta_metrics_path"], "/metrics");
    assert_eq!(echo["labels"]["__metrics_path__"], "/metrics");

    // Narrowed scopes see their services only; filters apply.
    let (_, _, narrowed) = sd("", "registry:read:billing").await;
    assert_eq!(narrowed.as_array().unwrap().len(), 1);
    assert_eq!(narrowed[0]["labels"]["__meta_mcp_service"], "billing");
    let (_, _, one) = sd(
        "?service=echo&tag=interop&meta.metrics_path=/metrics",
        "admin",
    )
    .await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    let (_, _, none) = sd("?tag=other", "admin").await;
    assert_eq!(none, json!([]));
    let (status, _, problem) = sd("?colour=red", "admin").await;
    assert_eq!(status, 400);
    assert_eq!(problem["status"], 400);
    let (status, _, _) = sd("", "config:read").await;
    assert_eq!(status, 403);
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Run `command` to its end, at most `within`; (success, stdout + stderr).
fn run_bounded(mut command: Command, within: Duration) -> (bool, String) {
    let dir = scratch("run");
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    command
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = ChildGuard(command.spawn().expect("spawn"));
    let deadline = std::time::Instant::now() + within;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "{}{}",
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&dir);
    match status {
        Some(status) => (status.success(), output),
        None => (false, format!("timed out after {within:?}\n{output}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmodified_consul_client_registers_discovers_and_uses_kv_through_the_gateway() {
    // py-consul in a virtualenv under target/ (what .ci/run installs; a
    // missing one is installed here, pinned by interop/requirements.txt).
    let mut install = Command::new("bash");
    install.arg(root().join("interop/install.sh"));
    let (installed, log) = run_bounded(install, Duration::from_secs(300));
    assert!(installed, "interop/install.sh failed:\n{log}");
    let python = target_dir().join("interop-venv/bin/python");

    let stack = stack(&[]).await;
    let gw = &stack.gateway;
    let scopes = "registry:read registry:write health:read config:read:consul-kv \
                  config:write:consul-kv";
    let mut script = Command::new(python);
    script
        .arg(root().join("interop/consul_client.py"))
        .env("MCP_GATEWAY_PORT", gw.addr.port().to_string())
        .env("CONSUL_TOKEN", token("consul-app", scopes))
        .env("CONSUL_READ_TOKEN", token("consul-reader", "registry:read"))
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_SSL");
    // The script blocks on the gateway: run it off the runtime's threads.
    let (passed, output) =
        tokio::task::spawn_blocking(move || run_bounded(script, Duration::from_secs(120)))
            .await
            .unwrap();
    assert!(passed, "the Consul client failed:\n{output}");
    assert!(output.contains("all checks passed"), "{output}");
}

#[tokio::test]
async fn consul_requests_beyond_the_token_or_the_mapping_are_refused_and_change_nothing() {
    let stack = stack(&[]).await;
    let gw = &stack.gateway;
    // What the refused requests could change: the registry's and the
    // config's data (health-svc's own replica heartbeat comes and goes).
    let data = |prefix: &str| {
        redis()
            .snapshot(prefix)
            .into_iter()
            .filter(|(key, _)| !key.contains(":health:"))
            .collect::<Vec<_>>()
    };
    // config-svc installs the gateway policies' schema as it starts: let it
    // land first (bounded), so only what the requests below do is compared.
    let installed = mcp_testkit::eventually(Duration::from_secs(5), || async {
        redis()
            .keys(&stack.prefix)
            .iter()
            .any(|key| key.ends_with(":cfg:schema:gateway"))
    })
    .await;
    assert!(installed, "config-svc did not install the gateway schema");
    let before = data(&stack.prefix);
    let send = |method: reqwest::Method, path: &str, token_header: (&str, String), body: &str| {
        client()
            .request(method, gw.at(path))
            .header(token_header.0, token_header.1)
            .body(body.to_owned())
            .send()
    };
    let reader = token("reader", "registry:read config:read");

    // A read-only token cannot register: 403 naming the scope.
    let refused = send(
        reqwest::Method::PUT,
        "/v1/agent/service/register",
        ("x-consul-token", reader.clone()),
        r#"{"Name":"web","Address":"127.0.0.1","Port":80}"#,
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 403);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["required_scope"], "registry:write:web");

    // Unsupported: 501 problem+json naming the feature.
    for (method, path, body) in [
        (reqwest::Method::GET, "/v1/session/list", ""),
        (
            reqwest::Method::PUT,
            "/v1/agent/service/register",
            r#"{"Name":"web","Address":"127.0.0.1","Port":80,"Check":{"Args":["true"],"Interval":"5s"}}"#,
        ),
        (
            reqwest::Method::GET,
            "/v1/catalog/services?dc=elsewhere",
            "",
        ),
    ] {
        let response = send(
            method,
            path,
            ("authorization", bearer(&token("root", "admin"))),
            body,
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 501, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = response.json().await.unwrap();
        assert!(problem["feature"].is_string(), "{path}: {problem}");
    }
    let binary = client()
        .put(gw.at("/v1/kv/app/blob"))
        .header("authorization", bearer(&token("root", "admin")))
        .body(vec![0xff_u8, 0xfe])
        .send()
        .await
        .unwrap();
    assert_eq!(binary.status(), 501);

    // No token: 401; X-Consul-Token is read on /v1 only.
    let anonymous = client()
        .get(gw.at("/v1/catalog/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let native = send(
        reqwest::Method::GET,
        "/api/v1/registry/services",
        ("x-consul-token", reader),
        "",
    )
    .await
    .unwrap();
    assert_eq!(native.status(), 401);

    assert_eq!(data(&stack.prefix), before, "nothing changed in Redis");
}
