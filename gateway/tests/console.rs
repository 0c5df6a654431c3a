//! The web console (`/ui`) in a real headless Chromium against the real
//! stack: registry-svc, config-svc and health-svc in-process behind a real
//! gateway, two echo upstreams on port 0 with HTTP checks.
//!
//! Chromium is driven over the DevTools protocol (`--remote-debugging-port`)
//! with a minimal WebSocket client written here (no new dependency): the
//! test navigates, types into the page's own fields and clicks its own
//! buttons, and waits (bounded) for what a user would see. Between steps it
//! changes the stack (stops an echo instance), and the page must follow
//! without a reload.
//!
//! Screenshots of each page land in `target/console/`; with
//! `UPDATE_README_SCREENSHOTS=1` the two the README shows are also written
//! to `docs/console-*.png`. Needs `chromium` on PATH (or `CHROMIUM`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use clap::Parser;
use common::{bearer, client, echo, gateway, token};
use mcp_testkit::{TestService, eventually, prefix, redis};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    time::timeout,
};

/// Longest any one browser step may take.
const STEP: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------ the stack

/// The control plane and a gateway in front of it, under one prefix.
struct Stack {
    _registry: TestService,
    _config: TestService,
    _health: TestService,
    gateway: TestService,
}

fn args(name: &str, prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        name.to_owned(),
        "--addr".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    args.extend(mcp_testkit::common_args(&redis().url(), prefix));
    if name != "config-svc" {
        args.extend(mcp_testkit::egress_args());
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

async fn stack() -> Stack {
    let prefix = prefix();
    let settings =
        registry_svc::Settings::try_parse_from(args("registry-svc", &prefix, &[])).unwrap();
    let registry = mcp_testkit::spawn(move |l, s| registry_svc::run(settings, l, s)).await;
    let settings = config_svc::Settings::try_parse_from(args("config-svc", &prefix, &[])).unwrap();
    let config = mcp_testkit::spawn(move |l, s| config_svc::run(settings, l, s)).await;
    let settings = health_svc::Settings::try_parse_from(args("health-svc", &prefix, &[])).unwrap();
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
    for service in [&registry, &config, &health] {
        let ready = eventually(Duration::from_secs(5), || async {
            reqwest::get(service.at("/readyz"))
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ready, "{} did not come up", service.url);
    }
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

// ------------------------------------------------------------------ a WebSocket client (RFC 6455, client side, text frames)

/// One WebSocket connection to Chromium's DevTools endpoint.
struct Socket {
    stream: BufReader<TcpStream>,
}

impl Socket {
    /// Open `ws://host:port/path` (loopback only).
    async fn connect(url: &str) -> Socket {
        let rest = url.strip_prefix("ws://").expect("a ws:// URL");
        let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
        assert!(authority.starts_with("127.0.0.1:"), "{authority}");
        let tcp = TcpStream::connect(authority).await.unwrap();
        let mut stream = BufReader::new(tcp);
        // The key is any 16 bytes in base64; the answer's accept hash is not
        // checked (the peer is the browser this test started).
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let mut status = String::new();
        stream.read_line(&mut status).await.unwrap();
        assert!(status.contains(" 101 "), "handshake refused: {status}");
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Socket { stream }
    }

    /// Send one text frame (masked, as a client must).
    async fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x5a, 0x17, 0xc3, 0x9e];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.get_mut().write_all(&frame).await.unwrap();
    }

    /// Receive one text message (reassembling fragments; pings are answered).
    async fn receive(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).await.unwrap();
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let len = match head[1] & 0x7f {
                126 => {
                    let mut n = [0u8; 2];
                    self.stream.read_exact(&mut n).await.unwrap();
                    u64::from(u16::from_be_bytes(n))
                }
                127 => {
                    let mut n = [0u8; 8];
                    self.stream.read_exact(&mut n).await.unwrap();
                    u64::from_be_bytes(n)
                }
                n => u64::from(n),
            };
            assert!(head[1] & 0x80 == 0, "a server frame is never masked");
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            self.stream.read_exact(&mut payload).await.unwrap();
            match opcode {
                0x8 => panic!("the browser closed the DevTools connection"),
                0x9 => {
                    // Ping: answer with a pong carrying the same bytes (masked).
                    let mut pong = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(&payload);
                    self.stream.get_mut().write_all(&pong).await.unwrap();
                }
                0xa => {}
                _ => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).unwrap();
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------ Chromium over the DevTools protocol

/// A headless Chromium (killed on drop) and a DevTools session on its page.
struct Browser {
    _child: Child,
    _profile: TempDir,
    socket: Socket,
    next_id: AtomicU64,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    async fn launch() -> Browser {
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let profile = TempDir(std::env::temp_dir().join(format!("mcp-console-{}", prefix())));
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // No name leaves the browser: every lookup but loopback
                // fails inside Chromium (CI also runs this test in a
                // loopback-only network namespace).
                "--no-proxy-server",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                "--disable-default-apps",
                "--disable-domain-reliability",
                "--no-pings",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `{binary}` ({e}): install chromium (CI does) or set CHROMIUM")
            });
        // Chromium prints `DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…`.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let endpoint = timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(at) = line.find("ws://") {
                    return line[at..].trim().to_owned();
                }
            }
            panic!("chromium exited before listening");
        })
        .await
        .expect("chromium did not open its DevTools port within 30 s");
        // Keep draining stderr so the browser never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = endpoint["ws://127.0.0.1:".len()..]
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let targets: Value = timeout(
            STEP,
            reqwest::get(format!("http://127.0.0.1:{port}/json/list")),
        )
        .await
        .unwrap()
        .unwrap()
        .json()
        .await
        .unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let socket = Socket::connect(page["webSocketDebuggerUrl"].as_str().unwrap()).await;
        let mut browser = Browser {
            _child: child,
            _profile: profile,
            socket,
            next_id: AtomicU64::new(1),
        };
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        // Record CSP violations and uncaught errors from the first script on.
        browser
            .call(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({"source": "window.__problems = []; \
                    document.addEventListener('securitypolicyviolation', e => \
                      window.__problems.push('CSP ' + e.violatedDirective + ' ' + e.blockedURI)); \
                    window.addEventListener('error', e => window.__problems.push('error ' + e.message)); \
                    window.addEventListener('unhandledrejection', e => \
                      window.__problems.push('rejection ' + (e.reason && e.reason.message)));"}),
            )
            .await;
        browser.viewport(1280, 800, false).await;
        browser
    }

    /// One DevTools command; its `result` (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        let socket = &mut self.socket;
        timeout(STEP + Duration::from_secs(5), async {
            socket.send(&message).await;
            loop {
                let answer: Value = serde_json::from_str(&socket.receive().await).unwrap();
                if answer["id"] == id {
                    if let Some(error) = answer.get("error") {
                        panic!("{method}: {error}");
                    }
                    return answer["result"].clone();
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method} got no answer in time"))
    }

    /// Evaluate `expression` in the page (promises awaited); its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}\nthrew {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Wait (bounded) until `condition`, a JS expression, is truthy in the
    /// page; its value. On a timeout the panic shows the page's text.
    async fn wait_for(&mut self, what: &str, condition: &str) -> Value {
        let script = format!(
            "(async () => {{ const until = Date.now() + {ms}; for (;;) {{ \
               try {{ const v = ({condition}); if (v) return v; }} catch (e) {{}} \
               if (Date.now() > until) return null; \
               await new Promise(r => setTimeout(r, 40)); }} }})()",
            ms = STEP.as_millis()
        );
        let value = self.eval(&script).await;
        if value.is_null() || value == false {
            let text = self.eval("document.getElementById('main').innerText").await;
            panic!("waited {STEP:?} for {what} ({condition}); the page shows:\n{text}");
        }
        value
    }

    async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }

    /// Go to a console route in the same document (no reload).
    async fn route(&mut self, route: &str) {
        self.eval(&format!("location.hash = '#/{route}'")).await;
        self.wait_for(
            &format!("view {route}"),
            &format!("document.getElementById('main').dataset.view === {route:?}"),
        )
        .await;
    }

    /// Click the element `selector` (through its own `click()`).
    async fn click(&mut self, selector: &str) {
        let clicked = self
            .eval(&format!(
                "(() => {{ const el = document.querySelector({selector:?}); \
                  if (!el || el.disabled) return false; el.click(); return true; }})()"
            ))
            .await;
        assert_eq!(clicked, true, "no enabled {selector} to click");
    }

    /// Type `text` into the field `selector` as a user would (input event).
    async fn type_into(&mut self, selector: &str, text: &str) {
        let text = serde_json::to_string(text).unwrap();
        self.eval(&format!(
            "(() => {{ const el = document.querySelector({selector:?}); el.focus(); \
              el.value = {text}; el.dispatchEvent(new Event('input', {{bubbles: true}})); }})()"
        ))
        .await;
    }

    async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    async fn color_scheme(&mut self, scheme: &str) {
        self.call(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }

    /// A PNG of the viewport at `path`; its size in bytes.
    async fn screenshot(&mut self, path: &Path) -> usize {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64_decode(shot["data"].as_str().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &png).unwrap();
        png.len()
    }

    /// Nothing went wrong in the page: no CSP violation, no uncaught error.
    async fn assert_no_problems(&mut self) {
        let problems = self.eval("window.__problems || []").await;
        assert_eq!(problems, json!([]), "the page reported problems");
    }
}

/// Standard base64 (Chromium's screenshots).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let [_, a, b, c] = n.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..chunk.len() - 1]);
    }
    out
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
