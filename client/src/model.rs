//! Request and response bodies of the public API (DESIGN.md, "Public API").
//!
//! The registry's wire types (`Instance`, `Check`, `HealthStatus`,
//! `RegistryEvent`) come from `mcp_shared::registry`, the same definitions
//! the services serialize, so SDK and services cannot drift. The rest exist
//! only on the wire and are defined here.

use std::collections::BTreeMap;

use mcp_shared::registry::{Check, CheckType, HealthStatus, Instance};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of `PUT /v1/services/{service}/instances/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// Address others reach the instance at.
    pub host: String,
    /// Port others reach the instance at.
    pub port: u16,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Free-form string metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Lease length (server default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
    /// Active health check (the lease alone decides without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
}

impl InstanceSpec {
    /// An instance at `host:port` with no tags, metadata, TTL or check.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            ttl_seconds: None,
            check: None,
        }
    }
}

/// An HTTP check of `GET {path}` every `interval_seconds`, its timeout
/// (1 s at most) below the interval as the registry requires.
pub fn http_check(path: &str, interval_seconds: u32) -> Check {
    Check {
        kind: CheckType::Http,
        path: Some(path.to_owned()),
        interval_seconds: interval_seconds.max(1),
        timeout_ms: check_timeout_ms(interval_seconds),
        deregister_critical_after_seconds: None,
    }
}

/// A TCP connect check every `interval_seconds`.
pub fn tcp_check(interval_seconds: u32) -> Check {
    Check {
        kind: CheckType::Tcp,
        path: None,
        interval_seconds: interval_seconds.max(1),
        timeout_ms: check_timeout_ms(interval_seconds),
        deregister_critical_after_seconds: None,
    }
}

/// Half the interval, capped at one second.
fn check_timeout_ms(interval_seconds: u32) -> u32 {
    (interval_seconds.max(1).saturating_mul(1000) / 2).min(1000)
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Lease {
    /// When the renewed lease runs out, RFC 3339.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// One service in `GET /v1/services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSummary {
    /// Service name.
    pub name: String,
    /// Registered instances.
    pub instances: u64,
    /// Instances currently passing.
    pub passing: u64,
}

/// `GET /v1/services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceList {
    /// The registry's revision this answer reflects.
    pub revision: u64,
    /// Services with at least one instance.
    pub services: Vec<ServiceSummary>,
}

/// `GET /v1/services/{service}/instances`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceList {
    /// Service name.
    pub service: String,
    /// The registry's revision this answer reflects.
    pub revision: u64,
    /// The instances matching the filters.
    pub instances: Vec<Instance>,
}

/// Filters and blocking-query parameters of an instance listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceQuery {
    /// Only `passing` instances.
    pub healthy: bool,
    /// Only instances carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only instances whose metadata has these values.
    pub metadata: BTreeMap<String, String>,
    /// Blocking query: answer once the revision passes this.
    pub index: Option<u64>,
    /// Blocking query: answer at the latest after this long (max 5 min).
    pub wait: Option<std::time::Duration>,
}

/// A configuration entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
    /// The value (any JSON).
    pub value: Value,
    /// Writes of this key so far (1, 2, …).
    pub version: u64,
    /// The global revision of this write.
    pub revision: u64,
    /// When it was written, RFC 3339.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// The JWT subject that wrote it.
    #[serde(default)]
    pub updated_by: Option<String>,
    /// The writer's message.
    #[serde(default)]
    pub message: Option<String>,
}

/// `GET /v1/namespaces/{ns}/keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigList {
    /// Namespace.
    pub namespace: String,
    /// The config store's revision this answer reflects.
    #[serde(default)]
    pub revision: u64,
    /// The entries.
    pub entries: Vec<ConfigEntry>,
}

/// `GET /v1/namespaces/{ns}/keys/{key}/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigHistory {
    /// Versions, newest first.
    pub versions: Vec<ConfigEntry>,
}

/// Options of a config write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Why (kept in history).
    pub message: Option<String>,
    /// Compare-and-swap: write only if the current version is this.
    pub if_match: Option<u64>,
    /// Create only: fail with 412 if the key exists.
    pub create_only: bool,
}

/// One instance in a service's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceHealth {
    /// Instance id.
    pub id: String,
    /// Status after hysteresis.
    pub status: HealthStatus,
    /// Last check output (`None` before the first check).
    #[serde(default)]
    pub output: Option<String>,
    /// When it was last checked.
    #[serde(default)]
    pub last_checked_at: Option<String>,
    /// Failures in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
}

/// `GET /v1/services/{service}` on health-svc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceHealth {
    /// Service name.
    pub service: String,
    /// Aggregated status.
    pub status: HealthStatus,
    /// Per-instance results.
    pub instances: Vec<InstanceHealth>,
}

/// One service in the health summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceHealthSummary {
    /// Service name.
    pub name: String,
    /// Aggregated status.
    pub status: HealthStatus,
    /// Passing instances.
    #[serde(default)]
    pub passing: u64,
    /// Warning instances.
    #[serde(default)]
    pub warning: u64,
    /// Critical instances.
    #[serde(default)]
    pub critical: u64,
}

/// `GET /v1/summary` on health-svc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSummary {
    /// Overall status.
    pub status: HealthStatus,
    /// Per service.
    pub services: Vec<ServiceHealthSummary>,
}

/// `GET /v1/namespaces`: a bare array or `{"namespaces": [...]}`; both are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum NamespaceList {
    Bare(Vec<String>),
    Wrapped { namespaces: Vec<String> },
}

impl NamespaceList {
    pub(crate) fn into_names(self) -> Vec<String> {
        match self {
            Self::Bare(names) | Self::Wrapped { namespaces: names } => names,
        }
    }
}
