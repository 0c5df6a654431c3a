//! The [`Follower`] that keeps the view: loads everything the view holds at
//! revision R (`view.lua`), applies each event after R to a working copy,
//! and publishes a new [`Snapshot`] once no event is waiting (a burst of
//! writes costs one publication, not one per event) or every
//! [`PUBLISH_EVERY`] events under a steady stream.
//!
//! A publication rebuilds only the services that changed since the last
//! one; the others keep their [`ServiceView`] (and with it their cached
//! deadlines and bodies).

use std::{collections::BTreeMap, sync::Arc};

use mcp_shared::{
    StoreError,
    events::{Event, Follower},
    registry::{Instance, RegistryEvent, RegistryKeys, kinds},
};

use super::{Leases, ServiceView, Snapshot, View};
use crate::store::{Loaded, Store};

/// Publish at least this often while events keep coming without a pause,
/// so a fenced read never waits on a long burst.
const PUBLISH_EVERY: usize = 256;

/// One service in the working copy.
struct Working {
    /// The revision of its last change (or of the load).
    changed: u64,
    /// Its instances by id.
    instances: BTreeMap<String, Arc<Instance>>,
    /// Its view as last published; `None` when it changed since.
    published: Option<Arc<ServiceView>>,
    /// The deadlines its next view starts with (those of its last view, or
    /// of the load), kept for stale reads until a fenced read refreshes them.
    leases: Arc<Leases>,
}

/// Keeps a [`View`] in step with the registry's event log.
pub struct ViewFollower {
    store: Store,
    view: View,
    services: BTreeMap<Arc<str>, Working>,
    revision: u64,
    epoch: Option<String>,
    floor: u64,
    /// Events applied since the last publication.
    pending: usize,
}

impl ViewFollower {
    /// A follower publishing to `view`, loading from `store`.
    pub fn new(store: Store, view: View) -> Self {
        Self {
            store,
            view,
            services: BTreeMap::new(),
            revision: 0,
            epoch: None,
            floor: 0,
            pending: 0,
        }
    }

    fn publish(&mut self) {
        let services = self
            .services
            .iter_mut()
            .map(|(name, working)| {
                let view = match &working.published {
                    Some(view) => view.clone(),
                    None => {
                        let view = Arc::new(ServiceView::new(
                            name.clone(),
                            working.changed,
                            working.instances.values().cloned().collect(),
                            working.leases.clone(),
                        ));
                        working.published = Some(view.clone());
                        view
                    }
                };
                (name.clone(), view)
            })
            .collect();
        self.view.publish(Snapshot {
            revision: self.revision,
            epoch: self.epoch.clone(),
            floor: self.floor,
            loaded: true,
            services,
        });
        self.pending = 0;
    }

    /// The working service `name`, marked changed at `revision`.
    fn changing(&mut self, name: &str, revision: u64) -> &mut Working {
        let working = self
            .services
            .entry(Arc::from(name))
            .or_insert_with(|| Working {
                changed: revision,
                instances: BTreeMap::new(),
                published: None,
                leases: Arc::new(Leases::default()),
            });
        // Deadlines a fenced read refreshed in the published view are newer
        // than those the working copy had: carry them into the next view.
        if let Some(view) = working.published.take() {
            working.leases = view.leases();
        }
        working.changed = revision;
        working
    }
}

impl Follower for ViewFollower {
    const NAME: &'static str = "discovery view";
    type Snapshot = Loaded;

    async fn load(&self) -> Result<(u64, Loaded), StoreError> {
        self.store.load_view().await
    }

    fn install(&mut self, revision: u64, loaded: Loaded) {
        let Loaded {
            epoch,
            instances,
            mut deadlines,
            lease_versions,
            protected,
        } = loaded;
        let mut grouped: BTreeMap<String, BTreeMap<String, Arc<Instance>>> = BTreeMap::new();
        for instance in instances {
            grouped
                .entry(instance.service.clone())
                .or_default()
                .insert(instance.id.clone(), Arc::new(instance));
        }
        // Everything is as of `revision`: each service's deadlines carry it
        // as their label, with the lease version read in the same script.
        self.services = grouped
            .into_iter()
            .map(|(service, instances)| {
                let service_deadlines = instances.keys().filter_map(|id| {
                    deadlines
                        .remove(&RegistryKeys::lease_member(&service, id))
                        .map(|deadline| (id.as_str(), deadline))
                });
                let version = lease_versions.get(&service).copied().unwrap_or(0);
                let leases = Arc::new(Leases::new(revision, version, service_deadlines));
                let working = Working {
                    changed: revision,
                    instances,
                    published: None,
                    leases,
                };
                (Arc::from(service.as_str()), working)
            })
            .collect();
        self.revision = revision;
        self.floor = revision;
        self.epoch = epoch;
        self.view.set_protected(protected);
        self.publish();
    }

    fn apply(&mut self, event: &Event) {
        self.revision = event.revision;
        self.pending += 1;
        match serde_json::from_str::<RegistryEvent>(&event.data) {
            Ok(data) => match event.kind.as_str() {
                kinds::REGISTERED | kinds::UPDATED | kinds::HEALTH => {
                    if let Some(mut instance) = data.instance {
                        instance.expires_at = None;
                        let working = self.changing(&data.service, event.revision);
                        working.instances.insert(data.id, Arc::new(instance));
                    }
                }
                kinds::DEREGISTERED | kinds::EXPIRED => {
                    let working = self.changing(&data.service, event.revision);
                    working.instances.remove(&data.id);
                }
                _ => {}
            },
            Err(error) => {
                tracing::warn!(%error, revision = event.revision, "unreadable registry event; skipped");
            }
        }
        if self.pending >= PUBLISH_EVERY {
            self.publish();
        }
    }

    fn settled(&mut self) {
        if self.pending > 0 {
            self.publish();
        }
    }
}
