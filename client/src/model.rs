//! Request and response bodies of the public API (README, "Using it").
//!
//! Every body is the type the services serialize and generate their OpenAPI
//! documents from: [`mcp_api::registry`], [`mcp_api::config`] and
//! [`mcp_api::health`], re-exported here, so the SDK, the services and
//! the documents cannot drift. What exists only in the SDK is defined here:
//! the listing filters ([`InstanceQuery`]), the write options
//! ([`PutOptions`]) and the check builders ([`http_check`], [`tcp_check`]).

use std::collections::BTreeMap;

pub use mcp_api::{
    config::{
        ClientList, ClientStatus, ConfigDeletion, ConfigEntry, ConfigHistory, ConfigList,
        ConfigRollback, ConfigWrite, DryRunEntry, NamespaceList, SchemaDryRun, SyncStatus,
        WatchScope,
    },
    health::{
        Explain, ExplainLastCheck, ExplainLease, ExplainThresholds, HealthSummary, InstanceHealth,
        ServiceHealth, ServiceHealthSummary,
    },
    registry::{
        Check, CheckType, HealthStatus, Instance, InstanceList, InstanceSpec, RegistryEvent,
        ServiceList, ServiceSummary,
    },
};

/// The answer to a heartbeat: the instance with its renewed `expires_at`.
#[deprecated(note = "a heartbeat answers with the `Instance`; use that type")]
pub type Lease = Instance;

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
