//! The web console (`/ui`) in a real headless Chromium against the real
//! stack: registry-svc, config-svc and health-svc in-process behind a real
//! gateway, two echo upstreams on port 0 with HTTP checks.
//!
//! Chromium is driven over the DevTools protocol (see `browser`): the test
//! navigates, types into the page's own fields and clicks its own buttons,
//! and waits (bounded) for what a user would see. Between steps it changes
//! the stack (stops an echo instance), and the page must follow without a
//! reload.
//!
//! Screenshots of each page land in `target/console/`; with
//! `UPDATE_README_SCREENSHOTS=1` the two the README shows are also written
//! to `docs/console-*.png`. Needs `chromium` on PATH (or `CHROMIUM`).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Parser;
use mcp_testkit::{TestService, prefix, redis};
use serde_json::{Value, json};
use tokio::time::timeout;

use crate::{
    browser::Browser,
    common::{assert_ready, bearer, client, echo, gateway, service_args, token},
};

// ------------------------------------------------------------------ the stack

/// The control plane and a gateway in front of it, under one prefix.
struct Stack {
    _registry: TestService,
    _config: TestService,
    _health: TestService,
    gateway: TestService,
}

async fn stack() -> Stack {
    let prefix = prefix();
    let settings =
        registry_svc::Settings::try_parse_from(service_args("registry-svc", &prefix)).unwrap();
    let registry = mcp_testkit::spawn(move |l, s| registry_svc::run(settings, l, s)).await;
    let settings =
        config_svc::Settings::try_parse_from(service_args("config-svc", &prefix)).unwrap();
    let config = mcp_testkit::spawn(move |l, s| config_svc::run(settings, l, s)).await;
    let settings =
        health_svc::Settings::try_parse_from(service_args("health-svc", &prefix)).unwrap();
    let health = mcp_testkit::spawn(move |l, s| health_svc::run(settings, l, s)).await;
    let gateway = gateway(
        &redis().url(),
        &prefix,
        &[
            "--registry-url",
            &registry.url,
            "--config-url",
            &config.url,
            "--health-url",
            &health.url,
            "--rate-limit-rps",
            "10000",
            "--rate-limit-burst",
            "10000",
        ],
    )
    .await;
    assert_ready([&registry, &config, &health]).await;
    Stack {
        _registry: registry,
        _config: config,
        _health: health,
        gateway,
    }
}

impl Stack {
    /// `method` on the gateway's `path` with an admin token; status and JSON.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client()
            .request(method, self.gateway.at(path))
            .header("authorization", bearer(&token("arranger", "admin")));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// `target/console/` of the workspace.
fn shots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console")
}

/// Keep a README picture: always under `target/console/`, and in `docs/`
/// when `UPDATE_README_SCREENSHOTS=1` (so a test run leaves the tree clean).
fn readme_picture(name: &str, size: usize) {
    assert!(
        size < 150_000,
        "{name} is {size} bytes; keep README pictures small"
    );
    if std::env::var("UPDATE_README_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(shots().join(name), docs.join(name)).unwrap();
    }
}

// ------------------------------------------------------------------ the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_fleet_live_and_changes_config_safely_in_a_real_browser() {
    timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the console scenario took longer than 4 minutes");
}

