//! Egress rules: where MCP may connect on behalf of a registration.
//!
//! Two things connect to addresses that clients registered: the gateway's
//! `/svc` proxy and health-svc's probes. Both obey the one rule set built
//! here, so a registration can never turn either into a way around the
//! gateway (into the control plane, Redis or the gateway's own listener) or
//! into a scanner of the network it runs in:
//!
//! 1. never a protected endpoint: the control plane's base URLs, the
//!    process's own listener, Redis ([`Egress::protect`]); a loopback or
//!    unspecified protected address stands for every loopback address on
//!    that port, since `127.0.0.2:8082` reaches a listener on `0.0.0.0:8082`;
//! 2. never link-local (`169.254.0.0/16`, `fe80::/10`: cloud metadata
//!    services live there) unless `EGRESS_ALLOW_LINK_LOCAL`;
//! 3. never an address in `EGRESS_DENY_CIDRS`;
//! 4. when `EGRESS_ALLOW_CIDRS` is set, only addresses inside it;
//! 5. host names are resolved and every address they give is checked (so a
//!    name cannot point past the rules); with `EGRESS_ALLOW_HOSTNAMES=false`
//!    names are refused without any lookup (only IP literals and
//!    `localhost`), which is how tests guarantee they never send a DNS query.
//!
//! The rules are checked when a connection is opened, on the addresses it
//! will really use, never per pooled request.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use clap::Args;
use ipnet::IpNet;

/// The egress settings, flattened into the settings of every binary that
/// connects to registered addresses (and registry-svc, which refuses early).
#[derive(Debug, Clone, Default, Args)]
pub struct EgressSettings {
    /// Only connect to registered addresses inside these CIDRs (comma-separated; unset = any not denied).
    #[arg(long, env = "EGRESS_ALLOW_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    pub egress_allow_cidrs: Vec<IpNet>,

    /// Never connect to registered addresses inside these CIDRs (comma-separated).
    #[arg(long, env = "EGRESS_DENY_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    pub egress_deny_cidrs: Vec<IpNet>,

    /// Never connect to these `host:port` endpoints (comma-separated), on top of
    /// the control plane, Redis and the own listener that each process protects by itself.
    #[arg(long, env = "EGRESS_DENY_ADDRS", value_delimiter = ',')]
    pub egress_deny_addrs: Vec<String>,

    /// Allow link-local addresses (169.254.0.0/16, fe80::/10), refused by default.
    #[arg(long, env = "EGRESS_ALLOW_LINK_LOCAL", default_value_t = false, action = clap::ArgAction::Set)]
    pub egress_allow_link_local: bool,

    /// Resolve registered host names; when false only IP literals and `localhost` are
    /// used and nothing is ever looked up in DNS.
    #[arg(long, env = "EGRESS_ALLOW_HOSTNAMES", default_value_t = true, action = clap::ArgAction::Set)]
    pub egress_allow_hostnames: bool,
}

impl EgressSettings {
    /// The flags that confine a process to loopback and forbid DNS: what
    /// every test stack, contract run and benchmark passes.
    pub const LOOPBACK_ONLY: [&'static str; 4] = [
        "--egress-allow-cidrs",
        "127.0.0.0/8,::1/128",
        "--egress-allow-hostnames",
        "false",
    ];
}

