//! The `health-svc` binary: settings → telemetry → `run`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let settings = health_svc::Settings::parse();
    let common = settings.common.clone();
    let addr = settings.addr;
    mcp_shared::server::start("health-svc", &common, addr, None, |listener, shutdown| {
        health_svc::run(settings, listener, shutdown)
    })
}
