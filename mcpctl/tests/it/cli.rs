//! The real `mcpctl` binary against a real stack: output and exit codes.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use crate::common::{self, admin_token, base_command, mcpctl, ok, start_stack, stderr, stdout};
use mcp_testkit::{JWT_SECRET, redis};

#[tokio::test]
async fn register_then_list_services_and_instances_as_aligned_tables() {
    let stack = start_stack(&redis().url()).await;
    let gw = stack.gateway_url.clone();
    let registered = tokio::task::spawn_blocking(move || {
        ok(
            &gw,
            &[
                "register",
                "billing",
                "billing-1",
                "--port",
                "7001",
                "--tag",
                "v2",
                "--ttl",
                "30s",
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        registered.contains("registered billing/billing-1 at 127.0.0.1:7001"),
        "{registered}"
    );

    let gw = stack.gateway_url.clone();
    let (services, instances) = tokio::task::spawn_blocking(move || {
        (ok(&gw, &["services"]), ok(&gw, &["instances", "billing"]))
    })
    .await
    .unwrap();
    let lines: Vec<&str> = services.lines().collect();
    assert_eq!(lines[0], "SERVICE  INSTANCES  PASSING  PROTECTED");
    assert!(
        lines.iter().any(|l| l.starts_with("billing  1          ")),
        "{services}"
    );
    let lines: Vec<&str> = instances.lines().collect();
    assert!(
        lines[0].starts_with("ID         ADDRESS         STATUS"),
        "{instances}"
    );
    assert!(
        lines[1].starts_with("billing-1  127.0.0.1:7001  "),
        "{instances}"
    );
    assert!(lines[1].contains("v2"));
    stack.stop().await;
}

#[tokio::test]
async fn json_flag_prints_the_api_answer() {
    let stack = start_stack(&redis().url()).await;
    let gw = stack.gateway_url.clone();
    let out = tokio::task::spawn_blocking(move || {
        ok(&gw, &["register", "api", "api-1", "--port", "7002"]);
        ok(&gw, &["--json", "instances", "api"])
    })
    .await
    .unwrap();
    let body: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["service"], "api");
    assert_eq!(body["instances"][0]["id"], "api-1");
    assert_eq!(body["instances"][0]["port"], 7002);
    stack.stop().await;
}

#[tokio::test]
async fn deregister_removes_the_instance() {
    let stack = start_stack(&redis().url()).await;
    let gw = stack.gateway_url.clone();
    let (out, after, again) = tokio::task::spawn_blocking(move || {
        ok(&gw, &["register", "api", "api-1", "--port", "7002"]);
        let out = ok(&gw, &["deregister", "api", "api-1"]);
        let after = ok(&gw, &["--json", "instances", "api"]);
        let again = mcpctl(&gw, &admin_token(), &["deregister", "api", "api-1"]);
        (out, after, again)
    })
    .await
    .unwrap();
    assert_eq!(out, "deregistered api/api-1\n");
    let body: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(body["instances"], serde_json::json!([]));
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).starts_with("mcpctl: error: 404 Not Found"),
        "{}",
        stderr(&again)
    );
    stack.stop().await;
}

