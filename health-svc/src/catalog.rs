//! The in-memory list of registered instances, following the registry's
//! event log, and the check task of each instance that has a `check`.
//!
//! [`follow`] keeps it in step through the one follower loop of
//! [`mcp_shared::events::follow`]: subscribe to the process's [`EventFeed`],
//! load every instance with the revision it is at, then apply
//! `registered`/`updated`/`health` (upsert: events carry the whole stored
//! instance) and `deregistered`/`expired` (remove) in revision order; a gap,
//! a lagging subscription or lost data reloads. A reload keeps the check
//! task of every instance whose check, host and port did not change. No key
//! is polled.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use mcp_shared::{
    StoreError,
    events::{self, Event, EventFeed, Follower},
    registry::{HealthStatus, Instance, RegistryEvent, kinds},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    checker::{Checker, Target},
    membership::Membership,
    store::Store,
};

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

/// The catalog as a [`Follower`] of the registry: loads through the store.
struct Following {
    store: Arc<Store>,
    catalog: Arc<Catalog>,
}

impl Follower for Following {
    const NAME: &'static str = "health catalog";
    type Snapshot = Vec<Instance>;

    async fn load(&self) -> Result<(u64, Vec<Instance>), StoreError> {
        self.store.load_all().await
    }

    fn install(&mut self, revision: u64, instances: Vec<Instance>) {
        self.catalog.replace_all(&instances);
        tracing::debug!(instances = instances.len(), revision, "registry loaded");
    }

    fn apply(&mut self, event: &Event) {
        self.catalog.apply(event);
    }
}

/// Keep `catalog` in step with the registry until shutdown (see module docs).
pub async fn follow(
    feed: EventFeed,
    store: Arc<Store>,
    catalog: Arc<Catalog>,
    shutdown: CancellationToken,
) {
    events::follow(feed, Following { store, catalog }, shutdown).await;
}
