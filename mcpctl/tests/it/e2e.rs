//! End to end: the stack as `mcpctl up` starts it, two echo instances, and
//! every call through the gateway, as a user of MCP sees it.

use std::{collections::BTreeSet, time::Duration};

use crate::common::{self, admin_token, call_echo, http, spawn_echo, start_stack};
use clap::Parser as _;
use mcp_testkit::{RedisServer, eventually, redis};

/// Generous bound for eventual effects (checks run every second).
const WITHIN: Duration = Duration::from_secs(15);

/// The instances that answered `calls` calls to `/svc/echo/` (only 200s count).
async fn answering(
    http: &reqwest::Client,
    stack: &mcpctl::stack::Stack,
    calls: usize,
) -> (BTreeSet<String>, usize) {
    let mut seen = BTreeSet::new();
    let mut ok = 0;
    for _ in 0..calls {
        let (status, body) = call_echo(http, stack).await;
        if status == 200 {
            ok += 1;
            if let Some(instance) = body["instance"].as_str() {
                seen.insert(instance.to_owned());
            }
        }
    }
    (seen, ok)
}

fn both() -> BTreeSet<String> {
    ["echo-a", "echo-b"].map(String::from).into()
}

#[tokio::test]
async fn both_echo_instances_answer_through_the_gateway() {
    let stack = start_stack(&redis().url()).await;
    let _a = spawn_echo(&stack, "echo-a").await;
    let _b = spawn_echo(&stack, "echo-b").await;
    let http = http();

    assert!(
        eventually(WITHIN, || async {
            answering(&http, &stack, 6).await.0 == both()
        })
        .await,
        "both instances answer /svc/echo/ over a few calls"
    );
    let (status, body) = call_echo(&http, &stack).await;
    assert_eq!(status, 200);
    assert_eq!(body["greeting"], echo::DEFAULT_GREETING);
    // The gateway forwarded who called.
    assert_eq!(body["headers"]["x-auth-subject"], "tester");
    stack.stop().await;
}

#[tokio::test]
async fn greeting_changed_with_the_cli_reaches_echo_without_restart() {
    let stack = start_stack(&redis().url()).await;
    let _a = spawn_echo(&stack, "echo-a").await;
    let _b = spawn_echo(&stack, "echo-b").await;
    let http = http();
    assert!(
        eventually(WITHIN, || async {
            answering(&http, &stack, 6).await.0 == both()
        })
        .await
    );

    // The same code path as `mcpctl config put echo greeting "bonjour"`.
    let token = admin_token();
    let cli = mcpctl::cli::Cli::try_parse_from([
        "mcpctl",
        "--gateway",
        &stack.gateway_url,
        "--token",
        &token,
        "config",
        "put",
        "echo",
        "greeting",
        "bonjour",
    ])
    .unwrap();
    let mut out = Vec::new();
    mcpctl::cli::execute(&cli, &mut out).await.unwrap();
    assert!(String::from_utf8_lossy(&out).contains("echo/greeting = \"bonjour\""));

    assert!(
        eventually(WITHIN, || async {
            let mut greetings = BTreeSet::new();
            let mut instances = BTreeSet::new();
            for _ in 0..6 {
                let (status, body) = call_echo(&http, &stack).await;
                if status == 200 {
                    greetings.insert(body["greeting"].as_str().unwrap_or("").to_owned());
                    instances.insert(body["instance"].as_str().unwrap_or("").to_owned());
                }
            }
            greetings == BTreeSet::from(["bonjour".to_owned()]) && instances == both()
        })
        .await,
        "both instances answer with the new greeting"
    );
    stack.stop().await;
}

#[tokio::test]
async fn killed_echo_instance_gets_no_more_traffic() {
    let stack = start_stack(&redis().url()).await;
    let a = spawn_echo(&stack, "echo-a").await;
    let _b = spawn_echo(&stack, "echo-b").await;
    let http = http();
    assert!(
        eventually(WITHIN, || async {
            answering(&http, &stack, 6).await.0 == both()
        })
        .await
    );

    // A crash: the task is aborted, nothing deregisters, the port closes.
    a.kill();

    let only_b = BTreeSet::from(["echo-b".to_owned()]);
    assert!(
        eventually(WITHIN, || async {
            answering(&http, &stack, 10).await == (only_b.clone(), 10)
        })
        .await,
        "every call is answered by the surviving instance"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_instances_register_again_after_redis_restarts() {
    let own = RedisServer::start();
    let stack = start_stack(&own.url()).await;
    let _a = spawn_echo(&stack, "echo-a").await;
    let _b = spawn_echo(&stack, "echo-b").await;
    let http = http();
    let client = common::client(&stack);
    assert!(
        eventually(WITHIN, || async {
            answering(&http, &stack, 6).await.0 == both()
        })
        .await
    );

    own.restart();
    // Drop everything the restart kept, as a Redis without persistence
    // would: only the echo instances' Registrations can bring them back.
    own.command(&["FLUSHALL"]);

    let registered = || async {
        client
            .list_instances("echo", &Default::default())
            .await
            .map(|list| {
                list.instances
                    .iter()
                    .map(|i| i.id.clone())
                    .collect::<BTreeSet<_>>()
            })
            .unwrap_or_default()
    };
    assert!(
        eventually(WITHIN, || async { registered().await == both() }).await,
        "both instances are registered again"
    );
    assert!(
        eventually(WITHIN, || async {
            answering(&http, &stack, 6).await.0 == both()
        })
        .await,
        "and both answer through the gateway again"
    );
    stack.stop().await;
}
