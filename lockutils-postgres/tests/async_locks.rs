//! Awaitable PostgreSQL locks (the `async` feature): `lock(..).external(true).acquire_async()`
//! and `PgLock::write_async`, waiting on the server without blocking the executor, timeouts,
//! and cancelled waits leaving the server's queue.
#![cfg(all(target_os = "linux", feature = "async"))]

mod support;

use std::time::Duration;

use lockutils::{Error, Wait, lock, synchronized};
use lockutils_postgres::{Mode, PgBackend};
use support::{db, unique, wait_until, waiting};

/// Returns once `n` sessions wait on the server for `key` (see `support::wait_until`); the
/// queries are blocking ones (the sync client), so they run off the executor.
async fn until_queued(key: i64, n: usize, what: &'static str) {
    let db = db().unwrap();
    tokio::task::spawn_blocking(move || wait_until(what, || waiting(db, key) == n))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
async fn an_awaited_lock_waits_on_the_server_and_gets_it_on_release() {
    let Some(db) = db() else { return };
    let name = unique("async-queue");
    let other = db.lock(&name, None).unwrap();
    let held = other.write_async().await.unwrap();
    let first = held.fencing_token();
    let name2 = name.clone();
    let waiter = tokio::spawn(async move {
        let guard = lock(&name2)
            .external(true)
            .backend(db)
            .acquire_async()
            .await
            .unwrap();
        assert!(guard.is_external());
        assert!(guard.is_external_held().unwrap());
        guard.fencing_token().unwrap()
    });
    let key = other.key();
    until_queued(key, 1, "the waiter never queued").await;
    assert!(!waiter.is_finished());
    drop(held);
    let token = waiter.await.unwrap();
    assert!(token > first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
async fn awaited_tries_and_timeouts_fail_and_cancelled_waits_leave_the_queue() {
    let Some(db) = db() else { return };
    let name = unique("async-busy");
    let other = db.lock(&name, None).unwrap();
    let held = other.write_async().await.unwrap();
    assert!(held.is_held_async().await.unwrap());

    let err = lock(&name)
        .external(true)
        .backend(db)
        .blocking(false)
        .acquire_async()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AcquireLockFailed { waited: None, .. }),
        "{err}"
    );
    let err = lock(&name)
        .external(true)
        .backend(db)
        .timeout(Duration::from_millis(100))
        .acquire_async()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::AcquireLockFailed {
                waited: Some(_),
                ..
            }
        ),
        "{err}"
    );

    // A wait dropped while queued on the server is cancelled there.
    let key = other.key();
    let name2 = name.clone();
    let waiter = tokio::spawn(async move {
        lock(&name2)
            .external(true)
            .backend(db)
            .acquire_async()
            .await
            .map(drop)
    });
    until_queued(key, 1, "the waiter never queued").await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    until_queued(key, 0, "the cancelled wait stayed queued").await;
    // The shared side waits for the writer too, and gets in after it.
    drop(held);
    let reader = other.read_async().await.unwrap();
    let reader2 = other.read_async().await.unwrap();
    let probe = other.clone();
    let refused = tokio::task::spawn_blocking(move || probe.try_write().map(drop))
        .await
        .unwrap();
    assert!(refused.unwrap_err().is_acquire_failed());
    drop((reader, reader2));
}

/// Whether some session holds the advisory lock `key` (granted).
fn granted(key: i64) -> bool {
    let bits = key as u64;
    let sql = format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND classid = '{}'::oid AND objid = '{}'::oid AND objsubid = 1",
        bits >> 32,
        bits & 0xffff_ffff
    );
    db().unwrap().query(&sql).unwrap()[0].as_deref() == Some("1")
}

