//! `mcpctl health`: every service's status, or one service's instances.

use std::io::Write;

use mcp_client::Client;

use super::print_json;
use crate::output::Table;

pub(super) async fn health(
    client: &Client,
    service: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match service {
        None => {
            let summary = client.health_summary().await?;
            if json {
                return print_json(out, &summary);
            }
            let mut table = Table::new(&[
                "SERVICE", "STATUS", "PASSING", "WARNING", "CRITICAL", "UNKNOWN",
            ]);
            for s in &summary.services {
                table.row(vec![
                    s.name.clone(),
                    s.status.as_str().to_owned(),
                    s.passing.to_string(),
                    s.warning.to_string(),
                    s.critical.to_string(),
                    s.unknown.to_string(),
                ]);
            }
            table.write(out)?;
            writeln!(out, "overall: {}", summary.status.as_str())?;
            Ok(())
        }
        Some(service) => {
            let health = client.service_health(service).await?;
            if json {
                return print_json(out, &health);
            }
            let mut table = Table::new(&["ID", "STATUS", "FAILURES", "LAST_CHECKED", "OUTPUT"]);
            for i in &health.instances {
                table.row(vec![
                    i.id.clone(),
                    i.status.as_str().to_owned(),
                    i.consecutive_failures.to_string(),
                    i.last_checked_at.clone().unwrap_or_default(),
                    i.output.as_deref().unwrap_or("").chars().take(60).collect(),
                ]);
            }
            table.write(out)?;
            writeln!(out, "{service}: {}", health.status.as_str())?;
            Ok(())
        }
    }
}
