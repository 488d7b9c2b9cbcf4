//! `#[synchronized]` in every place a function goes, and what it guarantees at run time.

mod common;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use common::{RacyCounter, wait_until};
use lockutils::{Error, Semaphores, synchronized};

static COUNTER: RacyCounter = RacyCounter::new();

#[synchronized("shared-name")]
fn bump_a() {
    COUNTER.increment();
}

#[synchronized("shared-name")]
fn bump_b() -> usize {
    COUNTER.increment();
    1
}

// oslo: two functions sharing a name exclude each other.
#[test]
fn functions_sharing_a_name_exclude_each_other() {
    thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for _ in 0..5_000 {
                    if t % 2 == 0 {
                        bump_a();
                    } else {
                        assert_eq!(bump_b(), 1);
                    }
                }
            });
        }
    });
    assert_eq!(COUNTER.get(), 20_000);
}

struct Instance {
    uuid: String,
}

static INSIDE: AtomicUsize = AtomicUsize::new(0);

/// nova's `@synchronized(instance.uuid)`.
#[synchronized(format!("instance-{}", instance.uuid))]
fn per_instance(instance: &Instance, meet: &Barrier) {
    INSIDE.fetch_add(1, Ordering::SeqCst);
    meet.wait();
}

#[test]
fn dynamic_names_lock_per_value() {
    // Two different instances are inside at the same time (the barrier needs both).
    let meet = Barrier::new(2);
    let (a, b) = (Instance { uuid: "a".into() }, Instance { uuid: "b".into() });
    thread::scope(|s| {
        s.spawn(|| per_instance(&a, &meet));
        s.spawn(|| per_instance(&b, &meet));
    });
    assert_eq!(INSIDE.load(Ordering::SeqCst), 2);
    // The same instance is one lock: held here, a non-blocking try elsewhere fails.
    let _held = lockutils::lock("instance-a").acquire().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            let err = try_instance(&a).unwrap_err();
            assert_eq!(err.to_string(), "Failed to acquire the lock instance-a");
        });
    });
}

#[synchronized(format!("instance-{}", instance.uuid), blocking = false)]
fn try_instance(instance: &Instance) -> Result<(), Error> {
    let _ = instance;
    Ok(())
}

#[synchronized("outer")]
fn outer(depth: u32) -> u32 {
    inner(depth) + 1
}

#[synchronized("inner")]
fn inner(depth: u32) -> u32 {
    if depth == 0 { 0 } else { outer(depth - 1) }
}

#[test]
fn nested_synchronized_functions_with_different_names() {
    // outer -> inner -> outer would deadlock (the default lock is not reentrant), so recurse
    // through a fair lock instead; different names nest fine.
    assert_eq!(outer(0), 1);
    assert_eq!(fair_recursive(5), 5);
}

#[synchronized("fair-recursive", fair = true)]
fn fair_recursive(n: u32) -> u32 {
    if n == 0 { 0 } else { 1 + fair_recursive(n - 1) }
}

struct Account {
    balance: i64,
    name: String,
}

trait Ledger {
    fn post(&mut self, amount: i64) -> io::Result<i64>;
    fn describe(&self) -> String;
}

impl Account {
    #[synchronized("account")]
    fn new(name: &str) -> Self {
        Account {
            balance: 0,
            name: name.to_owned(),
        }
    }

    /// Documentation stays on the function.
    #[synchronized(self.name.clone())]
    pub(crate) fn balance(&self) -> i64 {
        self.balance
    }

    #[synchronized(self.name.as_str())]
    fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    #[synchronized("account-close", timeout = "50ms")]
    fn close(self) -> Result<i64, Error> {
        Ok(self.balance)
    }
}

impl Ledger for Account {
    #[synchronized("ledger", blocking = false)]
    fn post(&mut self, amount: i64) -> io::Result<i64> {
        if amount < 0 {
            return Err(io::Error::other("negative"));
        }
        self.balance += amount;
        Ok(self.balance)
    }

    #[synchronized("ledger-describe")]
    fn describe(&self) -> String {
        format!("{}: {}", self.name, self.balance)
    }
}

