//! `lock(name).shared(true)`: shared holders of one name run together, in-process and across
//! processes, and exclude the name's exclusive (fair) holders; a backend that cannot share
//! says so instead of locking exclusively.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::thread;

use common::child::{self, spawn, wait_for_stdin_close};
use lockutils::{Error, ExternalBackend, ExternalCache, ExternalTarget, Mode, Wait, lock};

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn play(role: &str, args: &[String]) -> i32 {
    let (name, dir) = (args[0].as_str(), args[1].as_str());
    let side = |shared: bool| {
        lock(name)
            .shared(shared)
            .fair(!shared)
            .external(true)
            .lock_path(dir)
    };
    match role {
        "hold-shared" | "hold-exclusive" => {
            let _g = side(role == "hold-shared").acquire().unwrap();
            println!("held");
            wait_for_stdin_close();
            0
        }
        "try-shared" | "try-exclusive" => {
            match side(role == "try-shared").blocking(false).acquire() {
                Ok(_) => 0,
                Err(e) if e.is_acquire_failed() => 1,
                Err(e) => {
                    eprintln!("{e}");
                    2
                }
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

#[test]
fn child() {
    child::main(play);
}

#[test]
fn shared_holders_of_a_name_run_together_and_exclude_its_exclusive_holders() {
    let name = "shared-in-process";
    let one = lock(name).shared(true).acquire().unwrap();
    assert!(one.is_shared() && !one.is_fair());
    // Another thread shares it at once; the exclusive side is refused meanwhile.
    let (tx, rx) = mpsc::channel();
    thread::scope(|s| {
        s.spawn(|| {
            let two = lock(name).shared(true).blocking(false).acquire().unwrap();
            // A third thread, holding nothing (a holder asking for more would be an upgrade).
            let refused = thread::scope(|s| {
                s.spawn(|| {
                    let exclusive = lock(name).fair(true).blocking(false).acquire();
                    exclusive.is_err_and(|e| e.is_acquire_failed())
                })
                .join()
                .unwrap()
            });
            tx.send(refused).unwrap();
            drop(two);
        });
    });
    assert!(
        rx.recv().unwrap(),
        "an exclusive holder got in beside a shared one"
    );
    drop(one);
    // Free again: the exclusive side gets it, and then the shared side is refused.
    let exclusive = lock(name).fair(true).blocking(false).acquire().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            let shared = lock(name).shared(true).blocking(false).acquire();
            assert!(shared.unwrap_err().is_acquire_failed());
        });
    });
    drop(exclusive);
}

#[test]
fn shared_holders_in_several_processes_share_the_lock_file() {
    let d = tempfile::tempdir().unwrap();
    let dir = path_str(d.path());
    let mut reader = spawn("hold-shared", &["table", dir]);
    reader.expect("held");
    assert_eq!(spawn("try-shared", &["table", dir]).code(), 0);
    assert_eq!(spawn("try-exclusive", &["table", dir]).code(), 1);
    // This process shares it too, through a read lock on the same file.
    let here = lock("table")
        .shared(true)
        .external(true)
        .lock_path(dir)
        .blocking(false)
        .acquire()
        .unwrap();
    assert!(here.is_external());
    drop(here);
    // A reader killed with SIGKILL frees the file for the exclusive side.
    reader.kill();
    let mut writer = spawn("hold-exclusive", &["table", dir]);
    writer.expect("held");
    assert_eq!(spawn("try-shared", &["table", dir]).code(), 1);
    assert_eq!(writer.code(), 0);
    assert_eq!(spawn("try-shared", &["table", dir]).code(), 0);
}

#[test]
fn a_shared_lock_is_the_read_lock_fasteners_takes() {
    // What Python's fasteners.InterProcessReaderWriterLock takes for read_lock(): a read
    // record lock on the whole file. The crate's own reader/writer lock takes the same.
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("rw");
    let rw = lockutils::InterProcessReaderWriterLock::new(&path);
    let read = rw.read().unwrap();
    let dir = path_str(d.path());
    assert_eq!(spawn("try-shared", &["rw", dir]).code(), 0);
    assert_eq!(spawn("try-exclusive", &["rw", dir]).code(), 1);
    drop(read);
    let write = rw.write().unwrap();
    assert_eq!(spawn("try-shared", &["rw", dir]).code(), 1);
    drop(write);
}

/// A backend that can only lock exclusively (the trait's default).
struct ExclusiveOnly;

impl ExternalBackend for ExclusiveOnly {
    fn acquire(
        &self,
        target: &ExternalTarget<'_>,
        _cache: &mut ExternalCache,
        _wait: Wait,
    ) -> Result<(), Error> {
        assert_eq!(target.mode, Mode::Exclusive, "asked to share");
        Ok(())
    }

    fn release(&self, _name: &str, _cache: &mut ExternalCache) -> Result<(), Error> {
        Ok(())
    }

    fn holds(
        &self,
        _target: &ExternalTarget<'_>,
        _cache: &mut ExternalCache,
    ) -> Result<bool, Error> {
        Ok(true)
    }

