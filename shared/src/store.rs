//! The Redis handle every service uses: one self-healing multiplexed
//! connection, every command bounded in time, every key under one prefix.
//!
//! `ConnectionManager` reconnects by itself after an I/O error, so a service
//! heals when Redis comes back without a restart. Each call is wrapped in a
//! timeout (`REDIS_TIMEOUT`, 1 s by default) so a dead or stalled Redis turns
//! into a fast [`StoreError::Unavailable`] (→ 503), never a hung request.

use std::{future::Future, sync::Arc, time::Duration};

use redis::{
    AsyncConnectionConfig, Client, RedisError, RedisResult,
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
};

use crate::problem::Problem;

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis cannot be reached or did not answer in time.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error (a script bug, a wrong type).
    #[error("redis error: {0}")]
    Redis(RedisError),
    /// Data in Redis could not be decoded.
    #[error("corrupt data in redis: {0}")]
    Corrupt(String),
}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
        {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Redis(e)
        }
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                Problem::unavailable("the state store (Redis) is unavailable; retry shortly")
            }
            StoreError::Redis(e) => {
                tracing::error!(error = %e, "redis command failed");
                Problem::internal("the state store rejected a command")
            }
            StoreError::Corrupt(e) => {
                tracing::error!(error = %e, "corrupt data in redis");
                Problem::internal("the state store holds data this version cannot read")
            }
        }
    }
}

/// A cheap-to-clone handle on Redis with a key prefix.
#[derive(Clone)]
pub struct Redis {
    client: Client,
    manager: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Redis {
    /// A lazy handle: nothing connects until the first command, so a service
    /// starts (and answers `/readyz` 503) while Redis is still down.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(StoreError::Redis)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Few quick retries: the next command triggers a new reconnect anyway,
            // so a short schedule makes the service heal fast when Redis returns.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(250));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(StoreError::Redis)?;
        Ok(Self {
            client,
            manager,
            prefix: Arc::from(prefix),
            timeout,
        })
    }

    /// The key prefix (`MCP_REDIS_PREFIX`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:{a}:{b}…`: the one way keys are built.
    pub fn key(&self, parts: &[&str]) -> String {
        let len = self.prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>();
        let mut key = String::with_capacity(len);
        key.push_str(&self.prefix);
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// The shared multiplexed connection (cheap clone). Use it through [`Redis::run`].
    pub fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// Run one Redis operation bounded by the command timeout.
    pub async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: Future<Output = RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// `PING`, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        self.run(async move { redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await
            .map(|_| ())
    }

    /// A connection of its own, for blocking commands (`XREAD BLOCK`) that
    /// would stall every other caller of the shared multiplexed connection.
    /// Its response timeout is `block + timeout`, so the block itself is allowed.
    pub async fn dedicated(&self, block: Duration) -> Result<MultiplexedConnection, StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(block + self.timeout));
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        self.run(connect).await
    }

    /// The command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
