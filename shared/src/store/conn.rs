//! One connection to Redis, whatever the topology: the shared self-healing
//! one, a dedicated one, a Cluster one, or none while Sentinel mode knows no
//! primary.

use std::{sync::Arc, time::Duration};

use redis::{
    RedisError,
    aio::{ConnectionManager, MultiplexedConnection},
    cluster_async::ClusterConnection,
};

use super::sentinel::Follower;

/// One connection to Redis, whatever the topology: what [`Redis::conn`] and
/// [`Redis::dedicated`] hand out, usable wherever the driver wants an async
/// connection (`query_async`, `invoke_async`).
#[derive(Clone)]
pub enum Conn {
    /// The shared self-healing connection of one server (or of the current primary).
    Manager(ConnectionManager),
    /// A connection of its own to one server.
    Multiplexed(MultiplexedConnection),
    /// A Redis Cluster connection (routes each command to its slot's node).
    Cluster(ClusterConnection),
    /// No primary known yet (Sentinel mode, right after start): each
    /// command waits up to the timeout for the first one, then fails as
    /// unavailable.
    Pending(PendingPrimary),
}

/// The Sentinel follower a [`Conn::Pending`] waits on, and for how long.
#[derive(Clone)]
pub struct PendingPrimary {
    follower: Arc<Follower>,
    within: Duration,
}

impl PendingPrimary {
    pub(super) fn new(follower: Arc<Follower>, within: Duration) -> Self {
        Self { follower, within }
    }
}

pub(super) fn no_primary() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "no Redis primary known yet (Sentinel)",
    ))
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Multiplexed(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Pending(pending) => Box::pin(async move {
                match pending.follower.primary(pending.within).await {
                    Some(primary) => primary.conn.clone().req_packed_command(cmd).await,
                    None => Err(no_primary()),
                }
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Pending(pending) => Box::pin(async move {
                match pending.follower.primary(pending.within).await {
                    Some(primary) => {
                        let mut conn = primary.conn.clone();
                        conn.req_packed_commands(pipeline, offset, count).await
                    }
                    None => Err(no_primary()),
                }
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Multiplexed(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Pending(..) => 0,
        }
    }
}
