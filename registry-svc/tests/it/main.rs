//! registry-svc's integration tests, in one test binary: one module per
//! behaviour, each against real registry-svc replicas and a real redis-server.
//!
//! Test code: panicking on a broken environment is the right failure here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod blocking;
mod common;
mod discovery;
mod leases;
mod lifecycle;
mod openapi;
mod outage;
mod protection;
mod shutdown;
mod validation;
mod watch;
