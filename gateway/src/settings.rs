//! The gateway's settings: one clap struct, flags or environment (see
//! `--help`), grouped by concern: the control-plane URLs, JWT
//! verification, the global rate limit, upstream timeouts and circuit
//! breaking, TLS, WebSocket limits, the Consul-compatible API, plus the
//! shared groups (egress, internal credential, common). The flag and variable names are the
//! contract with deployments (`deploy/check_settings.py` reads `--help`):
//! grouping never renames one, so a field whose name differs from its flag
//! carries an explicit `id`.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use clap::{Args, Parser, ValueEnum};
use mcp_shared::{
    CommonSettings,
    egress::EgressSettings,
    internal::InternalSettings,
    settings::{parse_duration, parse_http_url, parse_url_list},
};

use crate::jwt;

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

/// A duration above zero (a zero refresh period would fetch without pause;
/// a zero WebSocket limit would close every connection at once).
fn parse_refresh(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        Duration::ZERO => Err("must be above zero".to_owned()),
        period => Ok(period),
    }
}

/// A non-empty list of upstream base URLs (`http[s]://host:port[/path]`;
/// `https` ones are verified against `CONTROL_PLANE_CA_FILE` or the system roots).
#[derive(Debug, Clone)]
pub struct UrlList(pub Vec<String>);

fn parse_urls(value: &str) -> Result<UrlList, String> {
    parse_url_list(value).map(UrlList)
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

    /// Serve CPU profiles at `GET /admin/profile` (scope `admin`); 404 there when false.
    #[arg(long, env = "PROFILING_ENABLED", default_value_t = false, action = clap::ArgAction::Set)]
    pub profiling_enabled: bool,

    /// Where the control-plane services are.
    #[command(flatten)]
    pub control_plane: ControlPlaneSettings,

    /// How bearer tokens are verified.
    #[command(flatten)]
    pub jwt: JwtSettings,

    /// The global per-client rate limit.
    #[command(flatten)]
    pub rate_limit: RateLimitSettings,

    /// Upstream timeouts and circuit breaking.
    #[command(flatten)]
    pub upstream: UpstreamSettings,

    /// TLS termination.
    #[command(flatten)]
    pub tls: TlsSettings,

    /// TLS to upstreams.
    #[command(flatten)]
    pub upstream_tls: UpstreamTlsSettings,

    /// WebSocket connections through `/svc`.
    #[command(flatten)]
    pub websocket: WebSocketSettings,

    /// The Consul-compatible API.
    #[command(flatten)]
    pub consul: ConsulSettings,

    /// Where `/svc` may connect (see `mcp_shared::egress`).
    #[command(flatten, next_help_heading = "Egress")]
    pub egress: EgressSettings,
    /// The secret the internal credential for the control plane is signed with (required).
    #[command(flatten, next_help_heading = "Internal credential")]
    pub internal: InternalSettings,

    /// Settings every MCP binary shares.
    #[command(flatten, next_help_heading = "Redis, telemetry and HTTP server")]
    pub common: CommonSettings,
}

impl Settings {
    /// The serving workers (`HTTP_WORKERS`, one per core unless set): each
    /// keeps its connections and their upstream pools.
    pub fn workers(&self) -> usize {
        self.common.connection_limits_per_core().workers
    }

    /// The main runtime's worker threads: with serving workers it only
    /// accepts and runs the background tasks, so one is plenty; without,
    /// one per core (`None`).
    pub fn runtime_threads(&self) -> Option<usize> {
        (self.workers() > 0).then_some(1)
    }
}

/// The control-plane services' base URLs (`/api/v1/{area}/…`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Control plane")]
pub struct ControlPlaneSettings {
    /// registry-svc base URLs, comma-separated.
    #[arg(long, env = "REGISTRY_URL", default_value = "http://127.0.0.1:8081", value_parser = parse_urls)]
    pub registry_url: UrlList,

    /// config-svc base URLs, comma-separated.
    #[arg(long, env = "CONFIG_URL", default_value = "http://127.0.0.1:8082", value_parser = parse_urls)]
    pub config_url: UrlList,

    /// health-svc base URLs, comma-separated.
    #[arg(long, env = "HEALTH_URL", default_value = "http://127.0.0.1:8083", value_parser = parse_urls)]
    pub health_url: UrlList,
}

