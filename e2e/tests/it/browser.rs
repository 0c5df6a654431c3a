//! A headless Chromium for the console test, driven over the DevTools
//! protocol (`--remote-debugging-port`) with a minimal WebSocket client
//! written here (no new dependency): navigate, type into the page's own
//! fields, click its own buttons, and wait (bounded) for what a user would
//! see. Needs `chromium` on PATH (or `CHROMIUM`).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use mcp_testkit::prefix;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    time::timeout,
};

/// Longest any one browser step may take.
const STEP: Duration = Duration::from_secs(20);

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
pub struct Browser {
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
    pub async fn launch() -> Browser {
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
    pub async fn eval(&mut self, expression: &str) -> Value {
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
    pub async fn wait_for(&mut self, what: &str, condition: &str) -> Value {
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

    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }

    /// Go to a console route in the same document (no reload).
    pub async fn route(&mut self, route: &str) {
        self.eval(&format!("location.hash = '#/{route}'")).await;
        self.wait_for(
            &format!("view {route}"),
            &format!("document.getElementById('main').dataset.view === {route:?}"),
        )
        .await;
    }

    /// Click the element `selector` (through its own `click()`).
    pub async fn click(&mut self, selector: &str) {
        let clicked = self
            .eval(&format!(
                "(() => {{ const el = document.querySelector({selector:?}); \
                  if (!el || el.disabled) return false; el.click(); return true; }})()"
            ))
            .await;
        assert_eq!(clicked, true, "no enabled {selector} to click");
    }

    /// Type `text` into the field `selector` as a user would (input event).
    pub async fn type_into(&mut self, selector: &str, text: &str) {
        let text = serde_json::to_string(text).unwrap();
        self.eval(&format!(
            "(() => {{ const el = document.querySelector({selector:?}); el.focus(); \
              el.value = {text}; el.dispatchEvent(new Event('input', {{bubbles: true}})); }})()"
        ))
        .await;
    }

    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    pub async fn color_scheme(&mut self, scheme: &str) {
        self.call(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }

    /// A PNG of the viewport at `path`; its size in bytes.
    pub async fn screenshot(&mut self, path: &Path) -> usize {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64_decode(shot["data"].as_str().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &png).unwrap();
        png.len()
    }

    /// Nothing went wrong in the page: no CSP violation, no uncaught error.
    pub async fn assert_no_problems(&mut self) {
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
