//! The whole MCP stack in one process: what `mcpctl up` runs, and what the
//! end-to-end tests start.
//!
//! [`start`] finds a Redis (the given URL if one answers there, else a
//! `redis-server` from PATH on a free port with its data in `./.mcp/redis`),
//! binds the four listeners, runs registry-svc, config-svc, health-svc and
//! the gateway in-process with the gateway pointed at the other three, and
//! waits until all four are ready. [`Stack::stop`] shuts them down and the
//! redis-server it started, in that order.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use clap::Parser as _;
use rand::Rng as _;
use tokio::{net::TcpListener, process::Child, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// How long the stack may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the services get to drain on stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime of the admin development token `up` prints.
pub const ADMIN_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// What to start, and where.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Redis to use if one answers there.
    pub redis_url: String,
    /// When nothing answers at `redis_url`: start `redis-server` (else fail).
    pub start_redis: bool,
    /// Data directory of a started redis-server.
    pub redis_dir: PathBuf,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// Gateway listen address (port 0: any).
    pub gateway_addr: SocketAddr,
    /// registry-svc listen address.
    pub registry_addr: SocketAddr,
    /// config-svc listen address.
    pub config_addr: SocketAddr,
    /// health-svc listen address.
    pub health_addr: SocketAddr,
    /// HS256 secret of the gateway; generated when `None`.
    pub jwt_secret: Option<String>,
    /// `MCP_INTERNAL_SECRET` shared by the gateway and the services (at least
    /// 32 bytes); generated for this run when `None`.
    pub internal_secret: Option<String>,
    /// Extra flags for registry-svc (`--reap-interval 100ms`, …).
    pub registry_args: Vec<String>,
    /// Extra flags for config-svc.
    pub config_args: Vec<String>,
    /// Extra flags for health-svc.
    pub health_args: Vec<String>,
    /// Extra flags for the gateway.
    pub gateway_args: Vec<String>,
}

impl Default for StackOptions {
    /// The defaults of `mcpctl up`: the documented ports (README, "Settings"), on loopback.
    fn default() -> Self {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            start_redis: true,
            redis_dir: PathBuf::from(".mcp/redis"),
            redis_prefix: "mcp".to_owned(),
            gateway_addr: loopback(8080),
            registry_addr: loopback(8081),
            config_addr: loopback(8082),
            health_addr: loopback(8083),
            jwt_secret: None,
            internal_secret: None,
            registry_args: Vec::new(),
            config_args: Vec::new(),
            health_args: Vec::new(),
            gateway_args: Vec::new(),
        }
    }
}

impl StackOptions {
    /// Everything on `127.0.0.1:0`, for tests: the proxy and the probes
    /// confined to loopback, and no DNS lookup of a registered name.
    pub fn ephemeral(redis_url: &str, redis_prefix: &str) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let loopback_only: Vec<String> = mcp_shared::egress::EgressSettings::LOOPBACK_ONLY
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        Self {
            registry_args: loopback_only.clone(),
            health_args: loopback_only.clone(),
            gateway_args: loopback_only,
            redis_url: redis_url.to_owned(),
            start_redis: false,
            redis_prefix: redis_prefix.to_owned(),
            gateway_addr: any,
            registry_addr: any,
            config_addr: any,
            health_addr: any,
            ..Self::default()
        }
    }
}

