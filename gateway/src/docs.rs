//! `GET /docs`: Swagger UI over the gateway's `/openapi.json` (no token
//! needed).
//!
//! The page's scripts, styles and icons are compiled into the binary
//! (`utoipa-swagger-ui`, vendored) and served under `/docs/…`, so the page
//! needs nothing but the gateway: no CDN, works offline. The page itself
//! answers at `/docs` (and `/docs/`); a `<base href="/docs/">` makes its
//! relative asset links resolve under `/docs/` either way.

use std::{borrow::Cow, sync::Arc};

use axum::{
    Router,
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use mcp_shared::{Problem, openapi::OPENAPI_PATH};
use utoipa_swagger_ui::Config;

/// Where the docs page answers.
pub const DOCS_PATH: &str = "/docs";

/// The page and its assets' configuration, prepared once.
#[derive(Clone)]
struct Docs {
    /// `index.html`, with the base set to `/docs/`.
    index: Result<Bytes, String>,
    /// Swagger UI's configuration (the document's URL), baked into
    /// `swagger-initializer.js`.
    config: Arc<Config<'static>>,
}

/// The routes `/docs`, `/docs/` and `/docs/{file}`.
pub fn routes() -> Router {
    let config = Arc::new(
        Config::new([OPENAPI_PATH])
            .try_it_out_enabled(true)
            .persist_authorization(true)
            .display_operation_id(true)
            .filter(true),
    );
    let page = match utoipa_swagger_ui::serve("index.html", config.clone()) {
        Ok(Some(file)) => String::from_utf8(file.bytes.into_owned())
            .map(|html| {
                Bytes::from(
                    html.replacen("<head>", "<head>\n    <base href=\"/docs/\">", 1)
                        .replacen("<title>Swagger UI</title>", "<title>MCP API</title>", 1),
                )
            })
            .map_err(|e| e.to_string()),
        Ok(None) => Err("Swagger UI has no index.html".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let docs = Docs {
        index: page,
        config,
    };
    Router::new()
        .route(DOCS_PATH, get(index))
        .route("/docs/", get(index))
        .route("/docs/{*file}", get(asset))
        .with_state(docs)
}

/// The page.
async fn index(State(docs): State<Docs>) -> Response {
    match docs.index {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => Problem::internal(format!("the docs page cannot be served: {e}")).into_response(),
    }
}

/// One of the page's assets (404 problem for anything else).
async fn asset(State(docs): State<Docs>, Path(file): Path<String>) -> Response {
    if file == "index.html" {
        return index(State(docs)).await;
    }
    match utoipa_swagger_ui::serve(&file, docs.config) {
        Ok(Some(file)) => {
            // The assets are static (no copy); only the initializer is built.
            let body = match file.bytes {
                Cow::Borrowed(bytes) => Bytes::from_static(bytes),
                Cow::Owned(bytes) => Bytes::from(bytes),
            };
            let mut response = ([(header::CONTENT_TYPE, file.content_type)], body).into_response();
            if file.gzpipped {
                response.headers_mut().insert(
                    header::CONTENT_ENCODING,
                    header::HeaderValue::from_static("gzip"),
                );
            }
            response
        }
        Ok(None) => Problem::not_found(format!("no docs asset `{file}`")).into_response(),
        Err(e) => {
            Problem::internal(format!("the docs asset cannot be served: {e}")).into_response()
        }
    }
}
