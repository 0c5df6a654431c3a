//! Per-service policies and extra routes, followed from config-svc's
//! namespace `gateway` (see `mcp_shared::policy` for the types and schema).
//!
//! [`Policies`] holds one immutable [`Snapshot`], swapped whole on every
//! change as the routing table is (see `routing`): a request costs one read
//! lock, one `Arc` clone and one hash lookup, never a Redis round trip.
//! [`follow`] keeps it in step with config-svc's event log `cfg` the way
//! `routing::follow` follows the registry: subscribe, load the namespace at
//! revision R, apply the events after R; a gap, a lagging subscription or a
//! `reset` reloads. While Redis is down the last snapshot keeps serving.
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

use std::{
    collections::{BTreeMap, HashMap},
    hash::{Hash as _, Hasher as _},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use mcp_shared::{
    config::{ConfigDeletion, ConfigEntry},
    events::{Event, EventFeed},
    policy::{
        self, AuthMode, HeaderRules, LimitKey, PolicyKey, RetryOn, Route, ServicePolicy, StickyBy,
    },
};
use rand::Rng as _;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::{RateLimitMode, circuit::BreakerSettings, ratelimit::RateLimiter, store::Store};

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
    pub services: HashMap<String, Arc<Applied>>,
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

/// A service policy, compiled (see the module docs).
#[derive(Debug)]
pub struct Applied {
    /// The service.
    pub service: Arc<str>,
    /// As written.
    pub policy: ServicePolicy,
    /// Where it came from.
    pub source: Source,
    /// `auth.mode: none`.
    pub public: bool,
    /// `auth.scopes`.
    pub scopes: Vec<String>,
    /// The service's own limiter and what it counts by.
    pub limiter: Option<(Arc<RateLimiter>, Limit)>,
    /// `timeout_ms`.
    pub timeout: Option<Duration>,
    /// `retries`.
    pub retry: Option<Retry>,
    /// `circuit_breaker`, over the global settings.
    pub breaker: Option<BreakerSettings>,
    /// `split`.
    pub split: Option<Split>,
    /// `request_headers`.
    pub request_headers: Option<Rules>,
    /// `response_headers`.
    pub response_headers: Option<Rules>,
    /// `methods` and their `Allow` value.
    pub methods: Option<(Vec<Method>, HeaderValue)>,
    /// `max_body_bytes`.
    pub max_body: Option<u64>,
    /// `cors`.
    pub cors: Option<Cors>,
    /// `gateway_requests_total{route="svc"}`.
    pub counters: StatusCounters,
}

/// What a service's limit counts by.
#[derive(Debug, Clone)]
pub enum Limit {
    /// The subject, else the IP.
    Subject,
    /// The IP.
    Ip,
    /// A header, else the IP.
    Header(HeaderName),
}

/// Compiled header rules.
#[derive(Debug, Default)]
pub struct Rules {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    append: Vec<(HeaderName, HeaderValue)>,
}

impl Rules {
    fn compile(rules: &HeaderRules) -> Self {
        let name = |n: &String| HeaderName::from_bytes(n.as_bytes()).ok();
        let pairs = |map: &BTreeMap<String, String>| {
            map.iter()
                .filter_map(|(n, v)| Some((name(n)?, HeaderValue::from_str(v).ok()?)))
                .collect()
        };
        Self {
            remove: rules.remove.iter().filter_map(name).collect(),
            set: pairs(&rules.set),
            append: pairs(&rules.append),
        }
    }

    /// Remove, then set, then append.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.append {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// Compiled `retries`, with its budget.
#[derive(Debug)]
pub struct Retry {
    /// Retries after the first try.
    pub attempts: u32,
    on: Vec<RetryOn>,
    methods: Option<Vec<Method>>,
    budget: RetryBudget,
    /// Retries made (`gateway_retries_total{result="sent"}`).
    pub sent: AtomicU64,
    /// Retries the budget refused (`gateway_retries_total{result="budget_exhausted"}`).
    pub refused: AtomicU64,
}

/// What failed, for [`Retry::retries`].
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    /// Could not connect.
    Connect,
    /// No response headers in time.
    Timeout,
    /// The upstream answered this 5xx.
    Status(u16),
}

impl Retry {
    /// Whether `method` may be retried at all.
    pub fn method_allowed(&self, method: &Method) -> bool {
        match &self.methods {
            Some(methods) => methods.contains(method),
            None => crate::proxy::is_idempotent(method),
        }
    }

    /// Whether `failure` is one the policy retries.
    pub fn retries(&self, failure: Failure) -> bool {
        self.on.iter().any(|on| match (on, failure) {
            (RetryOn::ConnectError, Failure::Connect) | (RetryOn::Timeout, Failure::Timeout) => {
                true
            }
            (RetryOn::ServerError, Failure::Status(s)) => s >= 500,
            (RetryOn::BadGateway, Failure::Status(502))
            | (RetryOn::Unavailable, Failure::Status(503))
            | (RetryOn::GatewayTimeout, Failure::Status(504)) => true,
            _ => false,
        })
    }

    /// Count a request toward the budget.
    pub fn deposit(&self) {
        self.budget.deposit();
    }

    /// Take one retry from the budget; `false` (and counted) when it is spent.
    pub fn withdraw(&self) -> bool {
        if self.budget.withdraw() {
            self.sent.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// The retry budget: each request earns `percent`% of a retry (capped),
/// each retry spends one, and `min_per_second` retries are free each
/// second. Atomics only: no lock on the request path.
#[derive(Debug)]
struct RetryBudget {
    /// Milli-retries earned per request (`percent * 10`).
    earn: u64,
    min_per_second: u64,
    /// Milli-retries available.
    balance: AtomicU64,
    /// The second (since `epoch`) `free_used` counts in.
    second: AtomicU64,
    free_used: AtomicU64,
    epoch: Instant,
}

/// The most milli-retries the budget saves up.
const BUDGET_CAP: u64 = 100_000;

impl RetryBudget {
    fn new(percent: u32, min_per_second: u32) -> Self {
        Self {
            earn: u64::from(percent) * 10,
            min_per_second: u64::from(min_per_second),
            balance: AtomicU64::new(0),
            second: AtomicU64::new(0),
            free_used: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn deposit(&self) {
        if self.earn > 0 {
            let _ = self
                .balance
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some((b + self.earn).min(BUDGET_CAP))
                });
        }
    }

    fn withdraw(&self) -> bool {
        let now = self.epoch.elapsed().as_secs();
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.free_used.store(0, Ordering::Relaxed);
        }
        if self.free_used.fetch_add(1, Ordering::Relaxed) < self.min_per_second {
            return true;
        }
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                b.checked_sub(1000)
            })
            .is_ok()
    }
}

/// Compiled `split`.
#[derive(Debug)]
pub struct Split {
    /// Tags with their cumulative weight (for the draw).
    weights: Vec<(Arc<str>, u32)>,
    total: u32,
    matches: Vec<(Match, Arc<str>)>,
    sticky: Option<StickyKey>,
    /// Decisions per tag (`gateway_split_decisions_total`), in [`Self::tags`] order.
    decisions: Vec<AtomicU64>,
    /// Every tag the split can choose.
    pub tags: Vec<Arc<str>>,
}

#[derive(Debug)]
enum Match {
    Header(HeaderName, Option<String>),
    Cookie(String, Option<String>),
}

#[derive(Debug)]
enum StickyKey {
    Subject,
    Header(HeaderName),
}

impl Split {
    fn compile(split: &policy::SplitPolicy) -> Self {
        let mut total = 0u32;
        let weights: Vec<(Arc<str>, u32)> = split
            .weights
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(tag, w)| {
                total += *w;
                (Arc::from(tag.as_str()), total)
            })
            .collect();
        let matches: Vec<(Match, Arc<str>)> = split
            .matches
            .iter()
            .filter_map(|m| {
                let rule = match (&m.header, &m.cookie) {
                    (Some(h), _) => {
                        Match::Header(HeaderName::from_bytes(h.as_bytes()).ok()?, m.value.clone())
                    }
                    (None, Some(c)) => Match::Cookie(c.clone(), m.value.clone()),
                    (None, None) => return None,
                };
                Some((rule, Arc::from(m.tag.as_str())))
            })
            .collect();
        let mut tags: Vec<Arc<str>> = weights
            .iter()
            .map(|(t, _)| t.clone())
            .chain(matches.iter().map(|(_, t)| t.clone()))
            .collect();
        tags.sort();
        tags.dedup();
        let sticky = split.sticky.as_ref().and_then(|s| match s.by {
            StickyBy::Subject => Some(StickyKey::Subject),
            StickyBy::Header => s
                .header
                .as_ref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .map(StickyKey::Header),
        });
        Self {
            decisions: tags.iter().map(|_| AtomicU64::new(0)).collect(),
            weights,
            total,
            matches,
            sticky,
            tags,
        }
    }

    /// The tag for a request with `headers` from `subject`: the first match,
    /// else a weighted draw (a hash of the sticky key when set); `None` when
    /// the split has no weights and nothing matched.
    pub fn choose(&self, headers: &HeaderMap, subject: Option<&str>) -> Option<&Arc<str>> {
        let tag = self
            .matches
            .iter()
            .find(|(rule, _)| rule.matches(headers))
            .map(|(_, tag)| tag)
            .or_else(|| self.draw(headers, subject))?;
        if let Ok(index) = self.tags.binary_search(tag) {
            self.decisions[index].fetch_add(1, Ordering::Relaxed);
        }
        Some(tag)
    }

    fn draw(&self, headers: &HeaderMap, subject: Option<&str>) -> Option<&Arc<str>> {
        if self.total == 0 {
            return None;
        }
        let sticky = match &self.sticky {
            Some(StickyKey::Subject) => subject.map(str::as_bytes),
            Some(StickyKey::Header(name)) => headers.get(name).map(HeaderValue::as_bytes),
            None => None,
        };
        let point = match sticky {
            // SipHash with fixed keys: every replica puts a key on the same tag.
            Some(key) => {
                let mut hasher = std::hash::DefaultHasher::new();
                key.hash(&mut hasher);
                (hasher.finish() % u64::from(self.total)) as u32
            }
            None => rand::rng().random_range(0..self.total),
        };
        self.weights
            .iter()
            .find(|(_, cumulative)| point < *cumulative)
            .map(|(tag, _)| tag)
    }

    /// `(tag, decisions)` for the metrics.
    pub fn decisions(&self) -> impl Iterator<Item = (&str, u64)> {
        self.tags
            .iter()
            .zip(&self.decisions)
            .map(|(t, d)| (&**t, d.load(Ordering::Relaxed)))
    }
}

