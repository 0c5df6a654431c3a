//! gateway: the API gateway, the only door into MCP.
//!
//! Every `/api/*`, `/svc/*` and `/admin/*` request goes through one visible
//! stack of tower layers (see [`run`]): extra routes → path normalisation →
//! the service's policy at the edge → JWT auth and scopes → rate limit → the proxy, which picks an upstream instance (power
//! of two choices with a circuit breaker per instance) and streams the
//! request and the answer through untouched.
//!
//! - [`normalize`]: canonical paths, so `..` or `%2f` cannot escape a prefix.
//! - [`auth`] and [`jwt`]: bearer tokens (HS256 secret, PEM key, JWKS) and scopes.
//! - [`ratelimit`]: per-client GCRA, local (governor) or global (Redis).
//! - [`proxy`]: routing, forwarding, timeouts, retries.
//! - [`balance`] and [`circuit`]: instance choice and the per-instance breaker.
//! - [`egress`]: the connector that keeps the proxy inside the egress rules.
//! - [`routing`]: the in-memory routing table that follows the registry.
//! - [`policy`]: per-service policies and extra routes, followed from
//!   config-svc's namespace `gateway`; [`edge`] applies the parts answered
//!   before auth (extra routes, CORS preflight, methods, body size).
//! - [`store`]: all the gateway's Redis access.
//! - [`admin`]: `GET /admin/upstreams`.
//! - [`profile`]: `GET /admin/profile`, CPU profiles on demand (`PROFILING_ENABLED`).
//! - [`openapi`]: the public OpenAPI document (`GET /openapi.json`), the
//!   control plane's documents merged under `/api/v1/…`.
//! - [`docs`]: `GET /docs`, Swagger UI with its assets in the binary.
//! - [`consul`]: the Consul-compatible API at `/v1/...` (catalog, health,
//!   agent registration, KV, blocking queries), mapped onto the native API.
//! - [`ui`]: `GET /ui`, the web console with its assets in the binary.

pub mod admin;
pub mod auth;
pub mod balance;
pub mod circuit;
pub mod consul;
pub mod counters;
pub mod docs;
pub mod edge;
pub mod egress;
pub mod error;
pub mod jwt;
pub mod normalize;
pub mod openapi;
pub mod policy;
pub mod profile;
pub mod proxy;
pub mod ratelimit;
pub mod routing;
pub mod store;
pub mod tls;
pub mod ui;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{Router, routing::get};
use clap::{Parser, ValueEnum};
use mcp_shared::{
    CommonSettings,
    egress::{Egress, EgressSettings},
    events::{EventFeed, EventLog},
    internal::InternalSettings,
    openapi::OPENAPI_PATH,
    registry, server,
    settings::{parse_duration, parse_http_url, parse_url_list},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

/// A secret setting: never printed, not even by `Debug` or `--help`.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The shortest `JWT_SECRET` accepted: 32 bytes, HS256's output size
/// (RFC 7518 §3.2: the key must be at least as long as the hash).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// The clap parser of the HS256 secret: at least [`MIN_JWT_SECRET_BYTES`]
/// bytes. Its error names the setting and the length, never the value
/// (clap's own error would print it).
#[derive(Debug, Clone, Copy, Default)]
pub struct SecretParser;

impl clap::builder::TypedValueParser for SecretParser {
    type Value = Secret;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Secret, clap::Error> {
        let name = arg.map_or_else(|| "--jwt-secret".to_owned(), ToString::to_string);
        let refuse = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '{name}': {why}\n"),
            )
            .with_cmd(cmd)
        };
        let Some(text) = value.to_str() else {
            return Err(refuse("not UTF-8".to_owned()));
        };
        if text.len() < MIN_JWT_SECRET_BYTES {
            return Err(refuse(format!(
                "an HS256 secret must be at least {MIN_JWT_SECRET_BYTES} bytes, got {} \
                 (make one with `openssl rand -hex 32`)",
                text.len()
            )));
        }
        Ok(Secret(Arc::from(text)))
    }
}

/// A duration above zero (a zero refresh period would fetch without pause).
fn parse_refresh(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        Duration::ZERO => Err("must be above zero".to_owned()),
        period => Ok(period),
    }
}

/// A non-empty list of upstream base URLs (`http://host:port[/path]`).
#[derive(Debug, Clone)]
pub struct UrlList(pub Vec<String>);

