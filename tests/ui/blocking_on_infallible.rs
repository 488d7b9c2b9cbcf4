#[lockutils::synchronized("x", blocking = false)]
fn a() {}

#[lockutils::synchronized("x", timeout = "1s")]
fn b() -> u32 {
    1
}

fn main() {}
