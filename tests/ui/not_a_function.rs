#[lockutils::synchronized("x")]
struct S;

trait T {
    #[lockutils::synchronized("x")]
    fn declared(&self);
}

fn main() {}
