//! [`Client`]: one typed async method per public API call, through the gateway.
//!
//! Routes are the gateway's public API (README, "The gateway"):
//! `/api/v1/registry/…`, `/api/v1/config/…`, `/api/v1/health/…`, each with `Authorization: Bearer <JWT>`. Path
//! segments are percent-encoded, except a config key's `/`, which stays a
//! path separator (config-svc routes `keys/{*key}`, and the gateway refuses
//! an encoded slash with a 400; keys cannot hold `.`/`..` segments), query
//! strings are built with `Url::query_pairs_mut` (reqwest's `query` feature
//! is not enabled in the workspace). Every error status becomes
//! [`Error::Api`] with the server's problem+json.

use std::{sync::Arc, time::Duration};

use reqwest::{Method, RequestBuilder, Response, StatusCode, Url, header};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    Error, ProblemDetails,
    error::problem_from_status,
    model::{
        ConfigEntry, ConfigHistory, ConfigList, ConfigRollback, ConfigWrite, DryRunEntry,
        HealthSummary, Instance, InstanceList, InstanceQuery, InstanceSpec, NamespaceList,
        PutOptions, ServiceHealth, ServiceList,
    },
    sse::EventStream,
};

/// Bound on one ordinary request (blocking queries get their `wait` on top).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on connecting, for every request including watches.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The three control-plane areas behind the gateway.
#[derive(Debug, Clone, Copy)]
enum Area {
    Registry,
    Config,
    Health,
}

impl Area {
    fn segments(self) -> [&'static str; 3] {
        match self {
            Self::Registry => ["api", "v1", "registry"],
            Self::Config => ["api", "v1", "config"],
            Self::Health => ["api", "v1", "health"],
        }
    }
}

/// A typed client of the MCP gateway. Cheap to clone (one shared connection pool).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    timeout: Duration,
    /// Who this client is to config-svc's propagation table (see [`Client::client_id`]).
    client_id: Arc<str>,
}

/// The default client id: `{host}-{process}-{pid}`, reduced to a name
/// (`A-Za-z0-9._-`, at most 128 characters), so the propagation table
/// tells processes apart.
fn default_client_id() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let process = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "process".to_owned());
    let raw = format!("{host}-{process}-{}", std::process::id());
    let mut id: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    id.truncate(mcp_api::names::MAX_NAME_LEN);
    id
}

