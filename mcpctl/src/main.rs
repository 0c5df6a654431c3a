//! `mcpctl`: the MCP command-line tool (built out in its own issue).

fn main() {
    println!("mcpctl {}", env!("CARGO_PKG_VERSION"));
}
