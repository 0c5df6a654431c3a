//! The Redis handle every service uses: one self-healing multiplexed
//! connection, every command bounded in time, every key under one prefix.
//!
//! `ConnectionManager` reconnects by itself after an I/O error, so a service
//! heals when Redis comes back without a restart. Each call is wrapped in a
//! timeout (`REDIS_TIMEOUT`, 750 ms by default) so a dead or stalled Redis turns
//! into a fast [`StoreError::Unavailable`] (→ 503), never a hung request.
//!
//! While traces are exported, each command run inside a request gets a
//! client span (`db.system.name=redis`, `server.address`/`server.port`) as a
//! child of the request's span; otherwise [`Redis::run`] makes no span at all.

use std::{future::Future, sync::Arc, time::Duration};

use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, RedisError, RedisResult,
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
};
use tracing::Instrument as _;

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
    /// `server.address` and `server.port` of the command spans.
    server: Arc<(String, Option<u16>)>,
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
        // Every service builds its Redis handle first: installing the metrics
        // recorder here means metrics registered at start-up are never lost.
        crate::metrics::handle();
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
        let server = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), Some(*port))
            }
            ConnectionAddr::Unix(path) => (path.display().to_string(), None),
            // A future address kind: name the scheme-less URL's host as best we can.
            _ => (String::from("redis"), None),
        };
        Ok(Self {
            client,
            manager,
            prefix: Arc::from(prefix),
            timeout,
            server: Arc::new(server),
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
        self.run_op("", op).await
    }

    /// [`Redis::run`] for a named `operation` (`"GET"`, `"EVALSHA"`, …): the
    /// command's span is named after it (`db.operation.name`).
    pub async fn run_op<T, F>(&self, operation: &'static str, op: F) -> Result<T, StoreError>
    where
        F: Future<Output = RedisResult<T>>,
    {
        let span = self.command_span(operation);
        let result = match tokio::time::timeout(self.timeout, op.instrument(span.clone())).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        };
        if let Err(error) = &result {
            span.record("otel.status_code", "error");
            span.record(
                "error.type",
                match error {
                    StoreError::Unavailable(_) => "unavailable",
                    StoreError::Redis(_) => "redis_error",
                    StoreError::Corrupt(_) => "corrupt",
                },
            );
        }
        result
    }

    /// The client span of one command, or none: only while traces are
    /// exported, and only inside a span (a request), so background loops
    /// (reapers, tails) do not each start a trace of their own.
    fn command_span(&self, operation: &'static str) -> tracing::Span {
        if !crate::telemetry::exporting() || tracing::Span::current().is_none() {
            return tracing::Span::none();
        }
        let (address, port) = &*self.server;
        let name = if operation.is_empty() {
            "redis"
        } else {
            operation
        };
        tracing::info_span!(
            "redis",
            otel.name = name,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system.name = "redis",
            db.operation.name = (!operation.is_empty()).then_some(operation),
            server.address = address.as_str(),
            server.port = *port,
            error.type = tracing::field::Empty,
        )
    }

    /// `PING`, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        self.run_op("PING", async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
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
        self.run_op("CONNECT", connect).await
    }

    /// The command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
