//! Helpers of the PostgreSQL tests: the server `scripts/postgres` started, child processes.
#![allow(dead_code)]

#[path = "../../../tests/common/child.rs"]
pub mod child;

use std::process::Command;
use std::time::{Duration, Instant};

use lockutils_postgres::PgBackend;

/// The URL of the test server (`scripts/postgres` sets it).
pub const URL_ENV: &str = "LOCKUTILS_TEST_PG_URL";
/// Set (as `scripts/test` does) to fail, rather than skip, without a server.
pub const REQUIRE_ENV: &str = "LOCKUTILS_REQUIRE_PG";
/// A script that restarts the test server.
pub const RESTART_ENV: &str = "LOCKUTILS_TEST_PG_RESTART";

/// The test server's URL, or `None` (with the reason printed) when there is none to use.
pub fn url() -> Option<String> {
    match std::env::var(URL_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os(REQUIRE_ENV).is_none(),
                "{REQUIRE_ENV} is set but {URL_ENV} is not: run the tests under scripts/postgres"
            );
            eprintln!(
                "skipped: no PostgreSQL server ({URL_ENV} is not set; run \
                 `scripts/postgres -- cargo test -p lockutils-postgres`)"
            );
            None
        }
    }
}

/// The backend of the test server, or `None` to skip.
pub fn db() -> Option<&'static PgBackend> {
    url().map(|url| lockutils_postgres::backend(&url).expect("test server URL"))
}

/// Sessions queued on the server, not yet granted, for the advisory lock `key`.
pub fn waiting(db: &PgBackend, key: i64) -> usize {
    let bits = key as u64;
    let sql = format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND classid = '{}'::oid AND objid = '{}'::oid AND objsubid = 1",
        bits >> 32,
        bits & 0xffff_ffff
    );
    db.query(&sql).expect("pg_locks")[0]
        .as_deref()
        .expect("a count")
        .parse()
        .expect("a number")
}

/// Polls (bounded by `child::PATIENCE`) until `cond` holds: how tests learn that a waiter is
/// queued on the server. The short pause between polls only spares the server; the state
/// polled for, not the pause, orders the test.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < child::PATIENCE, "never saw: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts this test binary as a child playing `role`, with external locks going to the test
/// server through `LOCKUTILS_BACKEND_URL` (so the child's lock sites name no backend).
pub fn spawn(role: &str, args: &[&str]) -> child::Proc {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command
        .args(["child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env("LOCKUTILS_TEST_CHILD", role)
        .env("LOCKUTILS_TEST_CHILD_ARGS", args.join("\u{1f}"))
        .env(
            lockutils::BACKEND_URL_ENV,
            std::env::var(URL_ENV).unwrap_or_default(),
        );
    child::start(command)
}

/// A unique lock name for one test run (tests share one server and run in parallel).
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}
