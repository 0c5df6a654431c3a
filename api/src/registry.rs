//! The bodies of registry-svc's API: a registered [`Instance`], its health
//! ([`HealthStatus`]) and active [`Check`], the registration body
//! ([`InstanceSpec`]), the listings ([`InstanceList`], [`ServiceList`]) and
//! the data of the registry's events ([`RegistryEvent`], [`kinds`]).
//!
//! Three services read or write instances (registry-svc, health-svc, the
//! gateway), and the SDK and `mcpctl` send and read them; all of them use
//! these types. How the registry keeps them in Redis (keys, the stored JSON
//! and its splicing) is `mcp-shared`'s (`mcp_shared::registry`).
//!
//! # Events (`scope` = service name)
//!
//! `data` is a JSON object `{"service","id","instance"?}`: `registered`,
//! `updated` and `health` carry the instance as stored after the change;
//! `deregistered` and `expired` carry none. See [`RegistryEvent`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod bodies;
pub mod limits;

pub use bodies::{InstanceList, InstanceSpec, ServiceList, ServiceSummary};

/// Event kinds on the registry's stream.
pub mod kinds {
    /// A new instance.
    pub const REGISTERED: &str = "registered";
    /// An instance registered again with a new definition.
    pub const UPDATED: &str = "updated";
    /// Removed by a DELETE.
    pub const DEREGISTERED: &str = "deregistered";
    /// Removed because its lease ran out.
    pub const EXPIRED: &str = "expired";
    /// Its health status changed.
    pub const HEALTH: &str = "health";
}

/// Health of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Not checked yet.
    #[default]
    Unknown,
    /// Healthy: returned by `healthy=true`, routed to.
    Passing,
    /// Degraded (an HTTP check got 429).
    Warning,
    /// Failing.
    Critical,
}

impl HealthStatus {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Passing => "passing",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// The kind of active check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    /// `GET http://host:port{path}`; 2xx passes.
    Http,
    /// A TCP connect to host:port.
    Tcp,
}

/// An active health check definition, registered with the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// `http` or `tcp`.
    #[serde(rename = "type")]
    pub kind: CheckType,
    /// HTTP path (absolute, no scheme or host); `http` checks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Seconds between checks.
    #[serde(default = "default_interval")]
    pub interval_seconds: u32,
    /// Timeout of one check.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// Remove the instance once it has been critical this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregister_critical_after_seconds: Option<u32>,
}

fn default_interval() -> u32 {
    limits::DEFAULT_CHECK_INTERVAL_SECONDS
}

fn default_timeout_ms() -> u32 {
    limits::DEFAULT_CHECK_TIMEOUT_MS
}

/// A registered instance, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    /// Health (must stay the first member: scripts rewrite it in place).
    pub status: HealthStatus,
    /// Revision of the instance's last change (must stay the second member).
    pub revision: u64,
    /// Instance id, unique within the service.
    pub id: String,
    /// Service name.
    pub service: String,
    /// Address to reach it at.
    pub host: String,
    /// Port to reach it at.
    pub port: u16,
    /// Free-form tags (`v2`, `canary`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form string metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Lease length; a heartbeat renews it.
    pub ttl_seconds: u32,
    /// Active check, if any; without one the lease alone decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    /// When it was (last) registered, RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub registered_at: String,
    /// When the lease runs out, RFC 3339 (not stored in the JSON; see module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub expires_at: Option<String>,
}

/// An event's `data` on the registry's stream and watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistryEvent {
    /// Service name.
    pub service: String,
    /// Instance id.
    pub id: String,
    /// The instance after the change (absent on `deregistered`/`expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<Instance>,
}
