//! What the backend logs: a refused extension is logged (with the lock and its key) and makes
//! the guard report the lock lost, without touching the key of the new holder; no password
//! appears in any log line or error. In a binary of its own: it installs the log subscriber.
#![cfg(target_os = "linux")]

mod support;

use std::io::Write;
use std::sync::{Mutex, Once};

use lockutils::lock;
use support::{get, redis, run, unique, url, wait_until};

/// Everything logged in this test binary.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> String {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .init();
    });
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

const PASSWORD: &str = "lockutils-test";

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_refused_extension_is_logged_and_leaves_the_new_holders_key_alone() {
    logs();
    let Some(redis) = redis("lock_timeout=0.6") else {
        return;
    };
    let name = unique("refused");
    let key = redis.key(&name, None).unwrap();
    let guard = lock(&name).external(true).backend(redis).acquire().unwrap();
    // Someone else has the key now (as after an expiry and a new acquisition).
    run(redis, &["SET", &key, "someone-else", "PX", "60000"]);
    wait_until("the refused extension logged", || {
        logs()
            .lines()
            .any(|l| l.contains(&key) && l.contains("the extension was refused"))
    });
    // The extension checked the token: the new holder's expiry is untouched (an extension of
    // it would have cut it to 0.6 s).
    let redis::Value::Int(pttl) = run(redis, &["PTTL", &key]) else {
        panic!("PTTL")
    };
    assert!(pttl > 30_000, "{pttl}");
    assert!(!guard.is_external_held().unwrap());
    drop(guard);
    assert_eq!(get(redis, &key).as_deref(), Some("someone-else"));
    let text = logs();
    assert!(
        text.contains("no longer held this holder's token at release"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    run(redis, &["DEL", &key]);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn failures_log_and_report_no_password() {
    logs();
    let Some(url) = url() else { return };
    let bad = url.replace(PASSWORD, "wrong-S3CRET");
    let backend = Box::leak(Box::new(lockutils_redis::RedisBackend::new(&bad).unwrap()));
    let err = lock(&unique("nopw"))
        .external(true)
        .backend(backend)
        .acquire()
        .unwrap_err()
        .to_string();
    assert!(!err.contains("wrong-S3CRET"), "{err}");
    // A lock lost while held, on the right password: its log lines name no password either.
    let redis = redis("lock_timeout=0.3").unwrap();
    let name = unique("nopw-lost");
    let key = redis.key(&name, None).unwrap();
    let guard = lock(&name).external(true).backend(redis).acquire().unwrap();
    run(redis, &["DEL", &key]);
    wait_until("the lost lock logged", || {
        logs()
            .lines()
            .any(|l| l.contains(&key) && l.contains("lost"))
    });
    drop(guard);
    let text = logs();
    assert!(!text.contains("wrong-S3CRET"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}
