#[lockutils::synchronized("a", on_lock_error = "maybe")]
fn a() {}

#[lockutils::synchronized("b", on_lock_error = "return")]
fn b() {}

struct SearchResult;

#[lockutils::synchronized("c", on_lock_error = "return")]
fn c() -> SearchResult {
    SearchResult
}

fn main() {}
