//! The `kraken` binary.
fn main() {}
