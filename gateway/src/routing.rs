//! The routing table: which instances serve `/svc/{service}` and the
//! control-plane upstreams behind `/api/v1/{area}`.
//!
//! The table lives in memory and is swapped whole on every change, so a
//! request reads it with one uncontended read lock and one `Arc` clone, and
//! never waits for Redis. [`follow`] keeps it in step with the registry's
//! event log: subscribe to the in-process [`EventFeed`] first, then load the
//! current state at revision R, then apply the events after R. Subscribing
//! first means no event between the load and the subscription is lost; an
//! event the load already reflects is harmless, because an instance is only
//! replaced by one of an equal or newer revision. A gap in the revisions or
//! a lagging subscription reloads from scratch. While Redis is down the last
//! table keeps serving; endpoints (and their circuit breakers and in-flight
//! counts) survive every reload as long as the instance keeps its address.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use axum::http::{Uri, uri::Authority};
use mcp_shared::{
    events::{Event, EventFeed},
    registry::{Instance, RegistryEvent, kinds},
};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::{
    balance::{Endpoint, Member, Upstream},
    circuit::BreakerSettings,
    store::Store,
};

/// Services by name.
#[derive(Debug, Default, Clone)]
pub struct Table {
    /// Service name → its upstream.
    pub services: HashMap<String, Arc<Upstream>>,
}

/// The shared, swappable table.
#[derive(Debug, Default)]
pub struct Routes {
    table: RwLock<Arc<Table>>,
}

