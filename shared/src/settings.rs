//! Settings every binary shares, flattened into each binary's clap struct.
//!
//! Every field reads a flag or an environment variable, and a bad value stops
//! the process at start with one clap error line naming the setting.

use std::{ffi::OsStr, fmt, sync::Arc, time::Duration};

use clap::{Args, ValueEnum, error::ErrorKind};

use crate::names::Name;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, with `trace_id` (for collectors).
    Json,
    /// Human-readable, coloured when on a terminal.
    Pretty,
}

/// Settings shared by every MCP binary.
#[derive(Debug, Clone, Args)]
pub struct CommonSettings {
    /// Redis to keep all state in (`redis://[user:pass@]host:port[/db]`; the
    /// password is never shown: not here, not in logs, not in errors).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, default_value = "redis://127.0.0.1:6379", value_parser = RedisUrlParser)]
    pub redis_url: RedisUrl,

    /// Sentinels to discover the Redis primary through (`host:port,...`);
    /// when set, `REDIS_URL`'s host is ignored and only its user, password and
    /// database apply (to the primary). See README "High availability".
    #[arg(long, env = "REDIS_SENTINELS", value_parser = parse_host_list, conflicts_with = "redis_cluster_nodes")]
    pub redis_sentinels: Option<HostList>,

    /// The name the Sentinels monitor the primary under.
    #[arg(long, env = "REDIS_SENTINEL_MASTER", default_value = "mymaster")]
    pub redis_sentinel_master: String,

    /// Password of the Sentinels themselves (`requirepass` in sentinel.conf),
    /// when they want one; never shown.
    #[arg(long, env = "REDIS_SENTINEL_PASSWORD", hide_env_values = true, value_parser = parse_redis_password)]
    pub redis_sentinel_password: Option<RedisPassword>,

    /// Seed nodes of a Redis Cluster (`host:port,...`); when set, `REDIS_URL`'s
    /// host is ignored and only its user and password apply. Every key of
    /// the stack then lives in one hash slot (`{prefix}:…`).
    #[arg(long, env = "REDIS_CLUSTER_NODES", value_parser = parse_host_list)]
    pub redis_cluster_nodes: Option<HostList>,

    /// Replicas that must have a write before it is acknowledged (`WAIT`);
    /// 0 acknowledges once the primary has it. A write not copied within
    /// half of `REDIS_TIMEOUT` answers 503 (it may still exist).
    #[arg(long, env = "REDIS_MIN_REPLICAS_ACK", default_value_t = 0)]
    pub redis_min_replicas_ack: u32,

    /// Prefix of every Redis key, so several stacks or tests can share one Redis.
    #[arg(long = "redis-prefix", env = "MCP_REDIS_PREFIX", default_value = "mcp")]
    pub redis_prefix: Name,

    /// Bound on every Redis command, so a dead or hung Redis answers 503 instead
    /// of hanging (kept under a second: the contract is a 503 within one).
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "750ms", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,

    /// Log filter (tracing-subscriber `EnvFilter` syntax).
    #[arg(long = "log-filter", env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,

    /// OTLP/HTTP collector base URL; traces are exported only when set (empty = unset, as the OpenTelemetry spec says).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_optional_http_url)]
    pub otel_exporter_otlp_endpoint: Option<String>,

    /// Which spans are exported to the OTLP collector (`EnvFilter` syntax),
    /// independent of `RUST_LOG`: a quiet log level (`RUST_LOG=warn`) must
    /// not empty the traces, since request spans are made at `info`.
    #[arg(long, env = "OTEL_TRACES_FILTER", default_value = "info")]
    pub otel_traces_filter: String,

    /// Service name reported in traces (defaults to the binary's name).
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// How long a graceful shutdown waits for in-flight requests.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How long a client may take to send a request's header block (counted
    /// from the connection, TLS handshake included, or from the first byte
    /// of a later request on a kept-alive connection); then it is closed.
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub http_header_read_timeout: Duration,

    /// How long a kept-alive connection with no request in flight stays open.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_timeout)]
    pub http_idle_timeout: Duration,

