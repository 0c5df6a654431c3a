//! The `gateway` binary: settings → telemetry → `run`.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: a proxied request makes dozens of
/// short-lived allocations across hyper, axum and the policies, and glibc's
/// malloc, free and consolidation were about 12% of the gateway's CPU under
/// load (`perf`). The price is idle memory: mimalloc commits its first arena
/// eagerly, about 13 MiB more RSS (bench/RESULTS.md). The control-plane
/// services keep the system allocator: they are not on the per-request path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let settings = gateway::Settings::parse();
    let threads = settings.runtime_threads();
    let common = settings.common.clone();
    let addr = settings.addr;
    mcp_shared::server::start("gateway", &common, addr, threads, |listener, shutdown| {
        gateway::run(settings, listener, shutdown)
    })
}
