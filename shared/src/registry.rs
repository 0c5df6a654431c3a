//! The registry's Redis schema, in one place because three services use it:
//! registry-svc writes instances, health-svc writes check results into them,
//! and the gateway routes from them. The wire types ([`Instance`],
//! [`InstanceSpec`], [`InstanceList`], [`ServiceList`], [`RegistryEvent`],
//! …) are `mcp-api`'s ([`mcp_api::registry`]), re-exported here, so the
//! services' OpenAPI documents, the SDK and `mcpctl` share one definition
//! of each.
//!
//! # Keys (under `{prefix}:`)
//!
//! | key | type | content | written by |
//! |---|---|---|---|
//! | `reg:revision`, `reg:events` | string, stream | the registry's [`EventLog`](crate::events::EventLog) | registry-svc, health-svc |
//! | `reg:epoch` | string | the log's epoch (see [`crate::events`]): made by the first write into an empty Redis | registry-svc, health-svc |
//! | `reg:services` | set | names of services with at least one instance | registry-svc |
//! | `reg:svc:{service}` | hash | instance id → stored instance JSON (below) | registry-svc; health-svc rewrites the status prefix |
//! | `reg:leases` | sorted set | `{service}/{id}` → lease deadline (ms since epoch) | registry-svc |
//! | `health:svc:{service}` | hash | instance id → [`HealthRecord`] JSON | health-svc (registry-svc deletes it with the instance) |
//!
//! # Stored instance JSON
//!
//! An [`Instance`] serialized with `status` and `revision` as its first two
//! members and without `expires_at` (kept in `reg:leases`, so a heartbeat
//! rewrites no JSON and emits no event). Lua scripts never decode and
//! re-encode it (Redis's cjson turns `[]` into `{}`); they splice the prefix
//! instead: `{"status":"<status>","revision":<rev>,` + [`stored_tail`].
//!
//! # Events (stream `reg:events`, `scope` = service name)
//!
//! `data` is a JSON object `{"service","id","instance"?}`: `registered`,
//! `updated` and `health` carry the instance as stored after the change;
//! `deregistered` and `expired` carry none. See [`RegistryEvent`].

use serde::{Deserialize, Serialize};

pub use mcp_api::registry::*;

use crate::store::Redis;

pub mod writes;

/// Name of the registry's event log (`{prefix}:reg:…`).
pub const LOG_NAME: &str = "reg";

/// The stored JSON of `instance` minus its `{"status":…,"revision":…,`
/// prefix, for a script to prepend the real ones. Starts right after the
/// comma, ends with `}`.
pub fn stored_tail(instance: &Instance) -> Result<String, serde_json::Error> {
    let mut bare = instance.clone();
    bare.expires_at = None;
    bare.revision = 0;
    bare.status = HealthStatus::Unknown;
    let json = serde_json::to_string(&bare)?;
    const PREFIX: &str = r#"{"status":"unknown","revision":0,"#;
    Ok(json.strip_prefix(PREFIX).unwrap_or(&json).to_owned())
}

/// The last check result of an instance, kept by health-svc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// Status after hysteresis.
    pub status: HealthStatus,
    /// Last output: status code and body excerpt, or the error.
    pub output: String,
    /// When it was last checked, RFC 3339.
    pub last_checked_at: String,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Successes in a row.
    pub consecutive_successes: u32,
    /// Since when it has been critical (ms since epoch), for `deregister_critical_after_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_since_ms: Option<u64>,
}

/// The registry's key names, built once per service from the prefix.
#[derive(Debug, Clone)]
pub struct RegistryKeys {
    redis: Redis,
    /// `reg:services`.
    pub services: String,
    /// `reg:leases`.
    pub leases: String,
}

impl RegistryKeys {
    /// Keys under `redis`'s prefix.
    pub fn new(redis: Redis) -> Self {
        Self {
            services: redis.key(&[LOG_NAME, "services"]),
            leases: redis.key(&[LOG_NAME, "leases"]),
            redis,
        }
    }

    /// `reg:svc:{service}`: the instances hash of a service.
    pub fn instances(&self, service: &str) -> String {
        self.redis.key(&[LOG_NAME, "svc", service])
    }

    /// `health:svc:{service}`: the check results hash of a service.
    pub fn health(&self, service: &str) -> String {
        self.redis.key(&["health", "svc", service])
    }

    /// The member of `reg:leases` for one instance.
    pub fn lease_member(service: &str, id: &str) -> String {
        format!("{service}/{id}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn stored_tail_splices_back_into_an_instance() {
        let instance = Instance {
            status: HealthStatus::Passing,
            revision: 7,
            id: "echo-1".into(),
            service: "echo".into(),
            host: "127.0.0.1".into(),
            port: 9000,
            tags: vec![],
            metadata: BTreeMap::new(),
            ttl_seconds: 30,
            check: None,
            registered_at: "2026-01-01T00:00:00Z".into(),
            expires_at: Some("x".into()),
        };
        let tail = stored_tail(&instance).unwrap_or_default();
        let spliced = format!(r#"{{"status":"passing","revision":7,{tail}"#);
        let back: Instance = serde_json::from_str(&spliced).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.tags, Vec::<String>::new());
        assert_eq!(back.revision, 7);
        assert_eq!(back.expires_at, None);
        assert_eq!(back.status, HealthStatus::Passing);
    }
}