    /// Largest request header block, in bytes (at least 8192); a larger one
    /// gets 431 and the connection is closed.
    #[arg(long, env = "HTTP_MAX_HEADER_BYTES", default_value_t = 64 * 1024, value_parser = parse_max_header_bytes)]
    pub http_max_header_bytes: usize,

    /// Most connections served at once; further ones wait in the listen
    /// backlog until one closes.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = parse_max_connections)]
    pub http_max_connections: usize,

    /// Serving threads, each a runtime of its own that keeps the
    /// connections handed to it: `auto` (one per core) or a number; `0`
    /// serves on the shared work-stealing runtime. Unset: the service's
    /// default (`auto` for the gateway, `0` for the others).
    #[arg(long, env = "HTTP_WORKERS", value_parser = parse_workers)]
    pub http_workers: Option<usize>,

    /// `auto` pins each serving thread to a CPU of its own (the CPUs this
    /// process may use, in turn), as nginx's `worker_cpu_affinity auto`;
    /// `off` lets the kernel place them. For a machine or cpuset given to
    /// the service (README, "Connection limits").
    #[arg(long, env = "HTTP_CPU_AFFINITY", value_enum, default_value_t = CpuAffinity::Off)]
    pub http_cpu_affinity: CpuAffinity,
}

/// Whether serving threads are pinned to CPUs (`HTTP_CPU_AFFINITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CpuAffinity {
    /// The kernel places the threads.
    Off,
    /// Each serving thread on a CPU of its own, in turn.
    Auto,
}

/// `auto` (the cores this process may use) or a count of threads.
fn parse_workers(value: &str) -> Result<usize, String> {
    match value {
        "auto" => Ok(auto_workers()),
        count => count
            .parse()
            .map_err(|_| format!("`{count}` is neither `auto` nor a number of threads")),
    }
}

/// One serving worker per core this process may use.
fn auto_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl CommonSettings {
    /// The Redis handle these settings describe: one server (`REDIS_URL`),
    /// a primary behind Sentinels, or a Cluster. Connects lazily.
    pub fn redis(&self) -> Result<crate::store::Redis, crate::store::StoreError> {
        use crate::store::{Redis, RedisOptions, Topology};
        let topology = if let Some(sentinels) = &self.redis_sentinels {
            Topology::Sentinel {
                sentinels: sentinels.0.to_vec(),
                master: self.redis_sentinel_master.clone(),
                password: self
                    .redis_sentinel_password
                    .as_ref()
                    .map(|p| p.0.to_string()),
            }
        } else if let Some(nodes) = &self.redis_cluster_nodes {
            Topology::Cluster {
                nodes: nodes.0.to_vec(),
            }
        } else {
            Topology::Standalone
        };
        Redis::connect(RedisOptions {
            url: self.redis_url.expose().to_owned(),
            topology,
            prefix: self.redis_prefix.as_str().to_owned(),
            timeout: self.redis_timeout,
            min_replicas_ack: self.redis_min_replicas_ack,
        })
    }

    /// Every Redis address these settings name (as `redis://` URLs), for
    /// the egress rules to protect: `REDIS_URL`, each Sentinel, each seed node.
    pub fn redis_endpoints(&self) -> Vec<String> {
        let mut urls = vec![self.redis_url.expose().to_owned()];
        for list in [&self.redis_sentinels, &self.redis_cluster_nodes]
            .into_iter()
            .flatten()
        {
            urls.extend(list.0.iter().map(|host| format!("redis://{host}")));
        }
        urls
    }

    /// The connection limits of this binary's listener (the `HTTP_*` settings).
    pub fn connection_limits(&self) -> crate::server::ConnectionLimits {
        crate::server::ConnectionLimits {
            header_read_timeout: self.http_header_read_timeout,
            idle_timeout: self.http_idle_timeout,
            max_header_bytes: self.http_max_header_bytes,
            max_connections: self.http_max_connections,
            shutdown_grace: self.shutdown_grace,
            workers: self.http_workers.unwrap_or(0),
            cpu_affinity: self.http_cpu_affinity == CpuAffinity::Auto,
        }
    }

    /// [`Self::connection_limits`] for a service that serves on a worker
    /// per core unless `HTTP_WORKERS` says otherwise.
    pub fn connection_limits_per_core(&self) -> crate::server::ConnectionLimits {
        crate::server::ConnectionLimits {
            workers: self.http_workers.unwrap_or_else(auto_workers),
            ..self.connection_limits()
        }
    }
}

