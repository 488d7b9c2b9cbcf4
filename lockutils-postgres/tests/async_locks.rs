//! Awaitable PostgreSQL locks (the `async` feature): `lock(..).external(true).acquire_async()`
//! and `PgLock::write_async`, waiting on the server without blocking the executor, timeouts,
//! and cancelled waits leaving the server's queue.
#![cfg(all(target_os = "linux", feature = "async"))]

mod support;

use std::time::Duration;

use lockutils::{Error, lock, synchronized};
use support::{db, unique, waiting};

/// `waiting` runs blocking queries (the sync client): off the executor.
async fn queued(key: i64) -> usize {
    let db = db().unwrap();
    tokio::task::spawn_blocking(move || waiting(db, key))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let started = std::time::Instant::now();
    while queued(key).await != 1 {
        assert!(
            started.elapsed() < support::child::PATIENCE,
            "the waiter never queued"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!waiter.is_finished());
    drop(held);
    let token = waiter.await.unwrap();
    assert!(token > first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let started = std::time::Instant::now();
    while queued(key).await != 1 {
        assert!(
            started.elapsed() < support::child::PATIENCE,
            "the waiter never queued"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    let started = std::time::Instant::now();
    while queued(key).await != 0 {
        assert!(
            started.elapsed() < support::child::PATIENCE,
            "the cancelled wait stayed queued"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
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
async fn a_synchronized_async_fn_locks_on_the_process_wide_backend() {
    let Some(db) = db() else { return };
    // The other tests of this binary name their backend; this one relies on the process's.
    lockutils::set_external_backend(Some(db));
    let key = lockutils_postgres::lock_key("pg-async-site");
    assert!(
        synchronized_body().await.unwrap(),
        "not held on the server in the body"
    );
    // Released after the body (the release runs on the runtime, off the guard's drop).
    let started = std::time::Instant::now();
    while tokio::task::spawn_blocking(move || granted(key))
        .await
        .unwrap()
    {
        assert!(
            started.elapsed() < support::child::PATIENCE,
            "never released"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