fn parse_urls(value: &str) -> Result<UrlList, String> {
    let urls = parse_url_list(value)?;
    if let Some(url) = urls.iter().find(|u| u.starts_with("https://")) {
        // The pooled client is plain HTTP (no TLS crate in the workspace yet).
        return Err(format!(
            "{url}: https upstreams are not supported; use http://"
        ));
    }
    Ok(UrlList(urls))
}

/// A config-svc namespace name.
fn parse_namespace(value: &str) -> Result<String, String> {
    mcp_shared::names::Name::parse(value)
        .map(mcp_shared::names::Name::into_string)
        .map_err(|e| e.to_string())
}

/// Where the global rate limit is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RateLimitMode {
    /// In this process (each replica enforces the limit on its own).
    Local,
    /// In Redis, shared by every replica (one atomic script per request).
    Redis,
}

/// Settings of `gateway` (flags or environment; see `--help`).
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "GATEWAY_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,

    /// registry-svc base URLs, comma-separated.
    #[arg(long, env = "REGISTRY_URL", default_value = "http://127.0.0.1:8081", value_parser = parse_urls)]
    pub registry_url: UrlList,

    /// config-svc base URLs, comma-separated.
    #[arg(long, env = "CONFIG_URL", default_value = "http://127.0.0.1:8082", value_parser = parse_urls)]
    pub config_url: UrlList,

    /// health-svc base URLs, comma-separated.
    #[arg(long, env = "HEALTH_URL", default_value = "http://127.0.0.1:8083", value_parser = parse_urls)]
    pub health_url: UrlList,

    /// HS256 secret for bearer tokens (at least 32 bytes, e.g. `openssl rand -hex 32`).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = SecretParser)]
    pub jwt_secret: Option<Secret>,

    /// PEM public key (RSA, P-256 or Ed25519) for bearer tokens.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// Algorithm of `JWT_PUBLIC_KEY_FILE` (RS256, RS384, RS512, PS256, ES256, ES384, EdDSA);
    /// detected from the key when unset (RSA → RS256, EC → ES256, Ed25519 → EdDSA).
    #[arg(long, env = "JWT_ALGORITHM", value_parser = jwt::parse_asymmetric_algorithm)]
    pub jwt_algorithm: Option<jsonwebtoken::Algorithm>,

    /// JWKS URL to take public keys from (cached; refetched every `JWT_JWKS_REFRESH` and on an unknown `kid`).
    #[arg(long, env = "JWT_JWKS_URL", value_parser = parse_http_url)]
    pub jwt_jwks_url: Option<String>,

    /// How often the JWKS is fetched again; a key the issuer removed is
    /// refused (cached tokens included) within this time.
    #[arg(long, env = "JWT_JWKS_REFRESH", default_value = "5m", value_parser = parse_refresh)]
    pub jwt_jwks_refresh: Duration,

    /// Least time between two JWKS fetches caused by unknown `kid`s.
    #[arg(long, env = "JWT_JWKS_MIN_REFETCH", default_value = "30s", value_parser = parse_duration)]
    pub jwt_jwks_min_refetch: Duration,

    /// Required `iss` claim, when set.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, when set.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(long, env = "JWT_LEEWAY_SECONDS", default_value_t = 30)]
    pub jwt_leeway_seconds: u64,

    /// Sustained requests per second per client (JWT `sub`, else IP); 0 turns rate limiting off.
    #[arg(long, env = "RATE_LIMIT_RPS", default_value_t = 100)]
    pub rate_limit_rps: u32,

    /// Requests a client may send at once above the sustained rate.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst: u32,

    /// `local` (per replica) or `redis` (global across replicas).
    #[arg(long, env = "RATE_LIMIT_MODE", value_enum, default_value = "local")]
    pub rate_limit_mode: RateLimitMode,

    /// Consecutive failures (connect error, timeout, 5xx) that open an instance's circuit.
    #[arg(long, env = "CB_FAILURE_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub cb_failure_threshold: u32,

    /// Seconds an open circuit waits before letting one trial request through.
    #[arg(long, env = "CB_OPEN_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub cb_open_seconds: u64,

    /// Time an upstream has to send its response headers (bodies stream without limit;
    /// a blocking query (`?index=N`) gets its `wait`, 5 min by default, on top).
    #[arg(long, env = "UPSTREAM_TIMEOUT_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub upstream_timeout_ms: u64,

    /// TLS certificate chain (PEM); TLS is terminated when this and `TLS_KEY_FILE` are set.
    #[arg(long, env = "TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// Serve CPU profiles at `GET /admin/profile` (scope `admin`); 404 there when false.
    #[arg(long, env = "PROFILING_ENABLED", default_value_t = false, action = clap::ArgAction::Set)]
    pub profiling_enabled: bool,

    /// The config-svc namespace the Consul-compatible KV API (`/v1/kv/…`) reads and writes.
    #[arg(long, env = "CONSUL_KV_NAMESPACE", default_value = "consul-kv", value_parser = parse_namespace)]
    pub consul_kv_namespace: String,

    /// The datacenter name the Consul-compatible API answers (and the only `dc` it accepts).
    #[arg(long, env = "CONSUL_DATACENTER", default_value = "dc1")]
    pub consul_datacenter: String,

    /// Where `/svc` may connect (see `mcp_shared::egress`).
    #[command(flatten)]
    pub egress: EgressSettings,
    /// The secret the internal credential for the control plane is signed with (required).
    #[command(flatten)]
    pub internal: InternalSettings,

    /// Settings every MCP binary shares.
    #[command(flatten)]
    pub common: CommonSettings,
}