/// A Redis URL whose password never reaches a log line, an error or `--help`:
/// `Display` and `Debug` show `redis://user:***@host:port` (and `pass=***`
/// in the query of a `unix://` URL). [`RedisUrl::expose`] is the one way to
/// the full text, for the Redis client.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(Arc<str>);

impl RedisUrl {
    /// Check `value` as a Redis URL the driver accepts.
    pub fn parse(value: &str) -> Result<Self, String> {
        redis::Client::open(value)
            .map(|_| Self(Arc::from(value)))
            .map_err(|e| format!("not a Redis URL ({e}); expected redis://host:port"))
    }

    /// The full URL, password included: for the Redis client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_redis_url(&self.0))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({:?})", redact_redis_url(&self.0))
    }
}

/// `url` with its password replaced by `***`: the userinfo password
/// (`redis://user:***@host`) and a `pass=`/`password=` query value. Works on
/// any text, parseable or not, so an invalid value can be named in an error.
pub fn redact_redis_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                // `redis://secret@host`: a lone userinfo may be a password too.
                None if !userinfo.is_empty() => out.push_str("***"),
                None => {}
            }
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..=q]);
            let (query, fragment) = match tail[q + 1..].find('#') {
                Some(h) => tail[q + 1..].split_at(h),
                None => (&tail[q + 1..], ""),
            };
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((key, _)) if key == "pass" || key == "password" => {
                        out.push_str(key);
                        out.push_str("=***");
                    }
                    _ => out.push_str(pair),
                }
            }
            out.push_str(fragment);
        }
        None => out.push_str(tail),
    }
    out
}

/// The clap parser of [`RedisUrl`]: like a plain value parser, except that
/// a refused value is named redacted (clap's own error would print it whole).
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisUrlParser;

impl clap::builder::TypedValueParser for RedisUrlParser {
    type Value = RedisUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<RedisUrl, clap::Error> {
        let name = arg.map_or_else(|| "--redis-url".to_owned(), ToString::to_string);
        let Some(text) = value.to_str() else {
            return Err(clap::Error::raw(
                ErrorKind::InvalidUtf8,
                format!("invalid value for '{name}': not UTF-8\n"),
            )
            .with_cmd(cmd));
        };
        RedisUrl::parse(text).map_err(|e| {
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!(
                    "invalid value '{}' for '{name}': {e}\n",
                    redact_redis_url(text)
                ),
            )
            .with_cmd(cmd)
        })
    }
}

/// A comma-separated list of `host:port` (Sentinels, Cluster seed nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostList(pub Arc<[String]>);

/// Accept `host:port[,host:port...]` (at least one; a port on each).
pub fn parse_host_list(value: &str) -> Result<HostList, String> {
    let mut hosts = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, port) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("'{item}' has no port; expected host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '@', ' ']) || port.parse::<u16>().is_err() {
            return Err(format!("'{item}' is not host:port"));
        }
        hosts.push(item.to_owned());
    }
    if hosts.is_empty() {
        return Err("expected at least one host:port".to_owned());
    }
    Ok(HostList(hosts.into()))
}

/// A Redis password from a setting; never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisPassword(Arc<str>);

impl fmt::Debug for RedisPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisPassword(***)")
    }
}

/// Accept any text as a password (kept out of clap's error lines).
fn parse_redis_password(value: &str) -> Result<RedisPassword, String> {
    Ok(RedisPassword(Arc::from(value)))
}

/// Accept a `redis://`, `rediss://` or `unix://` URL that the driver can use.
pub fn parse_redis_url(value: &str) -> Result<RedisUrl, String> {
    RedisUrl::parse(value)
}

/// Accept an `http://` or `https://` URL (trailing `/` removed).
pub fn parse_http_url(value: &str) -> Result<String, String> {
    let trimmed = value.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .ok_or_else(|| "expected an http:// or https:// URL".to_owned())?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err("expected an http:// or https:// URL with a host".to_owned());
    }
    Ok(trimmed.to_owned())
}