/// Bearer-token verification: the key sources and the claim rules (see [`jwt`]).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "JWT")]
pub struct JwtSettings {
    /// HS256 secret for bearer tokens (at least 32 bytes, e.g. `openssl rand -hex 32`).
    #[arg(id = "jwt_secret", long = "jwt-secret", value_name = "JWT_SECRET", env = "JWT_SECRET", hide_env_values = true, value_parser = SecretParser)]
    pub secret: Option<Secret>,

    /// PEM public key (RSA, P-256 or Ed25519) for bearer tokens.
    #[arg(
        id = "jwt_public_key_file",
        long = "jwt-public-key-file",
        value_name = "JWT_PUBLIC_KEY_FILE",
        env = "JWT_PUBLIC_KEY_FILE"
    )]
    pub public_key_file: Option<PathBuf>,

    /// Algorithm of `JWT_PUBLIC_KEY_FILE` (RS256, RS384, RS512, PS256, ES256, ES384, EdDSA);
    /// detected from the key when unset (RSA → RS256, EC → ES256, Ed25519 → EdDSA).
    #[arg(id = "jwt_algorithm", long = "jwt-algorithm", value_name = "JWT_ALGORITHM", env = "JWT_ALGORITHM", value_parser = jwt::parse_asymmetric_algorithm)]
    pub algorithm: Option<jsonwebtoken::Algorithm>,

    /// JWKS URL to take public keys from (cached; refetched every `JWT_JWKS_REFRESH` and on an unknown `kid`).
    #[arg(id = "jwt_jwks_url", long = "jwt-jwks-url", value_name = "JWT_JWKS_URL", env = "JWT_JWKS_URL", value_parser = parse_http_url)]
    pub jwks_url: Option<String>,

    /// How often the JWKS is fetched again; a key the issuer removed is
    /// refused (cached tokens included) within this time.
    #[arg(id = "jwt_jwks_refresh", long = "jwt-jwks-refresh", value_name = "JWT_JWKS_REFRESH", env = "JWT_JWKS_REFRESH", default_value = "5m", value_parser = parse_refresh)]
    pub jwks_refresh: Duration,

    /// Least time between two JWKS fetches caused by unknown `kid`s.
    #[arg(id = "jwt_jwks_min_refetch", long = "jwt-jwks-min-refetch", value_name = "JWT_JWKS_MIN_REFETCH", env = "JWT_JWKS_MIN_REFETCH", default_value = "30s", value_parser = parse_duration)]
    pub jwks_min_refetch: Duration,

    /// Required `iss` claim, when set.
    #[arg(
        id = "jwt_issuer",
        long = "jwt-issuer",
        value_name = "JWT_ISSUER",
        env = "JWT_ISSUER"
    )]
    pub issuer: Option<String>,

    /// Required `aud` claim, when set.
    #[arg(
        id = "jwt_audience",
        long = "jwt-audience",
        value_name = "JWT_AUDIENCE",
        env = "JWT_AUDIENCE"
    )]
    pub audience: Option<String>,

    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(
        id = "jwt_leeway_seconds",
        long = "jwt-leeway-seconds",
        value_name = "JWT_LEEWAY_SECONDS",
        env = "JWT_LEEWAY_SECONDS",
        default_value_t = 30
    )]
    pub leeway_seconds: u64,
}

/// The global per-client rate limit (a service's policy may set its own).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Rate limit")]
pub struct RateLimitSettings {
    /// Sustained requests per second per client (JWT `sub`, else IP); 0 turns rate limiting off.
    #[arg(
        id = "rate_limit_rps",
        long = "rate-limit-rps",
        value_name = "RATE_LIMIT_RPS",
        env = "RATE_LIMIT_RPS",
        default_value_t = 100
    )]
    pub rps: u32,

    /// Requests a client may send at once above the sustained rate.
    #[arg(id = "rate_limit_burst", long = "rate-limit-burst", value_name = "RATE_LIMIT_BURST", env = "RATE_LIMIT_BURST", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: u32,

    /// `local` (per replica) or `redis` (global across replicas).
    #[arg(
        id = "rate_limit_mode",
        long = "rate-limit-mode",
        value_name = "RATE_LIMIT_MODE",
        env = "RATE_LIMIT_MODE",
        value_enum,
        default_value = "local"
    )]
    pub mode: RateLimitMode,
}

