//! The `mcp-client` SDK against the real stack (it lives here because the
//! stack helper does: `mcpctl::stack` starts the four services in-process).

use std::time::Duration;

use crate::common::{self, client, start_stack};
use mcp_client::{
    ConfigWatcher, ConnectionState, Error, InstanceQuery, InstanceSpec, Registration,
    ServiceWatcher,
};
use mcp_testkit::{RedisServer, eventually, redis};

const WITHIN: Duration = Duration::from_secs(10);

fn spec(port: u16) -> InstanceSpec {
    let mut spec = InstanceSpec::new("127.0.0.1", port);
    spec.ttl_seconds = Some(3);
    spec
}

async fn listed(client: &mcp_client::Client, service: &str) -> Vec<String> {
    client
        .list_instances(service, &InstanceQuery::default())
        .await
        .map(|l| l.instances.into_iter().map(|i| i.id).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn api_errors_carry_the_problem_details() {
    let stack = start_stack(&redis().url()).await;
    let error = client(&stack)
        .get_config("nope", "missing")
        .await
        .unwrap_err();
    match &error {
        Error::Api { problem, .. } => {
            assert_eq!(problem.status, 404);
            assert!(!problem.detail.is_empty());
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert!(error.is_not_found());
    stack.stop().await;
}

#[tokio::test]
async fn registration_connects_heartbeats_and_deregisters_on_shutdown() {
    let stack = start_stack(&redis().url()).await;
    let client = client(&stack);
    let registration = Registration::start(client.clone(), "svc", "svc-1", spec(7100));
    assert_eq!(*registration.state().borrow(), ConnectionState::Connecting);
    assert!(registration.connected(WITHIN).await);
    // Outlives its 3 s lease: the heartbeats (every second) keep it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(listed(&client, "svc").await, vec!["svc-1"]);
    let state = registration.state();
    registration.shutdown().await;
    assert_eq!(*state.borrow(), ConnectionState::Disconnected);
    assert!(listed(&client, "svc").await.is_empty());
    stack.stop().await;
}

#[tokio::test]
async fn registration_registers_again_after_losing_its_lease() {
    let stack = start_stack(&redis().url()).await;
    let client = client(&stack);
    let registration = Registration::start(client.clone(), "svc", "svc-1", spec(7100));
    assert!(registration.connected(WITHIN).await);
    // Someone else removes it: the next heartbeat gets 404 and registers again.
    client.deregister("svc", "svc-1").await.unwrap();
    assert!(
        eventually(WITHIN, || async {
            listed(&client, "svc").await == vec!["svc-1"]
        })
        .await
    );
    registration.shutdown().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_reports_reconnecting_while_redis_is_down() {
    let own = RedisServer::start();
    let stack = start_stack(&own.url()).await;
    let client = client(&stack);
    let registration = Registration::start(client.clone(), "svc", "svc-1", spec(7100));
    assert!(registration.connected(WITHIN).await);
    let mut state = registration.state();

    own.stop();
    // (The guard `wait_for` returns is dropped at once: it holds the watch's lock.)
    let reconnecting = tokio::time::timeout(
        WITHIN,
        state.wait_for(|s| *s == ConnectionState::Reconnecting),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(reconnecting, "heartbeats fail while Redis is down");

    own.restart();
    assert!(
        registration.connected(WITHIN).await,
        "connected again once Redis is back"
    );
    assert!(
        eventually(WITHIN, || async {
            listed(&client, "svc").await == vec!["svc-1"]
        })
        .await
    );
    registration.shutdown().await;
    stack.stop().await;
}

#[tokio::test]
async fn service_watcher_follows_registrations_and_removals() {
    let stack = start_stack(&redis().url()).await;
    let client = client(&stack);
    client.register("svc", "a", &spec(7101)).await.unwrap();
    let watcher = ServiceWatcher::start(client.clone(), "svc");
    assert!(watcher.synced(WITHIN).await);
    assert_eq!(
        watcher.snapshot().instances.keys().collect::<Vec<_>>(),
        ["a"]
    );

    client.register("svc", "b", &spec(7102)).await.unwrap();
    client.register("other", "x", &spec(7103)).await.unwrap();
    let ids = |w: &ServiceWatcher| w.snapshot().instances.keys().cloned().collect::<Vec<_>>();
    assert!(eventually(WITHIN, || async { ids(&watcher) == ["a", "b"] }).await);

    client.deregister("svc", "a").await.unwrap();
    assert!(eventually(WITHIN, || async { ids(&watcher) == ["b"] }).await);
    watcher.stop().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_watcher_relists_when_the_registry_lost_its_data() {
    let own = RedisServer::start();
    let options = mcpctl::stack::StackOptions::ephemeral(&own.url(), &mcp_testkit::prefix());
    let stack = common::start_stack_with(options.clone()).await;
    let client = client(&stack);
    for id in ["a", "b", "c", "d"] {
        client.register("svc", id, &spec(7101)).await.unwrap();
    }
    let watcher = ServiceWatcher::start(client.clone(), "svc");
    assert!(watcher.synced(WITHIN).await);
    assert_eq!(watcher.instances().len(), 4);

    // The whole stack goes away and comes back on the same address with an
    // empty Redis: the watcher resumes from revision 4, which no longer
    // exists, gets `reset` and lists again.
    let gateway_addr = stack
        .gateway_url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    stack.stop().await;
    own.command(&["FLUSHALL"]);
    let stack = common::start_stack_with(mcpctl::stack::StackOptions {
        gateway_addr,
        ..options
    })
    .await;
    client.register("svc", "z", &spec(7109)).await.unwrap();
    let ids = |w: &ServiceWatcher| w.snapshot().instances.keys().cloned().collect::<Vec<_>>();
    assert!(
        eventually(WITHIN, || async { ids(&watcher) == ["z"] }).await,
        "{:?}",
        ids(&watcher)
    );
    watcher.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn config_watcher_hot_updates_and_keeps_the_last_good_value() {
    let stack = start_stack(&redis().url()).await;
    let client = client(&stack);
    let put = |value: serde_json::Value| {
        let client = client.clone();
        async move {
            client
                .put_config("app", "workers", &value, &Default::default())
                .await
                .unwrap()
        }
    };
    put(serde_json::json!(4)).await;
    let watcher = ConfigWatcher::<u32>::start(client.clone(), "app", "workers");
    assert!(watcher.synced(WITHIN).await);
    assert_eq!(watcher.get().as_deref(), Some(&4));

    put(serde_json::json!(8)).await;
    assert!(eventually(WITHIN, || async { watcher.get().as_deref() == Some(&8) }).await);

    // Not a u32: logged and skipped, 8 stays.
    let bad = put(serde_json::json!("many")).await;
    assert!(
        eventually(WITHIN, || async {
            watcher
                .current()
                .rejected
                .is_some_and(|(revision, _)| revision == bad.revision)
        })
        .await
    );
    assert_eq!(watcher.get().as_deref(), Some(&8));

    put(serde_json::json!(16)).await;
    assert!(eventually(WITHIN, || async { watcher.get().as_deref() == Some(&16) }).await);
    assert!(watcher.current().rejected.is_none());

    client.delete_config("app", "workers", None).await.unwrap();
    assert!(eventually(WITHIN, || async { watcher.get().is_none() }).await);
    watcher.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn config_watchers_report_their_client_id_in_the_propagation_table() {
    let stack = start_stack(&redis().url()).await;
    let default = client(&stack);
    let own = default.client_id().to_owned();
    assert!(
        own.ends_with(&format!("-{}", std::process::id())),
        "the default names host, process and pid: {own}"
    );
    assert!(default.clone().with_client_id("no spaces").is_err());
    let named = default.clone().with_client_id("billing-7").unwrap();
    named
        .put_config("app", "flag", &serde_json::json!(true), &Default::default())
        .await
        .unwrap();
    let watchers = [
        ConfigWatcher::<bool>::start(default, "app", "flag"),
        ConfigWatcher::<bool>::start(named, "app", "flag"),
    ];
    for watcher in &watchers {
        assert!(watcher.synced(WITHIN).await);
    }
    let http = common::http();
    let listed = || async {
        let body: serde_json::Value = http
            .get(format!(
                "{}/api/v1/config/namespaces/app/clients",
                stack.gateway_url
            ))
            .bearer_auth(common::admin_token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut ids: Vec<String> = body["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["client_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let mut expected = vec!["billing-7".to_owned(), own];
    expected.sort();
    assert!(
        eventually(WITHIN, || async { listed().await == expected }).await,
        "the propagation table lists both SDK clients: {:?}",
        listed().await
    );
    for watcher in watchers {
        watcher.stop().await;
    }
    stack.stop().await;
}

#[tokio::test]
async fn config_watcher_never_moves_back_to_an_older_revision() {
    let stack = start_stack(&redis().url()).await;
    let client = client(&stack);
    let watcher = ConfigWatcher::<String>::start(client.clone(), "app", "mode");
    assert!(watcher.synced(WITHIN).await);
    assert!(watcher.get().is_none(), "absent key: no value");

    let mut last = 0;
    let mut rx = watcher.subscribe();
    let writer = async {
        for i in 0..20 {
            client
                .put_config("app", "mode", &format!("m{i}"), &Default::default())
                .await
                .unwrap();
        }
    };
    let observer = async {
        loop {
            if rx.changed().await.is_err() {
                break;
            }
            let revision = rx.borrow_and_update().revision;
            assert!(
                revision >= last,
                "revision went back from {last} to {revision}"
            );
            last = revision;
            if rx.borrow().value.as_deref().map(String::as_str) == Some("m19") {
                break;
            }
        }
    };
    let ((), observed) = tokio::join!(writer, tokio::time::timeout(WITHIN, observer));
    assert!(observed.is_ok(), "the watcher reached the last write");
    assert_eq!(watcher.get().as_deref().map(String::as_str), Some("m19"));
    watcher.stop().await;
    stack.stop().await;
}
