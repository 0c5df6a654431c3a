//! The upstream request's headers: hop-by-hop headers (and those
//! `Connection` names) dropped, the client's token kept at the gateway, then
//! `X-Forwarded-*` and `X-Auth-*` set, in that order.

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::auth::{Principal, X_AUTH_SCOPES, X_AUTH_SUBJECT};

pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The hop-by-hop headers (RFC 9110 §7.6.1), besides those `Connection` names.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Remove hop-by-hop headers (RFC 9110 §7.6.1), including those `Connection` names.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the (few) headers present, instead of a hashed removal
    // of each of the nine names: most messages carry none of them.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What the proxy tells the upstream about the client's request.
pub(super) struct Forwarded<'a> {
    /// The client's address.
    pub(super) peer: Option<SocketAddr>,
    /// The authority of an absolute-form request target, when there is one.
    pub(super) uri_host: Option<&'a str>,
    /// `http` or `https`.
    pub(super) proto: &'a HeaderValue,
    /// The verified token (none only in unit tests: the proxy is behind auth).
    pub(super) principal: Option<&'a Principal>,
}

/// The upstream request's headers: the hop-by-hop ones and the token go,
/// then the gateway's own are set. The order matters: a header inserted
/// before [`strip_hop_by_hop`] could be removed by a client that names it in
/// `Connection` (`Connection: keep-alive, x-auth-subject`).
pub(super) fn prepare_request_headers(headers: &mut HeaderMap, forwarded: Forwarded<'_>) {
    // `TE: trailers` is hop-by-hop, but it says the client takes trailers, and
    // gRPC servers want to hear it (as Envoy and nginx's grpc_pass keep it).
    let trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    strip_hop_by_hop(headers);
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    // The token stays here: upstreams trust X-Auth-* from the gateway instead.
    headers.remove(header::AUTHORIZATION);
    // From here on, only insertions.
    if let Some(principal) = forwarded.principal {
        let identity = &principal.identity;
        match &identity.subject_header {
            Some(subject) => headers.insert(X_AUTH_SUBJECT, subject.clone()),
            None => headers.remove(X_AUTH_SUBJECT),
        };
        headers.insert(X_AUTH_SCOPES, identity.scopes_header.clone());
    }
    let host = headers.remove(header::HOST).or_else(|| {
        forwarded
            .uri_host
            .and_then(|h| HeaderValue::from_str(h).ok())
    });
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers.insert(X_FORWARDED_PROTO, forwarded.proto.clone());
    if let Some(peer) = forwarded.peer {
        let ip = peer.ip().to_string();
        let value = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(previous) => format!("{previous}, {ip}"),
            None => ip,
        };
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_headers_are_set_after_the_hop_by_hop_ones_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static(
                "keep-alive, x-auth-subject, x-auth-scopes, x-forwarded-for, x-forwarded-proto",
            ),
        );
        headers.insert(header::HOST, HeaderValue::from_static("gw.example"));
        let proto = HeaderValue::from_static("https");
        prepare_request_headers(
            &mut headers,
            Forwarded {
                peer: Some(SocketAddr::from(([127, 0, 0, 9], 5000))),
                uri_host: None,
                proto: &proto,
                principal: None,
            },
        );
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
        assert_eq!(headers[X_FORWARDED_FOR], "127.0.0.9");
        assert_eq!(headers[X_FORWARDED_HOST], "gw.example");
        assert!(!headers.contains_key(header::CONNECTION));
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("5"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));

        // Without `Connection`, each hop-by-hop header still goes.
        let mut headers = HeaderMap::new();
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }
}
