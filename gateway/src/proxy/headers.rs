//! The upstream request's headers: hop-by-hop headers (and those
//! `Connection` names) dropped, the client's token kept at the gateway, then
//! `X-Forwarded-*` and `X-Auth-*` set, in that order.

use std::{
    cell::RefCell,
    net::{IpAddr, SocketAddr},
};

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::auth::{Principal, X_AUTH_SCOPES, X_AUTH_SUBJECT};

pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The hop-by-hop headers (RFC 9110 §7.6.1), besides those `Connection`
/// names. Compared as text: a length check rules out most at once, where
/// comparing `HeaderName`s one by one cost more than the rest of the
/// header work.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];

/// Remove hop-by-hop headers (RFC 9110 §7.6.1), including those `Connection` names.
///
/// One pass over the (few) headers present picks what goes, and only
/// those are removed: a hashed removal of each of the nine names, present
/// or not, was most of the proxy's own header work (an upstream's answer
/// usually carries `Connection: keep-alive`, and nothing else of the kind).
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // No allocation unless one is present.
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(&name.as_str()))
        .cloned()
        .collect();
    if doomed.is_empty() {
        return;
    }
    let listed = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // `keep-alive`, `close`, `upgrade`: a hop-by-hop name (gone above
        // if present) or a connection option, no header at all.
        .filter(|name| {
            !name.is_empty()
                && !HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
                && headers.contains_key(*name)
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok());
    doomed.extend(listed);
    for name in doomed {
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
    // From here on, only insertions (up to five: one growth of the map at most).
    headers.reserve(5);
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
        let ip = forwarded_for(peer.ip());
        let value = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(previous) => HeaderValue::try_from(format!("{previous}, {}", peer.ip())).ok(),
            None => Some(ip),
        };
        if let Some(value) = value {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
}

/// `ip` as a header value. Formatting an address costs more than the
/// rest of the headers' work, and a thread serves the same few clients
/// over and over (each kept-alive connection's requests), so the last one
/// is kept per thread.
fn forwarded_for(ip: IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((cached, value)) if *cached == ip => value.clone(),
        _ => {
            // An address's text is always a valid header value.
            let value = HeaderValue::try_from(ip.to_string())
                .unwrap_or(HeaderValue::from_static("unknown"));
            *last = Some((ip, value.clone()));
            value
        }
    })
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

        // Names in `Connection` in any case, several values, a header named twice.
        let mut headers = HeaderMap::new();
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static("Keep-Alive, X-Secret"),
        );
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static(" x-other ,,x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.append("x-other", HeaderValue::from_static("1"));
        headers.append("x-other", HeaderValue::from_static("2"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-kept"));
    }
}
