//! Path normalisation, the first policy a request meets.
//!
//! Scopes and routes are decided on the path, so the path must have one
//! spelling before anything looks at it: empty segments (`//`) collapse,
//! `.` segments vanish, and what could climb out of a prefix is refused
//! with a 400: a `..` segment (also as `%2e%2e`), an encoded slash
//! (`%2f`) or backslash (`%5c`). Upstreams see exactly the canonical path.
//! The common case (nothing to change) costs one scan and no allocation.

use std::{
    borrow::Cow,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    http::{Uri, uri::PathAndQuery},
    response::{IntoResponse, Response},
};
use futures_util::future::Either;
use tower::{Layer, Service};

use crate::error::GatewayError;

/// Canonical form of `path`, or why it is refused.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, &'static str> {
    let Some(body) = path.strip_prefix('/') else {
        return Err("the path must start with `/`");
    };
    let last = body.bytes().filter(|b| *b == b'/').count();
    let mut dirty = false;
    for (index, segment) in body.split('/').enumerate() {
        match classify(segment)? {
            Segment::Plain => {}
            // A final empty segment is a trailing slash, which is kept.
            Segment::Empty if index == last => {}
            Segment::Empty | Segment::Dot => dirty = true,
        }
    }
    if !dirty {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut ends_in_directory = false;
    for segment in body.split('/') {
        ends_in_directory = segment.is_empty() || is_dot(segment);
        if !ends_in_directory {
            out.push('/');
            out.push_str(segment);
        }
    }
    if ends_in_directory || out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

enum Segment {
    Plain,
    Empty,
    Dot,
}

/// How many dots `segment` spells (`.` or `%2e` each), or `None` if it is
/// anything else.
fn dots(segment: &str) -> Option<usize> {
    let bytes = segment.as_bytes();
    let (mut i, mut count) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'.' {
            i += 1;
        } else if bytes[i] == b'%'
            && bytes.get(i + 1) == Some(&b'2')
            && bytes
                .get(i + 2)
                .is_some_and(|b| b.eq_ignore_ascii_case(&b'e'))
        {
            i += 3;
        } else {
            return None;
        }
        count += 1;
    }
    Some(count)
}

fn is_dot(segment: &str) -> bool {
    dots(segment) == Some(1)
}

fn classify(segment: &str) -> Result<Segment, &'static str> {
    match dots(segment) {
        Some(0) => return Ok(Segment::Empty),
        Some(1) => return Ok(Segment::Dot),
        Some(2) => return Err("the path must not contain a `..` segment"),
        _ => {}
    }
    let bytes = segment.as_bytes();
    if bytes.contains(&b'\\') {
        return Err("the path must not contain a backslash");
    }
    if bytes.contains(&b'%') {
        for window in bytes.windows(3) {
            if window[0] == b'%' {
                let code = [
                    window[1].to_ascii_lowercase(),
                    window[2].to_ascii_lowercase(),
                ];
                if &code == b"2f" || &code == b"5c" {
                    return Err("the path must not contain an encoded slash (`%2f`, `%5c`)");
                }
            }
        }
    }
    Ok(Segment::Plain)
}

/// Layer: normalise the request path in place, or answer 400.
#[derive(Debug, Clone, Copy)]
pub struct NormalizePathLayer;

impl<S> Layer<S> for NormalizePathLayer {
    type Service = NormalizePath<S>;
    fn layer(&self, inner: S) -> Self::Service {
        NormalizePath { inner }
    }
}

/// The service [`NormalizePathLayer`] builds.
#[derive(Debug, Clone)]
pub struct NormalizePath<S> {
    inner: S,
}

impl<S> Service<Request> for NormalizePath<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, std::future::Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let rewritten = match normalize(request.uri().path()) {
            Ok(Cow::Borrowed(_)) => None,
            Ok(Cow::Owned(path)) => Some(path),
            Err(why) => {
                return Either::Right(std::future::ready(Ok(
                    GatewayError::BadPath(why).into_response()
                )));
            }
        };
        if let Some(mut path) = rewritten {
            if let Some(query) = request.uri().query() {
                path.push('?');
                path.push_str(query);
            }
            let mut parts = request.uri().clone().into_parts();
            match PathAndQuery::try_from(path) {
                Ok(pq) => parts.path_and_query = Some(pq),
                Err(_) => {
                    return Either::Right(std::future::ready(Ok(GatewayError::BadPath(
                        "the path is not a valid URI path",
                    )
                    .into_response())));
                }
            }
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
        Either::Left(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_are_borrowed() {
        assert!(matches!(normalize("/svc/echo/x"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/svc/echo/"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn slashes_and_dots_collapse() {
        assert_eq!(
            normalize("//svc//echo/./x").unwrap_or_default(),
            "/svc/echo/x"
        );
        assert_eq!(normalize("/svc/echo//").unwrap_or_default(), "/svc/echo/");
        assert_eq!(normalize("/svc/%2e/echo").unwrap_or_default(), "/svc/echo");
    }

    #[test]
    fn escapes_are_refused() {
        for bad in [
            "/svc/echo/../../admin/upstreams",
            "/svc/echo/%2e%2e/admin",
            "/svc/echo/.%2E/admin",
            "/svc/echo%2f..%2fadmin",
            "/svc/echo/a%5cb",
            "/svc/..",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }
}