/// The egress rules of `/svc`, with the control plane, Redis and the
/// gateway's own listener protected. The control plane is reached through
/// the same client, but only for `/api`, whose upstreams are the configured
/// URLs: the rules apply to the addresses clients registered.
async fn protected_egress(settings: &Settings, listener: &TcpListener) -> Egress {
    let mut egress = Egress::from_settings(&settings.egress).await;
    for (urls, what) in [
        (&settings.registry_url, "registry-svc"),
        (&settings.config_url, "config-svc"),
        (&settings.health_url, "health-svc"),
    ] {
        for url in &urls.0 {
            egress.protect_endpoint(url, what).await;
        }
    }
    for endpoint in settings.common.redis_endpoints() {
        egress.protect_endpoint(&endpoint, "Redis").await;
    }
    if let Ok(own) = listener.local_addr() {
        egress.protect(own, "the gateway itself");
    }
    egress
}

/// Events the registry's log keeps (only used by writers; the gateway reads).
const REGISTRY_LOG_MAXLEN: u64 = 100_000;
/// The same for config-svc's log.
const CONFIG_LOG_MAXLEN: u64 = 100_000;

/// Run the gateway on `listener` until `shutdown` fires.
///
/// Start-up errors (no JWT key source, unreadable key file) come back as
/// one-line errors naming the setting.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // Every counter a dashboard or alert reads is there, at 0, from the first scrape.
    counters::register();
    // Load the certificate first: a bad TLS setting stops start-up with one line.
    let tls = match (&settings.tls_cert_file, &settings.tls_key_file) {
        (Some(cert), Some(key)) => Some(tls::load(cert, key).await?),
        _ => None,
    };
    // Without the secret no control-plane service would take a forwarded request.
    let internal = Arc::new(settings.internal.key().map_err(std::io::Error::other)?);
    let common = &settings.common;
    let redis = common.redis().map_err(std::io::Error::other)?;
    let verifier = Arc::new(
        jwt::Verifier::from_settings(&settings)
            .await
            .map_err(std::io::Error::other)?,
    );
    let store = store::Store::new(redis.clone());
    let breaker = circuit::BreakerSettings {
        failure_threshold: settings.cb_failure_threshold,
        open_for: Duration::from_secs(settings.cb_open_seconds),
    };

    // The routing table: subscribe to the registry's events first, then load
    // (see `routing::follow` for why the order matters).
    let (feed, feed_task) = EventFeed::spawn(
        EventLog::new(redis.clone(), registry::LOG_NAME, REGISTRY_LOG_MAXLEN),
        "gateway_registry_watchers",
        shutdown.clone(),
    );
    let routes = Arc::new(routing::Routes::default());
    let follow_task = tokio::spawn(routing::follow(
        feed,
        store.clone(),
        routes.clone(),
        breaker,
        shutdown.clone(),
    ));
    // The policies: the same pattern over config-svc's event log.
    let (config_feed, config_feed_task) = EventFeed::spawn(
        EventLog::new(
            redis.clone(),
            mcp_shared::config::LOG_NAME,
            CONFIG_LOG_MAXLEN,
        ),
        "gateway_config_watchers",
        shutdown.clone(),
    );
    let policies = Arc::new(policy::Policies::default());
    let policy_task = tokio::spawn(policy::follow(
        config_feed,
        store.clone(),
        policies.clone(),
        policy::Defaults {
            breaker,
            store: store.clone(),
        },
        shutdown.clone(),
    ));
    let control = Arc::new(routing::ControlPlane::new(
        &settings.registry_url.0,
        &settings.config_url.0,
        &settings.health_url.0,
        breaker,
    ));

    let limiter = Arc::new(ratelimit::RateLimiter::new(
        settings.rate_limit_mode,
        settings.rate_limit_rps,
        settings.rate_limit_burst,
        store,
    ));
    let jwks_task = tokio::spawn(verifier.clone().refresh_jwks(shutdown.clone()));
    let retain_task = tokio::spawn(ratelimit::forget_idle_clients(
        limiter.clone(),
        shutdown.clone(),
    ));
    let proxy = proxy::Proxy::new(
        routes.clone(),
        control.clone(),
        internal,
        Duration::from_millis(settings.upstream_timeout_ms),
        Arc::new(protected_egress(&settings, &listener).await),
        tls.is_some(),
    );
    let metrics = admin::MetricsState {
        verifier: verifier.clone(),
        routes: routes.clone(),
        control: control.clone(),
        policies: policies.clone(),
    };
    let globals = Arc::new(admin::Globals {
        timeout_ms: settings.upstream_timeout_ms,
        rate_limit_rps: settings.rate_limit_rps,
        rate_limit_burst: settings.rate_limit_burst,
        rate_limit_mode: match settings.rate_limit_mode {
            RateLimitMode::Local => "local",
            RateLimitMode::Redis => "redis",
        },
        failure_threshold: settings.cb_failure_threshold,
        open_seconds: settings.cb_open_seconds,
    });

    // The life of a request, top to bottom (inside the scaffold's request id,
    // trace span, metrics, problem+json and body limit).
    let layers = ServiceBuilder::new()
        .layer(normalize::NormalizePathLayer)
        .layer(edge::PolicyLayer::new(policies.clone()))
        .layer(auth::AuthLayer::new(verifier.clone()))
        .layer(ratelimit::RateLimitLayer::new(limiter));
    let consul = consul::ConsulState {
        proxy: proxy.clone(),
        kv_namespace: settings.consul_kv_namespace.clone(),
        datacenter: settings.consul_datacenter.clone(),
    };
    let gated = Router::new()
        .route("/admin/upstreams", get(admin::upstreams))
        .route("/admin/policies", get(admin::policies))
        .with_state(admin::AdminState {
            routes,
            control,
            policies: policies.clone(),
            globals,
        })
        .route("/admin/profile", get(profile::profile))
        .with_state(profile::ProfileState {
            enabled: settings.profiling_enabled,
            running: Arc::default(),
            shutdown: shutdown.clone(),
        })
        .route_service("/api/{*rest}", proxy.clone())
        .route_service("/svc/{*rest}", proxy)
        .merge(consul::routes(consul.clone()))
        .layer(layers);
    // Public (no token): the document, the docs page, the console (pages
    // without data: the console calls the API above with the user's token)
    // and Consul's static facts.
    let public = Router::new()
        .merge(consul::public_routes(consul))
        .route(
            OPENAPI_PATH,
            mcp_shared::openapi::serve(&openapi::document()),
        )
        .merge(docs::routes())
        .merge(ui::routes());
    // The scaffold's `/metrics` needs a token here (see `admin::guard_metrics`).
    let app = server::scaffold(gated.merge(public), redis, common.max_body_bytes).layer(
        axum::middleware::from_fn_with_state(metrics, admin::guard_metrics),
    );
    // Extra routes are rewritten to `/svc/…` before the app routes (see `edge`).
    let app = Router::new().fallback_service(edge::ExtraRoutes::new(policies, app));
    let served = match tls {
        Some(config) => {
            tls::serve(
                listener,
                app,
                config,
                shutdown.clone(),
                common.connection_limits(),
            )
            .await
        }
        None => server::serve(listener, app, shutdown.clone(), common.connection_limits()).await,
    };

    // Stop and wait for the background tasks this function owns.
    shutdown.cancel();
    let _ = tokio::join!(
        feed_task,
        follow_task,
        config_feed_task,
        policy_task,
        retain_task,
        jwks_task
    );
    served
}
