//! All of the gateway's Redis access: reading the registry (for the
//! routing table), the policies (namespace `gateway` of config-svc) and the
//! rate limit script. Nothing else in the
//! gateway touches Redis.

use std::sync::Arc;

use mcp_shared::{
    Redis, StoreError, config, policy,
    registry::{Instance, RegistryKeys},
};
use redis::Script;

/// The GCRA script (see the file for KEYS/ARGV).
const GCRA: &str = include_str!("lua/gcra.lua");

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
    gcra: Arc<Script>,
}

impl Store {
    /// Over `redis`.
    pub fn new(redis: Redis) -> Self {
        Self {
            keys: RegistryKeys::new(redis.clone()),
            gcra: Arc::new(Script::new(GCRA)),
            redis,
        }
    }

    /// Every registered instance and the revision they are at, read
    /// together (see [`RegistryKeys::load`]).
    pub async fn load_registry(&self) -> Result<(u64, Vec<Instance>), StoreError> {
        self.keys.load().await
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