/// A running stack.
#[derive(Debug)]
pub struct Stack {
    /// `http://127.0.0.1:PORT` of the gateway.
    pub gateway_url: String,
    /// registry-svc's own URL (behind the gateway).
    pub registry_url: String,
    /// config-svc's own URL.
    pub config_url: String,
    /// health-svc's own URL.
    pub health_url: String,
    /// The Redis in use.
    pub redis_url: String,
    /// Whether this stack started that Redis.
    pub redis_started: bool,
    /// The gateway's HS256 secret.
    pub jwt_secret: String,
    /// The internal secret the gateway signs control-plane requests with.
    pub internal_secret: String,
    shutdown: CancellationToken,
    services: Vec<(&'static str, JoinHandle<std::io::Result<()>>)>,
    redis: Option<RedisProcess>,
}

impl Stack {
    /// A development token with every scope.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        Ok(mcp_client::token::dev_token(
            &self.jwt_secret,
            "admin",
            "admin",
            ADMIN_TOKEN_LIFETIME,
        )?)
    }

    /// An internal credential (`admin`, valid for `lifetime`) for calling a
    /// control-plane service directly, without the gateway.
    pub fn internal_token(&self, lifetime: Duration) -> anyhow::Result<String> {
        let key = mcp_shared::internal::InternalKey::new(self.internal_secret.as_bytes())
            .map_err(|e| anyhow!(e))?;
        Ok(key.token(Some("admin"), "admin", lifetime)?)
    }

    /// Resolves when a service stops on its own (a crash, a fatal error),
    /// with a line saying which and why. Pending forever with no services.
    pub async fn failed(&mut self) -> String {
        if self.services.is_empty() {
            return std::future::pending().await;
        }
        let pending = self.services.iter_mut().map(|(_, handle)| handle);
        let (result, index, _) = futures_util::future::select_all(pending).await;
        // Finished: take it out so `stop` does not poll it again.
        let (name, _) = self.services.remove(index);
        match result {
            Ok(Ok(())) => format!("{name} stopped"),
            Ok(Err(e)) => format!("{name} failed: {e}"),
            Err(e) => format!("{name} failed: {e}"),
        }
    }

    /// Stop the services (gracefully, bounded), then the redis-server it started.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for (name, handle) in self.services {
            match tokio::time::timeout(STOP_TIMEOUT, handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(service = name, error = %e, "stopped with an error")
                }
                Ok(Err(e)) if e.is_cancelled() => {}
                Ok(Err(e)) => tracing::warn!(service = name, error = %e, "task failed"),
                Err(_) => tracing::warn!(service = name, "did not stop in time"),
            }
        }
        if let Some(redis) = self.redis {
            redis.stop().await;
        }
    }
}

/// Start the stack; see the module docs. `progress` is told what it waits for.
pub async fn start(options: StackOptions, progress: &dyn Fn(&str)) -> anyhow::Result<Stack> {
    let (redis_url, redis) = if redis_answers(&options.redis_url).await {
        (options.redis_url.clone(), None)
    } else if options.start_redis {
        progress(&format!(
            "no Redis at {}; starting redis-server (data in {})",
            mcp_shared::settings::redact_redis_url(&options.redis_url),
            options.redis_dir.display()
        ));
        let process = RedisProcess::start(&options.redis_dir).await?;
        (process.url.clone(), Some(process))
    } else {
        bail!(
            "no Redis answers at {}",
            mcp_shared::settings::redact_redis_url(&options.redis_url)
        );
    };

    let jwt_secret = options.jwt_secret.clone().unwrap_or_else(generate_secret);
    // A fresh secret per run: the services take requests from this gateway only.
    let internal_secret = options
        .internal_secret
        .clone()
        .unwrap_or_else(generate_secret);
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for {what} (is another `mcpctl up` running? pick another port with --{what}-addr)")
        })
    };
    let registry_listener = bind(options.registry_addr, "registry").await?;
    let config_listener = bind(options.config_addr, "config").await?;
    let health_listener = bind(options.health_addr, "health").await?;
    let gateway_listener = bind(options.gateway_addr, "gateway").await?;
    let url_of = |listener: &TcpListener| -> anyhow::Result<String> {
        let addr = listener.local_addr()?;
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            addr.ip().to_string()
        };
        Ok(format!("http://{host}:{}", addr.port()))
    };
    let registry_url = url_of(&registry_listener)?;
    let config_url = url_of(&config_listener)?;
    let health_url = url_of(&health_listener)?;
    let gateway_url = url_of(&gateway_listener)?;

    let common = |name: &str| -> Vec<String> {
        vec![
            name.to_owned(),
            "--redis-url".to_owned(),
            redis_url.clone(),
            "--redis-prefix".to_owned(),
            options.redis_prefix.clone(),
            "--internal-secret".to_owned(),
            internal_secret.clone(),
        ]
    };
    let with = |mut args: Vec<String>, extra: &[String]| {
        args.extend(extra.iter().cloned());
        args
    };
    let registry = registry_svc::Settings::try_parse_from(with(
        common("registry-svc"),
        &options.registry_args,
    ))
    .map_err(|e| anyhow!("registry-svc settings: {}", first_line(&e.to_string())))?;
    let config =
        config_svc::Settings::try_parse_from(with(common("config-svc"), &options.config_args))
            .map_err(|e| anyhow!("config-svc settings: {}", first_line(&e.to_string())))?;
    let health =
        health_svc::Settings::try_parse_from(with(common("health-svc"), &options.health_args))
            .map_err(|e| anyhow!("health-svc settings: {}", first_line(&e.to_string())))?;
    let mut gateway_args = common("gateway");
    gateway_args.extend([
        "--registry-url".to_owned(),
        registry_url.clone(),
        "--config-url".to_owned(),
        config_url.clone(),
        "--health-url".to_owned(),
        health_url.clone(),
        "--jwt-secret".to_owned(),
        jwt_secret.clone(),
    ]);
    let gateway = gateway::Settings::try_parse_from(with(gateway_args, &options.gateway_args))
        .map_err(|e| anyhow!("gateway settings: {}", first_line(&e.to_string())))?;

    let shutdown = CancellationToken::new();
    let services = vec![
        (
            "registry-svc",
            tokio::spawn(registry_svc::run(
                registry,
                registry_listener,
                shutdown.child_token(),
            )),
        ),
        (
            "config-svc",
            tokio::spawn(config_svc::run(
                config,
                config_listener,
                shutdown.child_token(),
            )),
        ),
        (
            "health-svc",
            tokio::spawn(health_svc::run(
                health,
                health_listener,
                shutdown.child_token(),
            )),
        ),
        (
            "gateway",
            tokio::spawn(gateway::run(
                gateway,
                gateway_listener,
                shutdown.child_token(),
            )),
        ),
    ];
    let mut stack = Stack {
        gateway_url,
        registry_url,
        config_url,
        health_url,
        redis_url,
        redis_started: redis.is_some(),
        jwt_secret,
        internal_secret,
        shutdown,
        services,
        redis,
    };
    progress("waiting for the services to be ready");
    let urls = [
        ("registry-svc", stack.registry_url.clone()),
        ("config-svc", stack.config_url.clone()),
        ("health-svc", stack.health_url.clone()),
        ("gateway", stack.gateway_url.clone()),
    ];
    let ready = tokio::select! {
        ready = wait_ready(&urls) => ready,
        failure = stack.failed() => Err(anyhow!(failure)),
    };
    if let Err(e) = ready {
        stack.stop().await;
        return Err(e);
    }
    Ok(stack)
}

