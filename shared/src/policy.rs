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
//!
//! The types are in `types`, the checks in `checks`, the schema's forms in
//! `schema`; all are re-exported here.

mod checks;
mod schema;
mod types;

pub use checks::{Violation, check_route, check_service, route_conflict, routes_conflict};
pub use schema::{openapi_schemas, schema_of};
pub use types::{
    AuthMode, AuthPolicy, BreakerPolicy, CorsPolicy, HeaderRules, LimitKey, LimitMode,
    RateLimitPolicy, RetryOn, RetryPolicy, Route, ServicePolicy, SplitMatch, SplitPolicy, Sticky,
    StickyBy, UpstreamProtocol,
};

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

#[cfg(test)]
mod tests {
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
}
