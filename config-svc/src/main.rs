//! The `config-svc` binary: settings → telemetry → `run`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let settings = config_svc::Settings::parse();
    let common = settings.common.clone();
    let addr = settings.addr;
    mcp_shared::server::start("config-svc", &common, addr, None, |listener, shutdown| {
        config_svc::run(settings, listener, shutdown)
    })
}
