//! A frozen server — its postmaster and every backend stopped with SIGSTOP, so that the kernel
//! still accepts and acknowledges TCP while nothing answers (neither connect timeouts nor
//! keepalives fire) — turns every acquire, check and release into an error within its
//! documented bound, never a hang.
//!
//! Freezing stops the whole shared test server: these tests live in a binary of their own
//! (cargo runs test binaries one at a time), run one at a time within it ([`SERIAL`]), and
//! always thaw the server ([`Frozen`]'s drop), even when they fail.
#![cfg(target_os = "linux")]

mod support;

use std::sync::Mutex;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use lockutils::{Error, lock};
use lockutils_postgres::{PgBackend, PgLock};
use support::{unique, wait_until, waiting};

/// One freeze at a time: the tests of this binary share the server.
static SERIAL: Mutex<()> = Mutex::new(());

/// Added to every bound asserted: these are upper bounds, on a loaded machine.
const MARGIN: Duration = Duration::from_secs(4);

/// How long a test waits for an operation before declaring that it hangs.
const HANG: Duration = Duration::from_secs(45);

/// The test server's password, which no error may show.
const PASSWORD: &str = "lockutils-test";

/// A backend with a pool of its own on the test server, with `options` added to its URL.
fn backend(options: &str) -> Option<&'static PgBackend> {
    let url = support::url()?;
    let url = if options.is_empty() {
        url
    } else {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{options}")
    };
    Some(Box::leak(Box::new(PgBackend::new(&url).unwrap())))
}

/// The state letter and parent process id of `pid`, from `/proc`.
fn stat_of(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.next()?.parse().ok()?))
}

fn parent_of(pid: i32) -> Option<i32> {
    stat_of(pid).map(|(_, parent)| parent)
}

/// The server stopped (SIGSTOP) — the postmaster first, so that it starts no process, then
/// all of its children — until dropped, which continues them all (SIGCONT).
struct Frozen {
    stopped: Vec<i32>,
    /// The postmaster's parent (as root, the `runuser` of `scripts/postgres`), which stops
    /// itself when its child stops, as `su` does; continued too, or it could not reap the
    /// server when `scripts/postgres` stops it.
    starter: Option<i32>,
}

impl Frozen {
    fn new() -> Self {
        // The postmaster's PID: the first line of the PID file that scripts/postgres names.
        let pidfile = std::env::var("LOCKUTILS_TEST_PG_PIDFILE")
            .expect("LOCKUTILS_TEST_PG_PIDFILE (set by scripts/postgres)");
        let postmaster: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("the postmaster's PID");
        let mut frozen = Frozen {
            stopped: Vec::new(),
            starter: parent_of(postmaster).filter(|&parent| parent > 1),
        };
        frozen.stop(postmaster);
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            if parent_of(pid) == Some(postmaster) {
                frozen.stop(pid);
            }
        }
        assert!(
            frozen.stopped.len() > 2,
            "stopped only {:?}",
            frozen.stopped
        );
        frozen
    }

    fn stop(&mut self, pid: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        if unsafe { libc::kill(pid, libc::SIGSTOP) } == 0 {
            self.stopped.push(pid);
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &pid in &self.stopped {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        // Only if it did stop (`T`): it is no process of the server.
        if let Some(starter) = self.starter
            && stat_of(starter).is_some_and(|(state, _)| state == 'T')
        {
            // SAFETY: as above.
            unsafe { libc::kill(starter, libc::SIGCONT) };
        }
    }
}

/// Runs `op` on a thread of its own: its outcome and how long it took, failing the test
/// (rather than hanging it) if it takes longer than [`HANG`].
fn bounded<T: Send + 'static>(
    what: &str,
    op: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let (tx, rx) = sync_channel(1);
    std::thread::spawn(move || {
        let started = Instant::now();
        let outcome = op();
        let _ = tx.send((outcome, started.elapsed()));
    });
    rx.recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("{what}: still waiting after {HANG:?} (hangs)"))
}

/// `outcome` is an error naming lock `name` and the server (without its password) that says
/// the server did not answer, and came within `bound` (plus [`MARGIN`]).
fn gave_up(
    what: &str,
    name: &str,
    (outcome, took): (Result<(), Error>, Duration),
    bound: Duration,
) {
    let err = outcome.expect_err(what);
    let text = err.to_string();
    eprintln!("{what}: {took:?}: {text}");
    assert!(matches!(err, Error::Backend { .. }), "{what}: {text}");
    assert!(text.contains(name), "{what}: {text}");
    assert!(text.contains("127.0.0.1"), "{what}: {text}");
    assert!(text.contains("did not answer within"), "{what}: {text}");
    assert!(!text.contains(PASSWORD), "{what}: {text}");
    assert!(
        took < bound + MARGIN,
        "{what}: took {took:?}, bound {bound:?}"
    );
}

/// Takes and releases `name` on `db`, so that its pool holds a session.
fn pool_a_session(db: &'static PgBackend, name: &str) {
    drop(lock(name).external(true).backend(db).acquire().unwrap());
    assert!(db.idle_connections() >= 1);
}

