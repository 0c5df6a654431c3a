//! `mcpctl token`: a development token signed with the gateway's JWT
//! secret, or an internal credential for calling a service directly.

use std::{io::Write, time::Duration};

use anyhow::anyhow;
use clap::Args;
use mcp_client::token::dev_token;

/// `mcpctl token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The gateway's HS256 secret (not needed with `--internal`).
    #[arg(
        long,
        env = "JWT_SECRET",
        hide_env_values = true,
        required_unless_present = "internal"
    )]
    pub secret: Option<String>,
    /// Mint an internal credential instead: the token the gateway sends the
    /// control-plane services, for calling one directly
    /// (`curl -H "Authorization: Bearer $(mcpctl token --internal)" http://127.0.0.1:8082/v1/namespaces`).
    #[arg(long)]
    pub internal: bool,
    /// The secret shared by the gateway and the services (with `--internal`).
    #[arg(
        long,
        env = "MCP_INTERNAL_SECRET",
        hide_env_values = true,
        required_if_eq("internal", "true")
    )]
    pub internal_secret: Option<String>,
    /// Subject (`sub`): who the token speaks for.
    #[arg(long, default_value = "dev")]
    pub sub: String,
    /// Space- or comma-separated scopes: `admin`, or `registry:read config:write health:read`…
    #[arg(long, default_value = "admin")]
    pub scopes: String,
    /// Lifetime (`15m`, `24h`).
    #[arg(long, default_value = "24h", value_parser = mcp_shared::settings::parse_duration)]
    pub ttl: Duration,
}

pub(super) fn token(args: &TokenArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let scopes = args
        .scopes
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let token = if args.internal {
        let secret = args.internal_secret.as_deref().unwrap_or_default();
        mcp_shared::internal::InternalKey::new(secret.as_bytes())
            .map_err(|e| anyhow!(e))?
            .token(Some(&args.sub), &scopes, args.ttl)?
    } else {
        let secret = args.secret.as_deref().unwrap_or_default();
        dev_token(secret, &args.sub, &scopes, args.ttl)?
    };
    writeln!(out, "{token}")?;
    Ok(())
}
