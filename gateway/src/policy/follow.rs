//! The follower: keeps [`Policies`] in step with config-svc's namespace
//! `gateway` through the one follower loop of [`mcp_shared::events::follow`]
//! (load at revision R, apply the events after R, reload on a gap, a lag or
//! lost data), compiling each changed entry once.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use mcp_shared::{
    StoreError,
    config::{ConfigDeletion, ConfigEntry},
    events::{self, Event, EventFeed, Follower},
    policy::{self, PolicyKey, Route, ServicePolicy},
};
use tokio_util::sync::CancellationToken;

use super::{Applied, Defaults, ExtraRoute, Policies, Snapshot, Source, StatusCounters};
use crate::store::Store;

/// The follower's state (the namespace's entries, compiled), and where it
/// loads from and publishes to.
struct State {
    defaults: Defaults,
    services: crate::FastMap<String, Arc<Applied>>,
    routes: BTreeMap<String, Arc<ExtraRoute>>,
    store: Store,
    policies: Arc<Policies>,
}

impl State {
    /// Set `key` from `entry` unless what is known is as new. Returns whether it changed.
    fn put(&mut self, entry: ConfigEntry) -> bool {
        match PolicyKey::parse(&entry.key) {
            Some(PolicyKey::Service(service)) => {
                if self
                    .services
                    .get(service)
                    .is_some_and(|known| known.source.revision >= entry.revision)
                {
                    return false;
                }
                match serde_json::from_value::<ServicePolicy>(entry.value.clone()) {
                    Ok(parsed) => {
                        let applied =
                            Applied::compile(service, parsed, Source::of(&entry), &self.defaults);
                        self.services.insert(service.to_owned(), Arc::new(applied));
                    }
                    Err(error) => {
                        tracing::warn!(%error, service, "unreadable gateway policy; the service runs on the global settings");
                        self.services.remove(service);
                    }
                }
                true
            }
            Some(PolicyKey::Route(name)) => {
                if self
                    .routes
                    .get(name)
                    .is_some_and(|known| known.source.revision >= entry.revision)
                {
                    return false;
                }
                match serde_json::from_value::<Route>(entry.value.clone()) {
                    Ok(route) => {
                        let route = ExtraRoute {
                            name: Arc::from(name),
                            route,
                            source: Source::of(&entry),
                            counters: StatusCounters::default(),
                        };
                        self.routes.insert(name.to_owned(), Arc::new(route));
                    }
                    Err(error) => {
                        tracing::warn!(%error, route = name, "unreadable gateway route; ignored");
                        self.routes.remove(name);
                    }
                }
                true
            }
            None => false,
        }
    }

    fn delete(&mut self, key: &str) -> bool {
        match PolicyKey::parse(key) {
            Some(PolicyKey::Service(service)) => self.services.remove(service).is_some(),
            Some(PolicyKey::Route(name)) => self.routes.remove(name).is_some(),
            None => false,
        }
    }

    fn change(&mut self, event: &Event) -> bool {
        if event.scope != policy::NAMESPACE {
            return false;
        }
        match event.kind.as_str() {
            "put" => match serde_json::from_str::<ConfigEntry>(&event.data) {
                Ok(entry) => self.put(entry),
                Err(error) => {
                    tracing::warn!(%error, revision = event.revision, "unreadable config event; skipped");
                    false
                }
            },
            "delete" => match serde_json::from_str::<ConfigDeletion>(&event.data) {
                Ok(deletion) => self.delete(&deletion.key),
                Err(_) => false,
            },
            _ => false,
        }
    }

    fn snapshot(&self, revision: u64) -> Snapshot {
        let mut routes: Vec<Arc<ExtraRoute>> = self.routes.values().cloned().collect();
        // Longest prefix first; at one prefix, a route with hosts before one for any host;
        // then by name (the BTreeMap order, kept by the stable sort).
        routes.sort_by_key(|r| {
            (
                std::cmp::Reverse(r.route.path_prefix.as_deref().map_or(0, str::len)),
                r.route.hosts.is_empty(),
            )
        });
        Snapshot {
            revision,
            services: self.services.clone(),
            routes,
        }
    }
}

