// Attributes on the function are kept: here `#[must_use]` still fires through the macro.
#![deny(unused_must_use)]

/// Documentation is kept too.
#[lockutils::synchronized("x")]
#[must_use = "the answer matters"]
fn answer() -> u32 {
    42
}

fn main() {
    answer();
}
