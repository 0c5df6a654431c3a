//! `mcpctl up`: the stack for local development in the foreground.
//!
//! Flags map onto [`StackOptions`]; the binary prints the gateway URL, an
//! admin development token and the `export` lines to paste, then runs until
//! Ctrl-C (or SIGTERM) and stops everything, the redis-server it started last.

use std::{net::SocketAddr, path::PathBuf};

use clap::Args;

use crate::stack::{self, StackOptions};

/// `mcpctl up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Redis to use if one answers there; otherwise `redis-server` from PATH is started.
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Data directory of a started redis-server.
    #[arg(long, default_value = ".mcp/redis")]
    pub redis_dir: PathBuf,
    /// Prefix of every Redis key.
    #[arg(long, env = "MCP_REDIS_PREFIX", default_value = "mcp")]
    pub redis_prefix: String,
    /// Gateway address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub gateway_addr: SocketAddr,
    /// registry-svc address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub registry_addr: SocketAddr,
    /// config-svc address.
    #[arg(long, default_value = "127.0.0.1:8082")]
    pub config_addr: SocketAddr,
    /// health-svc address.
    #[arg(long, default_value = "127.0.0.1:8083")]
    pub health_addr: SocketAddr,
    /// HS256 secret of the gateway (generated when unset; printed tokens are signed with it).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Secret the gateway signs its requests to the services with (at least 32
    /// bytes; generated for this run when unset).
    #[arg(long, env = "MCP_INTERNAL_SECRET", hide_env_values = true)]
    pub internal_secret: Option<String>,
    /// Log filter of the services.
    #[arg(long = "log-filter", env = "RUST_LOG", default_value = "warn")]
    pub log_filter: String,
}

impl From<&UpArgs> for StackOptions {
    fn from(args: &UpArgs) -> Self {
        Self {
            redis_url: args.redis_url.clone(),
            start_redis: true,
            redis_dir: args.redis_dir.clone(),
            redis_prefix: args.redis_prefix.clone(),
            gateway_addr: args.gateway_addr,
            registry_addr: args.registry_addr,
            config_addr: args.config_addr,
            health_addr: args.health_addr,
            jwt_secret: args.jwt_secret.clone(),
            internal_secret: args.internal_secret.clone(),
            ..Self::default()
        }
    }
}

/// The web console's address, signed in with `token`: the token rides in the
/// URL fragment, which a browser never sends to the server (so it lands in
/// no access log); the console moves it to the tab's `sessionStorage` and
/// wipes it from the address bar.
pub fn console_url(gateway_url: &str, token: &str) -> String {
    format!("{}/ui/#token={token}", gateway_url.trim_end_matches('/'))
}

/// Run the stack until a signal; prints what to paste to use it.
pub async fn run(args: &UpArgs) -> anyhow::Result<()> {
    let mut stack = stack::start(args.into(), &|line| crate::output::progress(line)).await?;
    let token = stack.admin_token()?;
    println!("MCP is up.");
    println!();
    println!("  gateway   {}", stack.gateway_url);
    println!("  console   {}", console_url(&stack.gateway_url, &token));
    println!(
        "  redis     {}{}",
        mcp_shared::settings::redact_redis_url(&stack.redis_url),
        if stack.redis_started {
            format!(" (started here, data in {})", args.redis_dir.display())
        } else {
            String::new()
        }
    );
    println!(
        "  services  registry {}  config {}  health {}",
        stack.registry_url, stack.config_url, stack.health_url
    );
    if args.jwt_secret.is_none() {
        println!(
            "  secret    generated for this run (set JWT_SECRET to keep tokens valid across runs)"
        );
    }
    if args.internal_secret.is_none() {
        println!(
            "  internal  secret generated for this run: the services answer this gateway only \
             (`mcpctl token --internal` with MCP_INTERNAL_SECRET to call one directly)"
        );
    }
    println!();
    println!("Paste into another shell (the token is an admin development token):");
    println!();
    println!("export MCP_GATEWAY_URL={}", stack.gateway_url);
    println!("export MCP_TOKEN={token}");
    println!("export JWT_SECRET={}", stack.jwt_secret);
    println!("export MCP_INTERNAL_SECRET={}", stack.internal_secret);
    println!();
    println!("Ctrl-C stops everything.");
    let shutdown = tokio_util::sync::CancellationToken::new();
    mcp_shared::server::cancel_on_signals(shutdown.clone());
    let outcome = tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        failure = stack.failed() => Err(anyhow::anyhow!(failure)),
    };
    crate::output::progress("stopping");
    stack.stop().await;
    eprintln!("stopped");
    outcome
}

#[cfg(test)]
mod tests {
    use super::console_url;

    #[test]
    fn the_console_url_carries_the_token_in_the_fragment_only() {
        let url = console_url("http://127.0.0.1:8080/", "a.b.c");
        assert_eq!(url, "http://127.0.0.1:8080/ui/#token=a.b.c");
        assert!(!url.contains('?'));
    }
}