impl Match {
    fn matches(&self, headers: &HeaderMap) -> bool {
        match self {
            Self::Header(name, value) => headers.get_all(name).iter().any(|v| {
                value
                    .as_deref()
                    .is_none_or(|want| v.as_bytes() == want.as_bytes())
            }),
            Self::Cookie(name, value) => headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .any(|(n, v)| n == name && value.as_deref().is_none_or(|want| v == want)),
        }
    }
}

/// Compiled `cors`.
#[derive(Debug)]
pub struct Cors {
    /// Any origin.
    pub any_origin: bool,
    /// The allowed origins.
    pub origins: Vec<String>,
    /// `Access-Control-Allow-Methods`.
    pub methods: HeaderValue,
    /// `Access-Control-Allow-Headers`, when set.
    pub headers: Option<HeaderValue>,
    /// `Access-Control-Expose-Headers`, when set.
    pub expose: Option<HeaderValue>,
    /// `Access-Control-Max-Age`, when set.
    pub max_age: Option<HeaderValue>,
    /// `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
}

impl Cors {
    /// Whether `origin` may call the service.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        self.any_origin
            || self
                .origins
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes())
    }
}

fn joined(items: &[String]) -> Option<HeaderValue> {
    (!items.is_empty())
        .then(|| HeaderValue::from_str(&items.join(", ")).ok())
        .flatten()
}

