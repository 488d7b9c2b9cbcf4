// A `Result` whose error type has no `From<lockutils::Error>` cannot carry a lock failure:
// the error says so, and how to fix it.

struct NoFrom;

#[lockutils::synchronized("a")]
fn a() -> Result<(), NoFrom> {
    Ok(())
}

type MyResult<T> = Result<T, String>;

#[lockutils::synchronized("b")]
fn b() -> MyResult<u32> {
    Ok(1)
}

#[lockutils::synchronized("c")]
fn c<E>() -> Result<u32, E> {
    Ok(1)
}

#[lockutils::synchronized("d", blocking = false)]
fn d() -> Result<(), NoFrom> {
    Ok(())
}

fn main() {}
