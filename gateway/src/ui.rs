//! `GET /ui`: the web console, a small single-page app in plain HTML, CSS
//! and JavaScript modules (`gateway/ui/`), compiled into the binary so it
//! works offline and needs nothing but the gateway.
//!
//! The page holds no data: it is public, like `/docs`, and calls the public
//! API from the browser with the user's bearer token (kept in the tab's
//! `sessionStorage`, never in a URL query; a sign-in link carries it in the
//! fragment, which browsers do not send). Every answer carries a strict
//! Content-Security-Policy (`default-src 'self'`, no inline script or
//! style, no framing), `X-Content-Type-Options: nosniff`, no referrer, and
//! `Cache-Control: no-cache` with an `ETag`, so a browser revalidates (304)
//! and never runs a console older than the gateway it talks to.

use std::hash::{DefaultHasher, Hash, Hasher};

use axum::{
    Router,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use mcp_shared::Problem;

/// Where the console answers.
pub const UI_PATH: &str = "/ui";

/// The Content-Security-Policy of every console answer: only the gateway's
/// own scripts, styles and API (`connect-src 'self'`), no inline code, no
/// plugin, no framing, no form posting elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the console.
struct Asset {
    /// Its name under `/ui/`.
    name: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its bytes, compiled in.
    body: &'static [u8],
}

/// The console's files (the first is the page).
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/dom.js"),
    },
    Asset {
        name: "diff.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/diff.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../ui/style.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../ui/icon.svg"),
    },
];

/// The names of the console's files under `/ui/` (the page first).
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|asset| asset.name)
}

/// The routes `/ui`, `/ui/` and `/ui/{*asset}`.
pub fn routes() -> Router {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/{*asset}", get(asset))
}

/// The page.
async fn page(headers: HeaderMap) -> Response {
    serve(&ASSETS[0], &headers)
}

/// One of the console's files; anything else is a problem+json 404.
async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => serve(asset, &headers),
        None => {
            with_policy(Problem::not_found(format!("no console file `{name}`")).into_response())
        }
    }
}

/// The asset with its headers, or `304` when the browser's copy is current.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, tag);
    }
    // Revalidate every time: a few bytes for a 304, never a stale console.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_policy(response)
}

/// The security headers every console answer carries.
fn with_policy(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// A strong validator of the asset's bytes (the same in every replica of one
/// build: `DefaultHasher::new()` has fixed keys).
fn etag(asset: &Asset) -> String {
    let mut hasher = DefaultHasher::new();
    asset.body.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        let names: Vec<&str> = asset_names().collect();
        for asset in ASSETS {
            let text = String::from_utf8_lossy(asset.body);
            for part in text.split("from './").skip(1) {
                let module = part.split('\'').next().unwrap_or_default();
                assert!(names.contains(&module), "{} imports {module}", asset.name);
            }
            for part in text.split("\"/ui/").skip(1) {
                let file = part.split('"').next().unwrap_or_default();
                assert!(names.contains(&file), "{} links {file}", asset.name);
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = String::from_utf8_lossy(ASSETS[0].body);
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains("style=\""), "inline style attribute");
        // No `onclick=`-style attribute either.
        for part in page.split(" on").skip(1) {
            let rest = part.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            assert!(!rest.starts_with('='), "inline handler: on{part:.20}");
        }
    }
}