/// Accept a CIDR (`10.0.0.0/8`) or a bare address (a /32 or /128).
pub fn parse_cidr(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{value}` is not a CIDR (e.g. 10.0.0.0/8) or an IP address"))
}

/// Why a destination is refused. Its `Display` is the text clients and
/// health outputs show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A protected endpoint (control plane, Redis, own listener).
    #[error("{addr} is {what}, which registered addresses may not reach")]
    Protected {
        /// The refused address.
        addr: SocketAddr,
        /// What lives there.
        what: String,
    },
    /// Link-local and not allowed.
    #[error("{0} is link-local, refused unless EGRESS_ALLOW_LINK_LOCAL=true")]
    LinkLocal(IpAddr),
    /// Inside `EGRESS_DENY_CIDRS`.
    #[error("{0} is inside EGRESS_DENY_CIDRS ({1})")]
    Denied(IpAddr, IpNet),
    /// Outside `EGRESS_ALLOW_CIDRS`.
    #[error("{0} is outside EGRESS_ALLOW_CIDRS")]
    NotAllowed(IpAddr),
    /// A host name while names are off.
    #[error("host name `{0}` refused: EGRESS_ALLOW_HOSTNAMES=false allows IP addresses only")]
    Hostname(String),
    /// The name resolved to nothing usable.
    #[error("host name `{0}` did not resolve to any address")]
    Unresolved(String),
}

/// One protected endpoint.
#[derive(Debug, Clone)]
struct Protected {
    ip: IpAddr,
    port: u16,
    /// Stands for every loopback address on `port`.
    any_loopback: bool,
    what: String,
}

impl Protected {
    fn covers(&self, addr: SocketAddr) -> bool {
        addr.port() == self.port
            && (addr.ip() == self.ip || (self.any_loopback && canonical(addr.ip()).is_loopback()))
    }
}

/// The compiled rule set (cheap to clone behind an `Arc`; checks allocate nothing).
#[derive(Debug, Clone)]
pub struct Egress {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    allow_link_local: bool,
    allow_hostnames: bool,
    protected: Vec<Protected>,
}

impl Default for Egress {
    fn default() -> Self {
        Self::new(&EgressSettings {
            egress_allow_hostnames: true,
            ..EgressSettings::default()
        })
    }
}

/// How long resolving a protected name at start-up may take.
const START_UP_LOOKUP: Duration = Duration::from_secs(2);
/// How long resolving a registered name may take.
const LOOKUP: Duration = Duration::from_secs(2);

impl Egress {
    /// The rules from settings, with no protected endpoint yet (the
    /// `EGRESS_DENY_ADDRS` names are added by [`Egress::protect_settings`]).
    pub fn new(settings: &EgressSettings) -> Self {
        Self {
            allow: settings.egress_allow_cidrs.clone(),
            deny: settings.egress_deny_cidrs.clone(),
            allow_link_local: settings.egress_allow_link_local,
            allow_hostnames: settings.egress_allow_hostnames,
            protected: Vec::new(),
        }
    }

    /// The rules from settings plus `EGRESS_DENY_ADDRS`, resolved now.
    pub async fn from_settings(settings: &EgressSettings) -> Self {
        let mut egress = Self::new(settings);
        for endpoint in &settings.egress_deny_addrs {
            egress
                .protect_endpoint(endpoint, "in EGRESS_DENY_ADDRS")
                .await;
        }
        egress
    }

    /// Never connect to `addr` (`what` says what lives there, for the refusal).
    pub fn protect(&mut self, addr: SocketAddr, what: &str) {
        let ip = canonical(addr.ip());
        self.protected.push(Protected {
            ip,
            port: addr.port(),
            any_loopback: ip.is_loopback() || ip.is_unspecified(),
            what: what.to_owned(),
        });
    }

    /// Protect the endpoint of a URL (`http://host:port/…`, `redis://…@host:port`)
    /// or of a bare `host:port`. A name is resolved once, now (bounded); one
    /// that does not resolve is skipped with a warning, since nothing can
    /// reach it through it either.
    pub async fn protect_endpoint(&mut self, url: &str, what: &str) {
        let Some((host, port)) = endpoint_of(url) else {
            tracing::warn!(
                what,
                "egress: cannot tell the host:port of a protected endpoint"
            );
            return;
        };
        if let Some(ip) = literal(host) {
            self.protect(SocketAddr::new(ip, port), what);
            return;
        }
        match tokio::time::timeout(START_UP_LOOKUP, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => {
                for addr in addrs {
                    self.protect(addr, what);
                }
            }
            _ => tracing::warn!(host, what, "egress: a protected endpoint did not resolve"),
        }
    }

    /// Check one address that is about to be connected to.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Refusal> {
        let ip = canonical(addr.ip());
        let addr = SocketAddr::new(ip, addr.port());
        if let Some(protected) = self.protected.iter().find(|p| p.covers(addr)) {
            return Err(Refusal::Protected {
                addr,
                what: protected.what.clone(),
            });
        }
        if !self.allow_link_local && is_link_local(ip) {
            return Err(Refusal::LinkLocal(ip));
        }
        if let Some(net) = self.deny.iter().find(|net| net.contains(&ip)) {
            return Err(Refusal::Denied(ip, *net));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|net| net.contains(&ip)) {
            return Err(Refusal::NotAllowed(ip));
        }
        Ok(())
    }

    /// Check a registered `host` without any lookup: an IP literal (or
    /// `localhost`) is checked in full; a name is refused when names are off,
    /// else `Ok(None)`: it must be resolved with [`Egress::resolve`].
    pub fn check_host(&self, host: &str, port: u16) -> Result<Option<SocketAddr>, Refusal> {
        if let Some(ip) = literal(host) {
            let addr = SocketAddr::new(ip, port);
            return self.check(addr).map(|()| Some(addr));
        }
        if host.eq_ignore_ascii_case("localhost") {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
            return self.check(addr).map(|()| Some(addr));
        }
        if !self.allow_hostnames {
            return Err(Refusal::Hostname(host.to_owned()));
        }
        Ok(None)
    }

    /// The addresses of `host:port` that the rules allow (IP literals
    /// without a lookup). Refused when none is allowed; a refused address
    /// among allowed ones is dropped, so a name cannot smuggle one in.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        if let Some(addr) = self.check_host(host, port)? {
            return Ok(vec![addr]);
        }
        let found = tokio::time::timeout(LOOKUP, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| {
                ResolveError::Lookup(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("looking up `{host}` timed out"),
                ))
            })?
            .map_err(ResolveError::Lookup)?;
        let mut allowed = Vec::new();
        let mut first_refusal = None;
        for addr in found {
            match self.check(addr) {
                Ok(()) => allowed.push(addr),
                Err(refusal) => {
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        if allowed.is_empty() {
            return Err(ResolveError::Refused(
                first_refusal.unwrap_or_else(|| Refusal::Unresolved(host.to_owned())),
            ));
        }
        Ok(allowed)
    }
}

/// Why [`Egress::resolve`] gave no address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The rules refuse every address.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The lookup failed.
    #[error("{0}")]
    Lookup(std::io::Error),
}

