//! The routing table: which instances serve `/svc/{service}` and the
//! control-plane upstreams behind `/api/v1/{area}`.
//!
//! The table lives in memory and is swapped whole on every change, so a
//! request reads it with one uncontended read lock and one `Arc` clone, and
//! never waits for Redis. [`follow`] keeps it in step with the registry's
//! event log through the one follower loop of [`mcp_shared::events::follow`]
//! (subscribe, load at revision R, apply the events after R, reload on a
//! gap, a lag or lost data). While Redis is down the last table keeps
//! serving; endpoints (and their circuit breakers and in-flight counts)
//! survive every reload as long as the instance keeps its address.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use axum::http::{Uri, uri::Authority};
use mcp_shared::{
    StoreError,
    events::{self, Event, EventFeed, Follower},
    policy::UpstreamProtocol,
    registry::{Instance, RegistryEvent, kinds},
};
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
    pub services: crate::FastMap<String, Arc<Upstream>>,
    /// gRPC service (`package.Service`) → the service whose instances name
    /// it in their `grpc_services` metadata (comma-separated), so a gRPC
    /// client's unmodified `/package.Service/Method` finds its upstream.
    pub grpc: HashMap<String, String>,
}

/// The instance metadata key naming the gRPC services an instance serves.
pub const GRPC_SERVICES: &str = "grpc_services";

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
    /// Upstreams over the given base URLs (already validated as `http://` or `https://`).
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
                    let protocol = if uri.scheme() == Some(&axum::http::uri::Scheme::HTTPS) {
                        UpstreamProtocol::Https
                    } else {
                        UpstreamProtocol::Http
                    };
                    let endpoint = Endpoint::new(name, url.clone(), authority, base_path, breaker)?
                        .speaking(protocol, false);
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

/// The follower's full state (service → instance id → instance), and where
/// it loads from and publishes to.
struct Registry {
    services: HashMap<String, HashMap<String, Known>>,
    breaker: BreakerSettings,
    store: Store,
    routes: Arc<Routes>,
}

impl Registry {
    /// Set `instance` unless a newer revision of it is known. Returns whether it changed.
    fn upsert(&mut self, instance: Instance) -> bool {
        let instances = self.services.entry(instance.service.clone()).or_default();
        let previous = instances.get(&instance.id);
        if previous.is_some_and(|known| known.instance.revision > instance.revision) {
            return false;
        }
        let Some(endpoint) = endpoint_for(&instance, previous, self.breaker) else {
            return false;
        };
        instances.insert(instance.id.clone(), Known { instance, endpoint });
        true
    }

    /// Replace everything with a fresh load (it is the truth: no revision
    /// of what was known before counts, which after lost data belongs to
    /// another history), keeping the endpoint of each instance still at its
    /// address.
    fn replace(&mut self, loaded: Vec<Instance>) {
        let mut before = std::mem::take(&mut self.services);
        for instance in loaded {
            let previous = before
                .get_mut(&instance.service)
                .and_then(|known| known.remove(&instance.id));
            let instances = self.services.entry(instance.service.clone()).or_default();
            if let Some(endpoint) = endpoint_for(&instance, previous.as_ref(), self.breaker) {
                instances.insert(instance.id.clone(), Known { instance, endpoint });
            }
        }
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
        Table {
            services,
            grpc: self.grpc_index(),
        }
    }

    /// gRPC service → service, from every instance's `grpc_services`. Two
    /// services claiming one gRPC service: the first by name keeps it (a
    /// warning says so), the same on every replica.
    fn grpc_index(&self) -> HashMap<String, String> {
        let mut claims: Vec<(&str, &str)> = self
            .services
            .iter()
            .flat_map(|(service, instances)| {
                instances.values().flat_map(move |known| {
                    known
                        .instance
                        .metadata
                        .get(GRPC_SERVICES)
                        .into_iter()
                        .flat_map(|list| list.split(','))
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                        .map(move |name| (name, service.as_str()))
                })
            })
            .collect();
        claims.sort_unstable();
        claims.dedup();
        let mut index: HashMap<String, String> = HashMap::with_capacity(claims.len());
        for (grpc, service) in claims {
            match index.get(grpc) {
                Some(owner) if owner != service => {
                    tracing::warn!(grpc, owner = %owner, service, "gRPC service claimed by two services; the first by name serves it");
                }
                Some(_) => {}
                None => {
                    index.insert(grpc.to_owned(), service.to_owned());
                }
            }
        }
        index
    }
}

impl Follower for Registry {
    const NAME: &'static str = "routing table";
    type Snapshot = Vec<Instance>;

    async fn load(&self) -> Result<(u64, Vec<Instance>), StoreError> {
        self.store.load_registry().await
    }

    fn install(&mut self, _revision: u64, instances: Vec<Instance>) {
        self.replace(instances);
        self.routes.publish(self.table());
    }

    fn apply(&mut self, event: &Event) {
        let data: RegistryEvent = match serde_json::from_str(&event.data) {
            Ok(data) => data,
            Err(error) => {
                tracing::warn!(%error, revision = event.revision, "unreadable registry event; skipped");
                return;
            }
        };
        let changed = match event.kind.as_str() {
            kinds::REGISTERED | kinds::UPDATED | kinds::HEALTH => {
                data.instance.is_some_and(|instance| self.upsert(instance))
            }
            kinds::DEREGISTERED | kinds::EXPIRED => self.remove(&data.service, &data.id),
            _ => false,
        };
        if changed {
            self.routes.publish(self.table());
        }
    }
}

/// The endpoint of `instance`: `previous`'s while the address is the same
/// (so its breaker and in-flight count survive), else a new one; `None`
/// (with a warning) when the address is not routable.
fn endpoint_for(
    instance: &Instance,
    previous: Option<&Known>,
    breaker: BreakerSettings,
) -> Option<Arc<Endpoint>> {
    if let Some(known) = previous
        && known.instance.host == instance.host
        && known.instance.port == instance.port
        && known.instance.metadata == instance.metadata
    {
        return Some(known.endpoint.clone());
    }
    let authority = if instance.host.contains(':') {
        format!("[{}]:{}", instance.host, instance.port)
    } else {
        format!("{}:{}", instance.host, instance.port)
    };
    let endpoint = Authority::try_from(authority).ok().and_then(|authority| {
        Endpoint::new(
            &instance.service,
            instance.id.clone(),
            authority,
            String::new(),
            breaker,
        )
        .map(|endpoint| {
            let metadata = |key: &str| instance.metadata.get(key).map(String::as_str);
            let protocol = metadata("protocol").map_or(UpstreamProtocol::Http, |value| {
                UpstreamProtocol::parse(value).unwrap_or_else(|| {
                    tracing::warn!(service = %instance.service, id = %instance.id, value, "unknown `protocol` metadata (http, h2c, https); spoken to over http");
                    UpstreamProtocol::Http
                })
            });
            endpoint.speaking(protocol, metadata("websocket") == Some("true"))
        })
    });
    if endpoint.is_none() {
        tracing::warn!(service = %instance.service, id = %instance.id, host = %instance.host, "instance address is not routable; ignored");
    }
    endpoint.map(Arc::new)
}

/// Keep `routes` in step with the registry until `shutdown` (see the module docs).
pub async fn follow(
    feed: EventFeed,
    store: Store,
    routes: Arc<Routes>,
    breaker: BreakerSettings,
    shutdown: CancellationToken,
) {
    let registry = Registry {
        services: HashMap::new(),
        breaker,
        store,
        routes,
    };
    events::follow(feed, registry, shutdown).await;
}
