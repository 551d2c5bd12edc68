//! Run with: `cargo run --example combined_node`
fn main() {}
