//! Interoperability with the real tooz 9.1.0 (its redis driver, redis-py) from PyPI: the same
//! locks, both ways. `scripts/test` makes the virtualenv (`scripts/oslo-venv`) and points
//! `LOCKUTILS_OSLO_PYTHON` at its python, with `LOCKUTILS_REQUIRE_OSLO=1`, so that these tests
//! cannot silently skip there; the Python side is `tooz_helper.py` beside this file.
#![cfg(target_os = "linux")]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use lockutils::{Error, lock};
use support::child::{self, Proc, start, wait_for_stdin_close};
use support::{get, sentinel_url, spawn, unique, url, wait_until, waiters, with_options};
#[cfg(feature = "tls")]
use support::{tls_url, tooz_tls_form};

const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tooz_helper.py");

/// The virtualenv's python, or `None` (skip) without one.
fn python() -> Option<String> {
    match std::env::var("LOCKUTILS_OSLO_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            assert!(
                std::env::var_os("LOCKUTILS_REQUIRE_OSLO").is_none(),
                "LOCKUTILS_REQUIRE_OSLO is set but LOCKUTILS_OSLO_PYTHON is not"
            );
            eprintln!("skipped: LOCKUTILS_OSLO_PYTHON is not set (scripts/test sets it)");
            None
        }
    }
}

/// The test server's URL and the virtualenv's python, or `None` to skip.
fn setup(options: &str) -> Option<(String, String)> {
    let url = with_options(&url()?, options);
    Some((url, python()?))
}

/// tooz playing `role` on lock `name` (tooz's name: the prefix already joined).
fn tooz(python: &str, url: &str, role: &str, name: &str, args: &[&str]) -> Proc {
    let mut command = Command::new(python);
    command.arg(HELPER).arg(url).arg(role).arg(name).args(args);
    start(command)
}

/// A cinder-style volume lock: lockutils' name and prefix, and tooz's name for the same lock.
fn cinder_lock(what: &str) -> (String, &'static str, String) {
    let id = unique(what);
    let name = format!("{id}-delete_volume");
    let tooz_name = format!("cinder-{name}");
    (name, "cinder", tooz_name)
}

fn play(role: &str, args: &[String]) -> i32 {
    lockutils_redis::install();
    let arg = |i: usize| args[i].as_str();
    match role {
        "hold" => {
            let guard = lock(arg(0))
                .prefix(arg(1))
                .external(true)
                .acquire()
                .unwrap();
            println!("held {}", guard.fencing_token().unwrap());
            wait_for_stdin_close();
            0
        }
        "wait" => {
            let _guard = lock(arg(0))
                .prefix(arg(1))
                .external(true)
                .acquire()
                .unwrap();
            println!("got");
            0
        }
        "count" => {
            let (name, prefix, path) = (arg(0), arg(1), arg(2));
            let n: usize = arg(3).parse().unwrap();
            child::ready_then_go();
            for _ in 0..n {
                let _guard = lock(name).prefix(prefix).external(true).acquire().unwrap();
                let value: u64 = std::fs::read_to_string(path)
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                std::fs::write(path, (value + 1).to_string()).unwrap();
            }
            println!("done");
            0
        }
        _ => panic!("unknown role {role}"),
    }
}

#[test]
fn child() {
    support::child::main(play);
}

#[test]
#[ignore = "needs a Redis server and tooz: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_lock_held_by_tooz_excludes_lockutils_until_tooz_releases_it() {
    let Some((url, python)) = setup("") else {
        return;
    };
    let redis = lockutils_redis::backend(&url).unwrap();
    let (name, prefix, tooz_name) = cinder_lock("tooz-holds");
    let key = redis.key(&name, Some(prefix)).unwrap();
    assert_eq!(key, format!("_tooz_{tooz_name}_lock"));
    let mut holder = tooz(&python, &url, "hold", &tooz_name, &[]);
    holder.expect("held");
    assert!(get(redis, &key).is_some(), "tooz's key is {key}");

    let err = lock(&name)
        .prefix(prefix)
        .external(true)
        .backend(redis)
        .blocking(false)
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::AcquireLockFailed { .. }), "{err}");

    let mut waiter = spawn(&url, "wait", &[&name, prefix]);
    wait_until("the lockutils waiter subscribed", || {
        waiters(redis, &key) == 1
    });
    // tooz's release announces nothing: the waiter's polling sees it.
    drop(holder);
    waiter.expect("got");
    assert_eq!(waiter.code(), 0);
}

#[test]
#[ignore = "needs a Redis server and tooz: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_lock_held_by_lockutils_excludes_tooz_until_lockutils_releases_it() {
    let Some((url, python)) = setup("namespace=cinder_ns") else {
        return;
    };
    let redis = lockutils_redis::backend(&url).unwrap();
    let (name, prefix, tooz_name) = cinder_lock("lockutils-holds");
    let key = redis.key(&name, Some(prefix)).unwrap();
    assert_eq!(key, format!("cinder_ns_{tooz_name}_lock"));
    let guard = lock(&name)
        .prefix(prefix)
        .external(true)
        .backend(redis)
        .acquire()
        .unwrap();
    let mut tried = tooz(&python, &url, "try", &tooz_name, &[]);
    tried.expect("busy");
    assert_eq!(tried.code(), 0);
    let mut waiter = tooz(&python, &url, "wait", &tooz_name, &[]);
    // tooz polls: its first try was refused, it waits.
    waiter.expect("waiting");
    drop(guard);
    waiter.expect("got");
    assert_eq!(waiter.code(), 0);
    assert_eq!(get(redis, &key), None);
}

