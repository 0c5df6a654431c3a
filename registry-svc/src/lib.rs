//! registry-svc: service instances, leases, discovery and watches.
//!
//! Instances live in Redis (schema in [`mcp_shared::registry`]); every
//! change runs as one Lua script that also bumps the registry revision and
//! appends an event to the capped stream ([`store`]). Each replica follows
//! that stream into an in-memory view ([`view`]) and answers discovery from
//! it ([`discovery`]): after one round trip that learns Redis's revision (so
//! a write acknowledged by any replica is seen), or at once with `?stale`.
//! SSE watches replay from the per-process [`EventFeed`]. A lease reaper
//! per replica expires instances whose lease ran out, holding back mass
//! expiries ([`reaper`]). Replicas share nothing but Redis.
//!
//! - [`api`]: the HTTP handlers.
//! - [`discovery`]: listings from the view, fenced or stale.
//! - [`fence`]: the fences those reads start with, batched.
//! - [`view`]: the in-memory view and the follower that keeps it.
//! - [`model`]: request validation, query parameters, response bodies.
//! - [`openapi`]: the hand-written parts of the OpenAPI document (body and query schemas).
//! - [`store`]: all Redis access (scripts in `src/lua/`).
//! - [`sd`]: Prometheus HTTP service discovery (`GET /v1/sd/prometheus`).
//! - [`reaper`]: lease expiry, mass-expiry protection, the instance census.
//! - [`error`]: the one error type, as problem+json.

pub mod api;
pub mod discovery;
pub mod error;
pub mod fence;
pub mod model;
pub mod openapi;
pub mod reaper;
pub mod sd;
pub mod store;
pub mod view;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clap::Parser;
use mcp_shared::{
    CommonSettings,
    egress::{Egress, EgressSettings},
    events::{self, EventFeed, EventLog},
    internal::{InternalSettings, RequireInternalLayer},
    registry, server,
    settings::parse_duration,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    fence::Fences,
    store::{Protection, Store},
    view::{View, ViewFollower},
};

/// Leases that ran out within this long of each other are judged together
/// by the protection (so a group that stops at once is not reaped one by
/// one across ticks); it delays an expiry by at most this much.
const SETTLE: Duration = Duration::from_millis(250);

/// Settings of `registry-svc` (flags or environment; see `--help`).
#[derive(Debug, Clone, Parser)]
#[command(name = "registry-svc", version, about)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "REGISTRY_ADDR", default_value = "0.0.0.0:8081")]
    pub addr: SocketAddr,

    /// How many events the registry stream keeps (approximately); a watcher
    /// resuming from an older revision gets a `reset` and re-lists.
    #[arg(long, env = "REGISTRY_EVENTS_MAX", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events_max: u64,

    /// How often each replica looks for leases that ran out (an instance
    /// goes within this plus 250 ms of its deadline).
    #[arg(long, env = "REGISTRY_REAP_INTERVAL", default_value = "200ms", value_parser = parse_duration)]
    pub reap_interval: Duration,

    /// Mass-expiry protection: expiries of a service are held back while
    /// more than this share (0-1) of its instances is at risk (lease run out
    /// now or expired within the window). 1 turns protection off.
    #[arg(long, env = "REGISTRY_PROTECT_THRESHOLD", default_value_t = 0.5, value_parser = parse_share)]
    pub protect_threshold: f64,

    /// Mass-expiry protection: the fewest instances at risk that can trip
    /// it, so small services still lose a dead instance or two.
    #[arg(long, env = "REGISTRY_PROTECT_MIN_INSTANCES", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub protect_min_instances: u64,

    /// Mass-expiry protection: expiries this recent count as part of the
    /// same mass expiry, and when protection lifts the instances still held
    /// get this long to heartbeat before they expire. Make it at least the
    /// clients' heartbeat interval, so instances cut off together are seen
    /// together.
    #[arg(long, env = "REGISTRY_PROTECT_WINDOW", default_value = "15s", value_parser = parse_duration)]
    pub protect_window: Duration,

    /// How often the `registry_instances` gauge is recounted from Redis.
    #[arg(long, env = "REGISTRY_CENSUS_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub census_interval: Duration,

    /// Addresses refused at registration, as the gateway and health-svc refuse
    /// to connect to them (see `mcp_shared::egress`).
    #[command(flatten)]
    pub egress: EgressSettings,
    /// The secret of the gateway's internal credential (required).
    #[command(flatten)]
    pub internal: InternalSettings,

    /// Settings every MCP binary shares.
    #[command(flatten)]
    pub common: CommonSettings,
}

/// A share between 0 and 1.
fn parse_share(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err("expected a share between 0 and 1, e.g. 0.5".to_owned()),
    }
}

/// Run the service on `listener` until `shutdown` fires.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // No secret, no service: it would otherwise answer anyone who reaches it.
    let internal = RequireInternalLayer::new(Arc::new(
        settings.internal.key().map_err(std::io::Error::other)?,
    ));
    let common = &settings.common;
    let redis = common.redis().map_err(std::io::Error::other)?;
    let log = EventLog::new(redis.clone(), registry::LOG_NAME, settings.events_max);
    let store = Store::new(redis.clone(), log.clone());

    // Background tasks stop with the service, also when serving fails.
    let tasks = shutdown.child_token();
    // What reads need stops only once the last request is answered: a
    // blocking query that shutdown wakes still fences and reads the view.
    let reads = CancellationToken::new();
    let (feed, feed_task) = EventFeed::spawn(log, "registry_watchers", reads.clone());
    // The view discovery answers from, kept by the workspace's follower loop.
    let view = View::new();
    let view_task = tokio::spawn(events::follow(
        feed.clone(),
        ViewFollower::new(store.clone(), view.clone()),
        reads.clone(),
    ));
    let (fences, fence_task) = Fences::spawn(store.clone(), reads.clone());
    metrics::counter!(discovery::FALLBACKS_COUNTER).increment(0);
    let policy = Protection {
        threshold: settings.protect_threshold,
        min_instances: settings.protect_min_instances,
        window_ms: u64::try_from(settings.protect_window.as_millis()).unwrap_or(u64::MAX),
        settle_ms: u64::try_from(SETTLE.as_millis()).unwrap_or(250),
    };
    let reaper_task = tokio::spawn(reaper::run(
        store.clone(),
        policy,
        settings.reap_interval.max(Duration::from_millis(10)),
        settings.census_interval.max(Duration::from_millis(10)),
        tasks.clone(),
    ));

    let mut egress = Egress::from_settings(&settings.egress).await;
    for endpoint in common.redis_endpoints() {
        egress.protect_endpoint(&endpoint, "Redis").await;
    }
    if let Ok(own) = listener.local_addr() {
        egress.protect(own, "registry-svc");
    }
    let state = api::AppState::new(api::Shared {
        store,
        feed,
        view,
        fences,
        shutdown: tasks.clone(),
        egress: Arc::new(egress),
    });
    let app = server::scaffold(
        api::router(internal).with_state(state),
        redis,
        common.max_body_bytes,
    );
    let served = server::serve(listener, app, shutdown, common.connection_limits()).await;
    tasks.cancel();
    reads.cancel();
    let _ = feed_task.await;
    let _ = view_task.await;
    let _ = fence_task.await;
    let _ = reaper_task.await;
    served
}
