//! What the schema cannot say, checked in Rust with JSON pointers like the
//! schema's: headers the gateway owns, unknown methods, an empty split,
//! routes on the gateway's own paths, overlapping routes.

use super::{RESERVED_PATHS, Route, ServicePolicy};

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

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
}