impl Client {
    /// A client of the gateway at `base_url` (`http://127.0.0.1:8080`),
    /// authenticating with `token` when given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, Error> {
        let base = Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| Error::Invalid(format!("gateway URL {base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::Invalid(format!(
                "gateway URL {base_url:?}: expected http://host:port"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            token,
            timeout: DEFAULT_TIMEOUT,
            client_id: Arc::from(default_client_id()),
        })
    }

    /// Report as `client_id` in config watches (config-svc's propagation
    /// table, `GET /v1/namespaces/{ns}/clients`) instead of the default
    /// `{host}-{process}-{pid}`; refused unless it is a name
    /// (`A-Za-z0-9._-`, 1–128 characters).
    pub fn with_client_id(mut self, client_id: &str) -> Result<Self, Error> {
        let id = mcp_api::names::Name::parse(client_id)
            .map_err(|e| Error::Invalid(format!("client id {client_id:?}: {e}")))?;
        self.client_id = Arc::from(id.as_str());
        Ok(self)
    }

    /// The id config watches report (see [`Client::with_client_id`]).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Bound ordinary requests by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The gateway's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `{base}/{area…}/{segments…}`, each segment percent-encoded.
    fn url(&self, area: Area, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(area.segments()).extend(segments);
        }
        url
    }

    /// `{base}/api/v1/config/namespaces/{ns}/keys/{key}[/{suffix}]`, the
    /// key's `/` kept as separators (see the module doc).
    fn key_url(&self, namespace: &str, key: &str, suffix: Option<&str>) -> Url {
        let mut url = self.url(Area::Config, &["namespaces", namespace, "keys"]);
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(key.split('/')).extend(suffix);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Send, map transport errors and error statuses.
    async fn send(&self, builder: RequestBuilder, url: &Url) -> Result<Response, Error> {
        let response = builder
            .send()
            .await
            .map_err(|e| Error::transport(url.as_str(), &e))?;
        check(response).await
    }

    async fn json<T: DeserializeOwned>(
        &self,
        builder: RequestBuilder,
        url: Url,
    ) -> Result<T, Error> {
        let response = self.send(builder, &url).await?;
        decode(response, &url).await
    }

    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, Error> {
        let builder = self.request(Method::GET, url.clone()).timeout(self.timeout);
        self.json(builder, url).await
    }

    async fn empty(&self, builder: RequestBuilder, url: Url) -> Result<(), Error> {
        self.send(builder.timeout(self.timeout), &url)
            .await
            .map(drop)
    }

    /// Open an SSE stream at `url`, resuming after `after` when given.
    async fn watch(&self, url: Url, after: Option<u64>) -> Result<EventStream, Error> {
        // No overall timeout: a watch lives until one side closes it.
        let mut builder = self
            .request(Method::GET, url.clone())
            .header(header::ACCEPT, "text/event-stream");
        if let Some(after) = after {
            builder = builder.header("Last-Event-ID", after.to_string());
        }
        let response = self.send(builder, &url).await?;
        Ok(EventStream::new(url.to_string(), response))
    }

    // ---- registry -------------------------------------------------------

    /// `GET /v1/services`: every service with its instance counts.
    pub async fn list_services(&self) -> Result<ServiceList, Error> {
        self.get(self.url(Area::Registry, &["services"])).await
    }

    /// `GET /v1/services/{service}/instances` with filters; a blocking query
    /// when `query.index` is set.
    pub async fn list_instances(
        &self,
        service: &str,
        query: &InstanceQuery,
    ) -> Result<InstanceList, Error> {
        let mut url = self.url(Area::Registry, &["services", service, "instances"]);
        {
            let mut pairs = url.query_pairs_mut();
            if query.healthy {
                pairs.append_pair("healthy", "true");
            }
            for tag in &query.tags {
                pairs.append_pair("tag", tag);
            }
            for (name, value) in &query.metadata {
                pairs.append_pair(&format!("meta.{name}"), value);
            }
            if let Some(index) = query.index {
                pairs.append_pair("index", &index.to_string());
            }
            if let Some(wait) = query.wait {
                pairs.append_pair("wait", &format!("{}ms", wait.as_millis()));
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let timeout = self.timeout + query.wait.unwrap_or_default();
        let builder = self.request(Method::GET, url.clone()).timeout(timeout);
        self.json(builder, url).await
    }

    /// `PUT /v1/services/{service}/instances/{id}`: register (or replace) an instance.
    pub async fn register(
        &self,
        service: &str,
        id: &str,
        spec: &InstanceSpec,
    ) -> Result<Instance, Error> {
        let url = self.url(Area::Registry, &["services", service, "instances", id]);
        let builder = self
            .request(Method::PUT, url.clone())
            .timeout(self.timeout)
            .json(spec);
        self.json(builder, url).await
    }

    /// `PUT …/heartbeat`: renew the lease; the answer is the instance with
    /// its new `expires_at`. A 404 means it expired (register again).
    pub async fn heartbeat(&self, service: &str, id: &str) -> Result<Instance, Error> {
        let url = self.url(
            Area::Registry,
            &["services", service, "instances", id, "heartbeat"],
        );
        let builder = self.request(Method::PUT, url.clone()).timeout(self.timeout);
        self.json(builder, url).await
    }

    /// `DELETE /v1/services/{service}/instances/{id}`.
    pub async fn deregister(&self, service: &str, id: &str) -> Result<(), Error> {
        let url = self.url(Area::Registry, &["services", service, "instances", id]);
        self.empty(self.request(Method::DELETE, url.clone()), url)
            .await
    }

    /// `GET /v1/watch`: registry events after revision `after` (live when
    /// `None`), only `service`'s when given.
    pub async fn watch_registry(
        &self,
        service: Option<&str>,
        after: Option<u64>,
    ) -> Result<EventStream, Error> {
        let mut url = self.url(Area::Registry, &["watch"]);
        if let Some(service) = service {
            url.query_pairs_mut().append_pair("service", service);
        }
        self.watch(url, after).await
    }

    // ---- config ---------------------------------------------------------

    /// `GET /v1/namespaces`.
    pub async fn list_namespaces(&self) -> Result<Vec<String>, Error> {
        let list: NamespaceList = self.get(self.url(Area::Config, &["namespaces"])).await?;
        Ok(list.namespaces)
    }

    /// `GET /v1/namespaces/{ns}/keys?prefix=`.
    pub async fn list_config(
        &self,
        namespace: &str,
        prefix: Option<&str>,
    ) -> Result<ConfigList, Error> {
        let mut url = self.url(Area::Config, &["namespaces", namespace, "keys"]);
        if let Some(prefix) = prefix {
            url.query_pairs_mut().append_pair("prefix", prefix);
        }
        self.get(url).await
    }

    /// `GET /v1/namespaces/{ns}/keys/{key}`.
    pub async fn get_config(&self, namespace: &str, key: &str) -> Result<ConfigEntry, Error> {
        self.get(self.key_url(namespace, key, None)).await
    }

    /// Blocking `GET` of one key: answers once the store's revision passes
    /// `index`, or after `wait` with the current entry.
    pub async fn wait_config(
        &self,
        namespace: &str,
        key: &str,
        index: u64,
        wait: Duration,
    ) -> Result<ConfigEntry, Error> {
        let mut url = self.key_url(namespace, key, None);
        url.query_pairs_mut()
            .append_pair("index", &index.to_string())
            .append_pair("wait", &format!("{}ms", wait.as_millis()));
        let builder = self
            .request(Method::GET, url.clone())
            .timeout(self.timeout + wait);
        self.json(builder, url).await
    }

    /// `PUT /v1/namespaces/{ns}/keys/{key}` with a [`ConfigWrite`]
    /// (`{"value","message"?}`); `If-Match`/`If-None-Match: *` from `options`.
    pub async fn put_config<V: Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &V,
        options: &PutOptions,
    ) -> Result<ConfigEntry, Error> {
        let (builder, url) = self.put_request(namespace, key, value, options, false)?;
        self.json(builder, url).await
    }

    /// The same write with `?dry_run=true`: validated (schema, preconditions)
    /// and answered with what would be stored, nothing written; a value the
    /// namespace refuses is an [`Error::Api`] 422 with the validator's errors.
    pub async fn put_config_dry_run<V: Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &V,
        options: &PutOptions,
    ) -> Result<DryRunEntry, Error> {
        let (builder, url) = self.put_request(namespace, key, value, options, true)?;
        self.json(builder, url).await
    }

    /// The request of a config write, a dry run when `dry_run`.
    fn put_request<V: Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &V,
        options: &PutOptions,
        dry_run: bool,
    ) -> Result<(RequestBuilder, Url), Error> {
        let body = ConfigWrite::new(value, options.message.clone())
            .map_err(|e| Error::Invalid(format!("config value: {e}")))?;
        let mut url = self.key_url(namespace, key, None);
        if dry_run {
            url.query_pairs_mut().append_pair("dry_run", "true");
        }
        let mut builder = self
            .request(Method::PUT, url.clone())
            .timeout(self.timeout)
            .json(&body);
        if let Some(version) = options.if_match {
            builder = builder.header(header::IF_MATCH, format!("\"{version}\""));
        }
        if options.create_only {
            builder = builder.header(header::IF_NONE_MATCH, "*");
        }
        Ok((builder, url))
    }

    /// `DELETE /v1/namespaces/{ns}/keys/{key}`, compare-and-swap with `if_match`.
    pub async fn delete_config(
        &self,
        namespace: &str,
        key: &str,
        if_match: Option<u64>,
    ) -> Result<(), Error> {
        let url = self.key_url(namespace, key, None);
        let mut builder = self.request(Method::DELETE, url.clone());
        if let Some(version) = if_match {
            builder = builder.header(header::IF_MATCH, format!("\"{version}\""));
        }
        self.empty(builder, url).await
    }

    /// `GET …/history`: the key's versions, newest first.
    pub async fn config_history(&self, namespace: &str, key: &str) -> Result<ConfigHistory, Error> {
        self.get(self.key_url(namespace, key, Some("history")))
            .await
    }

    /// `POST …/rollback` with a [`ConfigRollback`] (`{"version": N}`): a new
    /// version with version N's value.
    pub async fn rollback_config(
        &self,
        namespace: &str,
        key: &str,
        version: u64,
    ) -> Result<ConfigEntry, Error> {
        let url = self.key_url(namespace, key, Some("rollback"));
        let builder = self
            .request(Method::POST, url.clone())
            .timeout(self.timeout)
            .json(&ConfigRollback {
                version,
                message: None,
            });
        self.json(builder, url).await
    }

    /// `GET /v1/namespaces/{ns}/schema`.
    pub async fn get_schema(&self, namespace: &str) -> Result<Value, Error> {
        self.get(self.url(Area::Config, &["namespaces", namespace, "schema"]))
            .await
    }

    /// `PUT /v1/namespaces/{ns}/schema`: a JSON Schema every value must meet.
    pub async fn put_schema(&self, namespace: &str, schema: &Value) -> Result<Value, Error> {
        let url = self.url(Area::Config, &["namespaces", namespace, "schema"]);
        let builder = self
            .request(Method::PUT, url.clone())
            .timeout(self.timeout)
            .json(schema);
        let response = self.send(builder, &url).await?;
        // The body of a schema write is informational; accept an empty one.
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::transport(url.as_str(), &e))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    /// `DELETE /v1/namespaces/{ns}/schema`.
    pub async fn delete_schema(&self, namespace: &str) -> Result<(), Error> {
        let url = self.url(Area::Config, &["namespaces", namespace, "schema"]);
        self.empty(self.request(Method::DELETE, url.clone()), url)
            .await
    }

    /// `GET /v1/watch?namespace=ns&client_id=…`: `put`/`delete` events
    /// after revision `after` (live when `None`), recorded in the
    /// propagation table as this client's [`client_id`](Client::client_id).
    pub async fn watch_config(
        &self,
        namespace: &str,
        after: Option<u64>,
    ) -> Result<EventStream, Error> {
        let mut url = self.url(Area::Config, &["watch"]);
        url.query_pairs_mut()
            .append_pair("namespace", namespace)
            .append_pair("client_id", &self.client_id);
        self.watch(url, after).await
    }

    // ---- health ---------------------------------------------------------

    /// `GET /v1/summary`: every service's aggregated health.
    pub async fn health_summary(&self) -> Result<HealthSummary, Error> {
        self.get(self.url(Area::Health, &["summary"])).await
    }

    /// `GET /v1/services/{service}`: one service's instances and their checks.
    pub async fn service_health(&self, service: &str) -> Result<ServiceHealth, Error> {
        self.get(self.url(Area::Health, &["services", service]))
            .await
    }
}

