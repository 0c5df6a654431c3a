//! Scopes narrowed to a name (`registry:write:billing`, `config:read:shop`,
//! `config:write:team-a-*`) allow that name only, and listings and watches
//! show only what the token may read.

use std::time::Duration;

use crate::common::{bearer, token};
use futures_util::StreamExt as _;
use mcp_testkit::{eventually, redis};
use serde_json::{Value, json};

use super::{Stack, stack};

#[tokio::test]
async fn a_scope_narrowed_to_a_service_registers_there_and_nowhere_else() {
    let stack = stack(false).await;
    let (status, instance) = stack
        .register("billing", "b-1", 9000, "registry:write:billing")
        .await;
    assert_eq!(status, 201, "{instance}");
    let before = redis().snapshot(&stack.prefix);
    let (status, problem) = stack
        .register("shop", "s-1", 9000, "registry:write:billing")
        .await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["required_scope"], "registry:write:shop");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("registry:write:shop")
    );
    // Nor may it remove another service's instance, nor read the registry.
    let (status, _) = stack
        .call(
            "DELETE",
            "/api/v1/registry/services/shop/instances/s-1",
            "registry:write:billing",
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = stack
        .call(
            "GET",
            "/api/v1/registry/services",
            "registry:write:billing",
            None,
        )
        .await;
    assert_eq!(status, 403, "write does not grant read");
    assert_eq!(redis().snapshot(&stack.prefix), before);
    // `registry:write` alone still means every service.
    let (status, _) = stack.register("shop", "s-1", 9000, "registry:write").await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn config_scopes_narrowed_to_a_namespace_or_a_prefix() {
    let stack = stack(false).await;
    for ns in ["shop", "prod"] {
        let (status, _) = stack.put(ns, "k", json!(ns), "config:write").await;
        assert_eq!(status, 201);
    }
    let (status, entry) = stack
        .call(
            "GET",
            "/api/v1/config/namespaces/shop/keys/k",
            "config:read:shop",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(entry["value"], "shop");
    let (status, problem) = stack
        .call(
            "GET",
            "/api/v1/config/namespaces/prod/keys/k",
            "config:read:shop",
            None,
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(problem["required_scope"], "config:read:prod");
    let (status, _) = stack
        .call(
            "GET",
            "/api/v1/config/watch?namespace=prod",
            "config:read:shop",
            None,
        )
        .await;
    assert_eq!(status, 403, "a watch of another namespace");

    let (status, _) = stack
        .put("team-a-x", "k", json!(1), "config:write:team-a-*")
        .await;
    assert_eq!(status, 201);
    let before = redis().snapshot(&stack.prefix);
    for ns in ["team-b-x", "team-a", "prod"] {
        let (status, problem) = stack.put(ns, "k", json!(2), "config:write:team-a-*").await;
        assert_eq!(status, 403, "{ns}");
        assert_eq!(problem["required_scope"], format!("config:write:{ns}"));
    }
    assert_eq!(redis().snapshot(&stack.prefix), before);
}

#[tokio::test]
async fn listings_show_only_what_a_narrowed_token_may_read() {
    let stack = stack(true).await;
    for service in ["billing", "shop"] {
        let (status, _) = stack.register(service, "i-1", 9000, "registry:write").await;
        assert_eq!(status, 201);
    }
    for ns in ["shop", "prod", "team-a-x"] {
        let (status, _) = stack.put(ns, "k", json!(1), "config:write").await;
        assert_eq!(status, 201);
    }
    let names = |body: &Value, list: &str, field: Option<&str>| -> Vec<String> {
        body[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| match field {
                Some(field) => item[field].as_str().unwrap().to_owned(),
                None => item.as_str().unwrap().to_owned(),
            })
            .collect()
    };

    let (_, all) = stack
        .call("GET", "/api/v1/registry/services", "registry:read", None)
        .await;
    assert_eq!(names(&all, "services", Some("name")), ["billing", "shop"]);
    let (status, narrowed) = stack
        .call(
            "GET",
            "/api/v1/registry/services",
            "registry:read:billing",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(names(&narrowed, "services", Some("name")), ["billing"]);

    let (_, all) = stack
        .call("GET", "/api/v1/config/namespaces", "config:read", None)
        .await;
    assert_eq!(
        names(&all, "namespaces", None),
        // `gateway` holds the gateway policy schema config-svc installs.
        ["gateway", "prod", "shop", "team-a-x"]
    );
    let (status, narrowed) = stack
        .call(
            "GET",
            "/api/v1/config/namespaces",
            "config:read:shop config:read:team-a-*",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(names(&narrowed, "namespaces", None), ["shop", "team-a-x"]);

    let listed = eventually(Duration::from_secs(5), || async {
        let (_, all) = stack
            .call("GET", "/api/v1/health/summary", "health:read", None)
            .await;
        all["services"].as_array().is_some_and(|s| s.len() == 2)
    })
    .await;
    assert!(listed, "health-svc lists both services");
    let (status, narrowed) = stack
        .call("GET", "/api/v1/health/summary", "health:read:shop", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(names(&narrowed, "services", Some("name")), ["shop"]);
    // Another area's scope lists nothing: 403.
    let (status, _) = stack
        .call("GET", "/api/v1/health/summary", "config:read", None)
        .await;
    assert_eq!(status, 403);
}

/// An open SSE stream through the gateway.
struct Events {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Events {
    async fn open(stack: &Stack, path: &str, scopes: &str) -> Self {
        let response = reqwest::Client::new()
            .get(stack.gateway.at(path))
            .header("authorization", bearer(&token("watcher", scopes)))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        Self {
            stream: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event's `(kind, data)`, within 5 s.
    async fn next(&mut self) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut kind = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if let Some(kind) = kind {
                    return Some((kind, serde_json::from_str(&data).unwrap_or(Value::Null)));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??
                .ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn watches_show_only_the_names_a_narrowed_token_may_read() {
    let stack = stack(false).await;
    let mut registry =
        Events::open(&stack, "/api/v1/registry/watch", "registry:read:billing").await;
    let mut config = Events::open(&stack, "/api/v1/config/watch", "config:read:shop").await;
    // The invisible change first, then the visible one: the first event a
    // watcher gets must be the visible one.
    stack.register("shop", "s-1", 9000, "registry:write").await;
    stack
        .register("billing", "b-1", 9000, "registry:write")
        .await;
    stack.put("prod", "k", json!(1), "config:write").await;
    stack.put("shop", "k", json!(2), "config:write").await;

    let (kind, data) = registry.next().await.expect("a registry event");
    assert_eq!(kind, "registered");
    assert_eq!(data["service"], "billing", "{data}");
    let (kind, data) = config.next().await.expect("a config event");
    assert_eq!(kind, "put");
    assert_eq!(data["namespace"], "shop", "{data}");
}
