//! gateway: the API gateway, the only door into MCP.
//!
//! Every `/api/*`, `/svc/*` and `/admin/*` request goes through one visible
//! stack of tower layers (see [`run`]; [`front`] takes the proxied prefixes
//! past the router to the same stack): extra routes → path normalisation →
//! the service's policy at the edge → JWT auth and scopes → rate limit → the proxy, which picks an upstream instance (power
//! of two choices with a circuit breaker per instance) and streams the
//! request and the answer through untouched.
//!
//! - [`normalize`]: canonical paths, so `..` or `%2f` cannot escape a prefix.
//! - [`auth`] and [`jwt`]: bearer tokens (HS256 secret, PEM key, JWKS) and scopes.
//! - [`ratelimit`]: per-client GCRA, local (governor) or global (Redis).
//! - [`proxy`]: routing, forwarding, timeouts, retries, WebSocket splices.
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
//! - [`settings`]: the clap settings, grouped by concern (`--help`).

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
pub mod front;
pub mod grpc;
pub mod jwt;
pub mod normalize;
pub mod openapi;
pub mod policy;
pub mod profile;
pub mod proxy;
pub mod ratelimit;
pub mod routing;
pub mod settings;
pub mod store;
pub mod tls;
pub mod ui;
pub mod upstream_tls;

use std::{sync::Arc, time::Duration};

