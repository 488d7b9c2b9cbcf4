//! What sessions are used for: `PgBackend::query` on sessions of its own, and lock checks
//! bounded in time when a lock's session stops answering.
#![cfg(target_os = "linux")]

mod support;

use std::time::{Duration, Instant};

use lockutils_postgres::{IS_HELD_TIMEOUT, PgBackend};
use support::unique;

/// A backend with a pool of its own, so that a test knows which sessions it holds.
fn own_backend() -> Option<&'static PgBackend> {
    let url = support::url()?;
    Some(Box::leak(Box::new(PgBackend::new(&url).unwrap())))
}

/// The where-clause of `pg_locks` rows of the advisory lock `key`.
fn of_key(key: i64) -> String {
    let bits = key as u64;
    format!(
        "locktype = 'advisory' AND classid = '{}'::oid AND objid = '{}'::oid AND objsubid = 1",
        bits >> 32,
        bits & 0xffff_ffff
    )
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn query_runs_on_a_session_of_its_own_that_is_never_pooled() {
    let Some(db) = own_backend() else { return };
    let lock = db.lock(&unique("query"), None).unwrap();
    // Pool a session, then leave an open transaction and an advisory lock behind in queries.
    drop(lock.write().unwrap());
    assert_eq!(db.idle_connections(), 1);
    assert_eq!(db.query("BEGIN").unwrap(), Vec::<Option<String>>::new());
    let taken = db
        .query(&format!("SELECT pg_advisory_lock({})", lock.key()))
        .unwrap();
    assert_eq!(taken, vec![Some(String::new())]);
    assert_eq!(db.idle_connections(), 1, "a query's session was pooled");
    // Neither reached a lock's session: the key is free, and each acquisition gets a token
    // of its own.
    let held = db
        .query(&format!(
            "SELECT count(*) FROM pg_locks WHERE {}",
            of_key(lock.key())
        ))
        .unwrap();
    assert_eq!(held, vec![Some("0".to_owned())]);
    let first = lock.write().unwrap();
    assert!(lock.try_write().unwrap_err().is_acquire_failed());
    let token = first.fencing_token();
    drop(first);
    let second = lock.write().unwrap();
    assert!(second.fencing_token() > token);
}

/// Stops a server process (`SIGSTOP`) until dropped.
struct Stopped(libc::pid_t);

impl Stopped {
    fn new(pid: libc::pid_t) -> Self {
        // SAFETY: kill has no memory-safety preconditions.
        let stopped = unsafe { libc::kill(pid, libc::SIGSTOP) };
        assert_eq!(
            stopped,
            0,
            "cannot stop the session's server process {pid}: {}",
            std::io::Error::last_os_error()
        );
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// The server process of the session that holds the advisory lock `key`.
fn holder_pid(db: &PgBackend, key: i64) -> libc::pid_t {
    let pid = db
        .query(&format!(
            "SELECT pid FROM pg_locks WHERE granted AND {}",
            of_key(key)
        ))
        .unwrap();
    assert_eq!(pid.len(), 1, "{pid:?}");
    pid[0].as_deref().unwrap().parse().unwrap()
}

/// `check` gives up, with an error, about [`IS_HELD_TIMEOUT`] after it starts.
fn gives_up_in_time(what: &str, check: impl FnOnce() -> Result<bool, lockutils::Error>) {
    let started = Instant::now();
    let outcome = check();
    let took = started.elapsed();
    let err = outcome.expect_err(what);
    assert!(err.to_string().contains("did not answer"), "{what}: {err}");
    assert!(
        took >= IS_HELD_TIMEOUT && took < IS_HELD_TIMEOUT + Duration::from_secs(3),
        "{what}: took {took:?}"
    );
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn a_check_of_a_session_that_stopped_answering_gives_up_in_time() {
    let Some(db) = own_backend() else { return };
    let lock = db.lock(&unique("stopped"), None).unwrap();
    let guard = lock.write().unwrap();
    assert!(guard.is_held().unwrap());
    {
        let _stopped = Stopped::new(holder_pid(db, lock.key()));
        gives_up_in_time("a blocking guard", || guard.is_held());
    }
    assert!(guard.is_held().unwrap());
    guard.release().unwrap();

    #[cfg(feature = "async")]
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let guard = runtime.block_on(lock.write_async()).unwrap();
        assert!(guard.is_held().unwrap());
        {
            let _stopped = Stopped::new(holder_pid(db, lock.key()));
            gives_up_in_time("an awaited guard", || guard.is_held());
            gives_up_in_time("an awaited guard, awaited", || {
                runtime.block_on(guard.is_held_async())
            });
        }
        assert!(guard.is_held().unwrap());
        assert!(runtime.block_on(guard.is_held_async()).unwrap());
        guard.release().unwrap();
    }
}