    fn describe(&self) -> String {
        "exclusive-only server".to_owned()
    }
}

#[test]
fn a_backend_that_cannot_share_refuses_clearly_and_never_locks_exclusively() {
    static BACKEND: ExclusiveOnly = ExclusiveOnly;
    let err = lock("refused-shared")
        .shared(true)
        .external(true)
        .backend(&BACKEND)
        .acquire()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{text}");
    assert!(
        text.contains("refused-shared")
            && text.contains("exclusive-only server")
            && text.contains("cannot take shared locks"),
        "{text}"
    );
    // Nothing stays held: the exclusive side is free.
    drop(
        lock("refused-shared")
            .fair(true)
            .blocking(false)
            .acquire()
            .unwrap(),
    );
    // Exclusively, the same backend works.
    drop(
        lock("refused-shared")
            .external(true)
            .backend(&BACKEND)
            .acquire()
            .unwrap(),
    );
}

#[test]
fn awaited_shared_locks_run_together() {
    futures::executor::block_on(async {
        let one = lock("shared-async")
            .shared(true)
            .acquire_async()
            .await
            .unwrap();
        let two = lock("shared-async")
            .shared(true)
            .blocking(false)
            .acquire_async()
            .await
            .unwrap();
        let exclusive = lock("shared-async")
            .fair(true)
            .blocking(false)
            .acquire_async()
            .await;
        assert!(exclusive.unwrap_err().is_acquire_failed());
        drop((one, two));
        drop(
            lock("shared-async")
                .fair(true)
                .blocking(false)
                .acquire_async()
                .await
                .unwrap(),
        );
    });
}

#[test]
fn awaited_shared_external_locks_share_the_lock_file() {
    let d = tempfile::tempdir().unwrap();
    let dir = path_str(d.path());
    let shared = || {
        lock("async-table")
            .shared(true)
            .external(true)
            .lock_path(dir)
    };
    futures::executor::block_on(async {
        let one = shared().acquire_async().await.unwrap();
        assert!(one.is_external());
        // A second task joins the read lock this process holds, without waiting.
        let two = shared().blocking(false).acquire_async().await.unwrap();
        assert_eq!(spawn("try-shared", &["async-table", dir]).code(), 0);
        assert_eq!(spawn("try-exclusive", &["async-table", dir]).code(), 1);
        drop(one);
        // The last shared holder keeps the file's read lock.
        assert_eq!(spawn("try-exclusive", &["async-table", dir]).code(), 1);
        drop(two);
        assert_eq!(spawn("try-exclusive", &["async-table", dir]).code(), 0);
        // Another process holding it exclusively: a timed shared wait gives up cleanly.
        let mut writer = spawn("hold-exclusive", &["async-table", dir]);
        writer.expect("held");
        let err = shared()
            .timeout(std::time::Duration::from_millis(50))
            .acquire_async()
            .await
            .unwrap_err();
        assert!(err.is_acquire_failed(), "{err}");
        assert_eq!(writer.code(), 0);
    });
}

#[test]
fn a_shared_holder_waiting_for_the_file_does_not_hold_up_another_past_its_timeout() {
    // One thread waits (without a timeout) for the file's read lock, which another process
    // holds exclusively; a second shared holder of the name, with a timeout, must give up
    // at its timeout, not wait behind the first for as long as the first waits.
    let d = tempfile::tempdir().unwrap();
    let dir = path_str(d.path());
    let mut writer = spawn("hold-exclusive", &["gate", dir]);
    writer.expect("held");
    let shared = || lock("gate").shared(true).external(true).lock_path(dir);
    thread::scope(|s| {
        let first = s.spawn(|| shared().acquire().map(drop));
        child::wait_for_blocked_waiters(&d.path().join("gate"), 1);
        for _ in 0..2 {
            let err = shared()
                .timeout(std::time::Duration::from_millis(20))
                .acquire()
                .unwrap_err();
            assert!(err.is_acquire_failed(), "{err}");
            let err = futures::executor::block_on(
                shared()
                    .timeout(std::time::Duration::from_millis(20))
                    .acquire_async(),
            )
            .unwrap_err();
            assert!(err.is_acquire_failed(), "{err}");
        }
        // The writer ends: the first waiter gets the read lock.
        assert_eq!(writer.code(), 0);
        first.join().unwrap().unwrap();
    });
}

#[lockutils::synchronized("shared-attr", shared = true, blocking = false)]
fn read_table(inner: &dyn Fn() -> bool) -> Result<bool, Error> {
    Ok(inner())
}

#[test]
fn synchronized_takes_the_shared_side() {
    // Inside one shared holder, another shared holder on another thread gets in at once.
    let nested = read_table(&|| {
        thread::scope(|s| {
            s.spawn(|| read_table(&|| true).unwrap_or(false))
                .join()
                .unwrap()
        })
    });
    assert!(
        nested.unwrap(),
        "two shared holders were not let in together"
    );
}