use axum::{Router, routing::get};
use mcp_shared::{
    egress::Egress,
    events::{EventFeed, EventLog},
    openapi::OPENAPI_PATH,
    registry, server,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

/// A map looked up on every request (services, policies, pooled
/// connections, buckets): hashed with foldhash, seeded per process, rather
/// than SipHash, which cost a few hundred instructions per lookup.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use settings::{MIN_JWT_SECRET_BYTES, RateLimitMode, Secret, SecretParser, Settings, UrlList};

/// The egress rules of `/svc`, with the control plane, Redis and the
/// gateway's own listener protected. The control plane is reached through
/// the same client, but only for `/api`, whose upstreams are the configured
/// URLs: the rules apply to the addresses clients registered.
async fn protected_egress(settings: &Settings, listener: &TcpListener) -> Egress {
    let mut egress = Egress::from_settings(&settings.egress).await;
    for (urls, what) in [
        (&settings.control_plane.registry_url, "registry-svc"),
        (&settings.control_plane.config_url, "config-svc"),
        (&settings.control_plane.health_url, "health-svc"),
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
    run_inspecting(settings, listener, shutdown, |_| ()).await
}

/// [`run`], handing the router it is about to serve to `inspect` first (the
/// tests read the paths it routes from it, see
/// `mcp_shared::openapi::routed_paths`).
pub async fn run_inspecting(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
    inspect: impl FnOnce(&Router),
) -> std::io::Result<()> {
    // Every counter a dashboard or alert reads is there, at 0, from the first scrape.
    counters::register();
    // Load the certificate first: a bad TLS setting stops start-up with one line.
    let tls = match (&settings.tls.cert_file, &settings.tls.key_file) {
        (Some(cert), Some(key)) => Some(tls::load(cert, key).await?),
        _ => None,
    };
    let upstream_tls = upstream_tls::UpstreamTls::load(&settings.upstream_tls)?;
    // Without the secret no control-plane service would take a forwarded request.
    let internal = Arc::new(settings.internal.key().map_err(std::io::Error::other)?);
    let common = &settings.common;
    let redis = common.redis().map_err(std::io::Error::other)?;
    let verifier = Arc::new(
        jwt::Verifier::from_settings(&settings.jwt)
            .await
            .map_err(std::io::Error::other)?,
    );
    let store = store::Store::new(redis.clone());
    let breaker = circuit::BreakerSettings {
        failure_threshold: settings.upstream.cb_failure_threshold,
        open_for: Duration::from_secs(settings.upstream.cb_open_seconds),
    };

    // The routing table: follows the registry's events (the loop and its
    // rule are `mcp_shared::events::follow`'s).
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
        &settings.control_plane.registry_url.0,
        &settings.control_plane.config_url.0,
        &settings.control_plane.health_url.0,
        breaker,
    ));

    let limiter = Arc::new(ratelimit::RateLimiter::new(
        settings.rate_limit.mode,
        settings.rate_limit.rps,
        settings.rate_limit.burst,
        store,
    ));
    let jwks_task = tokio::spawn(verifier.clone().refresh_jwks(shutdown.clone()));
    let retain_task = tokio::spawn(ratelimit::forget_idle_clients(
        limiter.clone(),
        shutdown.clone(),
    ));
    let upstream_timeout = Duration::from_millis(settings.upstream.upstream_timeout_ms);
    // One set of upstream pools per serving worker (see `proxy::clients`).
    let limits = common.connection_limits_per_core();
    let clients = proxy::Clients::new(
        Arc::new(protected_egress(&settings, &listener).await),
        upstream_tls,
        upstream_timeout.min(Duration::from_secs(5)),
        limits.workers,
    );
    // Upgraded connections leave the server's connection tasks: these
    // tasks carry them, end at `shutdown` and are waited for below.
    let websockets = proxy::WebSockets::new(
        proxy::WebSocketLimits {
            idle_timeout: settings.websocket.idle_timeout,
            max_duration: settings.websocket.max_duration,
            max_connections: settings.websocket.max_connections,
        },
        shutdown.clone(),
    );
    let proxy = proxy::Proxy::new(
        routes.clone(),
        control.clone(),
        internal,
        upstream_timeout,
        clients,
        tls.is_some(),
        websockets.clone(),
    );
    let metrics = admin::MetricsState {
        verifier: verifier.clone(),
        routes: routes.clone(),
        control: control.clone(),
        policies: policies.clone(),
    };
    let globals = Arc::new(admin::Globals {
        timeout_ms: settings.upstream.upstream_timeout_ms,
        rate_limit_rps: settings.rate_limit.rps,
        rate_limit_burst: settings.rate_limit.burst,
        rate_limit_mode: match settings.rate_limit.mode {
            RateLimitMode::Local => "local",
            RateLimitMode::Redis => "redis",
        },
        failure_threshold: settings.upstream.cb_failure_threshold,
        open_seconds: settings.upstream.cb_open_seconds,
    });

    // The life of a request, top to bottom (inside the scaffold's request id,
    // trace span, metrics, problem+json and body limit).
    let layers = ServiceBuilder::new()
        .layer(normalize::NormalizePathLayer)
        .layer(edge::PolicyLayer::new(policies.clone()))
        .layer(auth::AuthLayer::new(verifier.clone()))
        .layer(ratelimit::RateLimitLayer::new(limiter));
    // The same stack inside the scaffold's envelope, for the front door (see `front`).
    let proxied = ServiceBuilder::new()
        .layer(server::EnvelopeLayer::new(common.max_body_bytes))
        .layer(layers.clone())
        .service(proxy.clone());
    let consul = consul::ConsulState {
        proxy: proxy.clone(),
        kv_namespace: settings.consul.kv_namespace.clone(),
        datacenter: settings.consul.datacenter.clone(),
    };
    let gated = Router::new()
        .route("/admin/upstreams", get(admin::upstreams))
        .route("/admin/policies", get(admin::policies))
        .with_state(admin::AdminState {
            routes: routes.clone(),
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
    inspect(&app);
    // Inside out: the proxied prefixes leave the router (see `front`); extra
    // routes are rewritten to `/svc/…` before that (see `edge`); gRPC calls
    // get the gateway's own errors as gRPC errors (see `grpc`).
    let app = ServiceBuilder::new()
        .layer(grpc::GrpcErrorsLayer)
        .service(edge::ExtraRoutes::new(
            policies,
            routes,
            front::FrontDoor::new(proxied, app),
        ));
    let served = match tls {
        Some(config) => tls::serve(listener, app, config, shutdown.clone(), limits).await,
        None => server::serve(listener, app, shutdown.clone(), limits).await,
    };

    // Stop and wait for the background tasks this function owns.
    shutdown.cancel();
    let _ = tokio::join!(
        feed_task,
        follow_task,
        config_feed_task,
        policy_task,
        retain_task,
        jwks_task,
        websockets.closed()
    );
    served
}
