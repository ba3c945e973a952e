//! The chat example (being written).
fn main() {}
