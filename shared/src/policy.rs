//! Gateway policies: the values of config-svc's reserved namespace
//! [`NAMESPACE`] (`gateway`).
//!
//! `services/{service}` holds the [`ServicePolicy`] of `/svc/{service}`,
//! `routes/{name}` an extra public [`Route`]. The one definition lives here:
//! config-svc installs and enforces [`SCHEMA`] (a hand-written JSON Schema
//! 2020-12, `policy/schema.json`) and runs [`check_service`] /
//! [`check_route`] / [`route_conflict`] on every write, so the gateway, which
//! reads the same types, never meets a policy it cannot apply. The gateway's
//! OpenAPI document carries the same schema ([`openapi_schemas`]).
//!
//! What the schema cannot say (a header the gateway owns, a route on the
//! gateway's own paths, overlapping routes) is checked in Rust, with the
//! same JSON pointers in the 422.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The reserved config namespace.
pub const NAMESPACE: &str = "gateway";
/// Key prefix of service policies: `services/{service}`.
pub const SERVICES_PREFIX: &str = "services/";
/// Key prefix of extra routes: `routes/{name}`.
pub const ROUTES_PREFIX: &str = "routes/";
/// The namespace's JSON Schema (2020-12), as config-svc installs it.
pub const SCHEMA: &str = include_str!("policy/schema.json");

/// Path prefixes the gateway serves itself; a [`Route`] may not claim them.
pub const RESERVED_PATHS: [&str; 8] = [
    "/api",
    "/svc",
    "/admin",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
];

/// What a key of the namespace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKey<'a> {
    /// `services/{service}`.
    Service(&'a str),
    /// `routes/{name}`.
    Route(&'a str),
}

impl<'a> PolicyKey<'a> {
    /// The kind of `key`, or `None` for a key outside the two families
    /// (or with a `/` in the name).
    pub fn parse(key: &'a str) -> Option<Self> {
        let (kind, name) = if let Some(name) = key.strip_prefix(SERVICES_PREFIX) {
            (Self::Service as fn(&'a str) -> Self, name)
        } else {
            (
                Self::Route as fn(&'a str) -> Self,
                key.strip_prefix(ROUTES_PREFIX)?,
            )
        };
        (!name.is_empty() && !name.contains('/')).then(|| kind(name))
    }

    /// The `$defs` entry of [`SCHEMA`] that values of this key must meet.
    pub fn definition(self) -> &'static str {
        match self {
            Self::Service(_) => "ServicePolicy",
            Self::Route(_) => "Route",
        }
    }
}

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

/// One problem with a value: a JSON pointer into it and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Pointer into the value (`/split/weights`).
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

fn violation(pointer: impl Into<String>, message: impl Into<String>) -> Violation {
    Violation {
        pointer: pointer.into(),
        message: message.into(),
    }
}

/// Headers a request rule may not touch: the gateway sets them (identity,
/// forwarding, framing) and an upstream trusts them.
fn gateway_owned_request_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("x-auth-")
        || name.starts_with("x-forwarded-")
        || matches!(
            name.as_str(),
            "host"
                | "authorization"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "upgrade"
                | "te"
                | "trailer"
                | "keep-alive"
                | "proxy-connection"
                | "traceparent"
                | "x-request-id"
        )
}

/// Response headers a rule may not touch (framing and the gateway's limit).
fn gateway_owned_response_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("ratelimit-")
        || matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "x-request-id"
        )
}

const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

