//! The echo example service: the smallest real user of the SDK.
//!
//! It registers itself through [`Registration`] with an HTTP check on its
//! own `/health`, reads its greeting from config (namespace `echo`, key
//! `greeting`) through a [`ConfigWatcher<String>`] so a `mcpctl config put`
//! changes the answer without a restart, and answers every `GET /*` with
//! `{"greeting", "instance", "headers"}`. The end-to-end tests and the
//! benchmarks use it as the upstream behind `/svc/echo/`.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Json, Router, extract::State, http::HeaderMap, routing::get};
use clap::Parser;
use mcp_client::{Client, ConfigWatcher, InstanceSpec, Registration, http_check, token::dev_token};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The greeting until one is configured.
pub const DEFAULT_GREETING: &str = "hello";

/// Settings of `echo` (flags or environment; see `--help`).
#[derive(Debug, Clone, Parser)]
#[command(name = "echo", version, about)]
pub struct Settings {
    /// Address to listen on (port 0: any free port).
    #[arg(long, env = "ECHO_ADDR", default_value = "127.0.0.1:9000")]
    pub addr: SocketAddr,

    /// Instance id to register as (default: `echo-<port>`).
    #[arg(long, env = "ECHO_ID")]
    pub id: Option<String>,

    /// Service name to register under.
    #[arg(long, env = "ECHO_SERVICE", default_value = "echo")]
    pub service: String,

    /// Host others reach this instance at (default: the listen IP, or 127.0.0.1 for 0.0.0.0).
    #[arg(long, env = "ECHO_HOST")]
    pub host: Option<String>,

    /// The MCP gateway.
    #[arg(long, env = "MCP_GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
    pub gateway: String,

    /// Bearer token (needs `registry:write` and `config:read`).
    #[arg(long, env = "MCP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Without a token: sign one with this HS256 secret (the gateway's `JWT_SECRET`).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Lease length in seconds (heartbeats every third of it).
    #[arg(long, env = "ECHO_TTL_SECONDS", default_value_t = 10)]
    pub ttl_seconds: u32,

    /// Seconds between health checks of `/health`.
    #[arg(long, env = "ECHO_CHECK_INTERVAL_SECONDS", default_value_t = 5)]
    pub check_interval_seconds: u32,

    /// Config namespace of the greeting.
    #[arg(long, env = "ECHO_CONFIG_NAMESPACE", default_value = "echo")]
    pub config_namespace: String,

    /// Config key of the greeting.
    #[arg(long, env = "ECHO_CONFIG_KEY", default_value = "greeting")]
    pub config_key: String,
}

/// What a handler needs.
#[derive(Clone)]
struct AppState {
    instance: Arc<str>,
    greeting: Arc<ConfigWatcher<String>>,
}

/// Serve on `listener`, registered, until `shutdown` fires; then deregister.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let id = settings
        .id
        .clone()
        .unwrap_or_else(|| format!("echo-{}", local.port()));
    let token = match (&settings.token, &settings.jwt_secret) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(secret)) => Some(
            dev_token(
                secret,
                &id,
                "registry:write registry:read config:read",
                Duration::from_secs(30 * 24 * 3600),
            )
            .map_err(std::io::Error::other)?,
        ),
        (None, None) => None,
    };
    let client = Client::new(&settings.gateway, token).map_err(std::io::Error::other)?;
    let host = settings.host.clone().unwrap_or_else(|| {
        if local.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            local.ip().to_string()
        }
    });
    let mut spec = InstanceSpec::new(host, local.port());
    spec.ttl_seconds = Some(settings.ttl_seconds);
    spec.check = Some(http_check("/health", settings.check_interval_seconds));
    let greeting = Arc::new(ConfigWatcher::<String>::start(
        client.clone(),
        &settings.config_namespace,
        &settings.config_key,
    ));
    let registration = Registration::start(client, &settings.service, &id, spec);
    tracing::info!(%local, %id, "echo listening");

    let state = AppState {
        instance: Arc::from(id.as_str()),
        greeting,
    };
    let app = Router::new()
        .route("/health", get(health))
        .fallback(echo)
        .with_state(state);
    let drain = shutdown.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { drain.cancelled().await })
        .await;
    // Leave the registry before exiting, so no traffic is sent to a closed port.
    registration.shutdown().await;
    served
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Every other request: the greeting, who answered, and what arrived.
async fn echo(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let greeting = state
        .greeting
        .get()
        .map(|g| g.as_str().to_owned())
        .unwrap_or_else(|| DEFAULT_GREETING.to_owned());
    let headers: BTreeMap<&str, String> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    Json(json!({
        "greeting": greeting,
        "instance": &*state.instance,
        "headers": headers,
    }))
}
