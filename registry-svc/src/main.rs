//! The `registry-svc` binary: settings → telemetry → `run`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let settings = registry_svc::Settings::parse();
    let common = settings.common.clone();
    let addr = settings.addr;
    mcp_shared::server::start("registry-svc", &common, addr, None, |listener, shutdown| {
        registry_svc::run(settings, listener, shutdown)
    })
}
