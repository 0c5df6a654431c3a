//! mcp-shared's integration tests, in one test binary: the server scaffold,
//! the event feed across a Redis data loss, and telemetry in-process.
//!
//! Test code: panicking on a broken environment is the right failure here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod events;
mod scaffold;
mod telemetry;
