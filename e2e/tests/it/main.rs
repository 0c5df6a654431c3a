//! The whole stack through the gateway, in one test binary: one module per
//! behaviour, each with the control plane (registry-svc, config-svc,
//! health-svc) behind a real gateway on 127.0.0.1:0, in-process or as child
//! processes (`processes`), and a real redis-server. The gateway's tests of
//! its own behaviour are in `gateway/tests/it/`.
//!
//! Test code: panicking on a broken environment is the right failure here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod affinity;
mod browser;
mod common;
mod console;
mod control_plane;
mod interop;
mod metrics;
mod observability;
mod policy;
mod processes;
mod trust;
