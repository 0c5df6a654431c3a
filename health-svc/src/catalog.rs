//! The in-memory list of registered instances, following the registry's
//! event log, and the check task of each instance that has a `check`.
//!
//! [`follow`] subscribes to the process's [`EventFeed`] first, then loads
//! every instance (`SMEMBERS reg:services` + one pipelined `HGETALL` per
//! service), then applies `registered`/`updated`/`health` (upsert: events
//! carry the whole stored instance) and `deregistered`/`expired` (remove)
//! in revision order. A gap in the revisions or a lagging subscription is
//! caught up from the stream; when the stream no longer holds the missing
//! events (trimmed), or Redis lost its data, everything is reloaded. No key
//! is polled.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use mcp_shared::{
    events::{Event, EventFeed, Replay},
    registry::{HealthStatus, Instance, RegistryEvent, kinds},
};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    checker::{Checker, Target},
    membership::Membership,
    store::Store,
};

/// How long to wait before retrying a load while Redis is away.
const RETRY: Duration = Duration::from_millis(250);
/// How often the follower looks for a revision that went backwards (Redis lost data).
const SANITY: Duration = Duration::from_secs(5);

struct Entry {
    status: HealthStatus,
    checked: Option<Checked>,
}

struct Checked {
    target: Arc<Target>,
    cancel: CancellationToken,
}

