//! mcpctl's integration tests, in one test binary: the real `mcpctl` binary,
//! the SDK and the whole stack end to end, each against a stack as
//! `mcpctl up` starts it.
//!
//! Test code: panicking on a broken environment is the right failure here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod cli_policy;
mod common;
mod e2e;
mod sdk;
mod up;
