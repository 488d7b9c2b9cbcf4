#[lockutils::synchronized("x", fair = true, fair = false)]
fn a() {}

#[lockutils::synchronized("x", prefix = "a", lock_file_prefix = "b")]
fn b() {}

#[lockutils::synchronized("x", "y")]
fn c() {}

fn main() {}
