//! config-svc's integration tests, in one test binary: one module per
//! behaviour, each against a real config-svc and a real redis-server.
//!
//! Test code: panicking on a broken environment is the right failure here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod blocking;
mod cas;
mod common;
mod entries;
mod openapi;
mod outage;
mod schema;
mod watch;
