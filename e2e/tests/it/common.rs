//! Shared arrangement for the whole-stack tests: a gateway in-process, axum
//! upstreams on 127.0.0.1:0 and a caller's token (`mcp_testkit::gateway`).
//! Each module starts the control plane it needs behind the gateway.

use mcp_testkit::TestService;

pub use mcp_testkit::gateway::{bearer, client, echo, token, upstream};

/// Start a gateway with the test secret, `prefix` on `redis_url`, and `extra` flags.
pub async fn gateway(redis_url: &str, prefix: &str, extra: &[&str]) -> TestService {
    mcp_testkit::gateway::start(redis_url, prefix, extra, gateway::run).await
}
