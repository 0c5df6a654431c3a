//! Shared arrangement for the whole-stack tests: a gateway in-process, axum
//! upstreams on 127.0.0.1:0 and a caller's token (`mcp_testkit::gateway`),
//! and the settings and readiness of the control-plane services each module
//! starts behind the gateway.

use std::time::Duration;

use mcp_testkit::{TestService, redis};

pub use mcp_testkit::gateway::{bearer, client, echo, token, upstream};

/// Start a gateway with the test secret, `prefix` on `redis_url`, and `extra` flags.
pub async fn gateway(redis_url: &str, prefix: &str, extra: &[&str]) -> TestService {
    mcp_testkit::gateway::start(redis_url, prefix, extra, gateway::run).await
}

/// The arguments of the control-plane service `name` under test: the test
/// Redis under `prefix`, the shared internal secret and, but for config-svc
/// (which connects nowhere), loopback-only egress.
pub fn service_args(name: &str, prefix: &str) -> Vec<String> {
    let mut args = vec![
        name.to_owned(),
        "--addr".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    args.extend(mcp_testkit::common_args(&redis().url(), prefix));
    if name != "config-svc" {
        args.extend(mcp_testkit::egress_args());
    }
    args
}

/// Wait (5 s at most) until each of `services` answers `/readyz` with 200.
pub async fn assert_ready<'a>(services: impl IntoIterator<Item = &'a TestService>) {
    for service in services {
        let ready = service
            .answers_ok_within("/readyz", Duration::from_secs(5))
            .await;
        assert!(ready, "{} did not come up", service.url);
    }
}
