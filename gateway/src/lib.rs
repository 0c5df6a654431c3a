//! gateway: the API gateway (JWT auth, rate limiting, circuit breaking, routing).

use std::net::SocketAddr;

use axum::Router;
use clap::Parser;
use mcp_shared::{CommonSettings, Redis, server};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Settings of `gateway` (flags or environment; see `--help`).
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "GATEWAY_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,

    /// Settings every MCP binary shares.
    #[command(flatten)]
    pub common: CommonSettings,
}

/// Run the service on `listener` until `shutdown` fires.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let common = &settings.common;
    let redis = Redis::new(
        &common.redis_url,
        common.redis_prefix.as_str(),
        common.redis_timeout,
    )
    .map_err(std::io::Error::other)?;
    let app = server::scaffold(Router::new(), redis, common.max_body_bytes);
    server::serve(listener, app, shutdown, common.shutdown_grace).await
}
