//! The `echo` binary: settings → logs → `run` until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = echo::Settings::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .compact()
        .init();
    let listener = match tokio::net::TcpListener::bind(settings.addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("echo: cannot listen on {}: {e}", settings.addr);
            return ExitCode::from(1);
        }
    };
    let shutdown = CancellationToken::new();
    // Ctrl-C or SIGTERM: stop serving, deregister, exit.
    mcp_shared::server::cancel_on_signals(shutdown.clone());
    match echo::run(settings, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::from(1)
        }
    }
}