/// The global settings a policy falls back to (and the store its Redis limiter uses).
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `CB_FAILURE_THRESHOLD`, `CB_OPEN_SECONDS`.
    pub breaker: BreakerSettings,
    /// For `rate_limit.mode: redis`.
    pub store: Store,
}

impl Applied {
    /// Compile `policy` of `service`.
    pub fn compile(
        service: &str,
        policy: ServicePolicy,
        source: Source,
        defaults: &Defaults,
    ) -> Self {
        let methods = |list: &[String]| -> Vec<Method> {
            list.iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect()
        };
        let auth = policy.auth.clone().unwrap_or_default();
        let limiter = policy.rate_limit.as_ref().map(|limit| {
            let mode = match limit.mode {
                policy::LimitMode::Local => RateLimitMode::Local,
                policy::LimitMode::Redis => RateLimitMode::Redis,
            };
            let limiter = RateLimiter::new(
                mode,
                limit.rps,
                limit.burst.unwrap_or(limit.rps),
                defaults.store.clone(),
            )
            .scoped(service);
            let key = match (limit.key, &limit.header) {
                (LimitKey::Ip, _) => Limit::Ip,
                (LimitKey::Header, Some(h)) => HeaderName::from_bytes(h.as_bytes())
                    .map(Limit::Header)
                    .unwrap_or(Limit::Ip),
                _ => Limit::Subject,
            };
            (Arc::new(limiter), key)
        });
        let retry = policy.retries.as_ref().map(|r| Retry {
            attempts: r.attempts,
            on: r.on.clone().unwrap_or_else(|| vec![RetryOn::ConnectError]),
            methods: r.methods.as_deref().map(methods),
            budget: RetryBudget::new(
                r.budget_percent.unwrap_or(20),
                r.min_per_second.unwrap_or(10),
            ),
            sent: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let breaker = policy.circuit_breaker.map(|b| BreakerSettings {
            failure_threshold: b
                .failure_threshold
                .unwrap_or(defaults.breaker.failure_threshold),
            open_for: b
                .open_seconds
                .map_or(defaults.breaker.open_for, Duration::from_secs),
        });
        let allowed = policy.methods.as_deref().map(|list| {
            let list = methods(list);
            let allow = list
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            (
                list,
                HeaderValue::from_str(&allow).unwrap_or(HeaderValue::from_static("")),
            )
        });
        let cors = policy.cors.as_ref().map(|c| {
            let cors_methods = if !c.methods.is_empty() {
                c.methods.clone()
            } else if let Some(list) = &policy.methods {
                list.clone()
            } else {
                vec!["GET".into(), "HEAD".into(), "POST".into()]
            };
            Cors {
                any_origin: c.origins.iter().any(|o| o == "*"),
                origins: c.origins.clone(),
                methods: joined(&cors_methods).unwrap_or(HeaderValue::from_static("GET")),
                headers: joined(&c.headers),
                expose: joined(&c.expose_headers),
                max_age: c.max_age_seconds.map(HeaderValue::from),
                credentials: c.credentials,
            }
        });
        Self {
            service: Arc::from(service),
            public: auth.mode == AuthMode::None,
            scopes: auth.scopes,
            limiter,
            timeout: policy.timeout_ms.map(Duration::from_millis),
            retry,
            breaker,
            split: policy.split.as_ref().map(Split::compile),
            request_headers: policy.request_headers.as_ref().map(Rules::compile),
            response_headers: policy.response_headers.as_ref().map(Rules::compile),
            methods: allowed,
            max_body: policy.max_body_bytes,
            cors,
            counters: StatusCounters::default(),
            policy,
            source,
        }
    }
}

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

/// Append `gateway_requests_total`, `gateway_retries_total` and
/// `gateway_split_decisions_total` of the current snapshot to `out`. The
/// label sets are bounded by the configuration: services with a policy,
/// their routes (`svc` or a route's name), status classes, split tags.
/// Counters start again when a policy or route changes.
pub fn render_metrics(snapshot: &Snapshot, out: &mut String) {
    use std::fmt::Write as _;

    use crate::balance::escape_label;
    let mut services: Vec<&Arc<Applied>> = snapshot.services.values().collect();
    services.sort_by(|a, b| a.service.cmp(&b.service));
    out.push_str(
        "# HELP gateway_requests_total Requests to services with a policy or through a route, by status class.\n\
         # TYPE gateway_requests_total counter\n",
    );
    let mut series = |service: &str, route: &str, counters: &StatusCounters| {
        for (label, value) in StatusCounters::LABELS.iter().zip(&counters.0) {
            let _ = writeln!(
                out,
                "gateway_requests_total{{service=\"{}\",route=\"{}\",status=\"{label}\"}} {}",
                escape_label(service),
                escape_label(route),
                value.load(Ordering::Relaxed)
            );
        }
    };
    for applied in &services {
        series(&applied.service, "svc", &applied.counters);
    }
    for route in &snapshot.routes {
        series(&route.route.service, &route.name, &route.counters);
    }
    out.push_str(
        "# HELP gateway_retries_total Retries by service: sent, or refused by the retry budget.\n\
         # TYPE gateway_retries_total counter\n",
    );
    for applied in &services {
        if let Some(retry) = &applied.retry {
            let service = escape_label(&applied.service);
            let _ = writeln!(
                out,
                "gateway_retries_total{{service=\"{service}\",result=\"sent\"}} {}",
                retry.sent.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "gateway_retries_total{{service=\"{service}\",result=\"budget_exhausted\"}} {}",
                retry.refused.load(Ordering::Relaxed)
            );
        }
    }
    out.push_str(
        "# HELP gateway_split_decisions_total Traffic-split decisions by service and tag.\n\
         # TYPE gateway_split_decisions_total counter\n",
    );
    for applied in &services {
        if let Some(split) = &applied.split {
            for (tag, value) in split.decisions() {
                let _ = writeln!(
                    out,
                    "gateway_split_decisions_total{{service=\"{}\",tag=\"{}\"}} {value}",
                    escape_label(&applied.service),
                    escape_label(tag)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn split(text: &str) -> Split {
        Split::compile(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn a_match_pins_and_weights_draw() {
        let split = split(
            r#"{"weights":{"v1":90,"v2":10},"match":[{"header":"x-canary","value":"1","tag":"v2"},
                {"cookie":"beta","tag":"v2"}]}"#,
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-canary", HeaderValue::from_static("1"));
        for _ in 0..100 {
            assert_eq!(&**split.choose(&headers, None).unwrap(), "v2");
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=b; beta=yes"));
        assert_eq!(&**split.choose(&headers, None).unwrap(), "v2");
        let empty = HeaderMap::new();
        let v2 = (0..10_000)
            .filter(|_| &**split.choose(&empty, None).unwrap() == "v2")
            .count();
        assert!((700..1300).contains(&v2), "{v2}");
    }

    #[test]
    fn sticky_keys_always_land_on_one_tag() {
        let split = split(r#"{"weights":{"v1":50,"v2":50},"sticky":{"by":"subject"}}"#);
        let empty = HeaderMap::new();
        let first = split.choose(&empty, Some("alice")).unwrap().clone();
        for _ in 0..50 {
            assert_eq!(split.choose(&empty, Some("alice")).unwrap(), &first);
        }
    }

    #[test]
    fn the_budget_caps_retries() {
        let budget = RetryBudget::new(10, 0);
        for _ in 0..100 {
            budget.deposit();
        }
        let allowed = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(allowed, 10);
        let free = RetryBudget::new(0, 3);
        assert_eq!((0..10).filter(|_| free.withdraw()).count(), 3);
    }

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
