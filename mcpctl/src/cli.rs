//! The command line: clap definitions and one function per command.
//!
//! Every command talks to the gateway through [`mcp_client::Client`] (the
//! SDK is the CLI's only way in, so both see the same API), prints an
//! aligned table or, with `--json`, the API's JSON to stdout, and fails with
//! one clear line (see [`explain`]) and exit code 1.
//!
//! The commands by area: [`registry`] (services, instances, registration),
//! [`config`] (keys, history, watch, schemas), [`health`] and [`token`];
//! `policy` and `up` have modules of their own ([`crate::policy`],
//! [`crate::up`]).

mod config;
mod health;
mod registry;
mod token;

use std::io::Write;

use anyhow::{anyhow, bail};
use clap::{Parser, Subcommand};
use mcp_client::{Client, Error as ApiError};
use serde::Serialize;

pub use config::{ConfigCommand, SchemaCommand, parse_value};
pub(crate) use config::{history, rollback};
pub use registry::{InstancesArgs, RegisterArgs};
pub use token::TokenArgs;

/// mcpctl: the command line of MCP (Microservice Control Plane).
#[derive(Debug, Parser)]
#[command(name = "mcpctl", version, about, propagate_version = true)]
pub struct Cli {
    /// The MCP gateway.
    #[arg(
        long,
        global = true,
        env = "MCP_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub gateway: String,

    /// Bearer token for the gateway (`mcpctl up` prints one; `mcpctl token` mints one).
    #[arg(long, global = true, env = "MCP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List services with their instance counts.
    Services,
    /// List the instances of a service.
    Instances(InstancesArgs),
    /// Register an instance (once, or kept alive with --keep-alive).
    Register(RegisterArgs),
    /// Deregister an instance.
    Deregister {
        /// Service name.
        service: String,
        /// Instance id.
        id: String,
    },
    /// Read and write configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Gateway policies and routes (config namespace `gateway`), one at a
    /// time or declaratively from a JSON file (`apply -f`).
    #[command(subcommand)]
    Policy(crate::policy::PolicyCommand),
    /// Health of every service, or of one service's instances.
    Health {
        /// Show this service's instances.
        service: Option<String>,
    },
    /// Mint an HS256 development token signed with the gateway's JWT secret
    /// (or, with `--internal`, an internal credential for calling a service directly).
    Token(TokenArgs),
    /// Run the whole stack locally: Redis, registry, config, health, gateway.
    Up(crate::up::UpArgs),
}

/// Run one API command, writing its output to `out`. (`up` and `token` are
/// handled by the binary: they do not talk to a gateway.)
pub async fn execute(cli: &Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = Client::new(&cli.gateway, cli.token.clone())?;
    let run = async {
        match &cli.command {
            Command::Services => registry::services(&client, cli.json, out).await,
            Command::Instances(args) => registry::instances(&client, args, cli.json, out).await,
            Command::Register(args) => registry::register(&client, args, cli.json, out).await,
            Command::Deregister { service, id } => {
                client.deregister(service, id).await?;
                writeln!(out, "deregistered {service}/{id}")?;
                Ok(())
            }
            Command::Config(command) => config::config(&client, command, cli.json, out).await,
            Command::Policy(command) => crate::policy::run(&client, command, cli.json, out).await,
            Command::Health { service } => {
                health::health(&client, service.as_deref(), cli.json, out).await
            }
            Command::Token(args) => token::token(args, out),
            Command::Up(_) => bail!("`up` runs the stack; call it through the binary"),
        }
    };
    run.await.map_err(|e| explain(e, &cli.gateway))
}

/// Turn an SDK error into the one line a person needs.
pub fn explain(error: anyhow::Error, gateway: &str) -> anyhow::Error {
    let Some(api) = error.downcast_ref::<ApiError>() else {
        return error;
    };
    match api {
        ApiError::Transport { reason, .. } => anyhow!(
            "cannot reach the gateway at {gateway} ({}); is `mcpctl up` running, and is --gateway / MCP_GATEWAY_URL right?",
            short_reason(reason)
        ),
        ApiError::Api { problem, .. } if problem.status == 401 => anyhow!(
            "the gateway rejected the token ({problem}); set --token / MCP_TOKEN to the token `mcpctl up` printed, or mint one with `mcpctl token`"
        ),
        ApiError::Api { problem, .. } if problem.status == 403 => {
            anyhow!("the token lacks the scope for this ({problem})")
        }
        _ => error,
    }
}

/// The innermost useful part of a transport error chain (`Connection refused`).
fn short_reason(reason: &str) -> &str {
    reason
        .rsplit(": ")
        .find(|part| !part.trim().is_empty())
        .unwrap_or(reason)
}

pub(crate) fn print_json<T: Serialize + ?Sized>(
    out: &mut dyn Write,
    value: &T,
) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn transport_errors_shrink_to_their_cause() {
        assert_eq!(
            short_reason(
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)"
            ),
            "Connection refused (os error 111)"
        );
    }
}