#[test]
fn methods_associated_functions_and_trait_impls() {
    let mut account = Account::new("acct-1");
    account.deposit(5);
    assert_eq!(account.balance(), 5);
    assert_eq!(account.post(2).unwrap(), 7);
    assert!(account.post(-1).is_err(), "early return releases");
    assert_eq!(
        account.post(1).unwrap(),
        8,
        "the lock was released by the early return"
    );
    assert_eq!(account.describe(), "acct-1: 8");
    // A lock failure comes back as an io::Error.
    let held = lockutils::lock("ledger").acquire().unwrap();
    let err = thread::scope(|s| s.spawn(|| Account::new("x").post(1)).join().unwrap()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(err.to_string(), "Failed to acquire the lock ledger");
    drop(held);
    assert_eq!(account.close().unwrap(), 8);
}

#[synchronized("generic")]
fn generic<'a, T, U: Clone>(items: &'a [T], extra: impl Into<U>) -> (usize, U)
where
    T: std::fmt::Debug + 'a,
{
    (items.len(), extra.into())
}

#[synchronized("returns-impl")]
fn evens(limit: u32) -> impl Iterator<Item = u32> {
    (0..limit).filter(|n| n % 2 == 0)
}

/// # Safety
/// `p` must be valid for reads.
#[synchronized("unsafe-fn")]
unsafe fn read(p: *const u32) -> u32 {
    // SAFETY: the caller's promise.
    unsafe { *p }
}

#[test]
fn generics_impl_trait_lifetimes_and_unsafe_fns() {
    let (n, s): (usize, String) = generic(&[1, 2, 3], "x");
    assert_eq!((n, s.as_str()), (3, "x"));
    assert_eq!(evens(7).collect::<Vec<_>>(), [0, 2, 4, 6]);
    let value = 7u32;
    // SAFETY: `value` is a live u32.
    assert_eq!(unsafe { read(&value) }, 7);
}

#[synchronized("question-mark")]
fn parse_both(a: &str, b: &str) -> Result<i32, Box<dyn std::error::Error + Send + Sync>> {
    Ok(a.parse::<i32>()? + b.parse::<i32>()?)
}

#[synchronized("panics")]
fn panics() {
    panic!("inside");
}

#[test]
fn question_mark_and_panics_release_the_lock() {
    assert!(parse_both("1", "x").is_err());
    assert_eq!(parse_both("1", "2").unwrap(), 3);
    assert!(std::panic::catch_unwind(panics).is_err());
    thread::scope(|s| {
        s.spawn(|| {
            drop(
                lockutils::lock("question-mark")
                    .blocking(false)
                    .acquire()
                    .unwrap(),
            )
        });
        s.spawn(|| drop(lockutils::lock("panics").blocking(false).acquire().unwrap()));
    });
}

#[synchronized("busy", blocking = false)]
fn nonblocking_worker(
    calls: &Mutex<Vec<&'static str>>,
    who: &'static str,
    hold: Option<&mpsc::Receiver<()>>,
) -> Result<(), Error> {
    calls.lock().unwrap().push(who);
    if let Some(hold) = hold {
        hold.recv().unwrap();
    }
    calls.lock().unwrap().push(who);
    Ok(())
}

// oslo: test_interthread_nonblocking_internal_lock through the decorator.
#[test]
fn nonblocking_synchronized_between_threads() {
    let calls = Mutex::new(Vec::new());
    let (go_tx, go_rx) = mpsc::channel();
    thread::scope(|s| {
        let calls = &calls;
        s.spawn(move || nonblocking_worker(calls, "other", Some(&go_rx)).unwrap());
        wait_until(|| !calls.lock().unwrap().is_empty());
        let err = nonblocking_worker(calls, "main", None).unwrap_err();
        assert!(err.is_acquire_failed());
        go_tx.send(()).unwrap();
    });
    assert_eq!(*calls.lock().unwrap(), ["other", "other"]);
}

#[test]
#[should_panic(expected = "did not get its lock: lock ")]
fn an_infallible_function_panics_naming_the_lock_and_cause() {
    static SEMS: std::sync::LazyLock<Semaphores> = std::sync::LazyLock::new(Semaphores::new);
    #[synchronized("x", semaphores = SEMS, fair = true)]
    fn conflicting_options() {}
    conflicting_options();
}

// The return type, not its name, decides what a lock failure becomes.

static CONFLICT: std::sync::LazyLock<Semaphores> = std::sync::LazyLock::new(Semaphores::new);

/// Not a `Result`, whatever it is called.
#[derive(Debug)]
struct SearchResult;