/// Instances by `service/id`, with their check tasks.
pub struct Catalog {
    entries: Mutex<HashMap<String, Entry>>,
    checker: Arc<Checker>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Catalog {
    /// An empty catalog; check tasks run on `tasks`, under `shutdown`.
    pub fn new(checker: Arc<Checker>, tasks: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            checker,
            tasks,
            shutdown,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // The map stays consistent even if a holder panicked: every change is one insert/remove.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add or update one instance, (re)starting its check task when the
    /// check, host or port changed.
    pub fn upsert(&self, instance: &Instance) {
        let target = Target::of(instance, self.checker.store());
        let key = format!("{}/{}", instance.service, instance.id);
        let mut entries = self.entries();
        let previous = entries.remove(&key);
        let checked = match (previous.and_then(|e| e.checked), target) {
            (Some(running), Some(target)) if *running.target == target => Some(running),
            (running, target) => {
                if let Some(running) = running {
                    running.cancel.cancel();
                }
                target.map(|target| self.start(target))
            }
        };
        entries.insert(
            key,
            Entry {
                status: instance.status,
                checked,
            },
        );
    }

    /// Forget one instance and stop its checks.
    pub fn remove(&self, service: &str, id: &str) {
        let key = format!("{service}/{id}");
        if let Some(Entry {
            checked: Some(running),
            ..
        }) = self.entries().remove(&key)
        {
            running.cancel.cancel();
        }
    }

    /// Replace everything with a fresh load.
    pub fn replace_all(&self, instances: &[Instance]) {
        let keep: std::collections::HashSet<String> = instances
            .iter()
            .map(|i| format!("{}/{}", i.service, i.id))
            .collect();
        {
            let mut entries = self.entries();
            entries.retain(|key, entry| {
                let stays = keep.contains(key);
                if let (false, Some(running)) = (stays, &entry.checked) {
                    running.cancel.cancel();
                }
                stays
            });
        }
        for instance in instances {
            self.upsert(instance);
        }
    }

    fn start(&self, target: Target) -> Checked {
        let target = Arc::new(target);
        let cancel = self.shutdown.child_token();
        self.tasks
            .spawn(self.checker.clone().run(target.clone(), cancel.clone()));
        Checked { target, cancel }
    }

    /// How many instances are known.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// True when no instance is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Set `health_instances{status}` (as the registry stores them) and
    /// `health_assigned_instances` (checks this replica owns).
    pub fn publish_gauges(&self, membership: &Membership) {
        let mut counts = [0u64; 4];
        let mut assigned = 0u64;
        for entry in self.entries().values() {
            counts[status_index(entry.status)] += 1;
            if let Some(running) = &entry.checked
                && membership.rank(running.target.hash) == Some(0)
            {
                assigned += 1;
            }
        }
        for status in [
            HealthStatus::Unknown,
            HealthStatus::Passing,
            HealthStatus::Warning,
            HealthStatus::Critical,
        ] {
            metrics::gauge!("health_instances", "status" => status.as_str())
                .set(counts[status_index(status)] as f64);
        }
        metrics::gauge!("health_assigned_instances").set(assigned as f64);
    }

    fn apply(&self, event: &Event) {
        let data: RegistryEvent = match serde_json::from_str(&event.data) {
            Ok(data) => data,
            Err(error) => {
                tracing::warn!(%error, revision = event.revision, "skipping an unreadable registry event");
                return;
            }
        };
        match (event.kind.as_str(), &data.instance) {
            (kinds::REGISTERED | kinds::UPDATED | kinds::HEALTH, Some(instance)) => {
                self.upsert(instance);
            }
            (kinds::DEREGISTERED | kinds::EXPIRED, _) => self.remove(&data.service, &data.id),
            _ => {}
        }
    }
}

fn status_index(status: HealthStatus) -> usize {
    match status {
        HealthStatus::Unknown => 0,
        HealthStatus::Passing => 1,
        HealthStatus::Warning => 2,
        HealthStatus::Critical => 3,
    }
}

/// Keep `catalog` in step with the registry until shutdown (see module docs).
pub async fn follow(
    feed: EventFeed,
    store: Arc<Store>,
    catalog: Arc<Catalog>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        // Subscribe before loading, so no event between the two is lost.
        let mut events = feed.subscribe();
        let mut last = match store.load_all().await {
            Ok((revision, instances)) => {
                catalog.replace_all(&instances);
                tracing::debug!(instances = instances.len(), revision, "registry loaded");
                revision
            }
            Err(error) => {
                tracing::debug!(%error, "cannot load the registry yet");
                pause(&shutdown, RETRY).await;
                continue;
            }
        };
        let mut sanity = tokio::time::interval(SANITY);
        sanity.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let caught_up = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = sanity.tick() => {
                    // A revision below ours means Redis lost data (the feed
                    // follows it down): our view is stale, reload.
                    feed.revision() >= last
                        || !matches!(store.log().current_revision().await, Ok(now) if now < last)
                }
                received = events.recv() => match received {
                    // Redis lost or replaced its data (the feed saw its
                    // epoch change): the catalog may hold ghosts, reload.
                    Ok(event) if event.is_reset() => false,
                    Ok(event) if event.revision <= last => true,
                    Ok(event) if event.revision == last + 1 => {
                        catalog.apply(&event);
                        last = event.revision;
                        true
                    }
                    // A gap or a lag: read the missing events from the stream.
                    Ok(_) | Err(RecvError::Lagged(_)) => match catch_up(&store, &catalog, last).await {
                        Some(revision) => {
                            last = revision;
                            true
                        }
                        None => false,
                    },
                    Err(RecvError::Closed) => return,
                },
            };
            if !caught_up {
                break;
            }
        }
    }
}

/// Apply the stream's events after `last`; `None` when they were trimmed
/// (or Redis is away) and a reload is needed.
async fn catch_up(store: &Store, catalog: &Catalog, mut last: u64) -> Option<u64> {
    loop {
        match store.log().replay(last).await {
            Ok(Replay::Events(events)) if events.is_empty() => return Some(last),
            Ok(Replay::Events(events)) => {
                for event in &events {
                    if event.revision > last {
                        catalog.apply(event);
                        last = event.revision;
                    }
                }
            }
            Ok(Replay::Reset(_)) | Err(_) => return None,
        }
    }
}

async fn pause(shutdown: &CancellationToken, wait: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(wait) => {}
    }
}