impl ResolveError {
    /// The refusal, when the rules (not DNS) said no.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused(refusal) => Some(refusal),
            Self::Lookup(_) => None,
        }
    }
}

/// An IP literal (`127.0.0.1`, `::1`, `[::1]`), without any lookup.
fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`) checked as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        // fe80::/10 (`Ipv6Addr::is_unicast_link_local` is stable since 1.84).
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    }
}

/// `host` and `port` of `scheme://[user@]host[:port][/…]` or `host:port`
/// (the scheme's default port when none is given; `None` without a host).
pub fn endpoint_of(url: &str) -> Option<(&str, u16)> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("", url),
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        "redis" | "rediss" => 6379,
        _ => 0,
    };
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let (host, after) = stripped.split_once(']')?;
        let port = after.strip_prefix(':').map(str::parse).transpose().ok()?;
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse().ok()?)),
            None => (authority, None),
        }
    };
    let port = port.unwrap_or(default_port);
    (!host.is_empty() && port != 0).then_some((host, port))
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "allow={:?} deny={:?} link_local={} hostnames={} protected={}",
            self.allow,
            self.deny,
            self.allow_link_local,
            self.allow_hostnames,
            self.protected.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_only() -> Egress {
        Egress::new(&EgressSettings {
            egress_allow_cidrs: vec![parse_cidr("127.0.0.0/8").unwrap_or_else(|e| panic!("{e}"))],
            egress_allow_hostnames: false,
            ..EgressSettings::default()
        })
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn the_allow_list_confines_every_address() {
        let egress = loopback_only();
        assert!(egress.check(addr("127.0.0.1:80")).is_ok());
        assert!(egress.check(addr("127.9.9.9:80")).is_ok());
        assert_eq!(
            egress.check(addr("10.0.0.7:9000")),
            Err(Refusal::NotAllowed(
                "10.0.0.7".parse().unwrap_or_else(|_| unreachable!())
            ))
        );
        // An IPv4-mapped IPv6 address is the IPv4 address it maps.
        assert!(egress.check(addr("[::ffff:10.0.0.7]:80")).is_err());
        assert!(egress.check(addr("[::ffff:127.0.0.1]:80")).is_ok());
    }

    #[test]
    fn names_are_refused_without_a_lookup_when_off() {
        let egress = loopback_only();
        assert_eq!(
            egress.check_host("echo.invalid", 80),
            Err(Refusal::Hostname("echo.invalid".into()))
        );
        assert_eq!(
            egress.check_host("localhost", 80),
            Ok(Some(addr("127.0.0.1:80")))
        );
        assert_eq!(
            egress.check_host("[::1]", 80).map(|_| ()),
            Err(Refusal::NotAllowed(
                "::1".parse().unwrap_or_else(|_| unreachable!())
            ))
        );
    }

    #[test]
    fn link_local_is_refused_unless_allowed() {
        let open = Egress::default();
        assert!(matches!(
            open.check(addr("169.254.169.254:80")),
            Err(Refusal::LinkLocal(_))
        ));
        assert!(matches!(
            open.check(addr("[fe80::1]:80")),
            Err(Refusal::LinkLocal(_))
        ));
        assert!(open.check(addr("10.1.2.3:80")).is_ok());
        let allowed = Egress::new(&EgressSettings {
            egress_allow_link_local: true,
            egress_allow_hostnames: true,
            ..EgressSettings::default()
        });
        assert!(allowed.check(addr("169.254.169.254:80")).is_ok());
    }

    #[test]
    fn deny_wins_over_allow() {
        let egress = Egress::new(&EgressSettings {
            egress_allow_cidrs: vec![parse_cidr("10.0.0.0/8").unwrap_or_else(|e| panic!("{e}"))],
            egress_deny_cidrs: vec![parse_cidr("10.0.5.0/24").unwrap_or_else(|e| panic!("{e}"))],
            egress_allow_hostnames: true,
            ..EgressSettings::default()
        });
        assert!(egress.check(addr("10.0.4.1:80")).is_ok());
        assert!(matches!(
            egress.check(addr("10.0.5.1:80")),
            Err(Refusal::Denied(..))
        ));
    }

    #[test]
    fn a_protected_loopback_port_covers_every_loopback_address() {
        let mut egress = Egress::default();
        egress.protect(addr("0.0.0.0:8082"), "config-svc");
        egress.protect(addr("10.0.0.9:6379"), "Redis");
        for refused in [
            "127.0.0.1:8082",
            "127.0.0.2:8082",
            "[::1]:8082",
            "10.0.0.9:6379",
        ] {
            let refusal = egress.check(addr(refused));
            assert!(
                matches!(refusal, Err(Refusal::Protected { .. })),
                "{refused}: {refusal:?}"
            );
        }
        assert!(egress.check(addr("127.0.0.1:8083")).is_ok());
        assert!(egress.check(addr("10.0.0.8:6379")).is_ok());
    }

    #[test]
    fn endpoints_are_read_from_urls() {
        assert_eq!(
            endpoint_of("http://127.0.0.1:8081/base"),
            Some(("127.0.0.1", 8081))
        );
        assert_eq!(
            endpoint_of("redis://:pw@redis:6380/0"),
            Some(("redis", 6380))
        );
        assert_eq!(endpoint_of("redis://redis"), Some(("redis", 6379)));
        assert_eq!(endpoint_of("http://[::1]:9/"), Some(("::1", 9)));
        assert_eq!(endpoint_of("config-svc:8082"), Some(("config-svc", 8082)));
        assert_eq!(endpoint_of("unix:///tmp/redis.sock"), None);
    }

    #[tokio::test]
    async fn resolve_refuses_names_when_off_and_checks_literals() {
        let egress = loopback_only();
        assert!(matches!(
            egress.resolve("anything.invalid", 80).await,
            Err(ResolveError::Refused(Refusal::Hostname(_)))
        ));
        assert_eq!(
            egress.resolve("127.0.0.1", 80).await.ok(),
            Some(vec![addr("127.0.0.1:80")])
        );
        assert!(egress.resolve("10.0.0.7", 80).await.is_err());
    }
}