#[synchronized("pg-async-site", external = true)]
async fn synchronized_body() -> Result<bool, Error> {
    let key = lockutils_postgres::lock_key("pg-async-site");
    Ok(tokio::task::spawn_blocking(move || granted(key))
        .await
        .unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
async fn a_synchronized_async_fn_locks_on_the_process_wide_backend() {
    let Some(db) = db() else { return };
    // The other tests of this binary name their backend; this one relies on the process's.
    lockutils::set_external_backend(Some(db));
    let key = lockutils_postgres::lock_key("pg-async-site");
    assert!(
        synchronized_body().await.unwrap(),
        "not held on the server in the body"
    );
    // Released on the server by the time the guard's drop returned.
    assert!(
        !tokio::task::spawn_blocking(move || granted(key))
            .await
            .unwrap(),
        "still held on the server after the body"
    );
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn an_awaited_lock_is_released_on_the_server_when_its_guard_drops_outside_the_runtime() {
    let Some(db) = db() else { return };
    let name = unique("async-drop-outside");
    let key = lockutils_postgres::lock_key(&name);
    let runtime = current_thread_runtime();
    let guard = runtime
        .block_on(lock(&name).external(true).backend(db).acquire_async())
        .unwrap();
    assert!(granted(key));
    // Nothing drives the runtime any more: the release must not need it.
    drop(guard);
    assert!(!granted(key), "still held on the server after the drop");
    // The in-process lock is free, and so is the server's: no wait, no spurious failure.
    let again = lock(&name)
        .external(true)
        .backend(db)
        .blocking(false)
        .acquire()
        .unwrap();
    drop(again);
    let again = lock(&name)
        .external(true)
        .backend(db)
        .timeout(Duration::from_secs(2))
        .acquire()
        .unwrap();
    drop(again);

    // Dropped inside a task of a current-thread runtime (whose only thread then waits for the
    // release): released before the drop returns too.
    let released = runtime.block_on(async {
        let guard = lock(&name)
            .external(true)
            .backend(db)
            .acquire_async()
            .await
            .unwrap();
        drop(guard);
        lock(&name)
            .external(true)
            .backend(db)
            .blocking(false)
            .acquire_async()
            .await
            .map(drop)
    });
    released.unwrap();
    assert!(!granted(key));
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn a_session_pooled_by_an_idle_runtime_serves_another_runtime() {
    let Some(url) = support::url() else { return };
    // A pool of its own, so that the session pooled below is the one taken.
    let db = PgBackend::new(&url).unwrap();
    let name = unique("async-pool");
    let pg_lock = db.lock(&name, None).unwrap();
    let first = current_thread_runtime();
    first.block_on(async { drop(pg_lock.write_async().await.unwrap()) });
    assert_eq!(db.idle_connections(), 1);
    // `first` is never driven again. With the lock busy, a timed acquire on another runtime
    // takes the pooled session, and the server's lock_timeout ends it.
    let holder = support::db().unwrap().lock(&name, None).unwrap();
    let held = holder.write().unwrap();
    let second = current_thread_runtime();
    let outcome = second.block_on(async {
        tokio::time::timeout(
            support::child::PATIENCE,
            pg_lock.acquire_async(Mode::Exclusive, Wait::For(Duration::from_millis(100))),
        )
        .await
    });
    let err = outcome.expect("the timed acquire never ended").unwrap_err();
    assert!(err.is_acquire_failed(), "{err}");
    assert_eq!(db.idle_connections(), 1, "the session was not reused");
    drop(held);
    let guard = second.block_on(pg_lock.write_async()).unwrap();
    assert!(guard.is_held().unwrap());
    drop(guard);
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
async fn an_awaited_lock_whose_session_was_terminated_is_reported_lost() {
    let Some(db) = db() else { return };
    let name = unique("async-terminated");
    let key = lockutils_postgres::lock_key(&name);
    let guard = lock(&name)
        .external(true)
        .backend(db)
        .acquire_async()
        .await
        .unwrap();
    assert!(guard.is_external_held().unwrap());
    let own = db.lock(&unique("async-terminated-own"), None).unwrap();
    let own_guard = own.write_async().await.unwrap();
    assert!(own_guard.is_held().unwrap());
    assert!(own_guard.is_held_async().await.unwrap());
    let bits = key as u64;
    let own_bits = own.key() as u64;
    // What a dropped connection does to the holders' sessions.
    let killed = tokio::task::spawn_blocking(move || {
        db.query(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
             AND granted AND objsubid = 1 AND ((classid = '{}'::oid AND objid = '{}'::oid) \
             OR (classid = '{}'::oid AND objid = '{}'::oid))",
            bits >> 32,
            bits & 0xffff_ffff,
            own_bits >> 32,
            own_bits & 0xffff_ffff
        ))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(killed, vec![Some("t".to_owned()); 2]);
    assert!(!guard.is_external_held().unwrap_or(false));
    assert!(!own_guard.is_held().unwrap_or(false));
    assert!(!own_guard.is_held_async().await.unwrap_or(false));
    let err = own_guard.release().unwrap_err();
    assert!(err.to_string().contains("may have lost the lock"), "{err}");
    drop(guard); // logs that the lock was lost
    // The name can be taken again at once.
    let again = lock(&name)
        .external(true)
        .backend(db)
        .blocking(false)
        .acquire_async()
        .await
        .unwrap();
    assert!(again.is_external_held().unwrap());
}

/// A listening socket that completes no more connections (its accept queue is full and never
/// drained): a server that cannot be reached. With the connections that fill the queue, and
/// the server's URL.
fn unreachable_server() -> (std::net::TcpListener, Vec<std::net::TcpStream>, String) {
    use std::os::fd::FromRawFd;
    // std listens with a long queue: a socket of our own, with the shortest one.
    // SAFETY: plain socket calls on a descriptor this function owns; `address` outlives them.
    let listener = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut address: libc::sockaddr_in = std::mem::zeroed();
        address.sin_family = libc::AF_INET as libc::sa_family_t;
        address.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let bound = libc::bind(
            fd,
            (&raw const address).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
        assert_eq!(
            libc::listen(fd, 0),
            0,
            "listen: {}",
            std::io::Error::last_os_error()
        );
        std::net::TcpListener::from_raw_fd(fd)
    };
    let address = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    while let Ok(stream) =
        std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200))
    {
        queued.push(stream);
        assert!(queued.len() < 100, "the accept queue never filled");
    }
    let url = format!(
        "postgres://app:s3cret@127.0.0.1:{}/locks?connect_timeout=60",
        address.port()
    );
    (listener, queued, url)
}

#[test]
fn timed_acquires_give_up_on_an_unreachable_server_within_their_timeout() {
    let (_listener, _queued, url) = unreachable_server();
    let db = lockutils_postgres::backend(&url).unwrap();
    let name = unique("unreachable");
    let timeout = Duration::from_millis(300);
    let limit = Duration::from_secs(10);

    let started = std::time::Instant::now();
    let err = lock(&name)
        .external(true)
        .backend(db)
        .timeout(timeout)
        .acquire()
        .unwrap_err();
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    let text = err.to_string();
    assert!(text.contains(&name) && text.contains("127.0.0.1"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");

    let runtime = current_thread_runtime();
    let started = std::time::Instant::now();
    let err = runtime
        .block_on(
            lock(&name)
                .external(true)
                .backend(db)
                .timeout(timeout)
                .acquire_async(),
        )
        .unwrap_err();
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    let text = err.to_string();
    assert!(
        text.contains(&name) && text.contains("lock's timeout"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn an_awaited_lock_gives_up_on_a_server_that_accepts_but_never_answers() {
    // Accepted by the kernel, never answered: only the whole set-up's bound ends the wait.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://app@127.0.0.1:{}/locks?connect_timeout=1",
        listener.local_addr().unwrap().port()
    );
    let db = lockutils_postgres::backend(&url).unwrap();
    let runtime = current_thread_runtime();
    let outcome = runtime.block_on(async {
        tokio::time::timeout(
            support::child::PATIENCE,
            lock(&unique("silent"))
                .external(true)
                .backend(db)
                .acquire_async(),
        )
        .await
    });
    let err = outcome.expect("never gave up").unwrap_err();
    assert!(err.to_string().contains("connect timeout"), "{err}");
}
