//! config-svc's Redis key names, and the bodies of its API: the wire types
//! ([`ConfigEntry`], [`ConfigWrite`], [`ConfigList`], …) are `mcp-api`'s
//! ([`mcp_api::config`]), re-exported here at their old paths so the
//! services, the SDK and `mcpctl` share one definition of each.

pub use mcp_api::config::*;

/// The name of config-svc's event log (`{prefix}:cfg:…` keys).
pub const LOG_NAME: &str = "cfg";
/// `{prefix}:cfg:revision`: the log's revision (see `mcp_shared::events`).
pub const REVISION_KEY: &str = "revision";
/// `{prefix}:cfg:entries:{ns}`: the hash key → entry JSON of a namespace.
pub const ENTRIES_KEY: &str = "entries";