async fn scenario() {
    let stack = stack().await;
    let g = &stack.gateway;

    // Two echo instances with HTTP checks every second.
    let echo_1 = echo("echo-1").await;
    let echo_2 = echo("echo-2").await;
    for (id, upstream, zone) in [("echo-1", &echo_1, "a"), ("echo-2", &echo_2, "b")] {
        let (status, _) = stack
            .call(
                "PUT",
                &format!("/api/v1/registry/services/echo/instances/{id}"),
                Some(json!({"host": "127.0.0.1", "port": upstream.addr.port(),
                    "tags": ["v2"], "metadata": {"zone": zone}, "ttl_seconds": 300,
                    "check": {"type": "http", "path": "/health", "interval_seconds": 1,
                              "timeout_ms": 500}})),
            )
            .await;
        assert_eq!(status, 201);
    }
    // A namespace with a schema and a key at version 1.
    let (status, _) = stack
        .call(
            "PUT",
            "/api/v1/config/namespaces/shop/schema",
            Some(json!({"type": "object", "required": ["port"],
                "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535},
                               "host": {"type": "string"}}})),
        )
        .await;
    assert_eq!(status, 201, "schema");
    let (status, _) = stack
        .call(
            "PUT",
            "/api/v1/config/namespaces/shop/keys/db",
            Some(
                json!({"value": {"host": "db.shop.internal", "port": 5432, "pool": 10},
                        "message": "first"}),
            ),
        )
        .await;
    assert_eq!(status, 201);

    // The assets: small, strict headers, nothing from elsewhere.
    let mut weight = 0;
    for name in gateway::ui::asset_names() {
        let response = reqwest::get(g.at(&format!("/ui/{name}"))).await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        weight += response.bytes().await.unwrap().len();
    }
    assert!(weight < 200_000, "the console weighs {weight} bytes");

    let mut browser = Browser::launch().await;
    let out = shots();

    // --- Sign in: paste a token into the form.
    browser.navigate(&g.at("/ui/")).await;
    browser
        .wait_for(
            "the sign-in form",
            "document.querySelector('form.signin textarea')",
        )
        .await;
    browser.screenshot(&out.join("signin.png")).await;
    let admin = token("alice", "admin");
    browser.type_into("#token", &admin).await;
    browser.click("form.signin button[type=submit]").await;
    browser
        .wait_for(
            "the echo service with 2 passing instances",
            "(() => { const row = document.querySelector('tr[data-service=echo]'); \
              return row && row.innerText.includes('2') && /✓\\s*2/.test(row.innerText); })()",
        )
        .await;
    // The token is in sessionStorage, never in the address.
    let (href, stored) = (
        browser.eval("location.href").await,
        browser
            .eval("sessionStorage.getItem('mcp.console.token')")
            .await,
    );
    assert!(!href.as_str().unwrap().contains(&admin), "{href}");
    assert_eq!(stored, admin.as_str());
    browser
        .wait_for(
            "the live indicator",
            "document.getElementById('live').dataset.state === 'live'",
        )
        .await;
    browser.screenshot(&out.join("services.png")).await;

    // --- One service: both instances, then one stops and turns critical live.
    browser.route("service/echo").await;
    browser
        .wait_for(
            "two passing instances with address, metadata, lease and output",
            "document.querySelectorAll('article.instance[data-status=passing]').length === 2 && \
             document.querySelector('[data-instance=echo-1]').innerText.includes('zone=a') && \
             /\\d+ m \\d+ s/.test(document.querySelector('[data-instance=echo-1] .lease').innerText) && \
             document.querySelector('[data-instance=echo-1] .output').innerText.includes('200')",
        )
        .await;
    browser.screenshot(&out.join("service.png")).await;
    browser.eval("window.__sameDocument = true").await;
    let renders: u64 = browser
        .eval("Number(document.getElementById('main').dataset.renders)")
        .await
        .as_u64()
        .unwrap();
    echo_2.stop().await.unwrap();
    let why = browser
        .wait_for(
            "echo-2 critical, with the explanation",
            "(() => { const card = document.querySelector('[data-instance=echo-2][data-status=critical]'); \
              const why = card && card.querySelector('.why'); return why && why.innerText; })()",
        )
        .await;
    assert!(why.as_str().unwrap().contains("critical"), "{why}");
    assert_eq!(
        browser.eval("window.__sameDocument === true").await,
        true,
        "the page reloaded"
    );
    let later: u64 = browser
        .eval("Number(document.getElementById('main').dataset.renders)")
        .await
        .as_u64()
        .unwrap();
    assert!(later > renders, "the view was not re-rendered live");
    browser
        .wait_for(
            "a health event in the activity feed",
            "document.getElementById('feed').innerText.includes('health')",
        )
        .await;
    let size = browser.screenshot(&out.join("console-service.png")).await;
    readme_picture("console-service.png", size);

    // --- Config: a schema violation is refused with the validator's message.
    browser.route("config/shop/db").await;
    browser
        .wait_for("the editor", "document.querySelector('#editor')")
        .await;
    browser
        .type_into("#editor", r#"{"host": "db.shop.internal", "port": "5433"}"#)
        .await;
    browser.click("#dry-run").await;
    let refusal = browser
        .wait_for(
            "the schema refusal",
            "document.querySelector('#editor-status.alert') && \
             document.querySelector('#editor-status').innerText",
        )
        .await;
    let refusal = refusal.as_str().unwrap();
    assert!(refusal.contains("/value/port"), "{refusal}");
    assert!(refusal.contains("schema"), "{refusal}");
    assert_eq!(
        browser
            .eval("document.querySelector('#save').disabled")
            .await,
        true
    );
    let (_, entry) = stack
        .call("GET", "/api/v1/config/namespaces/shop/keys/db", None)
        .await;
    assert_eq!(entry["version"], 1, "the refused value was written");
    let size = browser.screenshot(&out.join("console-config.png")).await;
    readme_picture("console-config.png", size);

    // A valid value: dry run, then save with If-Match; the page shows version 2.
    browser
        .type_into(
            "#editor",
            r#"{"host": "db.shop.internal", "port": 6432, "pool": 20}"#,
        )
        .await;
    browser.type_into("#message", "through pgbouncer").await;
    browser.click("#dry-run").await;
    browser
        .wait_for(
            "the dry run's verdict",
            "document.querySelector('#editor-status.ok') && \
             document.querySelector('#editor-status').innerText.includes('version 2')",
        )
        .await;
    let (_, entry) = stack
        .call("GET", "/api/v1/config/namespaces/shop/keys/db", None)
        .await;
    assert_eq!(entry["version"], 1, "a dry run wrote");
    browser.click("#save").await;
    browser
        .wait_for(
            "version 2 on the page",
            "document.querySelector('#current-title').innerText.includes('version 2') && \
             document.querySelector('#value').innerText.includes('6432')",
        )
        .await;
    let (_, entry) = stack
        .call("GET", "/api/v1/config/namespaces/shop/keys/db", None)
        .await;
    assert_eq!(entry["version"], 2);
    assert_eq!(entry["value"]["port"], 6432);
    assert_eq!(entry["updated_by"], "alice");

    // --- Diff: versions 1 and 2 side by side.
    browser
        .eval("document.querySelector('#diff-left').value = '1'")
        .await;
    browser
        .eval("document.querySelector('#diff-right').value = '2'")
        .await;
    browser.click("#diff-show").await;
    let changed = browser
        .wait_for(
            "the diff of versions 1 and 2",
            "(() => { const rows = [...document.querySelectorAll('#diff tr.d-change')]; \
              return rows.length && rows.map(r => r.innerText).join('\\n'); })()",
        )
        .await;
    let changed = changed.as_str().unwrap();
    assert!(
        changed.contains("5432") && changed.contains("6432"),
        "{changed}"
    );
    assert!(
        changed.contains("10") && changed.contains("20"),
        "{changed}"
    );
    browser
        .eval("document.querySelector('#diff').scrollIntoView({block: 'end'})")
        .await;
    browser.screenshot(&out.join("config-diff.png")).await;
    browser.color_scheme("dark").await;
    browser.screenshot(&out.join("config-diff-dark.png")).await;
    browser.color_scheme("light").await;

    // --- Rollback to version 1, with confirmation in place, while the
    // editor holds a change of its own (based on version 2).
    browser
        .type_into("#editor", r#"{"host": "db.shop.internal", "port": 7000}"#)
        .await;
    browser.click("tr[data-version='1'] .confirm button").await;
    browser
        .wait_for(
            "the confirmation",
            "document.querySelector('tr[data-version=\"1\"] .confirm').innerText.includes('version 3')",
        )
        .await;
    browser
        .click("tr[data-version='1'] .confirm button.yes")
        .await;
    browser
        .wait_for(
            "version 3 with version 1's value",
            "document.querySelector('#current-title').innerText.includes('version 3') && \
             document.querySelector('#value').innerText.includes('5432')",
        )
        .await;
    let (_, entry) = stack
        .call("GET", "/api/v1/config/namespaces/shop/keys/db", None)
        .await;
    assert_eq!(entry["version"], 3);
    assert_eq!(entry["value"]["port"], 5432);

    // --- A stale editor (based on version 2) is told why its save is refused (412).
    browser
        .wait_for(
            "the stale-editor notice",
            "document.querySelector('.editor .stale').innerText.includes('412')",
        )
        .await;
    browser.click("#dry-run").await;
    let stale = browser
        .wait_for(
            "the 412 explanation",
            "document.querySelector('#editor-status.alert') && \
             document.querySelector('#editor-status').innerText",
        )
        .await;
    assert!(
        stale.as_str().unwrap().contains("saved this key since"),
        "{stale}"
    );
    browser.screenshot(&out.join("config-412.png")).await;

    // --- Gateway: upstreams and circuits.
    browser.route("gateway").await;
    browser
        .wait_for(
            "the echo upstream with its circuits",
            "(() => { const s = document.querySelector('[data-upstream=echo]'); \
              return s && s.innerText.includes('closed'); })()",
        )
        .await;
    browser.screenshot(&out.join("gateway.png")).await;

    // --- A phone's width: one column, nothing wider than the screen.
    browser.viewport(390, 844, true).await;
    browser.route("service/echo").await;
    browser
        .wait_for(
            "the instances",
            "document.querySelector('[data-instance=echo-1]')",
        )
        .await;
    let overflow = browser
        .eval("document.documentElement.scrollWidth - window.innerWidth")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "wider than a phone by {overflow}"
    );
    browser.screenshot(&out.join("phone.png")).await;
    browser.viewport(1280, 800, false).await;
    browser.assert_no_problems().await;

    // --- A read-only token, signed in by a link (token in the fragment):
    // no write control anywhere, and a 403 names the missing scope.
    browser.navigate("about:blank").await;
    let reader = token("bob", "registry:read health:read config:read");
    browser
        .navigate(&g.at(&format!("/ui/#token={reader}&view=config/shop/db")))
        .await;
    browser
        .wait_for(
            "the key, read-only",
            "document.getElementById('main').dataset.view === 'config/shop/db' && \
             document.querySelector('#value')",
        )
        .await;
    let first_render = browser
        .eval("Number(document.documentElement.dataset.firstRender)")
        .await;
    assert!(
        first_render.as_f64().unwrap() < 1000.0,
        "first render after {first_render} ms"
    );
    let href = browser.eval("location.href").await;
    assert!(!href.as_str().unwrap().contains("token="), "{href}");
    let writes =
        "document.querySelectorAll('#editor, #save, #dry-run, .confirm button, #new-key').length";
    assert_eq!(
        browser.eval(writes).await,
        0,
        "write controls on the key page"
    );
    browser.screenshot(&out.join("readonly-config.png")).await;
    browser.route("config/shop").await;
    assert_eq!(
        browser.eval(writes).await,
        0,
        "write controls on the namespace page"
    );
    browser.route("service/echo").await;
    browser
        .wait_for(
            "the instances",
            "document.querySelector('[data-instance=echo-1]')",
        )
        .await;
    assert_eq!(
        browser.eval(writes).await,
        0,
        "write controls on the service page"
    );
    browser.route("gateway").await;
    let forbidden = browser
        .wait_for(
            "the 403 explanation",
            "document.querySelector('main .alert') && document.querySelector('main .alert').innerText",
        )
        .await;
    assert!(
        forbidden.as_str().unwrap().contains("“admin”"),
        "{forbidden}"
    );
    browser.screenshot(&out.join("readonly-gateway.png")).await;

    // Only the gateway's own files and API were fetched, the token in none of their URLs.
    let urls = browser
        .eval("performance.getEntriesByType('resource').map(e => e.name)")
        .await;
    for url in urls.as_array().unwrap() {
        let url = url.as_str().unwrap();
        assert!(url.starts_with(&g.url), "fetched {url}");
        assert!(
            !url.contains(&reader) && !url.contains(&admin),
            "token in {url}"
        );
    }
    browser.assert_no_problems().await;
    drop(echo_1);
}