#[tokio::test]
async fn config_put_get_history_rollback_and_delete() {
    let stack = start_stack(&redis().url()).await;
    let gw = stack.gateway_url.clone();
    tokio::task::spawn_blocking(move || {
        let put = ok(
            &gw,
            &[
                "config",
                "put",
                "shop",
                "limits",
                r#"{"rps":5}"#,
                "-m",
                "first",
            ],
        );
        assert!(
            put.starts_with(r#"shop/limits = {"rps":5} (version 1, revision "#),
            "{put}"
        );
        ok(&gw, &["config", "put", "shop", "limits", r#"{"rps":9}"#]);
        assert_eq!(
            ok(&gw, &["config", "get", "shop", "limits"]),
            "{\n  \"rps\": 9\n}\n"
        );
        // A value that is not JSON is stored as a string.
        ok(&gw, &["config", "put", "shop", "banner", "spring sale"]);
        assert_eq!(
            ok(&gw, &["config", "get", "shop", "banner"]),
            "\"spring sale\"\n"
        );

        let history = ok(&gw, &["config", "history", "shop", "limits"]);
        let lines: Vec<&str> = history.lines().collect();
        assert!(lines[0].starts_with("VERSION  UPDATED_AT"), "{history}");
        assert!(lines[1].starts_with("2  "), "{history}");
        assert!(
            lines[2].starts_with("1  ") && lines[2].ends_with("first"),
            "{history}"
        );

        let rolled = ok(&gw, &["config", "rollback", "shop", "limits", "1"]);
        assert!(
            rolled.contains("(version 3, restored from version 1)"),
            "{rolled}"
        );
        let entry: serde_json::Value =
            serde_json::from_str(&ok(&gw, &["--json", "config", "get", "shop", "limits"])).unwrap();
        assert_eq!(entry["value"], serde_json::json!({"rps": 5}));
        assert_eq!(entry["version"], 3);
        assert_eq!(entry["updated_by"], "tester");

        assert_eq!(
            ok(&gw, &["config", "delete", "shop", "limits"]),
            "deleted shop/limits\n"
        );
        let missing = mcpctl(&gw, &admin_token(), &["config", "get", "shop", "limits"]);
        assert_eq!(missing.status.code(), Some(1));
        assert!(
            stderr(&missing).contains("404 Not Found"),
            "{}",
            stderr(&missing)
        );
    })
    .await
    .unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn config_compare_and_swap_failure_exits_1_with_the_problem() {
    let stack = start_stack(&redis().url()).await;
    let gw = stack.gateway_url.clone();
    let failed = tokio::task::spawn_blocking(move || {
        ok(&gw, &["config", "put", "shop", "flag", "true"]);
        mcpctl(
            &gw,
            &admin_token(),
            &[
                "config",
                "put",
                "shop",
                "flag",
                "false",
                "--if-version",
                "7",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let err = stderr(&failed);
    assert!(
        err.starts_with("mcpctl: error: 412 Precondition Failed"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    stack.stop().await;
}

#[tokio::test]
async fn config_watch_prints_changes_as_they_happen() {
    let stack = start_stack(&redis().url()).await;
    let mut child = base_command(&stack.gateway_url, &admin_token())
        .args(["config", "watch", "shop", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    // Writes until the watcher has seen them (it may connect after the first).
    let client = common::client(&stack);
    let mut n = 0;
    while !lines.is_finished() && n < 100 {
        n += 1;
        client
            .put_config("shop", "banner", &format!("sale {n}"), &Default::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = common::exit_within(&mut child, Duration::from_secs(20)).await;
    let lines = lines.join().unwrap();
    assert!(status.success());
    assert_eq!(lines[0], "REVISION  EVENT   KEY  VALUE");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[1].contains("  put  banner  \"sale "), "{lines:?}");
    stack.stop().await;
}

#[tokio::test]
async fn health_lists_services_and_instances() {
    let stack = start_stack(&redis().url()).await;
    let _echo = common::spawn_echo(&stack, "echo-h").await;
    let gw = stack.gateway_url.clone();
    let passing = mcp_testkit::eventually(Duration::from_secs(15), || {
        let gw = gw.clone();
        async move {
            tokio::task::spawn_blocking(move || ok(&gw, &["health", "echo"]))
                .await
                .unwrap()
                .contains("echo-h  passing")
        }
    })
    .await;
    assert!(passing);
    let gw = stack.gateway_url.clone();
    let summary = tokio::task::spawn_blocking(move || ok(&gw, &["health"]))
        .await
        .unwrap();
    assert!(
        summary.starts_with(
            "SERVICE  STATUS   PASSING  WARNING  CRITICAL  UNKNOWN\necho     passing  1"
        ),
        "{summary}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn bad_token_fails_with_one_clear_line_and_exit_1() {
    let stack = start_stack(&redis().url()).await;
    let wrong = mcp_testkit::token("some-other-secret-that-is-long-enough", "x", "admin");
    let gw = stack.gateway_url.clone();
    let output = tokio::task::spawn_blocking(move || mcpctl(&gw, &wrong, &["services"]))
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("mcpctl: error: the gateway rejected the token (401 Unauthorized"),
        "{err}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn missing_scope_says_so() {
    let stack = start_stack(&redis().url()).await;
    let reader = mcp_testkit::token(JWT_SECRET, "reader", "registry:read");
    let gw = stack.gateway_url.clone();
    let output = tokio::task::spawn_blocking(move || {
        mcpctl(&gw, &reader, &["config", "put", "shop", "x", "1"])
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("mcpctl: error: the token lacks the scope"),
        "{}",
        stderr(&output)
    );
    stack.stop().await;
}

#[test]
fn unreachable_gateway_fails_with_one_clear_line_and_exit_1() {
    let port = mcp_testkit::free_port();
    let output = mcpctl(&format!("http://127.0.0.1:{port}"), "t", &["services"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "mcpctl: error: cannot reach the gateway at http://127.0.0.1:{port} ("
        )),
        "{err}"
    );
}

#[tokio::test]
async fn token_mints_a_token_the_gateway_accepts() {
    let stack = start_stack(&redis().url()).await;
    let gw = stack.gateway_url.clone();
    let output = tokio::task::spawn_blocking(move || {
        let minted = Command::new(env!("CARGO_BIN_EXE_mcpctl"))
            .env("JWT_SECRET", JWT_SECRET)
            .args([
                "token",
                "--sub",
                "ci",
                "--scopes",
                "registry:read",
                "--ttl",
                "5m",
            ])
            .output()
            .unwrap();
        assert!(minted.status.success());
        let token = stdout(&minted).trim().to_owned();
        let reads = mcpctl(&gw, &token, &["services"]);
        let writes = mcpctl(&gw, &token, &["config", "put", "a", "b", "1"]);
        (reads, writes)
    })
    .await
    .unwrap();
    assert!(output.0.status.success(), "{}", stderr(&output.0));
    assert_eq!(
        output.1.status.code(),
        Some(1),
        "registry:read cannot write config"
    );
    stack.stop().await;
}

#[tokio::test]
async fn token_internal_mints_the_credential_a_service_takes_directly() {
    let stack = start_stack(&redis().url()).await;
    let secret = stack.internal_secret.clone();
    let minted = tokio::task::spawn_blocking(move || {
        let minted = Command::new(env!("CARGO_BIN_EXE_mcpctl"))
            .env_remove("JWT_SECRET")
            .env("MCP_INTERNAL_SECRET", secret)
            .args([
                "token",
                "--internal",
                "--sub",
                "ops",
                "--scopes",
                "config:read",
            ])
            .output()
            .unwrap();
        let missing = Command::new(env!("CARGO_BIN_EXE_mcpctl"))
            .env_remove("JWT_SECRET")
            .env_remove("MCP_INTERNAL_SECRET")
            .args(["token", "--internal"])
            .output()
            .unwrap();
        (minted, missing)
    })
    .await
    .unwrap();
    assert!(minted.0.status.success(), "{}", stderr(&minted.0));
    assert!(!minted.1.status.success());
    assert!(
        stderr(&minted.1).contains("internal-secret"),
        "{}",
        stderr(&minted.1)
    );
    let token = stdout(&minted.0).trim().to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("{}/v1/namespaces", stack.config_url);
    let with = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(with.status(), 200);
    let without = http.get(&url).send().await.unwrap();
    assert_eq!(without.status(), 401);
    stack.stop().await;
}
