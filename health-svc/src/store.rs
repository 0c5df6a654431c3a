//! All of health-svc's Redis access: reading the registry's instances and
//! leases, the check results, slot claims, the live-replica set, and the
//! atomic scripts that write results and status changes.
//!
//! Key schema (under `{prefix}:`), on top of the registry's (see
//! [`mcp_shared::registry`]):
//!
//! | key | type | content |
//! |---|---|---|
//! | `health:svc:{service}` | hash | instance id → [`HealthRecord`] JSON |
//! | `health:claim:{service}/{id}` | string | the last check slot claimed (expires after 3 intervals) |
//! | `health:replicas` | sorted set | replica id → last heartbeat (ms, Redis clock) |
//!
//! health-svc writes into the registry's keys in two places, both through
//! the registry's one writer ([`RegistryWrites`], the scripts registry-svc
//! writes with too): a check result and status change (`record.lua`, event
//! `health`) and the removal of an instance critical past
//! `deregister_critical_after_seconds` (`deregister.lua`, event
//! `deregistered`).

use std::collections::HashMap;

pub use mcp_shared::registry::writes::Recorded;
use mcp_shared::{
    Redis, StoreError,
    events::EventLog,
    registry::{HealthRecord, HealthStatus, Instance, RegistryKeys, writes::RegistryWrites},
};
use redis::Script;

/// The keys one checked instance touches, built once per instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetKeys {
    /// `reg:svc:{service}`.
    pub instances: String,
    /// `health:svc:{service}`.
    pub health: String,
    /// `health:claim:{service}/{id}`.
    pub claim: String,
    /// `{service}/{id}` in `reg:leases`.
    pub lease_member: String,
}

/// One instance as the explain endpoint needs it.
#[derive(Debug, Clone)]
pub struct InstanceView {
    /// The instance as stored.
    pub instance: Instance,
    /// Lease deadline (ms since epoch), if it has a lease.
    pub lease_deadline_ms: Option<u64>,
    /// The last check result, if checked.
    pub record: Option<HealthRecord>,
}

/// health-svc's handle on Redis.
pub struct Store {
    redis: Redis,
    registry: RegistryKeys,
    replicas: String,
    writes: RegistryWrites,
    claim_script: Script,
    replicas_script: Script,
}

/// Only the status of a stored instance (the summary needs nothing else).
#[derive(serde::Deserialize)]
struct StatusOnly {
    status: HealthStatus,
}

impl Store {
    /// The store on `log`'s Redis (the registry's event log).
    pub fn new(log: EventLog) -> Self {
        let redis = log.redis().clone();
        Self {
            registry: RegistryKeys::new(redis.clone()),
            replicas: redis.key(&["health", "replicas"]),
            writes: RegistryWrites::new(redis.clone(), log),
            claim_script: Script::new(include_str!("lua/claim.lua")),
            replicas_script: Script::new(include_str!("lua/replicas.lua")),
            redis,
        }
    }

    /// The keys of one instance.
    pub fn target_keys(&self, service: &str, id: &str) -> TargetKeys {
        let lease_member = RegistryKeys::lease_member(service, id);
        TargetKeys {
            instances: self.registry.instances(service),
            health: self.registry.health(service),
            claim: self.redis.key(&["health", "claim", &lease_member]),
            lease_member,
        }
    }

    /// Every registered instance and the revision they are at, read
    /// together (see [`RegistryKeys::load`]).
    pub async fn load_all(&self) -> Result<(u64, Vec<Instance>), StoreError> {
        self.registry.load().await
    }

    /// Each service's instance statuses, for the summary.
    pub async fn all_statuses(&self) -> Result<Vec<(String, Vec<HealthStatus>)>, StoreError> {
        let services = self.services().await?;
        let hashes = self.instance_hashes(&services).await?;
        Ok(hashes
            .into_iter()
            .filter(|(_, hash)| !hash.is_empty())
            .map(|(service, hash)| {
                let statuses = hash
                    .values()
                    .filter_map(|json| serde_json::from_str::<StatusOnly>(json).ok())
                    .map(|s| s.status)
                    .collect();
                (service, statuses)
            })
            .collect())
    }

    /// The instances of one service and their check results (one round trip).
    pub async fn service(
        &self,
        service: &str,
    ) -> Result<(Vec<Instance>, HashMap<String, HealthRecord>), StoreError> {
        let mut conn = self.redis.conn();
        let mut pipe = redis::pipe();
        pipe.hgetall(self.registry.instances(service))
            .hgetall(self.registry.health(service));
        let (instances, records): (HashMap<String, String>, HashMap<String, String>) = self
            .redis
            .run(async move { pipe.query_async(&mut conn).await })
            .await?;
        let instances = instances
            .values()
            .filter_map(|json| parse_instance(json))
            .collect();
        let records = records
            .into_iter()
            .filter_map(|(id, json)| Some((id, serde_json::from_str(&json).ok()?)))
            .collect();
        Ok((instances, records))
    }

