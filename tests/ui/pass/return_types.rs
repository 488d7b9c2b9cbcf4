#![deny(warnings)]
#![deny(clippy::all)]
//! Any return type works: the type, not its name, decides what a lock failure becomes.
//!
//! One-line bodies on purpose: `tests/warning_free.rs` keeps rustfmt off this file, and
//! builds it so that clippy sees these forms too.

use std::io;

use lockutils::synchronized;

/// Not a `Result`, whatever it is called: a lock failure panics.
#[derive(Debug, PartialEq)]
pub struct SearchResult {
    pub hits: u32,
}

#[synchronized("search")]
fn search() -> SearchResult { SearchResult { hits: 3 } }

/// An error type that lock failures convert into.
#[derive(Debug)]
pub struct MyError(pub lockutils::Error);

impl From<lockutils::Error> for MyError {
    fn from(error: lockutils::Error) -> Self {
        Self(error)
    }
}

/// An alias the macro cannot see through; the compiler can.
pub type MyResult<T> = Result<T, MyError>;

#[synchronized("alias")]
fn alias() -> MyResult<u32> { Ok(1) }

#[synchronized("alias-nonblocking", blocking = false)]
fn alias_nonblocking() -> MyResult<u32> { Ok(2) }

#[synchronized("io")]
fn io_result() -> io::Result<u32> { Ok(3) }

/// A `Result` whose error type has no `From<lockutils::Error>`: panics, when asked to.
#[synchronized("strings", on_lock_error = "panic")]
fn strings() -> Result<u32, String> { Ok(4) }

/// An alias of something that is not a `Result`.
pub type Hits = Option<u32>;

#[synchronized("option")]
fn option() -> Hits { Some(5) }

#[synchronized("generic")]
fn generic<T: Default>() -> T { T::default() }

#[synchronized("generic-error")]
fn generic_error<E: From<lockutils::Error>>() -> Result<u32, E> { Ok(6) }

#[synchronized("boxed")]
fn boxed() -> Result<u32, Box<dyn std::error::Error + Send + Sync>> { Ok(7) }

struct Finder;

impl Finder {
    #[synchronized("finder")]
    fn find(&self) -> Self {
        Finder
    }
}

pub fn main() {
    assert_eq!(search(), SearchResult { hits: 3 });
    assert_eq!(alias().unwrap() + alias_nonblocking().unwrap(), 3);
    let held = lockutils::lock("alias-nonblocking").acquire().unwrap();
    let MyError(error) = alias_nonblocking().unwrap_err();
    assert!(error.is_acquire_failed(), "{error}");
    drop(held);
    assert_eq!(io_result().unwrap(), 3);
    assert_eq!(strings(), Ok(4));
    assert_eq!(option(), Some(5));
    assert_eq!(generic::<u8>(), 0);
    assert_eq!(generic_error::<lockutils::Error>().unwrap(), 6);
    assert_eq!(boxed().unwrap(), 7);
    let _finder: Finder = Finder.find();
}
