//! The `config-svc` binary: settings → telemetry → `run`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = config_svc::Settings::parse();
    let common = settings.common.clone();
    let addr = settings.addr;
    mcp_shared::server::main("config-svc", &common, addr, |listener, shutdown| {
        config_svc::run(settings, listener, shutdown)
    })
    .await
}