fn first_line(text: &str) -> &str {
    text.lines()
        .next()
        .unwrap_or(text)
        .trim_start_matches("error: ")
}

/// Wait until every service answers `/readyz` with 200.
async fn wait_ready(urls: &[(&str, String)]) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    for (name, url) in urls {
        loop {
            let ready = http
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{name} at {url} was not ready within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// True when a Redis answers PING at `url` within a second.
pub async fn redis_answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Some(_))
    )
}

/// A random 256-bit HS256 secret, hex-encoded.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A redis-server this process started.
#[derive(Debug)]
struct RedisProcess {
    url: String,
    child: Child,
}

impl RedisProcess {
    /// Start `redis-server` on a free loopback port with AOF in `dir`.
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the Redis data directory {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // redis-server runs under a small shell that stops it (SIGTERM: it
        // writes its AOF and exits) as soon as our end of its stdin closes:
        // on `stop()` and whenever this process dies, however it dies. Its own
        // process group keeps a terminal's Ctrl-C away from it, so it stops
        // after the services, not before them.
        let script = r#"command -v redis-server >/dev/null 2>&1 || exit 127
redis-server "$@" & r=$!
cat >/dev/null
kill -TERM $r 2>/dev/null
wait $r"#;
        let port_text = port.to_string();
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args([
                "--port",
                port_text.as_str(),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--daemonize",
                "no",
                "--logfile",
                "redis.log",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("cannot run `sh` to start redis-server")?;
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                if status.code() == Some(127) {
                    bail!(
                        "no Redis answers and `redis-server` is not on PATH: install Redis \
                         (`apt-get install redis-server`, `brew install redis`) or set REDIS_URL \
                         to a running one"
                    );
                }
                let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                bail!(
                    "redis-server exited at start ({status}): {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
            }
            if redis_answers(&url).await {
                return Ok(Self { url, child });
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.kill().await;
                bail!("redis-server did not answer on port {port} within 10s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Close its stdin (the shell stops it with SIGTERM) and wait, bounded.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
