#[lockutils::synchronized("x", external = "yes")]
fn a() {}

#[lockutils::synchronized(42)]
fn b() {}

#[lockutils::synchronized("x", timeout = 5)]
fn c() -> Result<(), lockutils::Error> {
    Ok(())
}

#[lockutils::synchronized("x", timeout = "5 parsecs")]
fn d() -> Result<(), lockutils::Error> {
    Ok(())
}

#[lockutils::synchronized("x", fair = 1 + 1)]
fn e() {}

fn main() {}
