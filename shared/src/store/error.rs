//! What can go wrong talking to Redis, and how each failure reaches a
//! client: unavailable (→ 503), a rejected command or corrupt data (→ 500),
//! a write not confirmed by enough replicas (→ 503).

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::problem::Problem;

/// What went wrong talking to Redis (`Clone`, so one failed round trip
/// shared by several requests fails each of them).
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The primary applied a write, but fewer replicas than
    /// `REDIS_MIN_REPLICAS_ACK` confirmed it in time (`WAIT`): the write may
    /// or may not survive a failover, so it is not acknowledged.
    #[error("write not confirmed by {wanted} replica(s) in time (only {acks})")]
    NotReplicated {
        /// Replicas that confirmed it.
        acks: u32,
        /// Replicas asked for.
        wanted: u32,
    },
}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        if e.is_io_error()
            // A write that reached a primary demoted to replica by a failover:
            // the handle follows the new primary; retry shortly.
            || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
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
            StoreError::NotReplicated { acks, wanted } => {
                tracing::warn!(
                    acks,
                    wanted,
                    "write not confirmed by enough replicas in time"
                );
                Problem::unavailable(format!(
                    "the write reached the state store's primary but only {acks} of the {wanted} \
                     replica(s) required (REDIS_MIN_REPLICAS_ACK) confirmed it in time; it may or \
                     may not be kept: read it back or retry"
                ))
            }
        }
    }
}
