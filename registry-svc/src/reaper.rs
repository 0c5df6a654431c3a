//! The lease reaper and the instance census, one background task per replica.
//!
//! Every replica runs it; they coordinate only through Redis. Each tick asks
//! Redis which services have a lease that ran out (or are protected), then
//! runs `reap.lua` once per such service: the script re-checks every
//! deadline atomically, so with any number of replicas an instance expires
//! once, with one `expired` event, and a dead replica leaves nothing undone.
//! Every `census` interval it also refreshes the `registry_instances` gauge.

use std::{collections::HashSet, time::Duration};

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::store::{Protection, Store};

/// Gauge: instances by service and status.
pub const INSTANCES_GAUGE: &str = "registry_instances";
/// Counter: instances this replica expired.
pub const EXPIRED_COUNTER: &str = "registry_expired_total";
/// Gauge: services whose expiries are held back.
pub const PROTECTED_GAUGE: &str = "registry_protected_services";

const STATUSES: [&str; 4] = ["unknown", "passing", "warning", "critical"];

/// Reap every `interval` and count every `census` until `shutdown`.
pub async fn run(
    store: Store,
    policy: Protection,
    interval: Duration,
    census: Duration,
    shutdown: CancellationToken,
) {
    metrics::counter!(EXPIRED_COUNTER).increment(0);
    metrics::gauge!(PROTECTED_GAUGE).set(0.0);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next_census = Instant::now();
    let mut counted: HashSet<String> = HashSet::new();
    // Log a Redis outage once when it starts, not every tick.
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut result = reap_once(&store, &policy).await;
        if result.is_ok() && Instant::now() >= next_census {
            next_census = Instant::now() + census;
            result = count(&store, &mut counted).await;
        }
        match result {
            Ok(()) if failing => {
                tracing::info!("reaper reaches redis again");
                failing = false;
            }
            Ok(()) => {}
            Err(error) if !failing => {
                tracing::warn!(%error, "reaper cannot reach redis; leases wait until it is back");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// One pass: every service with a due lease or a protection mark.
async fn reap_once(store: &Store, policy: &Protection) -> Result<(), mcp_shared::StoreError> {
    let services = store.due_services(policy.settle_ms).await?;
    let mut protected = 0u32;
    for service in &services {
        let reaped = store.reap(service, policy).await?;
        if reaped.expired > 0 {
            metrics::counter!(EXPIRED_COUNTER).increment(reaped.expired);
            tracing::info!(service, expired = reaped.expired, "leases expired");
        }
        if reaped.protected {
            protected += 1;
        }
    }
    // Every protected service is in `services`, so this is the full count.
    metrics::gauge!(PROTECTED_GAUGE).set(f64::from(protected));
    Ok(())
}

/// Refresh `registry_instances`; services that went away drop to zero.
async fn count(store: &Store, counted: &mut HashSet<String>) -> Result<(), mcp_shared::StoreError> {
    let (_, services) = store.services().await?;
    let mut seen = HashSet::with_capacity(services.len());
    for service in services {
        let counts = [
            service.unknown,
            service.passing,
            service.warning,
            service.critical,
        ];
        for (status, n) in STATUSES.iter().zip(counts) {
            metrics::gauge!(INSTANCES_GAUGE, "service" => service.name.clone(), "status" => *status)
                .set(n as f64);
        }
        seen.insert(service.name);
    }
    for gone in counted.difference(&seen) {
        for status in STATUSES {
            metrics::gauge!(INSTANCES_GAUGE, "service" => gone.clone(), "status" => status)
                .set(0.0);
        }
    }
    *counted = seen;
    Ok(())
}
