//! The resilience suite: the real services in-process on loopback, a real
//! redis-server, and faults injected under bounded load. One test binary,
//! so the scenarios run side by side.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_upstreams;
mod common;
mod data_loss;
mod ha;
mod redis_outage;
mod replica_loss;
mod rolling_restart;