/// Pass 2xx through; turn anything else into [`Error::Api`].
async fn check(response: Response) -> Result<Response, Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    // An error body that does not arrive whole is still reported by status.
    let body = response.text().await.unwrap_or_default();
    let problem = serde_json::from_str::<ProblemDetails>(&body)
        .ok()
        .filter(|p| p.status != 0 || !p.detail.is_empty())
        .map(|mut p| {
            if p.status == 0 {
                p.status = status.as_u16();
            }
            p
        })
        .unwrap_or_else(|| problem_from_status(status.as_u16(), &body));
    Err(Error::Api {
        problem: Box::new(problem),
        retry_after,
    })
}

async fn decode<T: DeserializeOwned>(response: Response, url: &Url) -> Result<T, Error> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Error::transport(url.as_str(), &e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
        url: url.to_string(),
        reason: if status == StatusCode::NO_CONTENT {
            "no body".to_owned()
        } else {
            e.to_string()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_each_segment_under_the_area() {
        let client = Client::new("http://127.0.0.1:8080/", None).unwrap_or_else(|e| panic!("{e}"));
        let url = client.url(Area::Config, &["namespaces", "echo", "keys", "a/b c"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/api/v1/config/namespaces/echo/keys/a%2Fb%20c"
        );
    }

    #[test]
    fn config_keys_keep_their_slashes_as_path_separators() {
        let client = Client::new("http://127.0.0.1:8080/", None).unwrap_or_else(|e| panic!("{e}"));
        let url = client.key_url("gateway", "services/shop", Some("history"));
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/api/v1/config/namespaces/gateway/keys/services/shop/history"
        );
    }

    #[test]
    fn bad_base_urls_are_rejected() {
        assert!(Client::new("127.0.0.1:8080", None).is_err());
        assert!(Client::new("ftp://x", None).is_err());
    }
}