// `semaphores` with `fair` is refused at every call: a lock failure that is not a wait.
#[synchronized("search", semaphores = CONFLICT, fair = true)]
fn search() -> SearchResult {
    SearchResult
}

#[test]
#[should_panic(expected = "did not get its lock: lock ")]
fn a_type_named_like_a_result_that_is_not_one_panics() {
    search();
}

#[derive(Debug)]
struct MyError(Error);

impl From<Error> for MyError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

type MyResult<T> = Result<T, MyError>;

#[synchronized("my-result", blocking = false)]
fn my_result_nonblocking() -> MyResult<u32> {
    Ok(1)
}

#[synchronized("my-result", semaphores = CONFLICT, fair = true)]
fn my_result_refused() -> MyResult<u32> {
    Ok(2)
}

#[test]
fn a_result_alias_returns_the_failure_as_err() {
    assert_eq!(my_result_nonblocking().unwrap(), 1);
    let held = lockutils::lock("my-result").acquire().unwrap();
    let MyError(error) = my_result_nonblocking().unwrap_err();
    assert!(error.is_acquire_failed(), "{error}");
    drop(held);
    // Without `blocking = false` too: the alias is a `Result`, so it returns, not panics.
    let MyError(error) = my_result_refused().unwrap_err();
    assert!(matches!(error, Error::InvalidOptions { .. }), "{error}");
}

#[synchronized("io-refused", semaphores = CONFLICT, fair = true)]
fn io_refused() -> io::Result<u32> {
    Ok(3)
}

#[test]
fn an_io_result_returns_the_failure_as_an_io_error() {
    assert!(io_refused().is_err());
}

#[synchronized("strings", semaphores = CONFLICT, fair = true, on_lock_error = "panic")]
fn strings() -> Result<u32, String> {
    Ok(4)
}

#[test]
#[should_panic(expected = "did not get its lock: lock ")]
fn on_lock_error_panic_panics_from_a_result_function() {
    let _ = strings();
}

#[synchronized("own", semaphores = OWN)]
fn in_own_namespace() -> bool {
    // The global lock of the same name is a different lock.
    lockutils::lock("own").blocking(false).acquire().is_ok()
}

static OWN: std::sync::LazyLock<Semaphores> = std::sync::LazyLock::new(Semaphores::new);

#[test]
fn semaphores_option_uses_the_given_namespace() {
    assert!(in_own_namespace());
    let _g = lockutils::lock("own").semaphores(&OWN).acquire().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            let err = lockutils::lock("own")
                .semaphores(&OWN)
                .timeout(Duration::ZERO)
                .acquire();
            assert!(err.is_err());
        });
    });
}

/// The lock directory of the external cases: in the build's scratch directory for tests
/// (`target/tmp`), not in the system's temporary directory.
fn sync_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("lockutils-sync-test")
}

#[synchronized("ext-sync", external = true, prefix = "nova", lock_path = sync_dir(), delay = "5ms")]
fn external_in_temp() -> io::Result<bool> {
    Ok(sync_dir().join("nova-ext-sync").exists())
}

#[synchronized("ext-sync2", external = true, lock_file_prefix = "nova-", lock_path = sync_dir())]
fn external_hyphen() -> io::Result<bool> {
    Ok(sync_dir().join("nova-ext-sync2").exists())
}

// oslo: test_synchronized_with_prefix / prefix_without_hyphen
#[test]
fn external_with_prefix_with_and_without_hyphen() {
    assert!(
        external_in_temp().unwrap(),
        "the lock file exists while held"
    );
    assert!(external_hyphen().unwrap());
}

lockutils::synchronized_with_prefix!(nova_synchronized, "nova");

nova_synchronized!("prefixed", external = true, lock_path = sync_dir();
    /// Runs under lock file `nova-prefixed`.
    fn prefixed_free() -> io::Result<bool> {
        Ok(sync_dir().join("nova-prefixed").exists())
    }
);

struct Compute;

impl Compute {
    nova_synchronized!("prefixed-method", external = true, lock_path = sync_dir();
        pub fn method(&self) -> io::Result<bool> {
            Ok(sync_dir().join("nova-prefixed-method").exists())
        }
    );
}

#[test]
fn synchronized_with_prefix_on_functions_and_methods() {
    assert!(prefixed_free().unwrap());
    assert!(Compute.method().unwrap());
}
