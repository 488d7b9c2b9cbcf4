#[lockutils::synchronized("x")]
async fn f() {}

fn main() {}
