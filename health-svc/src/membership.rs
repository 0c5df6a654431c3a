//! Work sharing across health-svc replicas.
//!
//! Each replica heartbeats into the sorted set `health:replicas` (id → last
//! seen, on Redis's clock) every `HEALTH_REPLICA_HEARTBEAT`; a replica seen
//! within `HEALTH_REPLICA_TTL` is live. Every replica ranks the live
//! replicas for each instance by rendezvous (highest-random-weight) hashing
//! of `(replica, instance)`: rank 0 owns the instance, rank 1 backs it up.
//! Rendezvous hashing moves only the departed replica's instances when the
//! set changes, and needs no coordination beyond agreeing on the live set.
//!
//! Why this is enough for "exactly one live replica, taken over within one
//! interval, never twice per interval":
//!
//! - Each check interval is cut into slots aligned on the wall clock (same
//!   phase on every replica, see [`crate::checker`]). The owner checks at the
//!   start of a slot, after claiming that slot number in Redis
//!   (`health:claim:{service}/{id}` holds the highest slot claimed; a claim
//!   at or below it loses). So a slot is checked at most once, even while
//!   replicas disagree about the live set for a moment.
//! - The backup tries the same claim half an interval later; it wins only if
//!   the owner did not check that slot (it died, or cannot reach Redis), so
//!   a dead replica's instances are still checked in the very slot it missed,
//!   long before its heartbeat times out. After `HEALTH_REPLICA_TTL` the
//!   live set drops it and the backups become owners.
//!
//! The claim costs one Redis round trip per check for the owner, and one per
//! interval for the backup; a single `SET NX PX` per instance would let a
//! late owner and the next slot's checker collide, which the slot number rules out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// A stable 64-bit hash (FNV-1a, then a SplitMix64 finalizer), the same in
/// every replica and every build, unlike `std`'s `DefaultHasher`.
pub fn stable_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    mix(hash)
}

/// SplitMix64's finalizer: spreads the bits of `z`.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Timing of the heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often to heartbeat.
    pub heartbeat: Duration,
    /// Seen within this = live.
    pub ttl: Duration,
}

/// This replica's view of the live set (cheap to clone, read on every check).
#[derive(Clone, Debug)]
pub struct Membership {
    id: Arc<str>,
    seed: u64,
    live: watch::Receiver<Arc<Vec<u64>>>,
}

/// The writer side of the live set, held by [`maintain`].
pub type LiveSender = watch::Sender<Arc<Vec<u64>>>;

impl Membership {
    /// A replica called `id`, with an empty live set until the first heartbeat.
    pub fn new(id: String) -> (Self, LiveSender) {
        let (tx, live) = watch::channel(Arc::new(Vec::new()));
        let seed = stable_hash(&id);
        (
            Self {
                id: Arc::from(id),
                seed,
                live,
            },
            tx,
        )
    }

    /// This replica's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// This replica's rank for an instance (by its [`stable_hash`]): 0 owns
    /// it, 1 is its backup; `None` while this replica is not in the live set.
    pub fn rank(&self, instance: u64) -> Option<usize> {
        // A read lock on the watch's value: uncontended except once per heartbeat.
        let live = self.live.borrow();
        if !live.contains(&self.seed) {
            return None;
        }
        let score = |seed: u64| (mix(seed ^ instance), seed);
        let mine = score(self.seed);
        Some(live.iter().filter(|seed| score(**seed) > mine).count())
    }

    /// How many replicas are live (as last seen).
    pub fn live_count(&self) -> usize {
        self.live.borrow().len()
    }
}

/// Heartbeat until shutdown, publish the live set, and call
/// `after_heartbeat` after each heartbeat (the caller refreshes the
/// `health_assigned_instances` and `health_instances{status}` gauges with
/// it: membership does not know the catalog). On shutdown leave the set, so
/// the backups take over at once.
pub async fn maintain(
    membership: Membership,
    live: LiveSender,
    store: Arc<Store>,
    timing: Timing,
    after_heartbeat: impl Fn(&Membership),
    shutdown: CancellationToken,
) {
    let live_ms = u64::try_from(timing.ttl.as_millis()).unwrap_or(u64::MAX);
    let forget_ms = live_ms.saturating_mul(20).max(60_000);
    let mut ticker = tokio::time::interval(timing.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match store.heartbeat(membership.id(), live_ms, forget_ms).await {
            Ok(ids) => {
                let mut seeds: Vec<u64> = ids.iter().map(|id| stable_hash(id)).collect();
                seeds.sort_unstable();
                live.send_if_modified(|current| {
                    if **current == seeds {
                        return false;
                    }
                    tracing::info!(replicas = seeds.len(), "live health-svc replicas changed");
                    *current = Arc::new(seeds);
                    true
                });
            }
            // Keep the last known set: claims keep checks single while Redis
            // is away, and nothing can be checked-and-recorded without it anyway.
            Err(error) => tracing::debug!(%error, "replica heartbeat failed"),
        }
        after_heartbeat(&membership);
    }
    if let Err(error) = store.leave(membership.id()).await {
        tracing::debug!(%error, "could not leave the replica set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_live(id: &str, others: &[&str]) -> Membership {
        let (membership, tx) = Membership::new(id.to_owned());
        let mut seeds: Vec<u64> = others.iter().map(|o| stable_hash(o)).collect();
        seeds.push(stable_hash(id));
        // The receiver keeps the last value after the sender is gone.
        tx.send_replace(Arc::new(seeds));
        membership
    }

    #[test]
    fn every_instance_has_exactly_one_owner_and_one_backup() {
        let ids = ["a", "b", "c"];
        let replicas: Vec<Membership> = ids
            .iter()
            .map(|id| {
                with_live(
                    id,
                    &ids.iter().filter(|o| *o != id).copied().collect::<Vec<_>>(),
                )
            })
            .collect();
        let mut owned = [0usize; 3];
        for n in 0..3000 {
            let instance = stable_hash(&format!("svc/{n}"));
            let ranks: Vec<usize> = replicas.iter().filter_map(|r| r.rank(instance)).collect();
            assert_eq!(ranks.iter().filter(|r| **r == 0).count(), 1);
            assert_eq!(ranks.iter().filter(|r| **r == 1).count(), 1);
            for (i, r) in replicas.iter().enumerate() {
                if r.rank(instance) == Some(0) {
                    owned[i] += 1;
                }
            }
        }
        // Roughly even: each gets between a fifth and a half.
        assert!(owned.iter().all(|n| (600..1500).contains(n)), "{owned:?}");
    }

    #[test]
    fn a_replica_outside_the_live_set_owns_nothing() {
        let (membership, _tx) = Membership::new("x".into());
        assert_eq!(membership.rank(42), None);
    }
}
