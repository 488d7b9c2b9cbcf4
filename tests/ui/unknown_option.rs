#[lockutils::synchronized("x", extrenal = true)]
fn f() {}

fn main() {}
