//! The blocking API inside tokio tasks: acquiring, checking and releasing, with new and
//! pooled sessions, and guards moved into tasks, neither panic nor hang.
#![cfg(target_os = "linux")]

mod support;

use lockutils::lock;
use lockutils_postgres::{PgBackend, PgLock};
use support::{db, unique};

/// A backend with a pool of its own, so that a test knows which sessions it holds.
fn own_backend() -> Option<&'static PgBackend> {
    let url = support::url()?;
    Some(Box::leak(Box::new(PgBackend::new(&url).unwrap())))
}

/// Whether some session holds the advisory lock `key` (granted).
fn granted(db: &PgBackend, key: i64) -> bool {
    let bits = key as u64;
    let sql = format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND classid = '{}'::oid AND objid = '{}'::oid AND objsubid = 1",
        bits >> 32,
        bits & 0xffff_ffff
    );
    db.query(&sql).unwrap()[0].as_deref() == Some("1")
}

/// Takes, checks and releases `name` with the blocking API, twice: first on a new session,
/// then on the pooled one.
fn lock_twice(db: &'static PgBackend, name: &str) {
    let key = lockutils_postgres::lock_key(name);
    for round in 0..2 {
        let guard = lock(name).external(true).backend(db).acquire().unwrap();
        assert!(guard.is_external_held().unwrap(), "round {round}");
        assert!(granted(db, key), "round {round}");
        drop(guard);
        assert!(!granted(db, key), "round {round}");
        assert_eq!(db.idle_connections(), 1, "round {round}");
    }
    let pg_lock = db.lock(name, None).unwrap();
    let guard = pg_lock.write().unwrap();
    assert!(guard.is_held().unwrap());
    assert!(pg_lock.try_write().unwrap_err().is_acquire_failed());
    guard.release().unwrap();
    assert_eq!(db.idle_connections(), 2);
    db.close_idle();
    assert_eq!(db.idle_connections(), 0);
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
async fn the_blocking_api_works_in_a_task_of_a_current_thread_runtime() {
    let Some(db) = own_backend() else { return };
    lock_twice(db, &unique("blocking-current-thread"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
async fn the_blocking_api_works_in_a_spawned_task_of_a_multi_thread_runtime() {
    let Some(db) = own_backend() else { return };
    let name = unique("blocking-multi-thread");
    tokio::spawn(async move { lock_twice(db, &name) })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
async fn a_guard_taken_off_the_runtime_is_released_in_a_task() {
    let Some(db) = own_backend() else { return };
    let name = unique("blocking-moved");
    let key = lockutils_postgres::lock_key(&name);
    let pg_lock: &'static PgLock = Box::leak(Box::new(db.lock(&name, None).unwrap()));
    // Taken on a thread of no runtime, dropped in a task: on a pooled session, whose return
    // to the pool (or closing) must not block on the task's thread either.
    let guard = tokio::task::spawn_blocking(|| pg_lock.write().unwrap())
        .await
        .unwrap();
    let held = tokio::spawn(async move {
        let held = guard.is_held().unwrap();
        drop(guard);
        held
    })
    .await
    .unwrap();
    assert!(held);
    assert!(!granted(db, key));
    assert_eq!(db.idle_connections(), 1);

    // Closing the pool's sessions in a task.
    tokio::spawn(async move { db.close_idle() }).await.unwrap();
    assert_eq!(db.idle_connections(), 0);
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
async fn a_failing_blocking_acquire_in_a_task_reports_an_error() {
    let Some(db) = db() else { return };
    let name = unique("blocking-busy");
    let holder = db.lock(&name, None).unwrap();
    let held = holder.write().unwrap();
    let err = lock(&name)
        .external(true)
        .backend(db)
        .blocking(false)
        .acquire()
        .unwrap_err();
    assert!(err.is_acquire_failed(), "{err}");
    drop(held);
    let err = lockutils_postgres::PgBackend::new("postgres://app:s3cret@127.0.0.1:1/none")
        .unwrap()
        .query("SELECT 1")
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}