impl Routes {
    /// The current table (one read lock, one `Arc` clone).
    pub fn current(&self) -> Arc<Table> {
        match self.table.read() {
            Ok(table) => table.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn publish(&self, table: Table) {
        let table = Arc::new(table);
        match self.table.write() {
            Ok(mut guard) => *guard = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }
}

/// The control-plane upstreams (`REGISTRY_URL`, `CONFIG_URL`, `HEALTH_URL`).
#[derive(Debug)]
pub struct ControlPlane {
    /// registry-svc.
    pub registry: Arc<Upstream>,
    /// config-svc.
    pub config: Arc<Upstream>,
    /// health-svc.
    pub health: Arc<Upstream>,
}

impl ControlPlane {
    /// Upstreams over the given base URLs (already validated as `http://`).
    pub fn new(
        registry: &[String],
        config: &[String],
        health: &[String],
        breaker: BreakerSettings,
    ) -> Self {
        let build = |name: &str, urls: &[String]| {
            let members = urls
                .iter()
                .filter_map(|url| {
                    let uri: Uri = url.parse().ok()?;
                    let authority = uri.authority()?.clone();
                    let base_path = uri.path().trim_end_matches('/').to_owned();
                    let endpoint = Endpoint::new(name, url.clone(), authority, base_path, breaker)?;
                    Some(Member {
                        status: "static",
                        tags: Vec::new(),
                        endpoint: Arc::new(endpoint),
                    })
                })
                .collect();
            Arc::new(Upstream::new(name.to_owned(), members))
        };
        Self {
            registry: build("registry", registry),
            config: build("config", config),
            health: build("health", health),
        }
    }

    /// The upstream of an `/api/v1/{area}`.
    pub fn area(&self, area: &str) -> Option<&Arc<Upstream>> {
        match area {
            "registry" => Some(&self.registry),
            "config" => Some(&self.config),
            "health" => Some(&self.health),
            _ => None,
        }
    }
}

/// What the follower knows of one instance.
struct Known {
    instance: Instance,
    endpoint: Arc<Endpoint>,
}

/// The follower's full state: service → instance id → instance.
struct Registry {
    services: HashMap<String, HashMap<String, Known>>,
    breaker: BreakerSettings,
}

impl Registry {
    /// Set `instance` unless a newer revision of it is known. Returns whether it changed.
    fn upsert(&mut self, instance: Instance) -> bool {
        let instances = self.services.entry(instance.service.clone()).or_default();
        let previous = instances.get(&instance.id);
        if previous.is_some_and(|known| known.instance.revision > instance.revision) {
            return false;
        }
        // Same address: keep the endpoint, so breaker and in-flight survive.
        let endpoint = match previous {
            Some(known)
                if known.instance.host == instance.host && known.instance.port == instance.port =>
            {
                known.endpoint.clone()
            }
            _ => match endpoint_of(&instance, self.breaker) {
                Some(endpoint) => endpoint,
                None => {
                    tracing::warn!(service = %instance.service, id = %instance.id, host = %instance.host, "instance address is not routable; ignored");
                    return false;
                }
            },
        };
        instances.insert(instance.id.clone(), Known { instance, endpoint });
        true
    }

    fn remove(&mut self, service: &str, id: &str) -> bool {
        let Some(instances) = self.services.get_mut(service) else {
            return false;
        };
        let removed = instances.remove(id).is_some();
        if instances.is_empty() {
            self.services.remove(service);
        }
        removed
    }

    fn apply(&mut self, event: &Event) -> bool {
        let data: RegistryEvent = match serde_json::from_str(&event.data) {
            Ok(data) => data,
            Err(error) => {
                tracing::warn!(%error, revision = event.revision, "unreadable registry event; skipped");
                return false;
            }
        };
        match event.kind.as_str() {
            kinds::REGISTERED | kinds::UPDATED | kinds::HEALTH => {
                data.instance.is_some_and(|instance| self.upsert(instance))
            }
            kinds::DEREGISTERED | kinds::EXPIRED => self.remove(&data.service, &data.id),
            _ => false,
        }
    }

    fn table(&self) -> Table {
        let services = self
            .services
            .iter()
            .map(|(service, instances)| {
                let mut members: Vec<Member> = instances
                    .values()
                    .map(|known| Member {
                        status: known.instance.status.as_str(),
                        tags: known.instance.tags.clone(),
                        endpoint: known.endpoint.clone(),
                    })
                    .collect();
                members.sort_by(|a, b| a.endpoint.id.cmp(&b.endpoint.id));
                (
                    service.clone(),
                    Arc::new(Upstream::new(service.clone(), members)),
                )
            })
            .collect();
        Table { services }
    }
}

fn endpoint_of(instance: &Instance, breaker: BreakerSettings) -> Option<Arc<Endpoint>> {
    let authority = if instance.host.contains(':') {
        format!("[{}]:{}", instance.host, instance.port)
    } else {
        format!("{}:{}", instance.host, instance.port)
    };
    let authority = Authority::try_from(authority).ok()?;
    Endpoint::new(
        &instance.service,
        instance.id.clone(),
        authority,
        String::new(),
        breaker,
    )
    .map(Arc::new)
}

/// Keep `routes` in step with the registry until `shutdown` (see the module docs).
pub async fn follow(
    feed: EventFeed,
    store: Store,
    routes: Arc<Routes>,
    breaker: BreakerSettings,
    shutdown: CancellationToken,
) {
    let mut registry = Registry {
        services: HashMap::new(),
        breaker,
    };
    let mut warned = false;
    'reload: while !shutdown.is_cancelled() {
        // Subscribe before loading: see the module docs.
        let mut events = feed.subscribe();
        let snapshot = match store.load_registry().await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                if !warned {
                    tracing::warn!(%error, "cannot load the registry; keeping the last routing table");
                    warned = true;
                }
                pause(&shutdown).await;
                continue;
            }
        };
        warned = false;
        let mut fresh = Registry {
            services: HashMap::new(),
            breaker,
        };
        for instance in snapshot.instances {
            let reused = registry
                .services
                .get_mut(&instance.service)
                .and_then(|known| known.remove(&instance.id));
            if let Some(old) = reused {
                // Carry the endpoint over (the address check happens in upsert).
                fresh
                    .services
                    .entry(instance.service.clone())
                    .or_default()
                    .insert(instance.id.clone(), old);
            }
            fresh.upsert(instance);
        }
        registry = fresh;
        let mut last = snapshot.revision;
        routes.publish(registry.table());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = events.recv() => match received {
                    // Redis lost its history: our table may hold ghosts.
                    Ok(event) if event.is_reset() => continue 'reload,
                    Ok(event) if event.revision <= last => {}
                    Ok(event) if event.revision == last + 1 => {
                        last = event.revision;
                        if registry.apply(&event) {
                            routes.publish(registry.table());
                        }
                    }
                    // A gap (the feed started after our load) or we fell behind.
                    Ok(_) | Err(RecvError::Lagged(_)) => continue 'reload,
                    Err(RecvError::Closed) => return,
                },
                // Safety net for a feed that started tailing after our load:
                // it has seen revisions that never came to us as events.
                _ = tokio::time::sleep(IDLE_CHECK) => {
                    if feed.revision() > last {
                        continue 'reload;
                    }
                }
            }
        }
    }
}

/// How long the follower waits without events before it compares revisions with the feed.
const IDLE_CHECK: Duration = Duration::from_millis(250);

async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
    }
}
