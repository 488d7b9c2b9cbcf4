#[lockutils::synchronized(external = true)]
fn f() {}

#[lockutils::synchronized()]
fn g() {}

fn main() {}
