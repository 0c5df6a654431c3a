//! The real `mcpctl policy` commands against a real stack: `apply` of a
//! file (only the changes written, an invalid file writes nothing), `set`,
//! `history`, `rollback` and `edit`.

use std::time::Duration;

use crate::common::{self, admin_token, base_command, mcpctl, ok, start_stack, stderr, stdout};
use mcp_testkit::redis;

/// The stack under a known Redis prefix (to snapshot config-svc's keys).
async fn start_stack_with_prefix() -> (mcpctl::stack::Stack, String) {
    let prefix = mcp_testkit::prefix();
    let options = mcpctl::stack::StackOptions::ephemeral(&redis().url(), &prefix);
    (common::start_stack_with(options).await, prefix)
}

/// Write `text` to a fresh file and return its path (kept by the returned dir).
fn policy_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policies.json");
    std::fs::write(&path, text).unwrap();
    (dir, path.to_string_lossy().into_owned())
}

/// `GET /admin/policies` with the admin token.
async fn admin_policies(gateway: &str) -> serde_json::Value {
    common::http()
        .get(format!("{gateway}/admin/policies"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

const POLICIES: &str = r#"{
  "services": {
    "shop": { "timeout_ms": 3000, "rate_limit": { "rps": 50, "burst": 100 } },
    "status-page": { "auth": { "mode": "none" } }
  },
  "routes": {
    "billing": { "service": "shop", "path_prefix": "/billing", "strip_prefix": true }
  }
}"#;

#[tokio::test]
async fn policy_apply_stores_the_file_and_a_second_apply_writes_only_the_change() {
    let stack = start_stack(&redis().url()).await;
    let gw = stack.gateway_url.clone();
    let (_dir, file) = policy_file(POLICIES);
    let first = tokio::task::spawn_blocking({
        let (gw, file) = (gw.clone(), file.clone());
        move || ok(&gw, &["policy", "apply", "-f", &file])
    })
    .await
    .unwrap();
    assert!(first.contains("+ services/shop (new)"), "{first}");
    assert!(first.contains("+ routes/billing (new)"), "{first}");
    assert!(
        first.contains("3 added, 0 changed, 0 unchanged, 0 removed"),
        "{first}"
    );
    assert!(
        first.contains("wrote services/status-page (version 1)"),
        "{first}"
    );

    // Every replica applies it from config-svc's event log.
    let seen = mcp_testkit::eventually(Duration::from_secs(5), || {
        let gw = gw.clone();
        async move {
            let view = admin_policies(&gw).await;
            let shop = view["services"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["service"] == "shop")
                .cloned();
            shop.is_some_and(|s| s["source"] == "config" && s["effective"]["timeout_ms"] == 3000)
                && view["routes"][0]["name"] == "billing"
        }
    })
    .await;
    assert!(seen, "{}", admin_policies(&gw).await);

    // One change: exactly one write, one new version.
    let changed = POLICIES.replace("3000", "4000");
    std::fs::write(&file, changed).unwrap();
    let (diff_only, second, shop, status) = tokio::task::spawn_blocking({
        let gw = gw.clone();
        move || {
            let diff_only = ok(&gw, &["policy", "apply", "-f", &file, "--dry-run"]);
            let second = ok(&gw, &["policy", "apply", "-f", &file]);
            let shop = ok(&gw, &["--json", "policy", "get", "shop"]);
            let status = ok(&gw, &["--json", "policy", "get", "status-page"]);
            (diff_only, second, shop, status)
        }
    })
    .await
    .unwrap();
    assert!(
        diff_only.contains("0 added, 1 changed, 2 unchanged, 0 removed")
            && !diff_only.contains("wrote"),
        "{diff_only}"
    );
    assert!(second.contains("~ services/shop (version 1)"), "{second}");
    assert!(
        second.contains("0 added, 1 changed, 2 unchanged, 0 removed"),
        "{second}"
    );
    assert_eq!(second.matches("wrote ").count(), 1, "{second}");
    let shop: serde_json::Value = serde_json::from_str(&shop).unwrap();
    assert_eq!(shop["version"], 2);
    assert_eq!(shop["value"]["timeout_ms"], 4000);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["version"], 1);
    stack.stop().await;
}

#[tokio::test]
async fn policy_apply_of_an_invalid_file_writes_nothing_and_prints_the_validator() {
    let (stack, prefix) = start_stack_with_prefix().await;
    let gw = stack.gateway_url.clone();
    // One valid entry and one the schema refuses: neither is written.
    let (_dir, file) = policy_file(
        r#"{"services": {"ok": {"timeout_ms": 100}, "shop": {"rate_limit": {"rps": "fast"}}}}"#,
    );
    let config_keys = format!("{prefix}:cfg");
    let before = redis().snapshot(&config_keys);
    let output = tokio::task::spawn_blocking(move || {
        mcpctl(&gw, &admin_token(), &["policy", "apply", "-f", &file])
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let err = stderr(&output);
    assert!(err.contains("nothing written"), "{err}");
    assert!(err.contains("services/shop: 422"), "{err}");
    assert!(err.contains("/value/rate_limit/rps"), "{err}");
    assert_eq!(redis().snapshot(&config_keys), before);
    stack.stop().await;
}

#[tokio::test]
async fn policy_set_history_rollback_and_edit_round_trip() {
    let stack = start_stack(&redis().url()).await;
    let gw = stack.gateway_url.clone();
    tokio::task::spawn_blocking(move || {
        ok(&gw, &["policy", "set", "shop", r#"{"timeout_ms": 1000}"#]);
        ok(
            &gw,
            &[
                "policy",
                "set",
                "shop",
                r#"{"timeout_ms": 2000}"#,
                "--if-version",
                "1",
            ],
        );
        // A stale version is a 412, explained.
        let stale = mcpctl(
            &gw,
            &admin_token(),
            &[
                "policy",
                "set",
                "shop",
                r#"{"timeout_ms": 9}"#,
                "--if-version",
                "1",
            ],
        );
        assert_eq!(stale.status.code(), Some(1));
        assert!(
            stderr(&stale).contains("changed since it was read (it is now at version 2)"),
            "{}",
            stderr(&stale)
        );
        ok(
            &gw,
            &[
                "policy",
                "set",
                "--route",
                "billing",
                r#"{"service": "shop", "path_prefix": "/billing"}"#,
            ],
        );

        let history = ok(&gw, &["policy", "history", "shop"]);
        let lines: Vec<&str> = history.lines().collect();
        assert!(lines[1].starts_with("2  "), "{history}");
        assert!(lines[2].starts_with("1  "), "{history}");
        let rolled = ok(&gw, &["policy", "rollback", "shop", "1"]);
        assert!(
            rolled.contains(
                "gateway/services/shop = {\"timeout_ms\":1000} (version 3, restored from version 1)"
            ),
            "{rolled}"
        );
        let got = ok(&gw, &["policy", "get", "shop"]);
        assert!(
            got.starts_with("# gateway/services/shop, version 3\n"),
            "{got}"
        );
        assert!(got.contains("\"timeout_ms\": 1000"), "{got}");

        // `edit` runs $EDITOR on the JSON, then saves with If-Match.
        let edited = base_command(&gw, &admin_token())
            .env("EDITOR", "sed -i s/1000/1500/")
            .args(["policy", "edit", "shop"])
            .output()
            .unwrap();
        assert!(edited.status.success(), "{}", stderr(&edited));
        assert_eq!(stdout(&edited), "services/shop: version 4\n");

        let all = ok(&gw, &["--json", "policy", "get"]);
        let all: serde_json::Value = serde_json::from_str(&all).unwrap();
        assert_eq!(
            all,
            serde_json::json!({
                "services": {"shop": {"timeout_ms": 1500}},
                "routes": {"billing": {"service": "shop", "path_prefix": "/billing"}}
            })
        );
    })
    .await
    .unwrap();
    stack.stop().await;
}
