//! Per-service policies and extra routes, followed from config-svc's
//! namespace `gateway` (see `mcp_shared::policy` for the types and schema).
//!
//! [`Policies`] holds one immutable [`Snapshot`], swapped whole on every
//! change as the routing table is (see `routing`): a request costs one read
//! lock, one `Arc` clone and one hash lookup, never a Redis round trip.
//! [`follow`] keeps it in step with config-svc's event log `cfg` through the
//! follower loop `routing::follow` uses too ([`mcp_shared::events::follow`]):
//! subscribe, load the namespace at revision R, apply the events after R; a
//! gap, a lagging subscription or lost data reloads. While Redis is down the
//! last snapshot keeps serving.
//!
//! A policy is compiled once per version into an [`Applied`]: header names
//! and values parsed, the limiter and the retry budget built, so applying it
//! costs no parsing. An unchanged entry keeps its [`Applied`] (and so its
//! limiter state and counters) across reloads. A value the gateway cannot
//! read (config-svc refuses those at write time, so only a Redis edited by
//! hand) is skipped with a warning: that service runs on the global settings.
//!
//! Where each field takes effect: `auth` in `auth`, `rate_limit` in
//! `ratelimit`, `methods`, `max_body_bytes`, CORS and response header rules
//! in [`edge`](crate::edge), the rest (timeout, retries, split, request
//! header rules, breaker thresholds) in `proxy`.
//!
//! The parts: [`compiled`] turns a policy into an [`Applied`] (with its
//! header [`Rules`] and [`Cors`]), [`retry`] holds the retry policy and its
//! budget, [`split`] the traffic split, [`follow`](mod@follow) keeps the snapshot in
//! step with config-svc, and [`metrics`] renders their counters.

mod compiled;
mod follow;
mod metrics;
mod retry;
mod split;

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicU64, Ordering},
};

use axum::http::Method;
use mcp_shared::{config::ConfigEntry, policy::Route};

pub use compiled::{Applied, Cors, Defaults, Limit, Rules};
pub use follow::follow;
pub use metrics::render_metrics;
pub use retry::{Failure, Retry};
pub use split::Split;

/// The shared, swappable snapshot.
#[derive(Debug, Default)]
pub struct Policies {
    current: RwLock<Arc<Snapshot>>,
}

impl Policies {
    /// The current snapshot (one read lock, one `Arc` clone).
    pub fn current(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(snapshot) => snapshot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn publish(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        match self.current.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }
}

/// Every policy and route at one config revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The config revision it reflects.
    pub revision: u64,
    /// Service → its compiled policy.
    pub services: crate::FastMap<String, Arc<Applied>>,
    /// Extra routes, in match order (longest prefix first, hosts before any host, then name).
    pub routes: Vec<Arc<ExtraRoute>>,
}

impl Snapshot {
    /// The policy of `service`, if it has one.
    pub fn service(&self, service: &str) -> Option<&Arc<Applied>> {
        self.services.get(service)
    }

    /// The route for `host` (lower case, without port) and canonical `path`
    /// (not one of the gateway's own), and the upstream path's rest.
    pub fn route<'p>(
        &self,
        host: Option<&str>,
        path: &'p str,
    ) -> Option<(&Arc<ExtraRoute>, &'p str)> {
        self.routes.iter().find_map(|route| {
            if !route.route.hosts.is_empty()
                && !host.is_some_and(|h| route.route.hosts.iter().any(|r| r == h))
            {
                return None;
            }
            let prefix = route.route.path_prefix.as_deref().unwrap_or("");
            let rest = path.strip_prefix(prefix)?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            Some((route, if route.route.strip_prefix { rest } else { path }))
        })
    }
}

/// Where a policy came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The entry's version.
    pub version: u64,
    /// The revision of the write.
    pub revision: u64,
    /// Who wrote it.
    pub updated_by: String,
    /// When.
    pub updated_at: String,
}

impl Source {
    fn of(entry: &ConfigEntry) -> Self {
        Self {
            version: entry.version,
            revision: entry.revision,
            updated_by: entry.updated_by.clone(),
            updated_at: entry.updated_at.clone(),
        }
    }
}

/// A route, compiled.
#[derive(Debug)]
pub struct ExtraRoute {
    /// Its name (`routes/{name}`).
    pub name: Arc<str>,
    /// As written.
    pub route: Route,
    /// Where it came from.
    pub source: Source,
    /// `gateway_requests_total` of requests that came through it.
    pub counters: StatusCounters,
}

/// Requests by status class, for `gateway_requests_total`.
#[derive(Debug, Default)]
pub struct StatusCounters([AtomicU64; 5]);

impl StatusCounters {
    const LABELS: [&'static str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

    /// Count one answer.
    pub fn count(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.0[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// The methods of a list that parse (the schema has checked them all).
fn methods(list: &[String]) -> Vec<Method> {
    list.iter()
        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
        .collect()
}
