// External locks cannot be awaited yet: refused on `async fn` at compile time.
#[lockutils::synchronized("x", external = true)]
async fn f() {}

fn main() {}
