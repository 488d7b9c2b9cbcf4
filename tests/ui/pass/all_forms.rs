#![deny(warnings)]
#![deny(clippy::all)]
//! Every form of `#[synchronized]` the docs show compiles without a warning in the user's
//! crate: one-line and multi-line bodies, methods, generics, `async fn`,
//! `synchronized_with_prefix!`, the options, and each kind of return type.
//!
//! One-line bodies are the point (`unused_braces` fires only on those, and `cargo fix` then
//! breaks the code): `tests/warning_free.rs` keeps rustfmt off this file, and builds it so
//! that clippy sees these forms too.

use std::io;

use lockutils::synchronized;

lockutils::synchronized_with_prefix!(prefixed, "pass");

#[synchronized("unit")]
fn unit() {}

#[synchronized("unit-statement")]
fn unit_statement() { unit() }

#[synchronized("one-line-value")]
fn value() -> u32 { 7 }

#[synchronized("one-expression")]
fn one_expression() -> u32 {
    7
}

#[synchronized("c")]
fn c() -> Result<(), lockutils::Error> { Ok(()) }

#[synchronized("io")]
fn io_result() -> io::Result<u8> { Ok(1) }

#[synchronized("multi-line")]
fn multi_line(items: &[u32]) -> u32 {
    let total: u32 = items.iter().sum();
    let doubled = total * 2;
    doubled + 1
}

#[synchronized("inner-attributes")]
fn inner_attributes() -> u32 {
    #![allow(clippy::identity_op)]
    1 + 0
}

#[synchronized(format!("dynamic-{id}"))]
fn dynamic(id: u32) -> u32 { id }

#[synchronized("generic")]
fn generic<T: Clone, U>(item: &T, extra: U) -> (T, U)
where
    U: Copy,
{
    (item.clone(), extra)
}

#[synchronized("generic-one-line")]
fn generic_one_line<T>() -> T where T: Default { T::default() }

#[synchronized("impl-trait")]
fn evens(limit: u32) -> impl Iterator<Item = u32> { (0..limit).filter(|n| n % 2 == 0) }

#[synchronized("result-impl-trait")]
fn odds(limit: u32) -> Result<impl Iterator<Item = u32>, lockutils::Error> {
    Ok((0..limit).filter(|n| n % 2 == 1))
}

#[synchronized("lifetimes")]
fn first_word<'a>(text: &'a str) -> Option<&'a str> { text.split(' ').next() }

#[synchronized("elided")]
fn trimmed(text: &str) -> &str { text.trim() }

/// # Safety
/// `p` is valid for reads.
#[synchronized("unsafe-fn")]
unsafe fn read(p: *const u32) -> u32 {
    // SAFETY: the caller's promise.
    unsafe { *p }
}

#[synchronized("boxed-closure")]
fn adder(n: u32) -> Box<dyn Fn(u32) -> u32> { Box::new(move |m| n + m) }

#[synchronized("options", external = true, lock_path = std::env::temp_dir().join("lockutils-pass"), prefix = "pass", delay = "5ms")]
fn external() -> io::Result<()> { Ok(()) }

#[synchronized("fair", fair = true)]
fn fair() -> u32 { 1 }

#[synchronized("timeout", timeout = "1s")]
fn timeout() -> Result<u32, lockutils::Error> { Ok(2) }

#[synchronized("blocking", blocking = false)]
fn nonblocking() -> Result<u32, lockutils::Error> { Ok(3) }

#[synchronized("blocking-true", blocking = true)]
fn blocking() -> u32 { 4 }

#[synchronized("panics-on-failure", on_lock_error = "panic")]
fn panics_on_failure() -> Result<u32, String> { Ok(5) }

#[synchronized("returns-failure", on_lock_error = "return", timeout = "1s")]
fn returns_failure() -> io::Result<u32> { Ok(6) }

prefixed!("prefixed"; fn prefixed_free() -> u32 { 8 });

prefixed!("prefixed-external", external = true, lock_path = std::env::temp_dir().join("lockutils-pass");
    fn prefixed_external() -> io::Result<()> {
        Ok(())
    }
);

struct Counter {
    count: u32,
}

impl Counter {
    #[synchronized("counter-new")]
    fn new() -> Self { Self { count: 0 } }

    #[synchronized("counter")]
    fn get(&self) -> u32 { self.count }

    #[synchronized("counter")]
    fn bump(&mut self) { self.count += 1 }

    #[synchronized("counter")]
    fn into_count(self) -> u32 { self.count }

    #[synchronized("counter")]
    fn count_ref(&self) -> &u32 { &self.count }

    #[synchronized("counter-self")]
    fn copy(&self) -> Result<Self, lockutils::Error> { Ok(Self { count: self.count }) }

    #[synchronized("counter", blocking = false)]
    fn try_get(&self) -> Result<u32, lockutils::Error> { Ok(self.count) }

    prefixed!("counter-prefixed"; fn prefixed(&self) -> u32 { self.count });
}

trait Describe {
    fn describe(&self) -> String;
}

impl Describe for Counter {
    #[synchronized("describe")]
    fn describe(&self) -> String { format!("count {}", self.count) }
}

#[synchronized("async-unit")]
async fn async_unit() {}

#[synchronized("async-value")]
async fn async_value() -> u32 { 9 }

#[synchronized("async-result", timeout = "1s")]
async fn async_result() -> Result<u32, lockutils::Error> { Ok(10) }

#[synchronized("async-io", external = true, lock_path = std::env::temp_dir().join("lockutils-pass"))]
async fn async_io() -> io::Result<u32> {
    let value = async_value().await;
    Ok(value + 1)
}

impl Counter {
    #[synchronized("async-counter")]
    async fn async_get(&self) -> u32 { self.count }
}

pub fn main() {
    unit();
    unit_statement();
    assert_eq!(value() + one_expression(), 14);
    c().unwrap();
    assert_eq!(io_result().unwrap(), 1);
    assert_eq!(multi_line(&[1, 2]), 7);
    assert_eq!(inner_attributes(), 1);
    assert_eq!(dynamic(3), 3);
    assert_eq!(generic(&String::from("a"), 1), (String::from("a"), 1));
    assert_eq!(generic_one_line::<u8>(), 0);
    assert_eq!(evens(5).count(), 3);
    assert_eq!(odds(5).unwrap().count(), 2);
    assert_eq!(first_word("a b"), Some("a"));
    assert_eq!(trimmed(" a "), "a");
    // SAFETY: a valid pointer.
    assert_eq!(unsafe { read(&5) }, 5);
    assert_eq!(adder(1)(2), 3);
    external().unwrap();
    assert_eq!(fair() + blocking(), 5);
    assert_eq!(timeout().unwrap() + nonblocking().unwrap(), 5);
    assert_eq!(panics_on_failure(), Ok(5));
    assert_eq!(returns_failure().unwrap(), 6);
    assert_eq!(prefixed_free(), 8);
    prefixed_external().unwrap();
    let mut counter = Counter::new();
    counter.bump();
    assert_eq!(counter.get() + counter.try_get().unwrap() + counter.prefixed(), 3);
    assert_eq!(counter.describe(), "count 1");
    assert_eq!(*counter.count_ref() + counter.copy().unwrap().count, 2);
    futures::executor::block_on(async {
        async_unit().await;
        assert_eq!(async_result().await.unwrap() + async_io().await.unwrap(), 20);
        assert_eq!(counter.async_get().await, 1);
    });
    assert_eq!(counter.into_count(), 1);
}