/// What the schema cannot say about a service policy (it has already met
/// the schema): headers the gateway owns, unknown methods, a split that
/// sends nothing anywhere.
pub fn check_service(policy: &ServicePolicy) -> Vec<Violation> {
    let mut out = Vec::new();
    for (rules, at, owned) in [
        (
            &policy.request_headers,
            "/request_headers",
            gateway_owned_request_header as fn(&str) -> bool,
        ),
        (
            &policy.response_headers,
            "/response_headers",
            gateway_owned_response_header,
        ),
    ] {
        let Some(rules) = rules else { continue };
        for (index, name) in rules.remove.iter().enumerate() {
            if owned(name) {
                out.push(violation(
                    format!("{at}/remove/{index}"),
                    format!("`{name}` is set by the gateway and cannot be changed by a rule"),
                ));
            }
        }
        for (member, map) in [("set", &rules.set), ("append", &rules.append)] {
            for name in map.keys() {
                if owned(name) {
                    out.push(violation(
                        format!("{at}/{member}/{}", escape_pointer(name)),
                        format!("`{name}` is set by the gateway and cannot be changed by a rule"),
                    ));
                }
            }
        }
    }
    let mut methods = |list: &[String], at: &str| {
        for (index, method) in list.iter().enumerate() {
            if !KNOWN_METHODS.contains(&method.as_str()) {
                out.push(violation(
                    format!("{at}/{index}"),
                    format!("`{method}` is not a method the gateway knows"),
                ));
            }
        }
    };
    if let Some(list) = &policy.methods {
        methods(list, "/methods");
    }
    if let Some(list) = policy.retries.as_ref().and_then(|r| r.methods.as_ref()) {
        methods(list, "/retries/methods");
    }
    if let Some(cors) = &policy.cors {
        methods(&cors.methods, "/cors/methods");
    }
    if let Some(split) = &policy.split
        && !split.weights.is_empty()
        && split.weights.values().all(|w| *w == 0)
    {
        out.push(violation(
            "/split/weights",
            "at least one weight must be above 0",
        ));
    }
    out
}

/// What the schema cannot say about a route: it may not claim the gateway's own paths.
pub fn check_route(route: &Route) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(prefix) = &route.path_prefix {
        let reserved = RESERVED_PATHS.iter().find(|reserved| {
            prefix == *reserved
                || prefix.starts_with(&format!("{reserved}/"))
                || (prefix.len() < reserved.len() && reserved.starts_with(&format!("{prefix}/")))
        });
        if let Some(reserved) = reserved {
            out.push(violation(
                "/path_prefix",
                format!("`{reserved}` is served by the gateway itself"),
            ));
        }
    }
    out
}

/// Whether two routes would answer the same requests (same prefix, hosts
/// that overlap; no hosts = every host): one of them would never be used,
/// so the second write is refused.
pub fn routes_conflict(a: &Route, b: &Route) -> bool {
    if a.prefix() != b.prefix() {
        return false;
    }
    a.hosts.is_empty() || b.hosts.is_empty() || a.hosts.iter().any(|h| b.hosts.contains(h))
}

/// The first of `others` (name, route) that conflicts with `route`, other than `name` itself.
pub fn route_conflict<'a>(
    name: &str,
    route: &Route,
    others: impl IntoIterator<Item = (&'a str, &'a Route)>,
) -> Option<&'a str> {
    others
        .into_iter()
        .find(|(other, existing)| *other != name && routes_conflict(route, existing))
        .map(|(other, _)| other)
}

/// A JSON pointer segment (RFC 6901: `~` → `~0`, `/` → `~1`).
fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The schema of one kind of key: [`SCHEMA`] with its root pointing at `definition`.
pub fn schema_of(definition: &str) -> serde_json::Value {
    let mut schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.remove("anyOf");
        object.insert(
            "$ref".to_owned(),
            serde_json::Value::String(format!("#/$defs/{definition}")),
        );
    }
    schema
}

