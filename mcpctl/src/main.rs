//! The `mcpctl` binary: parse, run one command, exit 1 with one line on failure.

use std::process::ExitCode;

use clap::Parser as _;
use mcpctl::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Up(args) => {
            let _telemetry = match telemetry(&args.log_filter) {
                Ok(guard) => guard,
                Err(e) => {
                    eprintln!("mcpctl: error: {e}");
                    return ExitCode::from(1);
                }
            };
            mcpctl::up::run(args).await
        }
        _ => {
            let mut stdout = std::io::stdout().lock();
            mcpctl::cli::execute(&cli, &mut stdout).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcpctl: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Human-readable logs of the in-process services, filtered by `filter`.
fn telemetry(filter: &str) -> anyhow::Result<mcp_shared::telemetry::TelemetryGuard> {
    #[derive(clap::Parser)]
    struct Common {
        #[command(flatten)]
        common: mcp_shared::CommonSettings,
    }
    let parsed =
        Common::try_parse_from(["mcpctl", "--log-format", "pretty", "--log-filter", filter])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    mcp_shared::telemetry::init(&parsed.common, "mcpctl").map_err(|e| anyhow::anyhow!("{e}"))
}
