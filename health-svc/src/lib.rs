//! health-svc: active HTTP and TCP checks of registered instances.
//!
//! The pieces, in the order a status change travels:
//!
//! - [`catalog`] follows the registry's event log (one `XREAD` tail per
//!   process, via [`EventFeed`]) and keeps an in-memory list of instances;
//!   for each instance with a `check` it runs one [`checker`] task.
//! - [`membership`] keeps this replica in the live set in Redis and decides,
//!   by rendezvous hashing over the live replicas, which instances this
//!   replica owns (and which it backs up).
//! - [`checker`] fires each owned check once per slot of its interval, claims
//!   the slot in Redis (so no instance is checked twice per interval, even
//!   while replicas come and go), probes with [`probe`], applies the
//!   [`hysteresis`] and writes the result through [`store`].
//! - [`api`] answers the read endpoints from Redis, so every replica gives
//!   the same answer.
//!
//! Dependencies between these modules run one way, with no cycle:
//! `catalog` → `checker` → `membership` → `store` (and `catalog` →
//! `membership` for the ownership gauges). `membership` does not know the
//! catalog: [`run`] hands [`membership::maintain`] the catalog's gauge
//! refresh as a callback.

pub mod api;
pub mod catalog;
pub mod checker;
pub mod error;
pub mod hysteresis;
pub mod membership;
pub mod model;
pub mod probe;
pub mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clap::Parser;
use mcp_shared::{
    CommonSettings,
    egress::{Egress, EgressSettings},
    events::{EventFeed, EventLog},
    internal::{InternalSettings, RequireInternalLayer},
    registry, server,
    settings::parse_duration,
};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    catalog::Catalog, checker::Checker, hysteresis::Thresholds, membership::Membership,
    probe::Prober, store::Store,
};

/// Settings of `health-svc` (flags or environment; see `--help`).
#[derive(Debug, Clone, Parser)]
#[command(name = "health-svc", version, about)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "HEALTH_ADDR", default_value = "0.0.0.0:8083")]
    pub addr: SocketAddr,

    /// Consecutive successful checks before an instance is `passing`.
    #[arg(long, env = "HEALTH_SUCCESS_BEFORE_PASSING", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub success_before_passing: u32,

    /// Consecutive failed checks before an instance is `critical`.
    #[arg(long, env = "HEALTH_FAILURES_BEFORE_CRITICAL", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub failures_before_critical: u32,

    /// Most checks one replica runs at the same time.
    #[arg(long, env = "HEALTH_MAX_CONCURRENT_CHECKS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent_checks: u32,

    /// How often a replica renews its entry in the live-replica set.
    #[arg(long, env = "HEALTH_REPLICA_HEARTBEAT", default_value = "1s", value_parser = parse_duration)]
    pub replica_heartbeat: Duration,

    /// A replica not seen for this long is dead and its instances move to the
    /// others (keep it well below the shortest check interval).
    #[arg(long, env = "HEALTH_REPLICA_TTL", default_value = "3s", value_parser = parse_duration)]
    pub replica_ttl: Duration,

    /// This replica's id in the live-replica set (default: a random one per process).
    #[arg(long, env = "HEALTH_REPLICA_ID")]
    pub replica_id: Option<mcp_shared::names::Name>,

    /// Cap of the registry's event stream when health-svc appends to it (keep
    /// it equal to registry-svc's `REGISTRY_EVENTS_MAX`).
    #[arg(long, env = "HEALTH_REGISTRY_EVENTS_MAX", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub registry_events_max_len: u64,

    /// Where probes may connect (see `mcp_shared::egress`).
    #[command(flatten)]
    pub egress: EgressSettings,
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
    // `health_checks_total` of every type and result is there, at 0, from the
    // first scrape, so an alert on failed checks sees 0 rather than no data.
    mcp_shared::metrics::handle();
    for kind in ["http", "tcp"] {
        for outcome in [
            hysteresis::Outcome::Pass,
            hysteresis::Outcome::Warn,
            hysteresis::Outcome::Fail,
        ] {
            metrics::counter!("health_checks_total", "type" => kind, "result" => outcome.as_str())
                .increment(0);
        }
    }
    // No secret, no service: it would otherwise answer anyone who reaches it.
    let internal = RequireInternalLayer::new(Arc::new(
        settings.internal.key().map_err(std::io::Error::other)?,
    ));
    if settings.replica_ttl <= settings.replica_heartbeat {
        return Err(std::io::Error::other(
            "HEALTH_REPLICA_TTL must be longer than HEALTH_REPLICA_HEARTBEAT",
        ));
    }
    let common = &settings.common;
    let redis = common.redis().map_err(std::io::Error::other)?;
    let log = EventLog::new(
        redis.clone(),
        registry::LOG_NAME,
        settings.registry_events_max_len,
    );
    let store = Arc::new(Store::new(log.clone()));
    let thresholds = Thresholds {
        success_before_passing: settings.success_before_passing,
        failures_before_critical: settings.failures_before_critical,
    };
    let replica_id = settings.replica_id.as_ref().map_or_else(
        || uuid::Uuid::new_v4().simple().to_string(),
        |id| id.to_string(),
    );
    let (membership, live) = Membership::new(replica_id);
    // Probes never reach Redis or this service itself (nor EGRESS_DENY_ADDRS).
    let mut egress = Egress::from_settings(&settings.egress).await;
    for endpoint in common.redis_endpoints() {
        egress.protect_endpoint(&endpoint, "Redis").await;
    }
    if let Ok(own) = listener.local_addr() {
        egress.protect(own, "health-svc");
    }
    let prober = Prober::new(Arc::new(egress)).map_err(std::io::Error::other)?;
    let checker = Arc::new(Checker::new(
        store.clone(),
        prober,
        membership.clone(),
        thresholds,
        settings.max_concurrent_checks as usize,
    ));

    // Every background task is tracked here and stopped by `shutdown`.
    let tasks = TaskTracker::new();
    let (feed, feed_task) = EventFeed::spawn(log, "health_watchers", shutdown.clone());
    let catalog = Arc::new(Catalog::new(checker, tasks.clone(), shutdown.clone()));
    tasks.spawn(catalog::follow(
        feed,
        store.clone(),
        catalog.clone(),
        shutdown.clone(),
    ));
    let gauges = catalog.clone();
    tasks.spawn(membership::maintain(
        membership.clone(),
        live,
        store.clone(),
        membership::Timing {
            heartbeat: settings.replica_heartbeat,
            ttl: settings.replica_ttl,
        },
        // After each heartbeat: the gauges of what this replica owns.
        move |membership: &Membership| gauges.publish_gauges(membership),
        shutdown.clone(),
    ));

    let state = api::AppState { store, thresholds };
    let app = server::scaffold(
        api::router(internal).with_state(state),
        redis,
        common.max_body_bytes,
    );
    let served = server::serve(listener, app, shutdown.clone(), common.connection_limits()).await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    let _ = feed_task.await;
    served
}
