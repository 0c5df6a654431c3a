//! health-svc's integration tests, in one test binary: one module per
//! behaviour, each against real health-svc replicas, a fake upstream and a
//! real redis-server.
//!
//! Test code: panicking on a broken environment is the right failure here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod checks;
mod common;
mod openapi;
mod replicas;
