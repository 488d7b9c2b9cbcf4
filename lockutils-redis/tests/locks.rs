//! The Redis backend against a real server (started by `scripts/redis`): exclusion between
//! processes with exact counts, SIGKILLed holders, non-blocking and timed failures, the
//! handoff on release, fencing tokens, lock loss seen from outside, and bad conditions.
#![cfg(target_os = "linux")]

mod support;

use std::time::{Duration, Instant};

use lockutils::{Error, lock, synchronized};
use support::child::{self, wait_for_stdin_close};
use support::{
    get, redis, run, sentinel_url, spawn, unique, url, url_with, wait_until, waiters, with_options,
};
#[cfg(feature = "tls")]
use support::{tls_url, tooz_tls_form};

/// The roles child processes play. Their lock sites name no backend: it comes from
/// `LOCKUTILS_BACKEND_URL`, which `support::spawn` sets.
fn play(role: &str, args: &[String]) -> i32 {
    lockutils_redis::install();
    let arg = |i: usize| args[i].as_str();
    match role {
        "count" => {
            let (name, path) = (arg(0).to_owned(), arg(1).to_owned());
            let n: usize = arg(2).parse().unwrap();
            child::ready_then_go();
            for _ in 0..n {
                let guard = lock(&name).external(true).acquire().unwrap();
                bump(&path);
                drop(guard);
            }
            println!("done");
            0
        }
        "hold" => {
            let guard = lock(arg(0)).external(true).acquire().unwrap();
            println!("held {}", guard.fencing_token().unwrap());
            wait_for_stdin_close();
            0
        }
        "wait" => {
            let guard = lock(arg(0)).external(true).acquire().unwrap();
            println!("got {}", guard.fencing_token().unwrap());
            0
        }
        "try" => {
            match lock(arg(0)).external(true).blocking(false).acquire() {
                Ok(_) => println!("got"),
                Err(Error::AcquireLockFailed { .. }) => println!("busy"),
                Err(e) => println!("error {e}"),
            }
            0
        }
        "attribute" => {
            println!("attribute {:?}", under_the_attribute());
            let err = lock(arg(0))
                .external(true)
                .shared(true)
                .acquire()
                .unwrap_err();
            println!("shared {}", matches!(err, Error::Backend { .. }));
            println!("error {err}");
            0
        }
        _ => panic!("unknown role {role}"),
    }
}

#[test]
fn child() {
    child::main(play);
}

