//! A Consul-compatible HTTP API on the gateway, so existing Consul clients
//! discover, register and read configuration through MCP.
//!
//! The routes sit at the paths Consul clients call (`/v1/...`, which no
//! other gateway route uses), behind the same stack as `/api` (JWT auth,
//! sent as `Authorization: Bearer` or `X-Consul-Token`, then the rate
//! limit). Each handler checks the scope the equivalent native request
//! needs ([`Requirement::of`] on the native path), calls the native API
//! through the gateway's own [`Proxy`] (so the control plane gets the
//! internal credential minted for the caller, and listings come back
//! filtered by the caller's scopes), and translates the bodies:
//!
//! - [`catalog`]: `/v1/catalog/` datacenters, nodes, services,
//!   `service/{name}`, and `/v1/health/service/{name}`, from the registry. MCP has no nodes:
//!   every instance sits on one virtual node (named [`NODE`]) and its own
//!   address is both `Address` and `ServiceAddress`.
//! - [`agent`]: `/v1/agent/self`, service registration (a TTL check is the
//!   lease, an HTTP or TCP check is MCP's active check) and TTL updates.
//! - [`kv`]: `/v1/kv/{key}` on a config-svc namespace (`CONSUL_KV_NAMESPACE`).
//!
//! Reads that Consul answers with a blocking query take `?index=&wait=`
//! and answer `X-Consul-Index` (the native `X-Mcp-Index`: a revision that
//! never goes backwards, at least 1), `X-Consul-KnownLeader: true` and
//! `X-Consul-LastContact: 0`. Anything else under `/v1/` answers 501
//! problem+json naming what is not supported.

pub mod agent;
pub mod catalog;
pub mod kv;

use axum::{
    Router,
    body::{Body, Bytes},
    extract::Request,
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get, put},
};
use mcp_shared::problem::Problem;
use tower::ServiceExt as _;

use crate::{
    auth::{Principal, Requirement},
    error::GatewayError,
    proxy::Proxy,
};

/// The one virtual node every instance is listed on.
pub const NODE: &str = "mcp";
/// The virtual node's ID (Consul node IDs are UUIDs).
pub const NODE_ID: &str = "6d637000-0000-4000-8000-000000000001";

/// The largest native answer the translation reads (listings included).
const MAX_NATIVE_BODY: usize = 32 * 1024 * 1024;

const X_CONSUL_INDEX: HeaderName = HeaderName::from_static("x-consul-index");
const X_CONSUL_KNOWN_LEADER: HeaderName = HeaderName::from_static("x-consul-knownleader");
const X_CONSUL_LAST_CONTACT: HeaderName = HeaderName::from_static("x-consul-lastcontact");

/// What the Consul handlers share.
#[derive(Clone)]
pub struct ConsulState {
    /// The gateway's proxy: native requests go through it.
    pub proxy: Proxy,
    /// The config-svc namespace holding the Consul KV store.
    pub kv_namespace: String,
    /// The datacenter name answered (and the only `dc` accepted).
    pub datacenter: String,
}

