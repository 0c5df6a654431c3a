//! The probes: one HTTP `GET` or one TCP connect against the instance's own
//! host:port, bounded by the check's timeout.
//!
//! Safety: the URL is built from the registered host and port plus a path
//! that must be absolute and carry no scheme, authority or `//`, and the
//! parsed URL is checked to still point at that host:port, so a check can
//! never be turned into a probe of some other address. Redirects are not
//! followed (a 3xx is a failure), no proxy is used, at most
//! [`MAX_BODY_BYTES`] of the body is read, and every probe opens a fresh
//! connection (a pooled one would hide a listener that stopped accepting).
//!
//! Egress: every address a probe would connect to first passes the
//! [`Egress`] rules (never the control plane, Redis or this listener, never
//! link-local, the allow and deny lists); a refused one is not probed and
//! the check fails with the reason as its output. Names are resolved here
//! and every address checked (so a name cannot point past the rules); the
//! probe then connects to the checked address and nothing else.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use mcp_shared::{
    egress::Egress,
    registry::{Check, CheckType},
};
use reqwest::{Client, Url, redirect};

use crate::hysteresis::Outcome;

/// Most bytes of a response body read (and kept in the output).
pub const MAX_BODY_BYTES: usize = 1024;

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What it means.
    pub outcome: Outcome,
    /// Status line and body excerpt, or the error.
    pub output: String,
}

impl Probe {
    fn fail(output: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Fail,
            output: output.into(),
        }
    }
}

/// Runs probes; one per process, shared by every check.
#[derive(Debug, Clone)]
pub struct Prober {
    client: Client,
    egress: Arc<Egress>,
}

impl Prober {
    /// A prober with its HTTP client (no redirects, no proxy, no pooling,
    /// HTTP/1.1), connecting only where `egress` allows.
    pub fn new(egress: Arc<Egress>) -> Result<Self, reqwest::Error> {
        let client = Client::builder()
            .redirect(redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .http1_only()
            .user_agent(concat!("mcp-health-svc/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, egress })
    }

    /// Probe `host:port` as `check` says, within `timeout`.
    ///
    /// The address is resolved here, through the egress rules and with the
    /// real port (so a protected endpoint is recognised behind a name), and
    /// the probe connects to that address only: the client never resolves.
    pub async fn probe(&self, host: &str, port: u16, check: &Check, timeout: Duration) -> Probe {
        let started = tokio::time::Instant::now();
        let addr = match tokio::time::timeout(timeout, self.egress.resolve(host, port)).await {
            Ok(Ok(addrs)) => match addrs.first() {
                Some(addr) => *addr,
                None => return Probe::fail(format!("`{host}` did not resolve")),
            },
            Ok(Err(error)) => {
                return Probe::fail(match error.refusal() {
                    Some(refusal) => {
                        metrics::counter!("health_probes_refused_total").increment(1);
                        format!("not probed: {refusal}")
                    }
                    None => format!("cannot resolve `{host}`: {error}"),
                });
            }
            Err(_) => {
                return Probe::fail(format!("resolving `{host}` timed out after {timeout:?}"));
            }
        };
        // Where probes really go, so a run can prove it never left loopback
        // (the contract scripts read this after fuzzing).
        metrics::counter!("health_probe_connects_total", "destination" => destination(addr))
            .increment(1);
        let left = timeout.saturating_sub(started.elapsed());
        match check.kind {
            CheckType::Tcp => tcp(addr, host, port, left).await,
            CheckType::Http => {
                let path = check.path.as_deref().unwrap_or("/");
                match check_url(host, port, path) {
                    Ok(url) => self.http(url, addr, left).await,
                    Err(reason) => Probe::fail(format!("not probed: {reason}")),
                }
            }
        }
    }

    /// `GET url` sent to `addr` (the URL's host stays the `Host` header).
    async fn http(&self, mut url: Url, addr: SocketAddr, timeout: Duration) -> Probe {
        let host_header = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        if url.set_ip_host(addr.ip()).is_err() {
            return Probe::fail("not probed: cannot address the instance");
        }
        let request = async {
            let mut response = self
                .client
                .get(url)
                .header(reqwest::header::HOST, host_header)
                .timeout(timeout)
                .send()
                .await?;
            let status = response.status();
            let mut body = Vec::new();
            while body.len() < MAX_BODY_BYTES {
                match response.chunk().await? {
                    Some(chunk) => body.extend_from_slice(&chunk),
                    None => break,
                }
            }
            body.truncate(MAX_BODY_BYTES);
            Ok::<_, reqwest::Error>((status, body))
        };
        // The client's timeout covers the body too; the outer one is a backstop.
        let (status, body) = match tokio::time::timeout(timeout, request).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Probe::fail(describe(&error, timeout)),
            Err(_) => return Probe::fail(format!("timed out after {timeout:?}")),
        };
        let outcome = if status.is_success() {
            Outcome::Pass
        } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Outcome::Warn
        } else {
            Outcome::Fail
        };
        let mut output = format!("HTTP {status}");
        if !body.is_empty() {
            output.push_str(": ");
            output.push_str(&String::from_utf8_lossy(&body));
        }
        Probe { outcome, output }
    }
}

/// `loopback` or `other`: the label of a probe's destination.
pub fn destination(addr: SocketAddr) -> &'static str {
    if addr.ip().is_loopback() {
        "loopback"
    } else {
        "other"
    }
}