/// How long an upstream may take, and when an instance's circuit opens
/// (a service's policy may override each).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Upstreams and circuit breaking")]
pub struct UpstreamSettings {
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
}

/// TLS termination: on when both files are set.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsSettings {
    /// TLS certificate chain (PEM); TLS is terminated when this and `TLS_KEY_FILE` are set.
    #[arg(
        id = "tls_cert_file",
        long = "tls-cert-file",
        value_name = "TLS_CERT_FILE",
        env = "TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub cert_file: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(
        id = "tls_key_file",
        long = "tls-key-file",
        value_name = "TLS_KEY_FILE",
        env = "TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub key_file: Option<PathBuf>,
}

/// TLS to `https` upstreams (instances registered with `protocol=https`, or
/// a policy's `protocol: https`) and to `https://` control-plane URLs.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "TLS to upstreams")]
pub struct UpstreamTlsSettings {
    /// CA certificates (PEM bundle) that `https` instances' certificates are
    /// verified against, instead of the system roots.
    #[arg(long, env = "UPSTREAM_CA_FILE")]
    pub upstream_ca_file: Option<PathBuf>,

    /// Client certificate chain (PEM) the gateway presents to `https`
    /// instances that ask for one (mTLS); needs `UPSTREAM_CLIENT_KEY_FILE`.
    #[arg(
        long,
        env = "UPSTREAM_CLIENT_CERT_FILE",
        requires = "upstream_client_key_file"
    )]
    pub upstream_client_cert_file: Option<PathBuf>,

    /// Private key (PEM) of `UPSTREAM_CLIENT_CERT_FILE`.
    #[arg(
        long,
        env = "UPSTREAM_CLIENT_KEY_FILE",
        requires = "upstream_client_cert_file"
    )]
    pub upstream_client_key_file: Option<PathBuf>,

    /// CA certificates (PEM bundle) that `https://` control-plane URLs
    /// (`REGISTRY_URL`, `CONFIG_URL`, `HEALTH_URL`) are verified against,
    /// instead of the system roots.
    #[arg(long, env = "CONTROL_PLANE_CA_FILE")]
    pub control_plane_ca_file: Option<PathBuf>,
}

/// WebSocket connections the gateway splices (see `proxy::upgrade`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "WebSocket")]
pub struct WebSocketSettings {
    /// A WebSocket connection with no byte either way for this long is closed.
    #[arg(id = "websocket_idle_timeout", long = "websocket-idle-timeout", value_name = "WEBSOCKET_IDLE_TIMEOUT", env = "WEBSOCKET_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_refresh)]
    pub idle_timeout: Duration,

    /// A WebSocket connection is closed after this long, whatever passes
    /// (clients reconnect, and land on the instances there are now).
    #[arg(id = "websocket_max_duration", long = "websocket-max-duration", value_name = "WEBSOCKET_MAX_DURATION", env = "WEBSOCKET_MAX_DURATION", default_value = "1h", value_parser = parse_refresh)]
    pub max_duration: Duration,

    /// WebSocket connections open at once; a handshake over it gets 503.
    /// An upgraded connection leaves `HTTP_MAX_CONNECTIONS`' count, so this
    /// is what bounds them.
    #[arg(id = "websocket_max_connections", long = "websocket-max-connections", value_name = "WEBSOCKET_MAX_CONNECTIONS", env = "WEBSOCKET_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

/// The Consul-compatible API (`/v1/...`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Consul-compatible API")]
pub struct ConsulSettings {
    /// The config-svc namespace the Consul-compatible KV API (`/v1/kv/…`) reads and writes.
    #[arg(id = "consul_kv_namespace", long = "consul-kv-namespace", value_name = "CONSUL_KV_NAMESPACE", env = "CONSUL_KV_NAMESPACE", default_value = "consul-kv", value_parser = parse_namespace)]
    pub kv_namespace: String,

    /// The datacenter name the Consul-compatible API answers (and the only `dc` it accepts).
    #[arg(
        id = "consul_datacenter",
        long = "consul-datacenter",
        value_name = "CONSUL_DATACENTER",
        env = "CONSUL_DATACENTER",
        default_value = "dc1"
    )]
    pub datacenter: String,
}