#[test]
#[ignore = "needs a Redis server and tooz: scripts/test runs it (scripts/redis, --include-ignored)"]
fn two_lockutils_and_two_tooz_processes_count_exactly() {
    let Some((url, python)) = setup("") else {
        return;
    };
    let redis = lockutils_redis::backend(&url).unwrap();
    let (name, prefix, tooz_name) = cinder_lock("count");
    let key = redis.key(&name, Some(prefix)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter");
    std::fs::write(&path, "0").unwrap();
    let path = path.to_str().unwrap();
    const EACH: usize = 60;
    let n = EACH.to_string();
    // Held here until everyone is ready to contend.
    let gate = lock(&name)
        .prefix(prefix)
        .external(true)
        .backend(redis)
        .acquire()
        .unwrap();
    let mut procs = vec![
        spawn(&url, "count", &[&name, prefix, path, &n]),
        spawn(&url, "count", &[&name, prefix, path, &n]),
        tooz(&python, &url, "count", &tooz_name, &[path, &n]),
        tooz(&python, &url, "count", &tooz_name, &[path, &n]),
    ];
    for p in &mut procs {
        p.expect("ready");
        p.send("go");
    }
    wait_until("the lockutils processes wait", || waiters(redis, &key) == 2);
    drop(gate);
    for mut p in procs {
        p.expect("done");
        assert_eq!(p.code(), 0);
    }
    let total: usize = std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(total, 4 * EACH);
}

#[test]
#[ignore = "needs a Redis server and tooz: scripts/test runs it (scripts/redis, --include-ignored)"]
fn sigkilled_holders_on_either_side_free_the_lock_after_the_lock_timeout() {
    let Some((url, python)) = setup("lock_timeout=1") else {
        return;
    };
    let redis = lockutils_redis::backend(&url).unwrap();
    let (name, prefix, tooz_name) = cinder_lock("sigkill");
    let key = redis.key(&name, Some(prefix)).unwrap();

    // tooz holds, is killed; lockutils gets the lock once the key expires.
    let mut holder = tooz(&python, &url, "hold", &tooz_name, &[]);
    holder.expect("held");
    let mut waiter = spawn(&url, "wait", &[&name, prefix]);
    wait_until("the lockutils waiter subscribed", || {
        waiters(redis, &key) == 1
    });
    let killed = Instant::now();
    holder.kill();
    waiter.expect("got");
    assert!(
        killed.elapsed() < Duration::from_secs(4),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(waiter.code(), 0);

    // lockutils holds, is killed; tooz gets the lock once the key expires.
    let mut holder = spawn(&url, "hold", &[&name, prefix]);
    holder.expect_prefixed("held ");
    let mut waiter = tooz(&python, &url, "wait", &tooz_name, &[]);
    waiter.expect("waiting");
    let killed = Instant::now();
    holder.kill();
    waiter.expect("got");
    assert!(
        killed.elapsed() < Duration::from_secs(4),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(waiter.code(), 0);
}

#[test]
#[ignore = "needs a Redis server and tooz: scripts/test runs it (scripts/redis, --include-ignored)"]
fn tooz_and_lockutils_share_a_lock_through_a_sentinel_url() {
    let Some((_, python)) = setup("") else {
        return;
    };
    let sentinel = sentinel_url().unwrap();
    let redis = lockutils_redis::backend(&sentinel).unwrap();
    let (name, prefix, tooz_name) = cinder_lock("sentinel");
    let guard = lock(&name)
        .prefix(prefix)
        .external(true)
        .backend(redis)
        .acquire()
        .unwrap();
    let mut tried = tooz(&python, &sentinel, "try", &tooz_name, &[]);
    tried.expect("busy");
    assert_eq!(tried.code(), 0);
    drop(guard);
    let mut tried = tooz(&python, &sentinel, "try", &tooz_name, &[]);
    tried.expect("got");
    assert_eq!(tried.code(), 0);
}

#[cfg(feature = "tls")]
#[test]
#[ignore = "needs a Redis server and tooz: scripts/test runs it (scripts/redis, --include-ignored)"]
fn tooz_and_lockutils_share_a_lock_over_tls() {
    let Some((_, python)) = setup("") else {
        return;
    };
    let tls = tls_url().unwrap();
    let redis = lockutils_redis::backend(&tls).unwrap();
    let (name, prefix, tooz_name) = cinder_lock("tls");
    let guard = lock(&name)
        .prefix(prefix)
        .external(true)
        .backend(redis)
        .acquire()
        .unwrap();
    // tooz takes TLS as redis://...?ssl=true&ssl_ca_certs=...
    let tooz_url = tooz_tls_form(&tls);
    let mut tried = tooz(&python, &tooz_url, "try", &tooz_name, &[]);
    tried.expect("busy");
    assert_eq!(tried.code(), 0);
    drop(guard);
    let mut tried = tooz(&python, &tooz_url, "try", &tooz_name, &[]);
    tried.expect("got");
    assert_eq!(tried.code(), 0);
}
