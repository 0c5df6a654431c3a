//! [`ServiceWatcher`]: the instances of one service, kept current from the
//! registry's watch stream (a discovery cache, like Consul's `health.service`
//! watch or a Nacos subscription).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use mcp_api::registry::{HealthStatus, Instance, RegistryEvent, kinds};
use tokio::sync::watch;

use crate::{
    Client, Error,
    follow::{Followed, Following},
    model::InstanceQuery,
    sse::{EventStream, SseEvent},
};

/// A service's instances at one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceSnapshot {
    /// The registry revision this reflects (0 before the first listing).
    pub revision: u64,
    /// Whether the first listing has arrived.
    pub synced: bool,
    /// The instances, by id.
    pub instances: BTreeMap<String, Instance>,
}

impl ServiceSnapshot {
    /// The `passing` instances.
    pub fn passing(&self) -> impl Iterator<Item = &Instance> {
        self.instances
            .values()
            .filter(|i| i.status == HealthStatus::Passing)
    }
}

/// The instances of one service, hot-updated by a background task; see the module docs.
#[derive(Debug)]
pub struct ServiceWatcher {
    snapshot: watch::Receiver<Arc<ServiceSnapshot>>,
    following: Following,
}

impl ServiceWatcher {
    /// Start watching `service`. Must be called inside a Tokio runtime.
    pub fn start(client: Client, service: &str) -> Self {
        let (tx, snapshot) = watch::channel(Arc::new(ServiceSnapshot::default()));
        let cache = Cache {
            client,
            service: service.to_owned(),
            tx,
        };
        Self {
            snapshot,
            following: Following::spawn(cache),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<ServiceSnapshot> {
        self.snapshot.borrow().clone()
    }

    /// The current instances (all statuses), by id.
    pub fn instances(&self) -> Vec<Instance> {
        self.snapshot.borrow().instances.values().cloned().collect()
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ServiceSnapshot>> {
        self.snapshot.clone()
    }

    /// Wait for the first listing, at most `within`; true once synced.
    pub async fn synced(&self, within: Duration) -> bool {
        crate::follow::synced(&self.snapshot, within, |s| s.synced).await
    }

    /// Stop watching (dropping the watcher stops it too, without waiting).
    pub async fn stop(self) {
        self.following.stop().await;
    }
}

struct Cache {
    client: Client,
    service: String,
    tx: watch::Sender<Arc<ServiceSnapshot>>,
}

impl Followed for Cache {
    fn describe(&self) -> String {
        format!("registry/{}", self.service)
    }

    async fn open(&self, after: Option<u64>) -> Result<EventStream, Error> {
        self.client.watch_registry(Some(&self.service), after).await
    }

    async fn relist(&mut self) -> Result<Option<u64>, Error> {
        let list = self
            .client
            .list_instances(&self.service, &InstanceQuery::default())
            .await?;
        let snapshot = ServiceSnapshot {
            revision: list.revision,
            synced: true,
            instances: list
                .instances
                .into_iter()
                .map(|i| (i.id.clone(), i))
                .collect(),
        };
        self.tx.send_replace(Arc::new(snapshot));
        Ok(Some(list.revision))
    }

    fn apply(&mut self, event: &SseEvent, revision: u64) {
        let Ok(change) = serde_json::from_str::<RegistryEvent>(&event.data) else {
            tracing::warn!(event = %event.event, "unreadable registry event; skipped");
            return;
        };
        // The server may not filter by service; events of others are skipped here.
        if change.service != self.service {
            return;
        }
        self.tx.send_if_modified(|current| {
            if revision <= current.revision {
                return false; // already in the listing
            }
            let next = Arc::make_mut(current);
            next.revision = revision;
            match (event.event.as_str(), change.instance) {
                (kinds::DEREGISTERED | kinds::EXPIRED, _) => {
                    next.instances.remove(&change.id);
                }
                (_, Some(instance)) => {
                    next.instances.insert(change.id, instance);
                }
                (_, None) => {}
            }
            true
        });
    }
}