#[cfg(feature = "async")]
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn timed_and_non_blocking_acquires_give_up_on_a_frozen_server_in_time() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The default answer timeout (10 s): a timed acquire's own timeout bounds it.
    let Some(pooled) = backend("") else { return };
    let fresh = backend("").unwrap();
    // A short answer timeout and connect timeout, for the untimed tries.
    let short = backend("connect_timeout=1&answer_timeout=1").unwrap();
    let short_fresh = backend("connect_timeout=1&answer_timeout=1").unwrap();
    let name = unique("frozen-timed");
    pool_a_session(pooled, &name);
    pool_a_session(short, &name);
    let timeout = Duration::from_secs(2);
    let timed_bound = timeout + lockutils_postgres::TIMEOUT_GRACE;
    let one_second = Duration::from_secs(1);

    let _frozen = Frozen::new();
    for (what, db) in [("a pooled session", pooled), ("a new session", fresh)] {
        let n = name.clone();
        let outcome = bounded(what, move || {
            lock(&n)
                .external(true)
                .backend(db)
                .timeout(timeout)
                .acquire()
                .map(drop)
        });
        gave_up(
            &format!(".timeout(2s) on {what}"),
            &name,
            outcome,
            timed_bound,
        );
    }
    for (what, db) in [("a pooled session", short), ("a new session", short_fresh)] {
        let n = name.clone();
        let outcome = bounded(what, move || {
            lock(&n)
                .external(true)
                .backend(db)
                .blocking(false)
                .acquire()
                .map(drop)
        });
        gave_up(
            &format!("blocking(false) on {what}"),
            &name,
            outcome,
            one_second,
        );
    }
    // Untimed, on a fresh session: bounded by the connect timeout.
    let n = name.clone();
    let outcome = bounded("an untimed acquire", move || {
        lock(&n)
            .external(true)
            .backend(short_fresh)
            .acquire()
            .map(drop)
    });
    gave_up(
        "an untimed acquire on a new session",
        &name,
        outcome,
        one_second,
    );
    // The crate's own API, on a pooled session.
    let own = short.lock(&name, None).unwrap();
    let outcome = bounded("try_write", move || own.try_write().map(drop));
    gave_up("PgLock::try_write", &name, outcome, one_second);
}

#[cfg(feature = "async")]
#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn awaited_acquires_give_up_on_a_frozen_server_in_time() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(db) = backend("") else { return };
    let short = backend("connect_timeout=1&answer_timeout=1").unwrap();
    let name = unique("frozen-async");
    let here = runtime();
    for db in [db, short] {
        drop(
            here.block_on(lock(&name).external(true).backend(db).acquire_async())
                .unwrap(),
        );
    }
    let timeout = Duration::from_secs(2);

    let _frozen = Frozen::new();
    let n = name.clone();
    let outcome = bounded("acquire_async", move || {
        runtime()
            .block_on(
                lock(&n)
                    .external(true)
                    .backend(db)
                    .timeout(timeout)
                    .acquire_async(),
            )
            .map(drop)
    });
    gave_up(
        "acquire_async with .timeout(2s) on a pooled session",
        &name,
        outcome,
        timeout + lockutils_postgres::TIMEOUT_GRACE,
    );
    let n = name.clone();
    let outcome = bounded("acquire_async", move || {
        runtime()
            .block_on(
                lock(&n)
                    .external(true)
                    .backend(short)
                    .blocking(false)
                    .acquire_async(),
            )
            .map(drop)
    });
    gave_up(
        "acquire_async with blocking(false) on a pooled session",
        &name,
        outcome,
        Duration::from_secs(1),
    );
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn waits_in_the_queue_checks_and_releases_give_up_on_a_frozen_server_in_time() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(db) = backend("connect_timeout=1&answer_timeout=1") else {
        return;
    };
    let name = unique("frozen-queue");
    let own: &'static PgLock = Box::leak(Box::new(db.lock(&name, None).unwrap()));
    let key = own.key();
    let holder = own.write().unwrap();

    // Waiters with no timeout, queued on the server before it freezes.
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let tx = tx.clone();
        let n = name.clone();
        std::thread::spawn(move || {
            let outcome = lock(&n).external(true).backend(db).acquire().map(drop);
            let _ = tx.send(("a blocking wait", outcome, Instant::now()));
        })
    };
    wait_until("the blocking waiter is queued", || waiting(db, key) == 1);
    #[cfg(feature = "async")]
    let awaiting = {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let outcome = runtime().block_on(own.write_async()).map(drop);
            let _ = tx.send(("an awaited wait", outcome, Instant::now()));
        })
    };
    #[cfg(feature = "async")]
    wait_until("the awaited waiter is queued", || waiting(db, key) == 2);
    drop(tx);

    // The documented bound of a wait: 1.5 × the answer timeout after the server stops.
    let wait_bound = db.answer_timeout() * 3 / 2;
    let frozen = Frozen::new();
    let since = Instant::now();
    // Each waiter must report within HANG: a waiter that hangs fails the test here, rather
    // than blocking the joins below.
    let waiters = if cfg!(feature = "async") { 2 } else { 1 };
    for _ in 0..waiters {
        let (what, outcome, when) = rx
            .recv_timeout(HANG)
            .expect("a waiter on a frozen server never gave up");
        gave_up(what, &name, (outcome, when - since), wait_bound);
    }
    waiter.join().unwrap();
    #[cfg(feature = "async")]
    awaiting.join().unwrap();

    // The holder can neither check nor release: both say so in time.
    let (checked, took) = bounded("is_held", move || {
        let checked = holder.is_held().map(|_| ());
        (checked, holder)
    });
    let holder = match checked {
        (Err(err), holder) => {
            eprintln!("is_held: {took:?}: {err}");
            assert!(err.to_string().contains("did not answer within"), "{err}");
            holder
        }
        (Ok(()), _) => panic!("is_held answered on a frozen server"),
    };
    assert!(took < db.answer_timeout() + MARGIN, "is_held took {took:?}");
    let outcome = bounded("release", move || holder.release());
    gave_up("a release", &name, outcome, db.answer_timeout());

    // Thawed, the server ends the closed sessions, and the lock is free again.
    drop(frozen);
    let again = own.try_write_for(support::child::PATIENCE).unwrap();
    assert!(again.is_held().unwrap());
}