/// The Consul routes behind the gateway's auth (see the module docs),
/// state applied.
pub fn routes(state: ConsulState) -> Router {
    Router::new()
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/service/{name}", get(catalog::service))
        .route("/v1/health/service/{name}", get(catalog::health_service))
        .route("/v1/agent/service/register", put(agent::register))
        .route("/v1/agent/service/deregister/{id}", put(agent::deregister))
        .route("/v1/agent/check/{verb}/{check_id}", put(agent::check))
        .route(
            "/v1/kv/",
            get(kv::get_root).put(kv::put_root).delete(kv::delete_root),
        )
        .route(
            "/v1/kv/{*key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        .route("/v1/{*rest}", any(unsupported))
        .with_state(state)
}

/// The Consul routes without a token: the static facts Consul clients ask
/// for without sending one (py-consul's `agent.self()` and
/// `catalog.datacenters()` send no token): the datacenter, the virtual
/// node, the version.
pub fn public_routes(state: ConsulState) -> Router {
    Router::new()
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route("/v1/agent/self", get(agent::agent_self))
        .with_state(state)
}

/// Any other `/v1/...`: 501 naming the request.
async fn unsupported(request: Request) -> Response {
    Refusal::unsupported(format!(
        "the Consul API `{} {}`",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}

/// A refused or failed Consul request, as its response (boxed: it travels
/// in every `Result` of the module).
#[derive(Debug)]
pub struct Refusal(Box<Response>);

impl Refusal {
    /// 501: a Consul feature MCP does not have.
    pub fn unsupported(feature: impl std::fmt::Display) -> Self {
        Self::from(
            Problem::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("{feature} is not supported by MCP's Consul-compatible API"),
            )
            .with_extension("feature", feature.to_string()),
        )
    }

    /// 400 on `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::from(Problem::invalid_field(field, message))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<GatewayError> for Refusal {
    fn from(error: GatewayError) -> Self {
        Self(Box::new(error.into_response()))
    }
}

impl From<Problem> for Refusal {
    fn from(problem: Problem) -> Self {
        Self(Box::new(problem.into_response()))
    }
}

/// A Consul handler's answer.
pub type Reply = Result<Response, Refusal>;

/// Refuse unless `principal` holds the scope the native `method path` needs.
pub fn require(principal: &Principal, method: &Method, path: &str) -> Result<(), Refusal> {
    let requirement = Requirement::of(method, path, None);
    if requirement.allows(&principal.identity.scope) {
        return Ok(());
    }
    let missing = requirement
        .missing_scope()
        .unwrap_or(std::borrow::Cow::Borrowed("admin"));
    Err(GatewayError::Forbidden(missing).into())
}

/// A native answer, read whole.
#[derive(Debug)]
pub struct Native {
    /// Its status.
    pub status: StatusCode,
    /// Its `X-Mcp-Index`, when it has one.
    pub index: Option<u64>,
    /// Its body.
    pub body: Bytes,
    /// Its content type.
    pub content_type: Option<HeaderValue>,
}

impl Native {
    /// The body as `T`, or 502 naming what did not decode.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Refusal> {
        serde_json::from_slice(&self.body).map_err(|e| {
            GatewayError::BadGateway(format!("the control plane's answer did not decode: {e}"))
                .into()
        })
    }

    /// The native answer passed on as it is (a problem+json refusal).
    pub fn pass_on(self) -> Refusal {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        if let Some(kind) = self.content_type {
            response.headers_mut().insert(header::CONTENT_TYPE, kind);
        }
        Refusal(Box::new(response))
    }
}

/// One native request through the proxy as `principal`: `path_and_query`
/// is the gateway path (`/api/v1/...`); `headers` are added; a body is
/// sent as JSON.
pub async fn call(
    state: &ConsulState,
    principal: &Principal,
    method: Method,
    path_and_query: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: Option<Vec<u8>>,
) -> Result<Native, Refusal> {
    let mut builder = axum::http::Request::builder()
        .method(method)
        .uri(path_and_query);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let body = match body {
        Some(bytes) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(bytes)
        }
        None => Body::empty(),
    };
    let mut request = builder
        .body(body)
        .map_err(|e| GatewayError::BadGateway(format!("cannot build the native request: {e}")))?;
    request.extensions_mut().insert(principal.clone());
    let Ok(response) = state.proxy.clone().oneshot(request).await;
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_NATIVE_BODY)
        .await
        .map_err(|e| GatewayError::BadGateway(format!("cannot read the native answer: {e}")))?;
    let index = parts
        .headers
        .get(mcp_shared::http::INDEX_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Ok(Native {
        status: parts.status,
        index,
        body,
        content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
    })
}

/// The query parameters every Consul read shares: a blocking query and the
/// datacenter. Consistency modes (`stale`, `consistent`, `cached`) are
/// accepted and ignored (every read is consistent); what MCP cannot honour
/// is refused with 501.
#[derive(Debug, Default)]
pub struct ReadQuery {
    /// `index`, as a number.
    pub index: Option<u64>,
    /// `wait`, as sent.
    pub wait: Option<String>,
}

impl ReadQuery {
    /// Parse the shared parameters of `pairs`, refusing `unsupported` ones
    /// (`near`, `node-meta`, another `dc`, …).
    pub fn parse(pairs: &[(String, String)], state: &ConsulState) -> Result<Self, Refusal> {
        let mut query = Self::default();
        for (key, value) in pairs {
            match key.as_str() {
                "index" => {
                    query.index = Some(value.parse().map_err(|_| {
                        Refusal::invalid("index", "must be a non-negative integer")
                    })?);
                }
                "wait" => query.wait = Some(value.clone()),
                "dc" if value.is_empty() || *value == state.datacenter => {}
                "dc" => return Err(Refusal::unsupported(format!("datacenter `{value}`"))),
                "near" | "node-meta" | "peer" | "ns" | "partition" | "sampling" => {
                    return Err(Refusal::unsupported(format!("the `{key}` parameter")));
                }
                _ => {}
            }
        }
        Ok(query)
    }

    /// `index=…&wait=…` for the native query (empty without `index`).
    pub fn native(&self) -> String {
        match (self.index, &self.wait) {
            (Some(index), Some(wait)) => format!("index={index}&wait={}", encode(wait)),
            (Some(index), None) => format!("index={index}"),
            _ => String::new(),
        }
    }
}

/// A JSON answer with Consul's blocking-query headers.
pub fn indexed(index: u64, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Consul never answers index 0 (clients would not block on it).
    headers.insert(X_CONSUL_INDEX, HeaderValue::from(index.max(1)));
    headers.insert(X_CONSUL_KNOWN_LEADER, HeaderValue::from_static("true"));
    headers.insert(X_CONSUL_LAST_CONTACT, HeaderValue::from_static("0"));
    response
}

/// [`indexed`] JSON.
pub fn indexed_json(index: u64, value: &serde_json::Value) -> Response {
    indexed(index, "application/json", value.to_string())
}

/// Percent-encode everything but RFC 3986's unreserved characters (and `/`
/// when `keep_slash`).
fn encode_with(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && byte == b'/')
        {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A query value or path segment, percent-encoded.
pub fn encode(value: &str) -> String {
    encode_with(value, false)
}

/// A path of segments, each percent-encoded.
pub fn encode_path(value: &str) -> String {
    encode_with(value, true)
}

/// Standard base64 with padding (Consul's KV `Value`).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_as_rfc_4648_does() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn encoding_keeps_unreserved_characters_only() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_path("a b/c"), "a%20b/c");
    }
}
