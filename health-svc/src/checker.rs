//! One task per checked instance: wake at each slot, check when this replica
//! owns (or backs up) the instance, record the result.
//!
//! Slots: an instance's interval `I` is cut into slots that start at
//! `offset + k·I` on the wall clock (ms since the epoch), where `offset` is
//! the instance's hash modulo `I`. The offset spreads checks evenly over the
//! interval instead of firing them all at once, and since it depends only on
//! the instance every replica agrees on the slot number `k`, which is what
//! the Redis claim is keyed on (see [`crate::membership`]). The owner wakes
//! at the slot's start, the backup half an interval later.
//!
//! Concurrency is bounded by a semaphore (`HEALTH_MAX_CONCURRENT_CHECKS`);
//! a check that waited past its own slot is skipped rather than run late.

use std::{sync::Arc, time::Duration, time::Instant};

use mcp_shared::{
    registry::{Check, CheckType, HealthStatus, Instance},
    time::now_ms,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{
    hysteresis::{self, Thresholds},
    membership::{Membership, mix, stable_hash},
    probe::Prober,
    store::{Recorded, Store, TargetKeys},
};

/// Shortest interval honoured (a registered `0` would spin).
const MIN_INTERVAL_MS: u64 = 1000;

/// What one instance's checks need, fixed for the task's life (a changed
/// definition restarts the task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Service name.
    pub service: String,
    /// Instance id.
    pub id: String,
    /// Host to probe (the registered one, and only it).
    pub host: String,
    /// Port to probe.
    pub port: u16,
    /// The check definition.
    pub check: Check,
    /// Its Redis keys.
    pub keys: TargetKeys,
    /// [`stable_hash`] of `service/id`: rendezvous input and schedule offset.
    pub hash: u64,
}

impl Target {
    /// The target of `instance`, if it registered a check.
    pub fn of(instance: &Instance, store: &Store) -> Option<Self> {
        let check = instance.check.clone()?;
        let keys = store.target_keys(&instance.service, &instance.id);
        Some(Self {
            hash: stable_hash(&keys.lease_member),
            service: instance.service.clone(),
            id: instance.id.clone(),
            host: instance.host.clone(),
            port: instance.port,
            check,
            keys,
        })
    }

    /// The check interval in ms.
    pub fn interval_ms(&self) -> u64 {
        (u64::from(self.check.interval_seconds) * 1000).max(MIN_INTERVAL_MS)
    }

    /// The probe timeout: as registered, but at most the interval.
    pub fn timeout(&self) -> Duration {
        let ms = u64::from(self.check.timeout_ms).clamp(1, self.interval_ms());
        Duration::from_millis(ms)
    }

    /// Where this instance's slots start within its interval.
    fn offset_ms(&self) -> u64 {
        mix(self.hash) % self.interval_ms()
    }

    /// The `type` label of the metrics.
    fn kind(&self) -> &'static str {
        match self.check.kind {
            CheckType::Http => "http",
            CheckType::Tcp => "tcp",
        }
    }
}

/// A wake-up point: the start of slot `slot` (owner) or its middle (backup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    slot: u64,
    at_ms: u64,
    rank: usize,
}

/// The first point strictly after `now`.
fn next_point(now: u64, offset: u64, interval: u64) -> Point {
    let half = interval / 2;
    // `now` is ms since 1970, far above any offset.
    let since = now.saturating_sub(offset);
    let slot = since / interval;
    let start = offset + slot * interval;
    if now < start + half {
        Point {
            slot,
            at_ms: start + half,
            rank: 1,
        }
    } else {
        Point {
            slot: slot + 1,
            at_ms: start + interval,
            rank: 0,
        }
    }
}

/// Everything the check tasks share (one per process).
pub struct Checker {
    store: Arc<Store>,
    prober: Prober,
    membership: Membership,
    thresholds: Thresholds,
    permits: Semaphore,
}