/// Connect to `addr` (the resolved `host:port`) within `timeout`.
async fn tcp(addr: SocketAddr, host: &str, port: u16, timeout: Duration) -> Probe {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => Probe {
            outcome: Outcome::Pass,
            output: format!("TCP connect to {host}:{port} succeeded"),
        },
        Ok(Err(error)) => Probe::fail(format!("TCP connect to {host}:{port} failed: {error}")),
        Err(_) => Probe::fail(format!(
            "TCP connect to {host}:{port} timed out after {timeout:?}"
        )),
    }
}

fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        format!("timed out after {timeout:?}")
    } else if error.is_connect() {
        // The source chain says why (refused, unreachable).
        let mut reason = String::from("connection failed");
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            reason = format!("connection failed: {cause}");
            source = cause.source();
        }
        reason
    } else {
        format!("request failed: {error}")
    }
}

/// Why a check path is refused, if it is.
pub fn validate_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("the path must start with `/`");
    }
    if path.contains("//") || path.contains('\\') {
        return Err("the path must not contain `//` or `\\`");
    }
    if path.contains("://") {
        return Err("the path must not carry a scheme");
    }
    if path.len() > 1024 || path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the path must be at most 1024 visible characters");
    }
    Ok(())
}

/// `http://host:port{path}`, refused unless it still points at `host:port`.
pub fn check_url(host: &str, port: u16, path: &str) -> Result<Url, String> {
    validate_path(path)?;
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let url = Url::parse(&format!("http://{authority}{path}")).map_err(|e| e.to_string())?;
    let same_host = url.host_str().is_some_and(|h| {
        h.trim_matches(['[', ']'])
            .eq_ignore_ascii_case(host.trim_matches(['[', ']']))
    });
    if !same_host || url.port_or_known_default() != Some(port) || !url.username().is_empty() {
        return Err(format!("the URL would not target {host}:{port}"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_instance() {
        for bad in [
            "health",
            "//evil.example/x",
            "http://evil.example/x",
            "/a//b",
            "/\\evil",
            "/a b",
            "",
        ] {
            assert!(check_url("127.0.0.1", 80, bad).is_err(), "{bad:?}");
        }
        let url = check_url("127.0.0.1", 8080, "/health?x=1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/health?x=1");
        assert!(
            check_url("127.0.0.1", 80, "/@evil.example")
                .is_ok_and(|u| u.host_str() == Some("127.0.0.1"))
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let url = check_url("::1", 9000, "/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.as_str(), "http://[::1]:9000/");
    }
}