/// One increment of the counter in the file at `path`, as a separate read and write: only
/// mutual exclusion across the processes keeps the count exact.
fn bump(path: &str) {
    child::increment_counter_file(path);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn three_processes_count_exactly_under_one_lock() {
    let Some(url) = url() else { return };
    let redis = redis("").unwrap();
    let name = unique("counter");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter");
    std::fs::write(&path, "0").unwrap();
    let path = path.to_str().unwrap();
    const PER_PROCESS: usize = 150;
    let n = PER_PROCESS.to_string();
    // The lock starts held here, and is let go only once every process waits for it: they
    // contend from the first increment.
    let gate = lock(&name).external(true).backend(redis).acquire().unwrap();
    let key = redis.key(&name, None).unwrap();
    let mut children: Vec<_> = (0..3)
        .map(|_| spawn(&url, "count", &[&name, path, &n]))
        .collect();
    for p in &mut children {
        p.expect("ready");
        p.send("go");
    }
    wait_until("three processes waiting on the release channel", || {
        waiters(redis, &key) == 3
    });
    drop(gate);
    for mut p in children {
        p.expect("done");
        assert_eq!(p.code(), 0);
    }
    let total: usize = std::fs::read_to_string(path).unwrap().parse().unwrap();
    assert_eq!(total, 3 * PER_PROCESS);
    assert_eq!(get(redis, &key), None, "every holder deleted its key");
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn the_lock_is_toozs_key_with_a_token_and_the_lock_timeout_as_expiry() {
    let Some(redis) = redis("lock_timeout=7") else {
        return;
    };
    let name = unique("wire");
    let guard = lock("x-delete_volume")
        .prefix(&name)
        .external(true)
        .backend(redis)
        .acquire()
        .unwrap();
    let key = format!("_tooz_{name}-x-delete_volume_lock");
    let token = get(redis, &key).expect("the key is set");
    assert_eq!(token.len(), 32);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
    let redis::Value::Int(pttl) = run(redis, &["PTTL", &key]) else {
        panic!("PTTL")
    };
    assert!(pttl > 5_000 && pttl <= 7_000, "{pttl}");
    assert!(guard.is_external_held().unwrap());
    drop(guard);
    assert_eq!(get(redis, &key), None);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn non_blocking_and_timed_acquires_fail_as_acquire_lock_failed() {
    let Some(url) = url() else { return };
    let redis = redis("").unwrap();
    let name = unique("busy");
    let mut holder = spawn(&url, "hold", &[&name]);
    holder.expect_prefixed("held ");

    let err = lock(&name)
        .external(true)
        .backend(redis)
        .blocking(false)
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::AcquireLockFailed { .. }), "{err}");

    let started = Instant::now();
    let err = lock(&name)
        .external(true)
        .backend(redis)
        .timeout(Duration::from_millis(300))
        .acquire()
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, Error::AcquireLockFailed { .. }), "{err}");
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    drop(holder);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_blocked_waiter_gets_the_lock_when_the_holder_releases() {
    let Some(url) = url() else { return };
    let redis = redis("").unwrap();
    let name = unique("handoff");
    let key = redis.key(&name, None).unwrap();
    let guard = lock(&name).external(true).backend(redis).acquire().unwrap();
    let first = guard.fencing_token().unwrap();
    let mut waiter = spawn(&url, "wait", &[&name]);
    wait_until("the waiter subscribed", || waiters(redis, &key) == 1);
    drop(guard);
    let got: i64 = waiter.expect_prefixed("got ").parse().unwrap();
    assert!(got > first, "fencing tokens grow: {first} then {got}");
    assert_eq!(waiter.code(), 0);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_waiter_sees_a_release_that_was_not_announced() {
    // tooz's release deletes the key without a message: the waiter's polling sees it.
    let Some(url) = url() else { return };
    let redis = redis("").unwrap();
    let name = unique("unannounced");
    let key = redis.key(&name, None).unwrap();
    run(redis, &["SET", &key, "a-tooz-token", "PX", "60000"]);
    let mut waiter = spawn(&url, "wait", &[&name]);
    wait_until("the waiter subscribed", || waiters(redis, &key) == 1);
    run(redis, &["DEL", &key]);
    waiter.expect_prefixed("got ");
    assert_eq!(waiter.code(), 0);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_sigkilled_holder_frees_the_lock_after_the_lock_timeout() {
    let Some(url) = url_with("lock_timeout=1") else {
        return;
    };
    let redis = lockutils_redis::backend(&url).unwrap();
    let name = unique("sigkill");
    let key = redis.key(&name, None).unwrap();
    let mut holder = spawn(&url, "hold", &[&name]);
    holder.expect_prefixed("held ");
    let mut waiter = spawn(&url, "wait", &[&name]);
    wait_until("the waiter subscribed", || waiters(redis, &key) == 1);
    let killed = Instant::now();
    holder.kill();
    waiter.expect_prefixed("got ");
    let after = killed.elapsed();
    // The key lives at most one lock timeout past the last extension (a third of it before).
    assert!(after < Duration::from_secs(3), "{after:?}");
    assert_eq!(waiter.code(), 0);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn the_holder_keeps_its_lock_past_the_lock_timeout_by_extending_it() {
    let Some(redis) = redis("lock_timeout=0.3") else {
        return;
    };
    let name = unique("extend");
    let key = redis.key(&name, None).unwrap();
    let guard = lock(&name)
        .external(true)
        .backend(redis)
        .timeout(Duration::from_millis(50))
        .acquire()
        .unwrap();
    let token = get(redis, &key).unwrap();
    // Four lock timeouts: the key lives on only if it is extended (and `timeout` bounded the
    // wait, not the expiry).
    let until = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < until {
        assert_eq!(get(redis, &key).as_deref(), Some(token.as_str()));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(guard.is_external_held().unwrap());
    drop(guard);
    assert_eq!(get(redis, &key), None);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_key_deleted_or_taken_from_outside_is_seen_as_lost_and_never_deleted_by_release() {
    let Some(redis) = redis("") else { return };
    let name = unique("outside");
    let key = redis.key(&name, None).unwrap();
    let guard = lock(&name).external(true).backend(redis).acquire().unwrap();
    assert!(guard.is_external_held().unwrap());
    run(redis, &["DEL", &key]);
    assert!(!guard.is_external_held().unwrap());
    // Another holder takes it: the lost guard's release leaves it alone.
    run(redis, &["SET", &key, "someone-else", "PX", "60000"]);
    assert!(!guard.is_external_held().unwrap());
    drop(guard);
    assert_eq!(get(redis, &key).as_deref(), Some("someone-else"));
    run(redis, &["DEL", &key]);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_key_expired_from_outside_is_seen_as_lost_and_the_lock_can_be_taken_again() {
    let Some(redis) = redis("") else { return };
    let name = unique("expire");
    let key = redis.key(&name, None).unwrap();
    let guard = lock(&name).external(true).backend(redis).acquire().unwrap();
    run(redis, &["PEXPIRE", &key, "1"]);
    wait_until("the key expired", || get(redis, &key).is_none());
    assert!(!guard.is_external_held().unwrap());
    // Lost for good, even once the key exists again.
    run(redis, &["SET", &key, "someone-else", "PX", "60000"]);
    assert!(!guard.is_external_held().unwrap());
    run(redis, &["DEL", &key]);
    drop(guard);
    let again = lock(&name).external(true).backend(redis).acquire().unwrap();
    assert!(again.is_external_held().unwrap());
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn fencing_tokens_strictly_increase_across_processes_and_locks() {
    let Some(url) = url() else { return };
    let redis = redis("").unwrap();
    let mut last = 0;
    for i in 0..5 {
        let name = unique(&format!("fence{i}"));
        let token = lock(&name)
            .external(true)
            .backend(redis)
            .acquire()
            .unwrap()
            .fencing_token()
            .unwrap();
        assert!(token > last, "{last} then {token}");
        last = token;
        let mut child = spawn(&url, "wait", &[&name]);
        let token: i64 = child.expect_prefixed("got ").parse().unwrap();
        assert!(token > last, "{last} then {token}");
        last = token;
        assert_eq!(child.code(), 0);
    }
}

#[synchronized("redis-attribute", external = true)]
fn under_the_attribute() -> Option<i64> {
    Some(1)
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn the_attribute_takes_the_lock_and_shared_locks_are_refused_through_the_backend_url() {
    let Some(url) = url() else { return };
    let redis = redis("").unwrap();
    // The attribute's lock is held by this process: the child's attribute must wait for it.
    let held = lock("redis-attribute")
        .external(true)
        .backend(redis)
        .acquire()
        .unwrap();
    let key = redis.key("redis-attribute", None).unwrap();
    let mut child = spawn(&url, "attribute", &[&unique("shared")]);
    wait_until("the child's attribute waits", || waiters(redis, &key) == 1);
    drop(held);
    child.expect("attribute Some(1)");
    child.expect("shared true");
    let text = child.expect_prefixed("error ");
    assert!(text.contains("shared"), "{text}");
    assert!(!text.contains("lockutils-test"), "{text}");
    assert_eq!(child.code(), 0);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn wrong_password_is_a_clear_error_without_the_password() {
    let Some(url) = url() else { return };
    let bad = url.replace(":lockutils-test@", ":not-the-S3CRET@");
    assert_ne!(bad, url);
    let backend = Box::leak(Box::new(lockutils_redis::RedisBackend::new(&bad).unwrap()));
    let err = lock(&unique("wrongpw"))
        .external(true)
        .backend(backend)
        .acquire()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains("not-the-S3CRET"), "{text}");
    assert!(text.contains("***"), "{text}");
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_server_that_refuses_scripts_is_a_clear_error() {
    let Some(url) = url() else { return };
    let redis = redis("").unwrap();
    let user = unique("noscript");
    run(
        redis,
        &[
            "ACL",
            "SETUSER",
            &user,
            "on",
            ">noscript-pw",
            "~*",
            "&*",
            "+@all",
            "-@scripting",
        ],
    );
    let port = url.rsplit(':').next().unwrap();
    let url = format!("redis://{user}:noscript-pw@127.0.0.1:{port}");
    let backend = Box::leak(Box::new(lockutils_redis::RedisBackend::new(&url).unwrap()));
    let err = lock(&unique("noscript"))
        .external(true)
        .backend(backend)
        .acquire()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("refuses Lua scripts"), "{text}");
    assert!(!text.contains("noscript-pw"), "{text}");
    run(redis, &["ACL", "DELUSER", &user]);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn server_down_fails_promptly_with_a_clear_error() {
    let Some(_) = url() else { return };
    // A port nobody listens on: bound, never listened on, so the kernel refuses connections.
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    drop(socket);
    let url = format!("redis://:pw-down@127.0.0.1:{port}");
    let backend = Box::leak(Box::new(lockutils_redis::RedisBackend::new(&url).unwrap()));
    let started = Instant::now();
    let err = lock(&unique("down"))
        .external(true)
        .backend(backend)
        .acquire()
        .unwrap_err();
    let text = err.to_string();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(text.contains("cannot connect"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("pw-down"), "{text}");
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn unknown_url_options_are_refused_when_the_lock_is_taken() {
    let Some(url) = url() else { return };
    let bad = with_options(&url, "lock_timout=3");
    let err = lockutils_redis::RedisBackend::new(&bad).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unknown option \"lock_timout\""), "{text}");
    assert!(!text.contains("lockutils-test"), "{text}");
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_sentinel_url_takes_the_same_lock_on_the_master_it_names() {
    let Some(sentinel) = sentinel_url() else {
        return;
    };
    let url = url().unwrap();
    let direct = redis("").unwrap();
    let through = lockutils_redis::backend(&sentinel).unwrap();
    let name = unique("sentinel");
    let key = through.key(&name, None).unwrap();
    let guard = lock(&name)
        .external(true)
        .backend(through)
        .acquire()
        .unwrap();
    assert!(guard.is_external_held().unwrap());
    assert!(get(direct, &key).is_some(), "the key is on the master");
    // Another process on the master's own URL is excluded, and has it after the release.
    let mut other = spawn(&url, "try", &[&name]);
    other.expect("busy");
    assert_eq!(other.code(), 0);
    drop(guard);
    let mut other = spawn(&url, "try", &[&name]);
    other.expect("got");
    assert_eq!(other.code(), 0);
    // A Sentinel that knows no such master is a clear error.
    let unknown = sentinel.replace("sentinel=lockutils", "sentinel=nosuchmaster");
    let backend = Box::leak(Box::new(
        lockutils_redis::RedisBackend::new(&unknown).unwrap(),
    ));
    let err = lock(&unique("sentinel-unknown"))
        .external(true)
        .backend(backend)
        .acquire()
        .unwrap_err()
        .to_string();
    assert!(err.contains("knows no master \"nosuchmaster\""), "{err}");
    assert!(!err.contains("lockutils-test"), "{err}");
}

#[cfg(feature = "tls")]
#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn tls_urls_in_both_forms_take_the_same_lock_and_a_wrong_ca_is_refused() {
    let Some(tls) = tls_url() else { return };
    let direct = redis("").unwrap();
    let over_tls = lockutils_redis::backend(&tls).unwrap();
    let name = unique("tls");
    let key = over_tls.key(&name, None).unwrap();
    let guard = lock(&name)
        .external(true)
        .backend(over_tls)
        .acquire()
        .unwrap();
    assert!(guard.is_external_held().unwrap());
    assert!(get(direct, &key).is_some(), "the key is on the server");
    // tooz's form (redis://...?ssl=true&ssl_ca_certs=...) in another process: excluded.
    let mut other = spawn(&tooz_tls_form(&tls), "try", &[&name]);
    other.expect("busy");
    assert_eq!(other.code(), 0);
    drop(guard);
    let mut other = spawn(&tooz_tls_form(&tls), "try", &[&name]);
    other.expect("got");
    assert_eq!(other.code(), 0);
    // Without the test CA, the server's certificate is not trusted: a clear error.
    let (base, _) = tls.split_once('?').unwrap();
    let untrusted = Box::leak(Box::new(lockutils_redis::RedisBackend::new(base).unwrap()));
    let err = lock(&unique("tls-untrusted"))
        .external(true)
        .backend(untrusted)
        .acquire()
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(!err.contains("lockutils-test"), "{err}");
}
