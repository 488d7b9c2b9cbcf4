//! Lost and frozen servers, lost connections: the server restarts (with or without its data)
//! or is frozen (SIGSTOP: the kernel still accepts TCP, nothing answers) while a lock is
//! held or waited for, and the connections of a holder and of a waiter are killed. Every
//! case is an error within its bound or a recovery, never a hang. In a test binary of its
//! own, one test at a time ([`SERIAL`]), since these end every connection to the server.
#![cfg(target_os = "linux")]

mod support;

use std::sync::Mutex;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use lockutils::lock;
use support::{get, redis, restart_server, run, spawn, unique, url, wait_until, waiters};

/// One restart at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_restart_that_drops_the_data_is_seen_as_lost_and_locking_recovers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(redis) = redis("lock_timeout=3") else {
        return;
    };
    let name = unique("restart");
    let guard = lock(&name).external(true).backend(redis).acquire().unwrap();
    let token = guard.fencing_token().unwrap();
    assert!(guard.is_external_held().unwrap());

    restart_server(false);

    assert!(!guard.is_external_held().unwrap(), "the key is gone");
    drop(guard);
    let again = lock(&name).external(true).backend(redis).acquire().unwrap();
    assert!(again.is_external_held().unwrap());
    // The counter went with the data: tokens start again (the documented limit).
    assert!(again.fencing_token().unwrap() <= token);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_restart_that_keeps_the_data_keeps_the_lock_held() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A lock timeout long enough that no extension falls while the server is down (one that
    // did would fail, and mark the lock lost: see the next test).
    let Some(redis) = redis("lock_timeout=30") else {
        return;
    };
    let name = unique("restart-keep");
    let key = redis.key(&name, None).unwrap();
    let guard = lock(&name).external(true).backend(redis).acquire().unwrap();
    let token = get(redis, &key).unwrap();

    restart_server(true);

    // Held still, asked over a new connection.
    assert!(guard.is_external_held().unwrap());
    assert_eq!(get(redis, &key), Some(token));
    drop(guard);
    assert_eq!(get(redis, &key), None);
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn an_extension_that_fails_while_the_server_is_down_marks_the_lock_lost() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(redis) = redis("lock_timeout=0.3&socket_connect_timeout=0.2&answer_timeout=0.2")
    else {
        return;
    };
    let name = unique("down-while-held");
    let guard = lock(&name).external(true).backend(redis).acquire().unwrap();
    // Stopped, the server answers nothing: the next extension (within 0.1 s) fails.
    let thaw = freeze();
    // Lost, known without asking the server (which would not answer).
    wait_until("the failed extension", || {
        matches!(guard.is_external_held(), Ok(false))
    });
    drop(thaw);
    // Even though the key may still be there, the lock stays lost for this guard.
    assert!(!guard.is_external_held().unwrap());
}

/// How long a test waits for an operation before declaring that it hangs.
const HANG: Duration = Duration::from_secs(30);

/// Stops the server until the returned value is dropped.
fn freeze() -> Thaw {
    let pid = support::server_pid();
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    Thaw(pid)
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn a_frozen_server_fails_acquires_and_waits_within_their_bounds() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(url) = url() else { return };
    let options = "answer_timeout=0.3&socket_connect_timeout=0.3";
    let url = support::with_options(&url, options);
    // Backends of their own: no pooled connection from another test.
    let fresh = || &*Box::leak(Box::new(lockutils_redis::RedisBackend::new(&url).unwrap()));
    let (waiting_backend, acquiring_backend) = (fresh(), fresh());
    let name = unique("frozen-wait");
    let key = waiting_backend.key(&name, None).unwrap();
    run(
        waiting_backend,
        &["SET", &key, "another-holder", "PX", "60000"],
    );
    let (tx, rx) = channel();
    let waiter = std::thread::spawn({
        let tx = tx.clone();
        move || {
            let outcome = lock(&name)
                .external(true)
                .backend(waiting_backend)
                .acquire();
            tx.send(("wait", outcome.map(drop), Instant::now()))
                .unwrap();
        }
    });
    wait_until("the waiter subscribed", || {
        waiters(waiting_backend, &key) == 1
    });
    let thaw = freeze();
    let frozen = Instant::now();
    std::thread::spawn(move || {
        let outcome = lock(&unique("frozen-acquire"))
            .external(true)
            .backend(acquiring_backend)
            .acquire();
        tx.send(("acquire", outcome.map(drop), Instant::now()))
            .unwrap();
    });
    for _ in 0..2 {
        let (what, outcome, at) = rx.recv_timeout(HANG).expect("an acquire hangs");
        let err = outcome.expect_err(what).to_string();
        assert!(
            err.contains("did not answer") || err.contains("no answer"),
            "{what}: {err}"
        );
        assert!(!err.contains("lockutils-test"), "{err}");
        // Connect (0.3 s) and one request (0.3 s) at most, with room for a loaded machine.
        assert!(
            at - frozen < Duration::from_secs(3),
            "{what}: {:?}",
            at - frozen
        );
    }
    drop(thaw);
    waiter.join().unwrap();
    run(waiting_backend, &["DEL", &key]);
}

/// Continues a stopped server when dropped (also when the test fails).
struct Thaw(i32);

impl Drop for Thaw {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn killed_connections_of_a_holder_and_a_waiter_are_replaced() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(url) = url() else { return };
    let url = support::with_options(&url, "lock_timeout=1.5");
    let redis = lockutils_redis::backend(&url).unwrap();
    let name = unique("killed");
    let key = redis.key(&name, None).unwrap();
    let guard = lock(&name).external(true).backend(redis).acquire().unwrap();
    let mut waiter = spawn(&url, "wait", &[&name]);
    wait_until("the waiter subscribed", || waiters(redis, &key) == 1);
    // Every client connection but the one asking (pub/sub ones included).
    run(redis, &["CLIENT", "KILL", "TYPE", "pubsub"]);
    run(
        redis,
        &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
    );
    // The holder's extension opens a new connection; the lock lives past its timeout.
    let redis::Value::Int(before) = run(redis, &["PTTL", &key]) else {
        panic!()
    };
    wait_until(
        "an extension after the kill",
        || matches!(run(redis, &["PTTL", &key]), redis::Value::Int(ms) if ms > before),
    );
    assert!(guard.is_external_held().unwrap());
    // The waiter goes on waiting (polling), and gets the lock when it is released.
    drop(guard);
    waiter.expect_prefixed("got ");
    assert_eq!(waiter.code(), 0);
}

fn play(role: &str, args: &[String]) -> i32 {
    lockutils_redis::install();
    match role {
        "wait" => {
            let guard = lock(&args[0]).external(true).acquire().unwrap();
            println!("got {}", guard.fencing_token().unwrap());
            0
        }
        _ => panic!("unknown role {role}"),
    }
}

#[test]
fn child() {
    support::child::main(play);
}
