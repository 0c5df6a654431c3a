//! Where a request goes on the upstream: the first path segment split off,
//! the upstream URI built from the instance's base path and the rest, and
//! the `wait` a blocking query adds to the header timeout.

use std::time::Duration;

use axum::http::{
    Uri,
    uri::{PathAndQuery, Scheme},
};
use mcp_shared::http::Blocking;

use super::Target;
use crate::error::GatewayError;

/// `("first", "/rest")` of `"first/rest"`.
pub(super) fn split_first(path: &str) -> (&str, &str) {
    match path.find('/') {
        Some(at) => (&path[..at], &path[at..]),
        None => (path, ""),
    }
}

pub(super) fn upstream_uri(
    scheme: Scheme,
    authority: &axum::http::uri::Authority,
    base_path: &str,
    target: &Target<'_>,
    query: Option<&str>,
) -> Result<Uri, GatewayError> {
    let rest = if target.rest.is_empty() && target.prefix.is_empty() {
        "/"
    } else {
        target.rest
    };
    let mut path = String::with_capacity(
        base_path.len() + target.prefix.len() + rest.len() + query.map_or(0, |q| q.len() + 1),
    );
    path.push_str(base_path);
    path.push_str(target.prefix);
    path.push_str(rest);
    if let Some(query) = query {
        path.push('?');
        path.push_str(query);
    }
    let path_and_query = PathAndQuery::try_from(path)
        .map_err(|_| GatewayError::BadPath("the path is not a valid URI path"))?;
    Uri::builder()
        .scheme(scheme)
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| GatewayError::BadPath("the path is not a valid URI path"))
}

/// The `wait` of a blocking query, as the services read it (default
/// included); `None` when the request does not block. A query the services
/// will refuse (400 at once) needs no extra time.
pub(super) fn wait_of(query: Option<&str>) -> Option<Duration> {
    Blocking::parse(query).ok().flatten().map(|b| b.wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_read_as_the_services_read_it() {
        use mcp_shared::http::{DEFAULT_WAIT, MAX_WAIT};
        assert_eq!(
            wait_of(Some("index=3&wait=30s")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            wait_of(Some("index=3&%77ait=10")),
            Some(Duration::from_secs(10))
        );
        assert_eq!(wait_of(Some("index=3&wait=1h")), Some(MAX_WAIT));
        // No `wait`: the services hold it for the default wait.
        assert_eq!(wait_of(Some("index=3")), Some(DEFAULT_WAIT));
        // Not blocking: no `index`, `index=0`, or a query the services refuse.
        assert_eq!(wait_of(Some("wait=10")), None);
        assert_eq!(wait_of(Some("index=0&wait=10")), None);
        assert_eq!(wait_of(Some("index=3&wait=soon")), None);
        assert_eq!(wait_of(None), None);
    }
}
