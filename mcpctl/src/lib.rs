//! `mcpctl`: the command line of MCP, as a library so tests run the same
//! code paths the binary does.
//!
//! - [`cli`]: the commands (clap) and their implementation over the SDK.
//! - [`policy`]: `mcpctl policy …`, gateway policies (get, set, edit, apply, history).
//! - [`stack`]: the whole stack in one process (`mcpctl up`, end-to-end tests).
//! - [`up`]: `mcpctl up` in the foreground.
//! - [`output`]: aligned tables and progress lines.

pub mod cli;
pub mod output;
pub mod policy;
pub mod stack;
pub mod up;
