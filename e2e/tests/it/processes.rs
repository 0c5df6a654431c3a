//! The gateway and the control-plane services as real child processes,
//! for the tests that need one process per service (`telemetry::init`
//! installs a process-wide subscriber, exporter and propagator, exactly as
//! in production): this test binary re-executes itself as each of them (see
//! [`child_service`]), running what the binary's own `main` runs. (The
//! gateway binary's allocator, mimalloc, is not the test binary's: no test
//! here depends on it.) Each process logs JSON lines to stdout, collected
//! here.

use std::{
    process::{ExitCode, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use clap::Parser as _;
use mcp_testkit::{JWT_SECRET, eventually, free_port, redis};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

/// Set on a child process: which service this test binary runs as.
const CHILD_ENV: &str = "MCP_OBSERVABILITY_CHILD";

/// What the `main` of the binary `$name` (crate `$krate`) does: settings
/// from the environment, then `mcp_shared::server::start` around `run`
/// with `$threads` worker threads (a function of the settings).
macro_rules! serve {
    ($name:literal, $krate:ident, $threads:expr) => {{
        let settings = $krate::Settings::try_parse_from([$name]).unwrap();
        let (common, addr) = (settings.common.clone(), settings.addr);
        let threads = $threads(&settings);
        mcp_shared::server::start($name, &common, addr, threads, |l, s| {
            $krate::run(settings, l, s)
        })
    }};
}

/// The control-plane services' runtime: one worker thread per core.
fn per_core<S>(_: &S) -> Option<usize> {
    None
}

/// Not a test: the `main` of the gateway or a control-plane service when
/// this binary is started as a child process (with [`CHILD_ENV`] set and the
/// service's settings in its environment). It does what that binary's own
/// `main` does.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child_service() {
    let Ok(service) = std::env::var(CHILD_ENV) else {
        return;
    };
    let code = match service.as_str() {
        "gateway" => serve!("gateway", gateway, gateway::Settings::runtime_threads),
        "registry-svc" => serve!("registry-svc", registry_svc, per_core),
        "config-svc" => serve!("config-svc", config_svc, per_core),
        "health-svc" => serve!("health-svc", health_svc, per_core),
        other => panic!("unknown child service {other}"),
    };
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

/// A service running as a child process, its stdout and stderr collected.
pub struct Process {
    pub name: &'static str,
    pub url: String,
    pub port: u16,
    output: Arc<Mutex<String>>,
    _child: Child,
}

impl Process {
    /// Start `name` (`gateway` or a control-plane service) on a free port
    /// with `env` (plus Redis, prefix, JSON logs) and wait until it is live.
    pub async fn start(name: &'static str, redis_prefix: &str, env: &[(&str, String)]) -> Self {
        let port = free_port();
        let mut command = Command::new(std::env::current_exe().unwrap());
        // The full name of the `child_service` test in this binary.
        let test = "processes::child_service";
        command.args([test, "--exact", "--ignored", "--nocapture"]);
        command.env_clear();
        command.env(CHILD_ENV, name);
        let addr_var = match name {
            "gateway" => "GATEWAY_ADDR",
            "registry-svc" => "REGISTRY_ADDR",
            "config-svc" => "CONFIG_ADDR",
            "health-svc" => "HEALTH_ADDR",
            other => panic!("unknown service {other}"),
        };
        command
            .env(addr_var, format!("127.0.0.1:{port}"))
            .env("REDIS_URL", redis().url())
            .env("MCP_REDIS_PREFIX", redis_prefix)
            // Loopback only, no DNS (ignored by config-svc, which connects nowhere).
            .env("EGRESS_ALLOW_CIDRS", "127.0.0.0/8")
            .env("EGRESS_ALLOW_HOSTNAMES", "false")
            .env("MCP_INTERNAL_SECRET", mcp_testkit::INTERNAL_SECRET)
            .env("LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                "info,gateway=debug,mcp_shared=debug,registry_svc=debug",
            )
            // Export batches every 100 ms instead of every 5 s.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for pipe in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let output = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut output = output.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        let process = Self {
            name,
            url: format!("http://127.0.0.1:{port}"),
            port,
            output,
            _child: child,
        };
        let live = eventually(Duration::from_secs(15), || async {
            reqwest::get(process.at("/healthz"))
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(
            live,
            "{name} did not come up; its output:\n{}",
            process.output()
        );
        process
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self._child.id().expect("the child is running")
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Everything it wrote so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Its JSON log lines so far.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.output()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub async fn metrics(&self) -> String {
        // The gateway's `/metrics` needs `metrics:read`; the services' are open.
        let response = reqwest::Client::new()
            .get(self.at("/metrics"))
            .header("authorization", bearer("metrics:read"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{} /metrics", self.name);
        response.text().await.unwrap()
    }
}

/// A gateway in front of `registry`, with the test JWT secret and `env`.
pub async fn gateway(redis_prefix: &str, registry: &Process, env: &[(&str, String)]) -> Process {
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut all = vec![
        ("REGISTRY_URL", registry.url.clone()),
        ("CONFIG_URL", nowhere.clone()),
        ("HEALTH_URL", nowhere),
        ("JWT_SECRET", JWT_SECRET.to_owned()),
    ];
    all.extend(env.iter().cloned());
    Process::start("gateway", redis_prefix, &all).await
}

/// `Bearer <test token for scopes>`.
pub fn bearer(scopes: &str) -> String {
    format!(
        "Bearer {}",
        mcp_testkit::token(JWT_SECRET, "tester", scopes)
    )
}

/// The value of the series `name{labels}` (exactly as rendered), or 0.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
