//! The gateway's integration tests, in one test binary: one module per
//! behaviour, each against a real gateway (in-process, or its binary) on
//! 127.0.0.1:0, real upstreams and a real redis-server. The tests that run
//! the control plane behind the gateway are in `mcp-e2e` (`e2e/`).
//!
//! Test code: panicking on a broken environment is the right failure here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod auth_scopes;
mod common;
mod egress;
mod grpc;
mod openapi;
mod proxy;
mod ratelimit;
mod shutdown;
mod tls;
mod upstream_tls;
mod websocket;