/// Like [`parse_http_url`], but an empty value means "not set" (kept as `""`).
pub fn parse_optional_http_url(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        Ok(String::new())
    } else {
        parse_http_url(value)
    }
}

/// Accept a comma-separated list of base URLs (at least one).
pub fn parse_url_list(value: &str) -> Result<Vec<String>, String> {
    let urls: Result<Vec<_>, _> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_http_url)
        .collect();
    let urls = urls?;
    if urls.is_empty() {
        return Err("expected at least one URL".to_owned());
    }
    Ok(urls)
}

/// Accept a humane duration (`500ms`, `30s`, `5m`).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("not a duration ({e}); e.g. 500ms, 30s"))
}

/// A timeout: a humane duration (see [`parse_duration`]) above zero.
pub fn parse_timeout(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        d if d.is_zero() => Err("must be above zero".to_owned()),
        d => Ok(d),
    }
}

/// The cap on a request's header block: at least 8192 bytes (hyper's
/// smallest read buffer), at most 16 MiB.
pub fn parse_max_header_bytes(value: &str) -> Result<usize, String> {
    let bytes: usize = value
        .parse()
        .map_err(|_| "expected a number of bytes, e.g. 65536".to_owned())?;
    if !(8192..=16 * 1024 * 1024).contains(&bytes) {
        return Err("must be between 8192 and 16777216".to_owned());
    }
    Ok(bytes)
}

/// The cap on concurrent connections: at least 1.
pub fn parse_max_connections(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) | Err(_) => Err("expected a number of connections above zero".to_owned()),
        // tokio's semaphore holds at most `usize::MAX >> 3` permits.
        Ok(n) => Ok(n.min(tokio::sync::Semaphore::MAX_PERMITS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_url_must_parse() {
        assert!(parse_redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(parse_redis_url("not-a-url").is_err());
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn redis_passwords_are_redacted() {
        let cases = [
            (
                "redis://user:s3cret@host:6379/2",
                "redis://user:***@host:6379/2",
            ),
            ("redis://:s3cret@host", "redis://:***@host"),
            ("rediss://s3cret@host:6380", "rediss://***@host:6380"),
            ("redis://host:6379", "redis://host:6379"),
            (
                "unix:///run/redis.sock?db=1&pass=s3cret",
                "unix:///run/redis.sock?db=1&pass=***",
            ),
            ("redis://u:p@ss:w0rd@host", "redis://u:***@host"),
            ("not-a-url", "not-a-url"),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_redis_url(url), redacted, "{url}");
        }
        let url = RedisUrl::parse("redis://user:s3cret@127.0.0.1:6379").unwrap();
        assert_eq!(url.to_string(), "redis://user:***@127.0.0.1:6379");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.expose(), "redis://user:s3cret@127.0.0.1:6379");
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn parsed_settings_never_print_the_redis_password() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Binary {
            #[command(flatten)]
            common: CommonSettings,
        }
        let parsed =
            Binary::try_parse_from(["bin", "--redis-url", "redis://mcp:s3cret-pw@127.0.0.1:6379"])
                .unwrap();
        let debug = format!("{parsed:?}");
        assert!(debug.contains("redis://mcp:***@127.0.0.1:6379"), "{debug}");
        assert!(!debug.contains("s3cret-pw"), "{debug}");
        assert_eq!(
            parsed.common.connection_limits(),
            crate::server::ConnectionLimits::default()
        );

        // A refused value is named redacted, in one line.
        let error = Binary::try_parse_from(["bin", "--redis-url", "redis://mcp:s3cret-pw@h:port"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("redis://mcp:***@h:port"), "{error}");
        assert!(!error.contains("s3cret-pw"), "{error}");
        assert_eq!(error.trim_end().lines().count(), 1, "{error}");
    }

    #[test]
    fn url_lists_split_on_commas() {
        assert_eq!(
            parse_url_list("http://a:1/, http://b:2").unwrap_or_default(),
            vec!["http://a:1".to_owned(), "http://b:2".to_owned()]
        );
        assert!(parse_url_list("ftp://x").is_err());
        assert!(parse_url_list("").is_err());
    }
}
