//! All of the gateway's Redis access: reading the registry (for the
//! routing table), the policies (namespace `gateway` of config-svc) and the
//! rate limit script. Nothing else in the
//! gateway touches Redis.

use std::{collections::HashMap, sync::Arc};

use mcp_shared::{
    Redis, StoreError, config,
    events::EventLog,
    policy,
    registry::{self, Instance, RegistryKeys},
};
use redis::Script;

/// The GCRA script (see the file for KEYS/ARGV).
const GCRA: &str = include_str!("lua/gcra.lua");

/// The registry's state at one revision.
#[derive(Debug)]
pub struct Snapshot {
    /// The revision the state is at (or after).
    pub revision: u64,
    /// Every registered instance.
    pub instances: Vec<Instance>,
}

/// One rate-limit decision from Redis.
#[derive(Debug, Clone, Copy)]
pub struct RateDecision {
    /// Whether the request may pass.
    pub allowed: bool,
    /// Requests left in the burst.
    pub remaining: u64,
    /// µs until a request would pass (0 when allowed).
    pub retry_after_us: u64,
    /// µs until the burst is whole again.
    pub reset_us: u64,
}

/// The gateway's Redis handle.
#[derive(Clone, Debug)]
pub struct Store {
    redis: Redis,
    keys: RegistryKeys,
    log: EventLog,
    gcra: Arc<Script>,
}

impl Store {
    /// Over `redis`.
    pub fn new(redis: Redis) -> Self {
        Self {
            keys: RegistryKeys::new(redis.clone()),
            // The cap only matters to writers; the gateway reads.
            log: EventLog::new(redis.clone(), registry::LOG_NAME, 1),
            gcra: Arc::new(Script::new(GCRA)),
            redis,
        }
    }

    /// Read the revision, then every instance (`SMEMBERS` + one pipelined
    /// `HGETALL` per service). The state read is at least as new as the
    /// revision: the caller replays events after it, which is idempotent.
    pub async fn load_registry(&self) -> Result<Snapshot, StoreError> {
        let revision = self.log.current_revision().await?;
        let mut conn = self.redis.conn();
        let services_key = &self.keys.services;
        let services: Vec<String> = self
            .redis
            .run(async {
                redis::cmd("SMEMBERS")
                    .arg(services_key)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let mut pipe = redis::pipe();
        for service in &services {
            pipe.cmd("HGETALL").arg(self.keys.instances(service));
        }
        let hashes: Vec<HashMap<String, String>> = if services.is_empty() {
            Vec::new()
        } else {
            self.redis.run(pipe.query_async(&mut conn)).await?
        };
        let mut instances = Vec::new();
        for (service, hash) in services.iter().zip(hashes) {
            for (id, json) in hash {
                match serde_json::from_str::<Instance>(&json) {
                    Ok(instance) => instances.push(instance),
                    Err(error) => {
                        tracing::warn!(%error, %service, %id, "unreadable instance in redis; skipped");
                    }
                }
            }
        }
        Ok(Snapshot {
            revision,
            instances,
        })
    }

    /// config-svc's revision and every entry (JSON) of the namespace
    /// `gateway`, read atomically (one round trip; key layout: config-svc's
    /// `store` module, names in `mcp_shared::config`).
    pub async fn load_policies(&self) -> Result<(u64, Vec<String>), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .get(self.redis.key(&[config::LOG_NAME, config::REVISION_KEY]))
            .hvals(
                self.redis
                    .key(&[config::LOG_NAME, config::ENTRIES_KEY, policy::NAMESPACE]),
            );
        let mut conn = self.redis.conn();
        let (revision, entries): (Option<u64>, Vec<String>) = self
            .redis
            .run(async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok((revision.unwrap_or(0), entries))
    }

    /// Take one request from `client`'s GCRA bucket (`interval_us` between
    /// requests at the sustained rate, `burst` at once), atomically in Redis.
    pub async fn rate_limit(
        &self,
        client: &str,
        interval_us: u64,
        burst: u32,
    ) -> Result<RateDecision, StoreError> {
        let key = self.redis.key(&["gw", "rl", client]);
        let mut conn = self.redis.conn();
        let mut invocation = self.gcra.key(key);
        invocation.arg(interval_us).arg(burst);
        let (allowed, remaining, retry_after_us, reset_us): (i64, i64, i64, i64) =
            self.redis.run(invocation.invoke_async(&mut conn)).await?;
        Ok(RateDecision {
            allowed: allowed == 1,
            remaining: remaining.max(0) as u64,
            retry_after_us: retry_after_us.max(0) as u64,
            reset_us: reset_us.max(0) as u64,
        })
    }
}