    /// One instance with its lease and check result (one round trip).
    pub async fn instance(
        &self,
        service: &str,
        id: &str,
    ) -> Result<Option<InstanceView>, StoreError> {
        let keys = self.target_keys(service, id);
        let mut conn = self.redis.conn();
        let mut pipe = redis::pipe();
        pipe.hget(&keys.instances, id)
            .zscore(&self.registry.leases, &keys.lease_member)
            .hget(&keys.health, id);
        let (instance, deadline, record): (Option<String>, Option<f64>, Option<String>) = self
            .redis
            .run(async move { pipe.query_async(&mut conn).await })
            .await?;
        let Some(instance) = instance else {
            return Ok(None);
        };
        let instance: Instance = serde_json::from_str(&instance)
            .map_err(|e| StoreError::Corrupt(format!("instance {service}/{id}: {e}")))?;
        Ok(Some(InstanceView {
            instance,
            // Scores are whole milliseconds; the cast only drops a fraction.
            lease_deadline_ms: deadline.map(|d| d.max(0.0) as u64),
            record: record.and_then(|json| serde_json::from_str(&json).ok()),
        }))
    }

    /// Claim check slot `slot` of an instance. `None`: another replica has
    /// it, or the instance is gone (nothing is written for it then).
    /// `Some(record)`: ours, with the instance's last check result.
    pub async fn claim(
        &self,
        keys: &TargetKeys,
        id: &str,
        slot: u64,
        expiry_ms: u64,
    ) -> Result<Option<Option<HealthRecord>>, StoreError> {
        let mut conn = self.redis.conn();
        let mut invocation = self.claim_script.key(&keys.claim);
        invocation
            .key(&keys.health)
            .key(&keys.instances)
            .arg(slot)
            .arg(expiry_ms)
            .arg(id);
        let reply: Option<String> = self
            .redis
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(reply.map(|json| serde_json::from_str(&json).ok()))
    }

    /// Store a check result; with `publish`, make it the instance's status
    /// (and emit a `health` event) when it differs from the stored one.
    pub async fn record(
        &self,
        service: &str,
        id: &str,
        record: &HealthRecord,
        publish: Option<HealthStatus>,
    ) -> Result<Recorded, StoreError> {
        let json = serde_json::to_string(record)
            .map_err(|e| StoreError::Corrupt(format!("health record: {e}")))?;
        self.writes.record(service, id, &json, publish).await
    }

    /// Remove an instance that is still critical (see `deregister.lua` of
    /// the registry's writes). True when this call removed it.
    pub async fn deregister_critical(&self, service: &str, id: &str) -> Result<bool, StoreError> {
        let removed = self
            .writes
            .deregister(service, id, Some(HealthStatus::Critical))
            .await?;
        Ok(removed.is_some())
    }

    /// Renew this replica's heartbeat and list the live replicas.
    pub async fn heartbeat(
        &self,
        replica: &str,
        live_ms: u64,
        forget_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.redis.conn();
        let mut invocation = self.replicas_script.key(&self.replicas);
        invocation.arg(replica).arg(live_ms).arg(forget_ms);
        self.redis
            .run(async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// Leave the live set (graceful shutdown), so others take over at once.
    pub async fn leave(&self, replica: &str) -> Result<(), StoreError> {
        let mut conn = self.redis.conn();
        let key = &self.replicas;
        self.redis
            .run(async move {
                redis::cmd("ZREM")
                    .arg(key)
                    .arg(replica)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await
            .map(|_| ())
    }

    async fn services(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.redis.conn();
        let key = &self.registry.services;
        let mut services: Vec<String> = self
            .redis
            .run(async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut conn).await })
            .await?;
        services.sort_unstable();
        Ok(services)
    }

    /// HGETALL of every service's instances hash, pipelined in one round trip.
    async fn instance_hashes(
        &self,
        services: &[String],
    ) -> Result<Vec<(String, HashMap<String, String>)>, StoreError> {
        if services.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.redis.conn();
        let mut pipe = redis::pipe();
        for service in services {
            pipe.hgetall(self.registry.instances(service));
        }
        let hashes: Vec<HashMap<String, String>> = self
            .redis
            .run(async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok(services.iter().cloned().zip(hashes).collect())
    }
}

/// Parse a stored instance; a broken one is logged and skipped rather than
/// taking the whole listing down.
fn parse_instance(json: &str) -> Option<Instance> {
    match serde_json::from_str(json) {
        Ok(instance) => Some(instance),
        Err(error) => {
            tracing::warn!(%error, "skipping an unreadable stored instance");
            None
        }
    }
}
