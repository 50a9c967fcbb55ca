//! The `tidelog` command-line tool.
fn main() {}
