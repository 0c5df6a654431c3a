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
    // With serving workers (see `HTTP_WORKERS`) this runtime only accepts
    // and runs the background tasks: one thread is plenty.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if settings.workers() > 0 {
        runtime.worker_threads(1);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("gateway: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let common = settings.common.clone();
    let addr = settings.addr;
    runtime.block_on(mcp_shared::server::main(
        "gateway",
        &common,
        addr,
        |listener, shutdown| gateway::run(settings, listener, shutdown),
    ))
}
