//! A service policy compiled into an [`Applied`]: header names and values
//! parsed, the limiter, retry budget, split and CORS answer built once per
//! version, so applying it on a request costs no parsing.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use mcp_shared::policy::{self, AuthMode, HeaderRules, LimitKey, ServicePolicy, UpstreamProtocol};

use super::{Retry, Source, Split, StatusCounters, methods};
use crate::{RateLimitMode, circuit::BreakerSettings, ratelimit::RateLimiter, store::Store};

/// A service policy, compiled (see [`crate::policy`]).
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
    /// `protocol`: how to speak to the instances (`None`: their metadata says).
    pub protocol: Option<UpstreamProtocol>,
    /// `websocket`: whether upgrades pass (`None`: the instances' metadata says).
    pub websocket: Option<bool>,
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
        let retry = policy.retries.as_ref().map(Retry::compile);
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
            protocol: policy.protocol,
            websocket: policy.websocket,
            counters: StatusCounters::default(),
            policy,
            source,
        }
    }
}
