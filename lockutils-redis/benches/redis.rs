//! Benchmarks of the Redis backend (written next).
fn main() {}
