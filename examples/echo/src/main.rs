//! The echo example service (built out with the SDK).

fn main() {}
