//! `mcp-testkit`: the real parts tests run against.
//!
//! - [`RedisServer`]: a real `redis-server` on a free loopback port in a
//!   temporary directory, with AOF (`appendfsync always`) so a stop/restart
//!   keeps every acknowledged write, as production does. [`redis`] gives the
//!   one shared by a test binary; fault tests start their own.
//! - [`prefix`]: a unique `MCP_REDIS_PREFIX` per test.
//! - [`spawn`]: run a service's `run(settings, listener, shutdown)` in-process
//!   on `127.0.0.1:0` and get its base URL.
//! - [`mint_token`] / [`token`]: real HS256 JWTs for the gateway.
//! - [`INTERNAL_SECRET`], [`internal_token`], [`client`]: the gateway's
//!   internal credential, for tests that call a control-plane service
//!   directly ([`common_args`] gives every process the same secret).
//! - [`gateway`]: a gateway in-process, upstreams behind it and a caller's
//!   token in front of it, for the gateway's tests and the whole-stack ones.
//! - [`openapi`]: the checks that a service's OpenAPI document lists exactly
//!   the operations it answers.
//!
//! Test code: panicking on a broken environment is the right failure here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod gateway;
pub mod openapi;
pub mod registry;

use std::{
    future::Future,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener as StdListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A real redis-server for tests; killed when dropped or when the test process exits.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl RedisServer {
    /// Start a redis-server on a free port. Panics with install advice when
    /// `redis-server` is not on PATH.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let port = free_port();
        let server = Self {
            port,
            dir,
            child: Mutex::new(None),
        };
        server.launch();
        server
    }

    fn launch(&self) {
        // redis-server runs under a tiny shell watchdog that kills it with
        // SIGKILL as soon as our end of its stdin closes: on `stop()`, on drop,
        // and when the test process dies, so no server outlives its tests.
        let script = r#"redis-server "$@" & r=$!; cat >/dev/null; kill -9 $r 2>/dev/null; wait $r 2>/dev/null; exit 0"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(redis_args(self.port, self.dir.path()))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh for redis-server");
        *self.child.lock().unwrap() = Some(child);
        if !wait_for_pong(self.port, Duration::from_secs(10)) {
            let log =
                std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
            panic!(
                "redis-server did not answer on port {} (is it installed? `apt-get install redis-server`)\n{log}",
                self.port
            );
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kill the server (SIGKILL), keeping its data directory.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
        // The port is free once nothing answers on it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start again on the same port with the same data.
    pub fn restart(&self) {
        self.stop();
        self.launch();
    }

    /// Run a raw command through `redis-cli`-free RESP, for assertions on
    /// what is (not) in Redis. Returns the raw reply text.
    pub fn command(&self, args: &[&str]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{}\r\n", arg.len(), arg));
        }
        stream
            .write_all(request.as_bytes())
            .expect("write to redis");
        read_reply(&mut BufReader::new(stream))
    }

    /// Every key under `prefix`, sorted (for "nothing was written" assertions).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let reply = self.command(&["KEYS", &format!("{prefix}:*")]);
        let mut keys: Vec<String> = reply
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect();
        keys.sort();
        keys
    }

    /// A snapshot of everything under `prefix`: each key with a dump of its
    /// value, to compare before and after a request that must change nothing.
    pub fn snapshot(&self, prefix: &str) -> Vec<(String, String)> {
        self.keys(prefix)
            .into_iter()
            .map(|key| {
                let dump = self.command(&["DUMP", &key]);
                (key, dump)
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.child.lock()
            && let Some(mut child) = guard.take()
        {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

fn redis_args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.to_string_lossy(),
        "--logfile",
        "redis.log",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Read one RESP reply, flattened to text lines (arrays become one line per element).
fn read_reply(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("redis reply");
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" | "-" | ":" => rest.to_owned(),
        "$" => {
            let len: i64 = rest.parse().unwrap_or(-1);
            if len < 0 {
                return String::new();
            }
            let mut buf = vec![0; len as usize + 2];
            reader.read_exact(&mut buf).expect("bulk reply");
            buf.truncate(len as usize);
            // Binary (DUMP) replies are shown escaped, which is enough to compare.
            buf.escape_ascii().to_string()
        }
        "*" => {
            let n: i64 = rest.parse().unwrap_or(-1);
            (0..n.max(0))
                .map(|_| read_reply(reader))
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => line.to_owned(),
    }
}

fn wait_for_pong(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .ok();
            let mut buf = [0u8; 7];
            if stream.write_all(b"PING\r\n").is_ok()
                && stream.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The redis-server shared by every test in this test binary.
pub fn redis() -> &'static RedisServer {
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        guard_environment();
        RedisServer::start()
    })
}

/// Settings read from the environment (clap `env`) that name a place to
/// connect to. A test parses settings with `try_parse_from`, which still
/// fills unset flags from the environment: one of these exported in the
/// shell (after `mcpctl up`, say) would send a test's traffic there.
const ADDRESS_SETTINGS: &[&str] = &[
    "REDIS_URL",
    "REGISTRY_URL",
    "CONFIG_URL",
    "HEALTH_URL",
    "JWT_JWKS_URL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "MCP_GATEWAY_URL",
    "ECHO_HOST",
    "EGRESS_ALLOW_CIDRS",
];

/// Refuse to run tests while the environment points any address setting
/// outside loopback: tests must never connect outside 127.0.0.0/8.
pub fn guard_environment() {
    for name in ADDRESS_SETTINGS {
        let Ok(value) = std::env::var(name) else {
            continue;
        };
        for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            assert!(
                is_loopback_target(item),
                "{name}={value} points outside loopback; tests only ever connect to 127.0.0.0/8: unset {name} before running them"
            );
        }
    }
}

/// `http://127.0.0.1:8080/x`, `redis://:pw@localhost:1`, `[::1]:9`, `127.0.0.0/8`, `localhost`.
fn is_loopback_target(item: &str) -> bool {
    let loopback = |host: &str| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    // A CIDR (`EGRESS_ALLOW_CIDRS`) must lie inside the loopback range.
    if !item.contains("://")
        && let Ok(net) = mcp_shared::egress::parse_cidr(item)
    {
        return loopback(&net.network().to_string()) && loopback(&net.broadcast().to_string());
    }
    match mcp_shared::egress::endpoint_of(item) {
        Some((host, _)) => loopback(host),
        // A bare host (`ECHO_HOST`) has no port.
        None => loopback(item.trim_start_matches('[').trim_end_matches(']')),
    }
}

/// The egress flags of every test stack (gateway, registry-svc,
/// health-svc): only loopback, and no DNS lookup of registered names. The
/// lasting guard that no test makes a probe or the proxy leave 127.0.0.0/8.
pub fn egress_args() -> Vec<String> {
    mcp_shared::egress::EgressSettings::LOOPBACK_ONLY
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// A key prefix no other test uses.
pub fn prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The common flags for a service or gateway under test: its Redis, its
/// prefix, quiet logs, and the shared [`INTERNAL_SECRET`].
pub fn common_args(redis_url: &str, prefix: &str) -> Vec<String> {
    vec![
        "--internal-secret".into(),
        INTERNAL_SECRET.into(),
        "--redis-url".into(),
        redis_url.into(),
        "--redis-prefix".into(),
        prefix.into(),
        "--log-format".into(),
        "pretty".into(),
        "--log-filter".into(),
        "warn".into(),
    ]
}

/// A service running in-process on `127.0.0.1:0`.
pub struct TestService {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestService {
    /// `{url}{path}`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Whether `GET {path}` answers 200 within `within` (polled as
    /// [`eventually`] does): for waiting until a service is live or ready.
    pub async fn answers_ok_within(&self, path: &str, within: Duration) -> bool {
        eventually(within, || async {
            reqwest::get(self.at(path))
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await
    }

    /// The token that shuts this service down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Shut down and wait for `run` to return.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(handle) => handle
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        }
    }

    /// Abort the service's task at once (a crash, not a graceful stop).
    pub fn kill(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
        self.shutdown.cancel();
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Start a service on `127.0.0.1:0`: `run` gets the listener and the shutdown token.
pub async fn spawn<F, Fut>(run: F) -> TestService
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run(listener, shutdown.clone()));
    TestService {
        url: format!("http://{addr}"),
        addr,
        shutdown,
        handle: Some(handle),
    }
}

/// The HS256 secret tests use.
pub const JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256";

/// Sign `claims` with HS256 and `secret`.
pub fn mint_token(secret: &str, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign token")
}

/// A valid token for `sub` with `scopes` (space-separated), one hour long.
pub fn token(secret: &str, sub: &str, scopes: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    mint_token(
        secret,
        &serde_json::json!({"sub": sub, "scope": scopes, "iat": now, "exp": now + 3600}),
    )
}

/// The `MCP_INTERNAL_SECRET` every process under test shares ([`common_args`]).
pub const INTERNAL_SECRET: &str = "test-internal-secret-shared-by-gateway-and-services";

/// An internal credential (the JWT the gateway mints per forwarded request)
/// for `sub` with `scopes`, signed with [`INTERNAL_SECRET`] and valid for an
/// hour: what a test puts in `Authorization: Bearer …` to call a
/// control-plane service directly.
pub fn internal_token(sub: &str, scopes: &str) -> String {
    mcp_shared::internal::InternalKey::new(INTERNAL_SECRET.as_bytes())
        .expect("internal key")
        .token(Some(sub), scopes, Duration::from_secs(3600))
        .expect("mint internal token")
}

/// The layer a service guards its operations with, verifying
/// [`INTERNAL_SECRET`]: for building a service's router in a test.
pub fn internal_layer() -> mcp_shared::internal::RequireInternalLayer {
    mcp_shared::internal::RequireInternalLayer::new(std::sync::Arc::new(
        mcp_shared::internal::InternalKey::new(INTERNAL_SECRET.as_bytes()).expect("internal key"),
    ))
}

/// `Bearer <internal_token(sub, scopes)>`.
pub fn internal_bearer(sub: &str, scopes: &str) -> String {
    format!("Bearer {}", internal_token(sub, scopes))
}

/// A reqwest client builder whose requests carry an `admin` internal
/// credential (subject `test`) unless a request sets its own
/// `Authorization`: for tests that call a service directly.
pub fn client_builder() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        internal_bearer("test", "admin")
            .parse()
            .expect("header value"),
    );
    reqwest::Client::builder().default_headers(headers)
}

/// [`client_builder`] with a 20 s bound on every request, so a hang fails the test.
pub fn client() -> reqwest::Client {
    client_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

/// Poll `check` every 25 ms until it is true or `within` passes; returns the last result.
/// For waiting on eventual effects (an expiry, a reconnect) without fixed sleeps.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_target;

    #[test]
    fn only_loopback_targets_pass_the_guard() {
        for ok in [
            "http://127.0.0.1:8080/x",
            "redis://:pw@localhost:1",
            "[::1]:9",
            "127.0.0.0/8",
            "localhost",
            "http://[::1]:80",
        ] {
            assert!(is_loopback_target(ok), "{ok}");
        }
        for bad in [
            "http://10.0.0.7:8080",
            "redis://redis:6379",
            "echo.local",
            "0.0.0.0/0",
            "https://issuer.example/jwks",
        ] {
            assert!(!is_loopback_target(bad), "{bad}");
        }
    }
}
