//! The PostgreSQL backend against a real server (started by `scripts/postgres`): exclusion
//! between processes, a SIGKILL'd holder, non-blocking and timed failures enforced by the
//! server, shared locks, fencing tokens, the key function, backend selection and bad
//! conditions.
#![cfg(target_os = "linux")]

mod support;

use std::time::{Duration, Instant};

use lockutils::{Error, lock, synchronized};
use lockutils_postgres::{PgBackend, key_of, key_sql, lock_key};
use support::child::{self, wait_for_stdin_close};
use support::{db, spawn, unique, wait_until, waiting};

/// The roles child processes play. Their lock sites name no backend: it comes from
/// `LOCKUTILS_BACKEND_URL`, which `support::spawn` sets to the test server.
fn play(role: &str, args: &[String]) -> i32 {
    lockutils_postgres::install();
    let arg = |i: usize| args[i].as_str();
    match role {
        "count" => {
            let path = arg(0).to_owned();
            let n: usize = arg(1).parse().unwrap();
            child::ready_then_go();
            child::in_threads(2, n, || bump(&path).unwrap());
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
        "acquire-error" => {
            let error = lock(arg(0)).external(true).acquire().unwrap_err();
            println!("error {error}");
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
#[synchronized("pg-counter", external = true)]
fn bump(path: &str) -> Result<(), Error> {
    child::increment_counter_file(path);
    Ok(())
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn two_processes_count_exactly_under_one_distributed_lock() {
    let Some(db) = db() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter");
    std::fs::write(&path, "0").unwrap();
    let path = path.to_str().unwrap();
    const PER_PROCESS: usize = 400;
    let n = PER_PROCESS.to_string();
    // The lock starts held here, and is let go only once both processes wait for it on the
    // server: they contend from the first increment.
    let (_, key) = key_of("pg-counter", None).unwrap();
    let counter_lock = db.lock("pg-counter", None).unwrap();
    let gate = counter_lock.write().unwrap();
    let mut a = spawn("count", &[path, &n]);
    let mut b = spawn("count", &[path, &n]);
    for p in [&mut a, &mut b] {
        p.expect("ready");
        p.send("go");
    }
    wait_until("both processes queued on the server", || {
        waiting(db, key) == 2
    });
    drop(gate);
    a.expect("done");
    b.expect("done");
    assert_eq!(a.code(), 0);
    assert_eq!(b.code(), 0);
    let total: usize = std::fs::read_to_string(path).unwrap().parse().unwrap();
    assert_eq!(total, 2 * PER_PROCESS);
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn a_sigkilled_holder_frees_the_lock_for_a_queued_waiter_at_once() {
    let Some(db) = db() else { return };
    let name = unique("sigkill");
    let (_, key) = key_of(&name, None).unwrap();
    let mut holder = spawn("hold", &[&name]);
    holder.expect_prefixed("held ");
    let mut waiter = spawn("wait", &[&name]);
    wait_until("the waiter queued on the server", || waiting(db, key) == 1);
    let killed = Instant::now();
    holder.kill();
    waiter.expect_prefixed("got ");
    let handoff = killed.elapsed();
    assert_eq!(waiter.code(), 0);
    // The server notices the closed socket at once (milliseconds here); the bound is the
    // one promised.
    assert!(handoff < Duration::from_secs(1), "handoff took {handoff:?}");
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn non_blocking_and_timed_acquires_fail_as_acquire_lock_failed() {
    let Some(db) = db() else { return };
    let name = unique("busy");
    // Another session holds it (the crate's own API takes no in-process lock).
    let other = db.lock(&name, None).unwrap();
    let held = other.write().unwrap();

    let err = lock(&name)
        .external(true)
        .backend(db)
        .blocking(false)
        .acquire()
        .unwrap_err();
    assert!(
        matches!(err, Error::AcquireLockFailed { waited: None, .. }),
        "{err}"
    );

    let started = Instant::now();
    let err = lock(&name)
        .external(true)
        .backend(db)
        .timeout(Duration::from_millis(200))
        .acquire()
        .unwrap_err();
    assert!(
        matches!(err, Error::AcquireLockFailed { waited: Some(w), .. } if w == Duration::from_millis(200)),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        waiting(db, other.key()),
        0,
        "a timed-out waiter left the queue"
    );

    // The busy lock was not taken by the failed tries, and is free once released.
    assert!(other.try_write().is_err());
    drop(held);
    let guard = lock(&name)
        .external(true)
        .backend(db)
        .blocking(false)
        .acquire()
        .unwrap();
    assert!(guard.is_external_held().unwrap());
    let err = other.try_write_for(Duration::from_millis(50)).unwrap_err();
    assert!(err.is_acquire_failed(), "{err}");
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn a_blocking_acquire_waits_on_the_server_until_release() {
    let Some(db) = db() else { return };
    let name = unique("queue");
    let other = db.lock(&name, None).unwrap();
    let held = other.write().unwrap();
    let first = held.fencing_token();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let guard = lock(&name).external(true).backend(db).acquire().unwrap();
            guard.fencing_token().unwrap()
        });
        wait_until("the waiter queued on the server", || {
            waiting(db, other.key()) == 1
        });
        assert!(!waiter.is_finished());
        drop(held);
        let token = waiter.join().unwrap();
        assert!(token > first, "{token} after {first}");
    });
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn lock_shared_takes_a_shared_advisory_lock_through_the_backend_interface() {
    let Some(db) = db() else { return };
    let name = unique("lock-shared");
    let server = db.lock(&name, None).unwrap();
    let shared = || lock(&name).shared(true).external(true).backend(db);
    let one = shared().acquire().unwrap();
    assert!(one.is_shared() && one.is_external_held().unwrap());
    // Shared on the server: another session shares it, no session may write.
    assert!(server.try_write().unwrap_err().is_acquire_failed());
    drop(server.try_read().unwrap());
    // A second in-process holder shares the first one's session.
    std::thread::scope(|s| {
        s.spawn(|| drop(shared().blocking(false).acquire().unwrap()))
            .join()
            .unwrap();
    });
    drop(one);
    drop(server.try_write().unwrap());
    // An exclusive holder on the server keeps the shared side out.
    let writer = server.write().unwrap();
    assert!(
        shared()
            .blocking(false)
            .acquire()
            .unwrap_err()
            .is_acquire_failed()
    );
    writer.release().unwrap();
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn shared_locks_admit_many_readers_and_exclude_the_writer() {
    let Some(db) = db() else { return };
    let name = unique("shared");
    let lock = db.lock(&name, Some("glance")).unwrap();
    assert_eq!(lock.name(), format!("glance-{name}"));
    let readers: Vec<_> = (0..4).map(|_| lock.read().unwrap()).collect();
    assert!(lock.try_read().is_ok());
    assert!(lock.try_write().unwrap_err().is_acquire_failed());
    assert!(
        lock.try_write_for(Duration::from_millis(50))
            .unwrap_err()
            .is_acquire_failed()
    );
    // A queued writer is served when the last reader leaves.
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let w = lock.write().unwrap();
            assert!(w.is_held().unwrap());
            assert!(lock.try_read().unwrap_err().is_acquire_failed());
            w.release().unwrap();
        });
        wait_until("the writer queued on the server", || {
            waiting(db, lock.key()) == 1
        });
        // A new reader does not jump the queued writer, not even with a try (which every
        // acquire starts with).
        assert!(lock.try_read().unwrap_err().is_acquire_failed());
        let mut readers = readers;
        while let Some(reader) = readers.pop() {
            assert!(!writer.is_finished());
            reader.release().unwrap();
        }
        writer.join().unwrap();
    });
    assert!(lock.try_write().is_ok());
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn fencing_tokens_strictly_increase_across_sessions_and_processes() {
    let Some(db) = db() else { return };
    let name = unique("fencing");
    let own = db.lock(&name, None).unwrap();
    let mut tokens = Vec::new();
    for round in 0..3 {
        let guard = own.write().unwrap();
        tokens.push(guard.fencing_token());
        drop(guard);
        let guard = lock(&name).external(true).backend(db).acquire().unwrap();
        tokens.push(guard.fencing_token().unwrap());
        drop(guard);
        let mut child = spawn("hold", &[&name]);
        tokens.push(child.expect_prefixed("held ").parse().unwrap());
        assert_eq!(child.code(), 0, "round {round}");
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "not strictly increasing: {tokens:?}"
    );
}

#[test]
fn the_key_function_has_its_documented_values() {
    // The documented test vectors.
    assert_eq!(lock_key(""), -2039914840885289964);
    assert_eq!(lock_key("lock"), 865541628958336260);
    assert_eq!(lock_key("nova-x_y"), -9035888020270672814);
    assert_eq!(lock_key("instance-42"), 4383225278894057787);
    assert_eq!(lock_key("é"), 5375421630974772051);
    // The full name is the lock file's name.
    assert_eq!(key_of("x/y", Some("nova")).unwrap().1, lock_key("nova-x_y"));
    assert_eq!(
        key_of("x/y", Some("nova-")).unwrap().1,
        lock_key("nova-x_y")
    );
    assert!(key_of("", None).is_err());
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn the_documented_sql_computes_the_same_keys_and_takes_the_same_lock() {
    let Some(db) = db() else { return };
    for name in ["", "lock", "nova-x_y", "instance-42", "é", "ünïcødé/名前"] {
        let literal = format!("'{}'", name.replace('\'', "''"));
        let got = db.query(&format!("SELECT {}", key_sql(&literal))).unwrap();
        assert_eq!(got, vec![Some(lock_key(name).to_string())], "{name:?}");
    }
    // A SQL client locking by the documented expression excludes lockutils.
    let name = unique("sql-client");
    let key = lock_key(&name);
    let holder = db.lock(&name, None).unwrap();
    let guard = holder.write().unwrap();
    let taken = db
        .query(&format!(
            "SELECT pg_try_advisory_lock({})",
            key_sql(&format!("'{name}'"))
        ))
        .unwrap();
    assert_eq!(taken, vec![Some("f".to_owned())], "key {key}");
    drop(guard);
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn a_fair_lock_reenters_with_its_session_and_refuses_another_backend() {
    let Some(db) = db() else { return };
    let name = unique("reentrant");
    let outer = lock(&name)
        .fair(true)
        .external(true)
        .backend(db)
        .acquire()
        .unwrap();
    let inner = lock(&name)
        .fair(true)
        .external(true)
        .backend(db)
        .acquire()
        .unwrap();
    assert_eq!(inner.fencing_token(), outer.fencing_token());
    // The same name with lock files instead is another external lock: refused.
    let dir = tempfile::tempdir().unwrap();
    let err = lock(&name)
        .fair(true)
        .external(true)
        .backend(&lockutils::FileBackend)
        .lock_path(dir.path())
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions { .. }), "{err}");
    drop(inner);
    assert!(outer.is_external_held().unwrap());
    drop(outer);
    assert!(db.lock(&name, None).unwrap().try_write().is_ok());
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn server_down_fails_promptly_with_a_clear_error() {
    let Some(_) = db() else { return };
    let port = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().port()
    };
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/locks?connect_timeout=2");
    let down = lockutils_postgres::backend(&url).unwrap();
    let started = Instant::now();
    let err = lock("down")
        .external(true)
        .backend(down)
        .acquire()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{text}");
    assert!(
        text.starts_with("lock down (postgres://app:***@127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("cannot connect to the server"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // Nothing left held in-process.
    assert!(lock("down").blocking(false).acquire().is_ok());
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn wrong_credentials_are_a_clear_error_without_the_password() {
    let Some(_) = db() else { return };
    let url = support::url().unwrap();
    let wrong = url.replacen(":lockutils-test@", ":not-the-password@", 1);
    assert_ne!(url, wrong);
    let backend = lockutils_postgres::backend(&wrong).unwrap();
    let err = lock("creds")
        .external(true)
        .backend(backend)
        .acquire()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{text}");
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(text.contains(":***@"), "{text}");
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn an_unregistered_url_scheme_fails_every_external_lock_clearly() {
    let Some(_) = db() else { return };
    let mut child = support::child::start({
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args(["child", "--exact", "--nocapture", "--test-threads=1", "-q"])
            .env("LOCKUTILS_TEST_CHILD", "acquire-error")
            .env("LOCKUTILS_TEST_CHILD_ARGS", "cfg-lock")
            .env(
                lockutils::BACKEND_URL_ENV,
                "redis://app:hunter2@cache:6379/0",
            );
        command
    });
    let text = child.expect_prefixed("error ");
    assert_eq!(child.code(), 0);
    assert!(
        text.starts_with("lock cfg-lock (redis://app:***@cache:6379/0): "),
        "{text}"
    );
    assert!(
        text.contains("no external-lock backend is registered"),
        "{text}"
    );
    assert!(text.contains("\"redis\""), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn idle_sessions_are_pooled_and_reused() {
    let Some(_) = db() else { return };
    let own = PgBackend::new(&support::url().unwrap()).unwrap();
    let name = unique("pool");
    let lock = own.lock(&name, None).unwrap();
    drop(lock.write().unwrap());
    assert_eq!(own.idle_connections(), 1);
    let again = lock.write().unwrap();
    assert_eq!(own.idle_connections(), 0, "the idle session was reused");
    let second = own.lock(&unique("pool-2"), None).unwrap();
    let other = second.write().unwrap();
    drop((again, other));
    assert_eq!(own.idle_connections(), 2);
    own.close_idle();
    assert_eq!(own.idle_connections(), 0);
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn a_session_terminated_while_held_is_reported_and_frees_the_waiter() {
    let Some(db) = db() else { return };
    let name = unique("terminated");
    let (_, key) = key_of(&name, None).unwrap();
    let guard = lock(&name).external(true).backend(db).acquire().unwrap();
    assert!(guard.is_external_held().unwrap());
    let other = db.lock(&name, None).unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| other.write().map(|g| g.fencing_token()));
        wait_until("the waiter queued on the server", || waiting(db, key) == 1);
        // What a dropped connection does to the holder's session.
        let bits = key as u64;
        let killed = db
            .query(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
                 AND granted AND classid = '{}'::oid AND objid = '{}'::oid AND objsubid = 1",
                bits >> 32,
                bits & 0xffff_ffff
            ))
            .unwrap();
        assert_eq!(killed, vec![Some("t".to_owned())]);
        let token = waiter.join().unwrap().unwrap();
        assert!(token > guard.fencing_token().unwrap());
    });
    assert!(!guard.is_external_held().unwrap_or(false));
    drop(guard); // logs that the lock was lost
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn is_held_sees_negative_and_positive_keys() {
    let Some(db) = db() else { return };
    let negative = db.lock("x/y", Some("nova")).unwrap();
    let positive = db.lock("instance-42", None).unwrap();
    assert!(negative.key() < 0 && positive.key() > 0);
    for lock in [&negative, &positive] {
        let writer = lock.write().unwrap();
        assert!(writer.is_held().unwrap(), "{}", lock.name());
        drop(writer);
        let reader = lock.read().unwrap();
        assert!(reader.is_held().unwrap(), "{}", lock.name());
    }
}

#[test]
fn the_documented_python_computes_the_same_keys() {
    let names = ["", "lock", "nova-x_y", "instance-42", "é", "ünïcødé/名前"];
    let program = "import hashlib, sys\n\
                   for name in sys.argv[1:]:\n    \
                   print(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], 'big', signed=True))\n";
    let output = match std::process::Command::new("python3")
        .arg("-c")
        .arg(program)
        .args(names)
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            assert!(
                std::env::var_os("LOCKUTILS_REQUIRE_PG").is_none(),
                "python3 is needed to check the documented Python key function: {e}"
            );
            eprintln!("skipped: no python3 ({e})");
            return;
        }
    };
    assert!(output.status.success(), "{output:?}");
    let keys: Vec<i64> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let expected: Vec<i64> = names.iter().map(|n| lock_key(n)).collect();
    assert_eq!(keys, expected);
}
