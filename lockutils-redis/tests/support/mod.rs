//! Helpers of the Redis tests: the server `scripts/redis` started, child processes.
#![allow(dead_code)]

#[path = "../../../tests/common/child.rs"]
pub mod child;

use std::process::Command;
use std::time::{Duration, Instant};

use lockutils_redis::RedisBackend;

/// The URL of the test server (`scripts/redis` sets it).
pub const URL_ENV: &str = "LOCKUTILS_TEST_REDIS_URL";
/// Set (as `scripts/test` does) to fail, rather than skip, without a server.
pub const REQUIRE_ENV: &str = "LOCKUTILS_REQUIRE_REDIS";
/// The same server through a Sentinel (`scripts/redis` sets it).
pub const SENTINEL_URL_ENV: &str = "LOCKUTILS_TEST_REDIS_SENTINEL_URL";
/// The same server over TLS (`scripts/redis` sets it).
pub const TLS_URL_ENV: &str = "LOCKUTILS_TEST_REDIS_TLS_URL";
/// A script that restarts the test server (`--keep` keeps its keys).
pub const RESTART_ENV: &str = "LOCKUTILS_TEST_REDIS_RESTART";
/// The test server's PID file.
pub const PIDFILE_ENV: &str = "LOCKUTILS_TEST_REDIS_PIDFILE";

/// The test server's URL, or `None` (with the reason printed) when there is none to use.
pub fn url() -> Option<String> {
    match std::env::var(URL_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os(REQUIRE_ENV).is_none(),
                "{REQUIRE_ENV} is set but {URL_ENV} is not: run the tests under scripts/redis"
            );
            eprintln!(
                "skipped: no Redis server ({URL_ENV} is not set; run \
                 `scripts/redis -- cargo test -p lockutils-redis -- --include-ignored`)"
            );
            None
        }
    }
}

/// The test server's URL through its Sentinel, or `None` (skip) without a server.
pub fn sentinel_url() -> Option<String> {
    url()?;
    Some(std::env::var(SENTINEL_URL_ENV).unwrap_or_else(|_| {
        panic!("{SENTINEL_URL_ENV} is not set: run the tests under scripts/redis")
    }))
}

/// The test server's TLS URL (`rediss://`, with the test CA), or `None` (skip) without a
/// server.
pub fn tls_url() -> Option<String> {
    url()?;
    Some(
        std::env::var(TLS_URL_ENV).unwrap_or_else(|_| {
            panic!("{TLS_URL_ENV} is not set: run the tests under scripts/redis")
        }),
    )
}

/// tooz's form of a `rediss://` URL: `redis://...&ssl=true`.
pub fn tooz_tls_form(url: &str) -> String {
    with_options(&url.replacen("rediss://", "redis://", 1), "ssl=true")
}

/// The test server's URL with `options` (`a=1&b=2`) added.
pub fn url_with(options: &str) -> Option<String> {
    url().map(|url| with_options(&url, options))
}

pub fn with_options(url: &str, options: &str) -> String {
    if options.is_empty() {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&{options}")
    } else {
        format!("{url}?{options}")
    }
}

/// The backend of the test server with `options`, or `None` to skip.
pub fn redis(options: &str) -> Option<&'static RedisBackend> {
    url_with(options).map(|url| lockutils_redis::backend(&url).expect("test server URL"))
}

/// The server's PID.
pub fn server_pid() -> i32 {
    let path = std::env::var(PIDFILE_ENV).expect("run under scripts/redis");
    std::fs::read_to_string(path)
        .expect("PID file")
        .trim()
        .parse()
        .expect("a PID")
}

/// Restarts the server (`keep`: with its keys).
pub fn restart_server(keep: bool) {
    let script = std::env::var(RESTART_ENV)
        .unwrap_or_else(|_| panic!("{RESTART_ENV} is not set: run the tests under scripts/redis"));
    let mut command = Command::new(&script);
    if keep {
        command.arg("--keep");
    }
    let status = command.status().expect("run the restart script");
    assert!(status.success(), "{script} failed: {status}");
}

/// Runs a command on the test server and returns its answer.
pub fn run(redis: &RedisBackend, args: &[&str]) -> redis::Value {
    redis
        .command(args)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The value of `key`, if any.
pub fn get(redis: &RedisBackend, key: &str) -> Option<String> {
    match run(redis, &["GET", key]) {
        redis::Value::Nil => None,
        redis::Value::BulkString(bytes) => Some(String::from_utf8(bytes).unwrap()),
        other => panic!("GET {key}: {other:?}"),
    }
}

/// How many waiters are subscribed to the release channel of `key`: the waiters of the lock
/// (lockutils processes; tooz's poll).
pub fn waiters(redis: &RedisBackend, key: &str) -> i64 {
    match run(redis, &["PUBSUB", "NUMSUB", &format!("{key}:released")]) {
        redis::Value::Array(items) => match items.get(1) {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("NUMSUB: {other:?}"),
        },
        other => panic!("NUMSUB: {other:?}"),
    }
}

/// Polls (bounded by `child::PATIENCE`) until `cond` holds. The short pause between polls only
/// spares the server; the state polled for, not the pause, orders the test.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < child::PATIENCE, "never saw: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts this test binary as a child playing `role`, with external locks going to `url`
/// through `LOCKUTILS_BACKEND_URL` (so the child's lock sites name no backend).
pub fn spawn(url: &str, role: &str, args: &[&str]) -> child::Proc {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command
        .args(["child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env("LOCKUTILS_TEST_CHILD", role)
        .env("LOCKUTILS_TEST_CHILD_ARGS", args.join("\u{1f}"))
        .env(lockutils::BACKEND_URL_ENV, url);
    child::start(command)
}

/// A unique lock name for one test run (tests share one server and run in parallel).
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}
