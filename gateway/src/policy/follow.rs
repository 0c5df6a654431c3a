//! The follower: keeps [`Policies`] in step with config-svc's namespace
//! `gateway` (load at revision R, apply the events after R, reload on a gap,
//! a lag or a `reset`), compiling each changed entry once.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use mcp_shared::{
    config::{ConfigDeletion, ConfigEntry},
    events::{Event, EventFeed},
    policy::{self, PolicyKey, Route, ServicePolicy},
};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{Applied, Defaults, ExtraRoute, Policies, Snapshot, Source, StatusCounters};
use crate::store::Store;

/// The follower's state: the namespace's entries, compiled.
struct State {
    defaults: Defaults,
    services: HashMap<String, Arc<Applied>>,
    routes: BTreeMap<String, Arc<ExtraRoute>>,
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

    fn apply(&mut self, event: &Event) -> bool {
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

/// Keep `policies` in step with config-svc's namespace `gateway` until `shutdown` (see the module docs).
pub async fn follow(
    feed: EventFeed,
    store: Store,
    policies: Arc<Policies>,
    defaults: Defaults,
    shutdown: CancellationToken,
) {
    let mut state = State {
        defaults,
        services: HashMap::new(),
        routes: BTreeMap::new(),
    };
    let mut warned = false;
    'reload: while !shutdown.is_cancelled() {
        // Subscribe before loading (see `routing::follow`).
        let mut events = feed.subscribe();
        let (revision, entries) = match store.load_policies().await {
            Ok(loaded) => loaded,
            Err(error) => {
                if !warned {
                    tracing::warn!(%error, "cannot load the gateway policies; keeping the last ones");
                    warned = true;
                }
                pause(&shutdown).await;
                continue;
            }
        };
        warned = false;
        // Start from what is known, so unchanged entries keep their state;
        // then drop what is gone.
        let mut present = std::collections::HashSet::new();
        for text in entries {
            match serde_json::from_str::<ConfigEntry>(&text) {
                Ok(entry) => {
                    present.insert(entry.key.clone());
                    state.put(entry);
                }
                Err(error) => tracing::warn!(%error, "unreadable gateway entry; skipped"),
            }
        }
        state.services.retain(|service, _| {
            present.contains(&format!("{}{service}", policy::SERVICES_PREFIX))
        });
        state
            .routes
            .retain(|name, _| present.contains(&format!("{}{name}", policy::ROUTES_PREFIX)));
        let mut last = revision;
        policies.publish(state.snapshot(last));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = events.recv() => match received {
                    Ok(event) if event.is_reset() => {
                        // Redis lost its data: forget everything, then load.
                        state.services.clear();
                        state.routes.clear();
                        continue 'reload;
                    }
                    Ok(event) if event.revision <= last => {}
                    Ok(event) if event.revision == last + 1 => {
                        last = event.revision;
                        if state.apply(&event) {
                            policies.publish(state.snapshot(last));
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => continue 'reload,
                    Err(RecvError::Closed) => return,
                },
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

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
        let mut state = State {
            defaults: Defaults {
                breaker: BreakerSettings {
                    failure_threshold: 1,
                    open_for: Duration::from_secs(1),
                },
                store: Store::new(
                    mcp_shared::Redis::new("redis://127.0.0.1:1", "t", Duration::from_secs(1))
                        .unwrap(),
                ),
            },
            services: HashMap::new(),
            routes: BTreeMap::new(),
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