impl Follower for State {
    const NAME: &'static str = "gateway policies";
    type Snapshot = Vec<String>;

    async fn load(&self) -> Result<(u64, Vec<String>), StoreError> {
        self.store.load_policies().await
    }

    fn install(&mut self, revision: u64, entries: Vec<String>) {
        // Start from what is known, so unchanged entries keep their state;
        // then drop what is gone.
        let mut present = HashSet::new();
        for text in entries {
            match serde_json::from_str::<ConfigEntry>(&text) {
                Ok(entry) => {
                    present.insert(entry.key.clone());
                    self.put(entry);
                }
                Err(error) => tracing::warn!(%error, "unreadable gateway entry; skipped"),
            }
        }
        self.services.retain(|service, _| {
            present.contains(&format!("{}{service}", policy::SERVICES_PREFIX))
        });
        self.routes
            .retain(|name, _| present.contains(&format!("{}{name}", policy::ROUTES_PREFIX)));
        self.policies.publish(self.snapshot(revision));
    }

    fn apply(&mut self, event: &Event) {
        if self.change(event) {
            self.policies.publish(self.snapshot(event.revision));
        }
    }

    /// Redis lost its data: a known entry's revision would make `put` skip
    /// the new history's entry of a lower revision, so forget them all (the
    /// published snapshot serves until the reload).
    fn forget(&mut self) {
        self.services.clear();
        self.routes.clear();
    }
}

/// Keep `policies` in step with config-svc's namespace `gateway` until `shutdown` (see the module docs).
pub async fn follow(
    feed: EventFeed,
    store: Store,
    policies: Arc<Policies>,
    defaults: Defaults,
    shutdown: CancellationToken,
) {
    let state = State {
        defaults,
        services: crate::FastMap::default(),
        routes: BTreeMap::new(),
        store,
        policies,
    };
    events::follow(feed, state, shutdown).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::circuit::BreakerSettings;

    // A runtime: the Redis handle of `Defaults` needs one (it never connects here).
    #[tokio::test]
    async fn longest_prefix_wins_and_hosts_come_first() {
        let route = |name: &str, prefix: Option<&str>, hosts: &[&str]| {
            Arc::new(ExtraRoute {
                name: Arc::from(name),
                route: Route {
                    service: name.to_owned(),
                    hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
                    path_prefix: prefix.map(str::to_owned),
                    strip_prefix: true,
                },
                source: Source {
                    version: 1,
                    revision: 1,
                    updated_by: String::new(),
                    updated_at: String::new(),
                },
                counters: StatusCounters::default(),
            })
        };
        let state_routes = [
            route("short", Some("/b"), &[]),
            route("long", Some("/b/c"), &[]),
            route("host", None, &["api.example.com"]),
        ];
        let store = Store::new(
            mcp_shared::Redis::new("redis://127.0.0.1:1", "t", Duration::from_secs(1)).unwrap(),
        );
        let mut state = State {
            defaults: Defaults {
                breaker: BreakerSettings {
                    failure_threshold: 1,
                    open_for: Duration::from_secs(1),
                },
                store: store.clone(),
            },
            services: crate::FastMap::default(),
            routes: BTreeMap::new(),
            store,
            policies: Arc::default(),
        };
        for r in state_routes {
            state.routes.insert(r.name.to_string(), r);
        }
        let snapshot = state.snapshot(1);
        let (r, rest) = snapshot.route(None, "/b/c/d").unwrap();
        assert_eq!((&*r.name, rest), ("long", "/d"));
        let (r, rest) = snapshot.route(None, "/b/x").unwrap();
        assert_eq!((&*r.name, rest), ("short", "/x"));
        assert!(snapshot.route(None, "/bx").is_none());
        let (r, rest) = snapshot.route(Some("api.example.com"), "/x").unwrap();
        assert_eq!((&*r.name, rest), ("host", "/x"));
        assert!(snapshot.route(Some("other.example.com"), "/x").is_none());
    }
}
