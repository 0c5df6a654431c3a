//! `mcp-client`: the Rust SDK for MCP (built out in its own issue).

pub use mcp_shared::registry::{HealthStatus, Instance};