/// The schema's `$defs` as OpenAPI components (name → schema JSON), their
/// `$ref`s pointing at `#/components/schemas/…`, with the names prefixed
/// `Gateway` (`GatewayServicePolicy`, `GatewayRoute`, …).
pub fn openapi_schemas() -> Vec<(String, serde_json::Value)> {
    let text = SCHEMA.replace("\"#/$defs/", "\"#/components/schemas/Gateway");
    let Ok(schema) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    schema
        .get("$defs")
        .and_then(|d| d.as_object())
        .map(|defs| {
            defs.iter()
                .map(|(name, schema)| {
                    let mut schema = schema.clone();
                    openapi_subset(&mut schema, defs);
                    (format!("Gateway{name}"), schema)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Drop what an OpenAPI schema object cannot hold (`if`/`then`, and
/// `oneOf`/`anyOf` lists that only require members; the descriptions say
/// it in words, and config-svc enforces the full schema), and inline the
/// definitions `propertyNames` refers to (it takes no `$ref` there).
fn openapi_subset(
    schema: &mut serde_json::Value,
    defs: &serde_json::Map<String, serde_json::Value>,
) {
    match schema {
        serde_json::Value::Object(object) => {
            object.remove("if");
            object.remove("then");
            let inlined = object
                .get("propertyNames")
                .and_then(|p| p.get("$ref"))
                .and_then(|r| r.as_str())
                .and_then(|r| r.strip_prefix("#/components/schemas/Gateway"))
                .and_then(|name| defs.get(name))
                .cloned();
            if let Some(definition) = inlined {
                object.insert("propertyNames".to_owned(), definition);
            }
            for list in ["oneOf", "anyOf"] {
                let only_required = object
                    .get(list)
                    .and_then(|l| l.as_array())
                    .is_some_and(|l| {
                        l.iter().all(|item| {
                            item.as_object()
                                .is_some_and(|o| o.keys().all(|k| k == "required"))
                        })
                    });
                if only_required {
                    object.remove(list);
                }
            }
            for value in object.values_mut() {
                openapi_subset(value, defs);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                openapi_subset(item, defs);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_are_services_or_routes() {
        assert_eq!(
            PolicyKey::parse("services/shop"),
            Some(PolicyKey::Service("shop"))
        );
        assert_eq!(
            PolicyKey::parse("routes/billing"),
            Some(PolicyKey::Route("billing"))
        );
        for bad in ["services/", "routes/a/b", "other/x", "services"] {
            assert_eq!(PolicyKey::parse(bad), None, "{bad}");
        }
    }

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

    #[test]
    fn rules_may_not_touch_gateway_headers() {
        let policy: ServicePolicy = serde_json::from_str(
            r#"{"request_headers":{"set":{"X-Auth-Subject":"root"},"remove":["host"]}}"#,
        )
        .unwrap();
        let pointers: Vec<String> = check_service(&policy)
            .into_iter()
            .map(|v| v.pointer)
            .collect();
        assert_eq!(
            pointers,
            [
                "/request_headers/remove/0",
                "/request_headers/set/X-Auth-Subject"
            ]
        );
    }

    #[test]
    fn routes_on_gateway_paths_and_overlaps_are_refused() {
        let route = |prefix: &str, hosts: &[&str]| Route {
            service: "s".into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            path_prefix: Some(prefix.to_owned()),
            strip_prefix: false,
        };
        assert!(!check_route(&route("/svc/x", &[])).is_empty());
        assert!(!check_route(&route("/admin", &[])).is_empty());
        assert!(check_route(&route("/billing", &[])).is_empty());
        assert!(check_route(&route("/svcs", &[])).is_empty());
        assert!(routes_conflict(
            &route("/a", &[]),
            &route("/a", &["x.example"])
        ));
        assert!(!routes_conflict(
            &route("/a", &["y.example"]),
            &route("/a", &["x.example"])
        ));
        assert!(!routes_conflict(&route("/a", &[]), &route("/a/b", &[])));
        let a = route("/a", &[]);
        assert_eq!(route_conflict("new", &a, [("old", &a)]), Some("old"));
        assert_eq!(route_conflict("old", &a, [("old", &a)]), None);
    }

    #[test]
    fn the_schema_and_its_openapi_form_parse() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        assert!(schema["$defs"]["ServicePolicy"].is_object());
        assert_eq!(schema_of("Route")["$ref"], "#/$defs/Route");
        let components = openapi_schemas();
        assert!(components.iter().any(|(n, _)| n == "GatewayServicePolicy"));
        assert!(
            components
                .iter()
                .all(|(_, s)| !s.to_string().contains("$defs"))
        );
    }
}