impl Checker {
    /// The shared checker.
    pub fn new(
        store: Arc<Store>,
        prober: Prober,
        membership: Membership,
        thresholds: Thresholds,
        max_concurrent: usize,
    ) -> Self {
        Self {
            store,
            prober,
            membership,
            thresholds,
            permits: Semaphore::new(max_concurrent.max(1)),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The replica's membership view.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The check loop of one instance, until `cancel` (instance gone or
    /// changed, or shutdown).
    pub async fn run(self: Arc<Self>, target: Arc<Target>, cancel: CancellationToken) {
        let interval = target.interval_ms();
        let offset = target.offset_ms();
        loop {
            let now = now_ms();
            let point = next_point(now, offset, interval);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(point.at_ms - now)) => {}
            }
            if self.membership.rank(target.hash) == Some(point.rank) {
                let slot_end = offset + (point.slot + 1) * interval;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.check(&target, point.slot, slot_end) => {}
                }
            }
        }
    }

    /// Claim the slot, probe, apply the hysteresis, record.
    async fn check(&self, target: &Target, slot: u64, slot_end_ms: u64) {
        let Ok(_permit) = self.permits.acquire().await else {
            return;
        };
        if now_ms() >= slot_end_ms {
            tracing::debug!(service = %target.service, id = %target.id, "check skipped: waited past its slot");
            return;
        }
        let claim_expiry = target.interval_ms() * 3;
        let previous = match self
            .store
            .claim(&target.keys, &target.id, slot, claim_expiry)
            .await
        {
            Ok(Some(previous)) => previous,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%error, "check skipped: cannot claim it in redis");
                return;
            }
        };
        let started = Instant::now();
        let probe = self
            .prober
            .probe(&target.host, target.port, &target.check, target.timeout())
            .await;
        let labels = [("type", target.kind()), ("result", probe.outcome.as_str())];
        metrics::counter!("health_checks_total", &labels).increment(1);
        metrics::histogram!("health_check_duration_seconds", "type" => target.kind())
            .record(started.elapsed().as_secs_f64());

        let now = now_ms();
        let record = hysteresis::next(
            previous.as_ref(),
            probe.outcome,
            probe.output,
            self.thresholds,
            now,
        );
        let publish = (record.status != HealthStatus::Unknown).then_some(record.status);
        match self
            .store
            .record(&target.service, &target.id, &record, publish)
            .await
        {
            Ok(Recorded::Changed) => tracing::info!(
                service = %target.service, id = %target.id, status = record.status.as_str(),
                output = %record.output, "instance health changed"
            ),
            Ok(Recorded::Kept | Recorded::Gone) => {}
            Err(error) => {
                tracing::warn!(%error, service = %target.service, id = %target.id, "could not record a check result");
                return;
            }
        }
        let overdue = match (
            target.check.deregister_critical_after_seconds,
            record.critical_since_ms,
        ) {
            (Some(after), Some(since)) => now.saturating_sub(since) >= u64::from(after) * 1000,
            _ => false,
        };
        if overdue {
            match self
                .store
                .deregister_critical(&target.service, &target.id)
                .await
            {
                Ok(true) => tracing::info!(
                    service = %target.service, id = %target.id,
                    "deregistered: critical past deregister_critical_after_seconds"
                ),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "could not deregister a critical instance"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_alternate_owner_and_backup_and_move_forward() {
        let (offset, interval) = (300, 1000);
        let p = next_point(10_000, offset, interval);
        assert_eq!(
            p,
            Point {
                slot: 10,
                at_ms: 10_300,
                rank: 0
            }
        );
        let q = next_point(p.at_ms, offset, interval);
        assert_eq!(
            q,
            Point {
                slot: 10,
                at_ms: 10_800,
                rank: 1
            }
        );
        let r = next_point(q.at_ms, offset, interval);
        assert_eq!(
            r,
            Point {
                slot: 11,
                at_ms: 11_300,
                rank: 0
            }
        );
    }
}
