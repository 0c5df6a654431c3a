//! The policy types on the wire: a service's [`ServicePolicy`] and an
//! extra [`Route`], as config-svc stores them and the gateway reads them
//! (`policy/schema.json` describes each member).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The policy of one service (see `policy/schema.json` for each member).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePolicy {
    /// Token and scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthPolicy>,
    /// A limit of this service's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitPolicy>,
    /// Time for the upstream's response headers, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retries on another instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    /// Per-instance breaker thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerPolicy>,
    /// Traffic split over instance tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitPolicy>,
    /// Changes to the upstream request's headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeaderRules>,
    /// Changes to the response's headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeaderRules>,
    /// Allowed methods (others: 405 with `Allow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Largest request body, in bytes (413 beyond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// CORS answered at the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsPolicy>,
    /// How the gateway speaks to the instances (over their `protocol` metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<UpstreamProtocol>,
    /// Whether WebSocket upgrades pass to the service (over its instances'
    /// `websocket` metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<bool>,
}

/// How the gateway speaks to a service's instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over TCP (the default).
    #[default]
    Http,
    /// HTTP/2 over TCP with prior knowledge (gRPC services).
    H2c,
    /// TLS, HTTP/1.1 or HTTP/2 as ALPN picks.
    Https,
}

impl UpstreamProtocol {
    /// The protocol a `protocol` metadata value names (`http`, `h2c`,
    /// `https`); `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "http" => Some(Self::Http),
            "h2c" => Some(Self::H2c),
            "https" => Some(Self::Https),
            _ => None,
        }
    }
}

/// `jwt` (a token is needed) or `none` (public).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A valid token is needed (the default).
    #[default]
    Jwt,
    /// Public: no token needed.
    None,
}

/// `auth`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthPolicy {
    /// `jwt` or `none`.
    #[serde(default)]
    pub mode: AuthMode,
    /// Scopes needed on top of a valid token (each, or `admin`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKey {
    /// The token's `sub`, else the client IP.
    #[default]
    Subject,
    /// The client IP.
    Ip,
    /// A header's value, else the client IP.
    Header,
}

/// Where a limit is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitMode {
    /// Per replica.
    #[default]
    Local,
    /// In Redis, across replicas.
    Redis,
}

/// `rate_limit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicy {
    /// Sustained requests per second.
    pub rps: u32,
    /// Requests at once above the rate (default: `rps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// What to count by.
    #[serde(default)]
    pub key: LimitKey,
    /// The header of `key: header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `local` or `redis`.
    #[serde(default)]
    pub mode: LimitMode,
}

/// A failure a retry policy may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryOn {
    /// Could not connect.
    #[serde(rename = "connect_error")]
    ConnectError,
    /// No response headers in time.
    #[serde(rename = "timeout")]
    Timeout,
    /// Any 5xx.
    #[serde(rename = "5xx")]
    ServerError,
    /// 502.
    #[serde(rename = "502")]
    BadGateway,
    /// 503.
    #[serde(rename = "503")]
    Unavailable,
    /// 504.
    #[serde(rename = "504")]
    GatewayTimeout,
}

/// `retries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    /// What is retried (default: connect errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<RetryOn>>,
    /// Methods retried (default: the idempotent ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Retries may be at most this share of requests (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_percent: Option<u32>,
    /// Retries allowed per second whatever the share (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_per_second: Option<u32>,
}

/// `circuit_breaker`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerPolicy {
    /// Consecutive failures that open an instance's circuit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    /// Seconds an open circuit waits before one trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_seconds: Option<u64>,
}

/// `split`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitPolicy {
    /// Tag → weight.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    /// Requests pinned to a tag, first match wins.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<SplitMatch>,
    /// Keep one client on one tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
}

/// One `split.match`: a header or a cookie (equal to `value`, or present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitMatch {
    /// The header to look at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The cookie to look at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// The value it must equal (absent: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The tag the request goes to.
    pub tag: String,
}

/// What stickiness hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StickyBy {
    /// The token's subject.
    Subject,
    /// A header's value.
    Header,
}

/// `split.sticky`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    /// `subject` or `header`.
    pub by: StickyBy,
    /// The header of `by: header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// `request_headers` / `response_headers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRules {
    /// Headers removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Headers set (replacing).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Values added.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub append: BTreeMap<String, String>,
}

/// `cors`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsPolicy {
    /// Allowed origins (`*` for any).
    pub origins: Vec<String>,
    /// Allowed methods (default: those of `methods`, else GET, HEAD, POST).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Response headers the browser may read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// How long a preflight answer may be cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u32>,
    /// `Access-Control-Allow-Credentials: true`.
    #[serde(default)]
    pub credentials: bool,
}

/// An extra route (`routes/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The service requests go to.
    pub service: String,
    /// Hosts (without port) it answers; any when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Path prefix it answers (segment-wise); any path when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Drop the prefix from the upstream path.
    #[serde(default)]
    pub strip_prefix: bool,
}

impl Route {
    /// The prefix as matched (`/` when absent).
    pub fn prefix(&self) -> &str {
        self.path_prefix.as_deref().unwrap_or("/")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::policy::check_service;

    #[test]
    fn a_full_policy_round_trips() {
        let text = r#"{"auth":{"mode":"none","scopes":["shop:buy"]},
            "rate_limit":{"rps":5,"burst":5,"key":"header","header":"x-api-key","mode":"redis"},
            "timeout_ms":2000,
            "retries":{"attempts":2,"on":["connect_error","5xx"],"budget_percent":20},
            "circuit_breaker":{"failure_threshold":3,"open_seconds":5},
            "split":{"weights":{"v1":90,"v2":10},"match":[{"header":"x-canary","value":"1","tag":"v2"}],
                     "sticky":{"by":"subject"}},
            "request_headers":{"set":{"x-env":"prod"},"append":{"x-via":"gw"},"remove":["x-debug"]},
            "response_headers":{"set":{"x-served-by":"gw"}},
            "methods":["GET","POST"],"max_body_bytes":1024,
            "cors":{"origins":["https://app.example.com"],"max_age_seconds":600}}"#;
        let policy: ServicePolicy = serde_json::from_str(text).unwrap();
        assert_eq!(policy.auth.as_ref().unwrap().mode, AuthMode::None);
        assert!(check_service(&policy).is_empty());
        let again: ServicePolicy =
            serde_json::from_str(&serde_json::to_string(&policy).unwrap()).unwrap();
        assert_eq!(policy, again);
    }
}
