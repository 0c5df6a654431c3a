//! Test helpers shared by mcpctl's test modules: the stack as `mcpctl up`
//! starts it (ports 0, short intervals), echo instances, a gateway client,
//! and the real `mcpctl` binary run against a stack.

use std::{
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::Duration,
};

use mcp_testkit::{JWT_SECRET, TestService, eventually};
use mcpctl::stack::{self, Stack, StackOptions};

/// The stack on `redis_url` under a fresh prefix, every listener on port 0.
pub async fn start_stack(redis_url: &str) -> Stack {
    start_stack_with(StackOptions::ephemeral(redis_url, &mcp_testkit::prefix())).await
}

/// The stack with `options`, plus the test secret and a rate limit out of the way.
pub async fn start_stack_with(mut options: StackOptions) -> Stack {
    options.jwt_secret = Some(JWT_SECRET.to_owned());
    // Tests call often: keep the rate limit out of the way.
    options.gateway_args = ["--rate-limit-rps", "10000", "--rate-limit-burst", "10000"]
        .map(String::from)
        .to_vec();
    stack::start(options, &|_| {}).await.expect("stack starts")
}

/// An admin token for the test stacks.
pub fn admin_token() -> String {
    mcp_testkit::token(JWT_SECRET, "tester", "admin")
}

/// An SDK client of the stack's gateway with an admin token.
pub fn client(stack: &Stack) -> mcp_client::Client {
    mcp_client::Client::new(&stack.gateway_url, Some(admin_token())).unwrap()
}

/// One echo instance registered through the stack: 3 s lease, 1 s checks.
pub async fn spawn_echo(stack: &Stack, id: &str) -> TestService {
    let settings = <echo::Settings as clap::Parser>::try_parse_from([
        "echo",
        "--id",
        id,
        "--gateway",
        &stack.gateway_url,
        "--jwt-secret",
        JWT_SECRET,
        "--ttl-seconds",
        "3",
        "--check-interval-seconds",
        "1",
    ])
    .unwrap();
    mcp_testkit::spawn(move |listener, shutdown| echo::run(settings, listener, shutdown)).await
}

/// A plain HTTP client for calls through the gateway.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// `GET {gateway}/svc/echo/` → (status, body JSON or Null).
pub async fn call_echo(http: &reqwest::Client, stack: &Stack) -> (u16, serde_json::Value) {
    match http
        .get(format!("{}/svc/echo/", stack.gateway_url))
        .bearer_auth(admin_token())
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(serde_json::Value::Null);
            (status, body)
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// `mcpctl ARGS` against `gateway` with the admin token, environment cleared of MCP settings.
pub fn mcpctl(gateway: &str, token: &str, args: &[&str]) -> Output {
    base_command(gateway, token).args(args).output().unwrap()
}

pub fn base_command(gateway: &str, token: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcpctl"));
    command
        .env_remove("JWT_SECRET")
        .env("MCP_GATEWAY_URL", gateway)
        .env("MCP_TOKEN", token)
        .stdin(Stdio::null());
    command
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Run and require exit 0, returning stdout.
pub fn ok(gateway: &str, args: &[&str]) -> String {
    let output = mcpctl(gateway, &admin_token(), args);
    assert!(
        output.status.success(),
        "mcpctl {args:?} failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// Wait at most `within` for `child` to exit; past that, kill it and fail the test.
pub async fn exit_within(child: &mut Child, within: Duration) -> ExitStatus {
    let mut status = None;
    let exited = eventually(within, || {
        status = status.or_else(|| child.try_wait().unwrap());
        let done = status.is_some();
        async move { done }
    })
    .await;
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    status.unwrap_or_else(|| panic!("the child process did not exit within {within:?}; killed it"))
}
