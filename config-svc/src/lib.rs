//! config-svc: versioned configuration with compare-and-swap, history, schemas and watches.
//!
//! - [`api`]: the HTTP handlers (`/v1/namespaces/…`, `/v1/watch`).
//! - [`store`]: every Redis key and script of the service.
//! - [`model`]: wire types and the stored entry format.
//! - [`openapi`]: the hand-written parts of the OpenAPI document (parameters, bodies).
//! - [`policy`]: the reserved namespace `gateway` (gateway policies): its schema and write checks.
//! - [`schema`]: JSON Schema compilation and the per-process cache.
//! - [`propagation`]: which watching client has received which revision.
//! - [`error`]: the error enum and its problem+json mapping.

pub mod api;
pub mod error;
pub mod model;
pub mod openapi;
pub mod policy;
pub mod propagation;
pub mod schema;
pub mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clap::Parser;
use mcp_shared::{
    CommonSettings,
    events::{EventFeed, EventLog},
    internal::{InternalSettings, RequireInternalLayer},
    server,
    settings::parse_duration,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Settings of `config-svc` (flags or environment; see `--help`).
#[derive(Debug, Clone, Parser)]
#[command(name = "config-svc", version, about)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "CONFIG_ADDR", default_value = "0.0.0.0:8082")]
    pub addr: SocketAddr,

    /// Largest value (its JSON text, whitespace removed) accepted, in bytes;
    /// bigger → 413. Keep it below `MAX_BODY_BYTES`.
    #[arg(long, env = "CONFIG_MAX_VALUE_BYTES", default_value_t = 1024 * 1024)]
    pub max_value_bytes: usize,

    /// Versions kept in each key's history (at least 100).
    #[arg(long, env = "CONFIG_HISTORY_LIMIT", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    pub history_limit: u64,

    /// Events kept in the stream for watchers to resume from (`Last-Event-ID`).
    #[arg(long, env = "CONFIG_EVENTS_MAXLEN", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub events_maxlen: u64,

    /// How often the propagation status (which client saw which revision) is written to Redis.
    #[arg(long, env = "CONFIG_CLIENT_STATUS_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub client_status_interval: Duration,

    /// The secret of the gateway's internal credential (required).
    #[command(flatten)]
    pub internal: InternalSettings,

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
    // `config_writes_total` of every result is there, at 0, from the first scrape.
    mcp_shared::metrics::handle();
    for result in ["ok", "conflict", "rejected", "error"] {
        metrics::counter!("config_writes_total", "result" => result).increment(0);
    }
    // No secret, no service: it would otherwise answer anyone who reaches it.
    let internal = RequireInternalLayer::new(Arc::new(
        settings.internal.key().map_err(std::io::Error::other)?,
    ));
    let common = &settings.common;
    if settings.max_value_bytes >= common.max_body_bytes {
        tracing::warn!(
            max_value_bytes = settings.max_value_bytes,
            max_body_bytes = common.max_body_bytes,
            "CONFIG_MAX_VALUE_BYTES is not below MAX_BODY_BYTES: the body limit answers 413 first"
        );
    }
    let redis = common.redis().map_err(std::io::Error::other)?;
    // Background tasks stop with the service, or when serving fails.
    let tasks = shutdown.child_token();
    let log = EventLog::new(redis.clone(), store::LOG_NAME, settings.events_maxlen);
    let (feed, tail) = EventFeed::spawn(log.clone(), "config_watchers", tasks.clone());
    let store = store::ConfigStore::new(redis.clone(), log, settings.history_limit);
    // The gateway policy schema is in place before the first request when
    // Redis is up (so a write never races the install); else it is retried.
    let installer = if policy::install_now(&store).await {
        None
    } else {
        Some(tokio::spawn(policy::install(store.clone(), tasks.clone())))
    };
    let propagation = Arc::new(propagation::Propagation::default());
    let writer = tokio::spawn(propagation::run_writer(
        propagation.clone(),
        store.clone(),
        settings.client_status_interval,
        tasks.clone(),
    ));
    let state = api::AppState::new(
        store,
        feed,
        propagation,
        settings.max_value_bytes,
        tasks.clone(),
    );
    let app = server::scaffold(
        api::router(internal).with_state(state),
        redis,
        common.max_body_bytes,
    );
    let served = server::serve(listener, app, shutdown, common.connection_limits()).await;
    tasks.cancel();
    let _ = tail.await;
    let _ = writer.await;
    if let Some(installer) = installer {
        let _ = installer.await;
    }
    served
}
