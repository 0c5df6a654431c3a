//! `mcpctl up` as a user runs it: the real binary with no Redis around
//! starts its own `redis-server` and the four services, prints where they
//! are and an admin token that works; Ctrl-C (SIGINT) stops all of it,
//! leaving no process and no listening port behind.

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use mcp_testkit::free_port;

/// Bound on start-up and on shutdown.
const WITHIN: Duration = Duration::from_secs(60);

/// Kills the child if the test fails before it has stopped by itself.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether something listens on loopback `port`.
fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Processes whose command line mentions `needle` (the test's data directory).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|line| line.contains(needle))
        .collect()
}

#[test]
fn up_starts_its_own_redis_and_ctrl_c_leaves_no_process_or_port_behind() {
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    let redis_dir_text = redis_dir.to_string_lossy().into_owned();
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let [gateway, registry, config, health] = ports.map(|p| format!("127.0.0.1:{p}"));
    // Nothing answers at this Redis URL, so `up` starts redis-server itself.
    let nowhere = format!("redis://127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_mcpctl"))
        .args([
            "up",
            "--redis-url",
            &nowhere,
            "--redis-dir",
            &redis_dir_text,
        ])
        .args(["--gateway-addr", &gateway, "--registry-addr", &registry])
        .args(["--config-addr", &config, "--health-addr", &health])
        .env_remove("REDIS_URL")
        .env_remove("JWT_SECRET")
        .env_remove("MCP_INTERNAL_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut up = Guard(child);

    // What it prints, line by line, read off the test's thread.
    let (lines, printed) = mpsc::channel();
    let stdout = up.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut output = Vec::new();
    while !output
        .iter()
        .any(|l: &String| l.starts_with("Ctrl-C stops everything"))
    {
        let left = WITHIN.saturating_sub(started.elapsed());
        match printed.recv_timeout(left) {
            Ok(line) => output.push(line),
            Err(_) => panic!("`mcpctl up` did not come up within {WITHIN:?}: {output:#?}"),
        }
    }
    let text = output.join("\n");
    assert!(
        text.contains(&format!("gateway   http://{gateway}")),
        "{text}"
    );
    // The redis-server it started: `  redis     redis://127.0.0.1:PORT (started here, …)`.
    let redis_port: u16 = output
        .iter()
        .find_map(|l| {
            let rest = l.trim_start().strip_prefix("redis")?.trim_start();
            let rest = rest.strip_prefix("redis://127.0.0.1:")?;
            rest.contains("(started here")
                .then(|| rest.split(' ').next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no redis-server started: {text}"));
    assert!(listening(redis_port));

    // The printed admin token works against the printed gateway.
    let token = output
        .iter()
        .find_map(|l| l.strip_prefix("export MCP_TOKEN="))
        .unwrap_or_else(|| panic!("no token printed: {text}"))
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(format!("http://{gateway}/api/v1/registry/services"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);

    // Ctrl-C, as a terminal sends it.
    let interrupted = Command::new("kill")
        .args(["-INT", &up.0.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let stopping = Instant::now();
    let exit = loop {
        if let Some(status) = up.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < WITHIN,
            "`mcpctl up` still runs {WITHIN:?} after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit after SIGINT: {exit:?}");

    // Nothing left: no listener on any of its ports, no redis-server (nor
    // its wrapper shell) on its data directory.
    for port in ports.into_iter().chain([redis_port]) {
        assert!(!listening(port), "port {port} still listens after exit");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_mentioning(&redis_dir_text);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left behind after `mcpctl up` exited: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
