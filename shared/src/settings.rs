//! Settings every binary shares, flattened into each binary's clap struct.
//!
//! Every field reads a flag or an environment variable, and a bad value stops
//! the process at start with one clap error line naming the setting.

use std::time::Duration;

use clap::{Args, ValueEnum};

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
    /// Redis to keep all state in (`redis://[user:pass@]host:port[/db]`).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", value_parser = parse_redis_url)]
    pub redis_url: String,

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

    /// Service name reported in traces (defaults to the binary's name).
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// How long a graceful shutdown waits for in-flight requests.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

/// Accept a `redis://`, `rediss://` or `unix://` URL that the driver can use.
pub fn parse_redis_url(value: &str) -> Result<String, String> {
    redis::Client::open(value)
        .map(|_| value.to_owned())
        .map_err(|e| format!("not a Redis URL ({e}); expected redis://host:port"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_url_must_parse() {
        assert!(parse_redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(parse_redis_url("not-a-url").is_err());
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
