//! External (inter-process) locks, with real child processes: exclusion, waiting, a holder
//! killed with SIGKILL, descriptor leaks, lock file deletion, bad inputs, and oslo's file
//! test cases.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Barrier, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use common::child::{self, Proc, spawn, wait_for_blocked_waiters, wait_for_stdin_close};
use common::{increment_counter, read_counter};
use lockutils::{
    Error, FairLocks, InterProcessLock, InterProcessReaderWriterLock, LockConfig, Semaphores,
    configure, external_lock, lock, lock_file_path, lock_with_prefix, remove_external_lock_file,
    remove_external_lock_file_with_prefix,
};

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Starts `sleep 120` and prints its PID: a process that outlives the child on purpose (the
/// test kills it, and init reaps it).
fn spawn_grandchild() {
    #[allow(clippy::zombie_processes)]
    let grandchild = std::process::Command::new("sleep")
        .arg("120")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    println!("grandchild {}", grandchild.id());
}

/// The roles child processes play.
fn play(role: &str, args: &[String]) -> i32 {
    let arg = |i: usize| args[i].as_str();
    // The external lock of arg(0) in the directory arg(1), as most roles take it.
    let ext = || lock(arg(0)).external(true).lock_path(arg(1));
    let hold = || ext().acquire().unwrap();
    match role {
        "hold" => {
            let _g = hold();
            println!("held");
            wait_for_stdin_close();
            0
        }
        "hold-unlink" => {
            // What a remover does: delete the file while holding its lock, then let go.
            let guard = hold();
            println!("held");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            std::fs::remove_file(Path::new(arg(1)).join(arg(0))).unwrap();
            println!("unlinked");
            drop(guard);
            0
        }
        "try" => match ext().blocking(false).acquire() {
            Ok(_) => 0,
            Err(e) if e.is_acquire_failed() => 1,
            Err(e) => {
                eprintln!("try: {e}");
                2
            }
        },
        "wait-hold" => {
            match ext().blocking(false).acquire() {
                Ok(_) => println!("free"),
                Err(_) => println!("busy"),
            }
            let _g = hold();
            println!("acquired");
            wait_for_stdin_close();
            0
        }
        "count" => {
            let (counter, iters, threads): (PathBuf, usize, usize) = (
                arg(2).into(),
                arg(3).parse().unwrap(),
                arg(4).parse().unwrap(),
            );
            thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        for _ in 0..iters {
                            let _g = hold();
                            increment_counter(&counter);
                        }
                    });
                }
            });
            0
        }
        "spawn-while-held" => {
            let g = hold();
            spawn_grandchild();
            drop(g);
            println!("released");
            wait_for_stdin_close();
            0
        }
        "no-lock-path" => match lock(arg(0)).external(true).acquire() {
            Err(e @ Error::LockPathRequired { .. }) => {
                println!("error {e}");
                0
            }
            other => {
                eprintln!("expected LockPathRequired, got {other:?}");
                1
            }
        },
        "default-lock-path" => {
            if let Some(dir) = args.get(1) {
                lockutils::set_defaults(dir);
            }
            let g = lock(arg(0)).external(true).acquire().unwrap();
            println!("external {}", g.is_external());
            0
        }
        "disabled" => {
            configure(LockConfig {
                lock_path: Some(arg(1).into()),
                disable_process_locking: true,
                ..LockConfig::default()
            });
            let g = lock(arg(0)).external(true).acquire().unwrap();
            println!("external {}", g.is_external());
            0
        }
        "sync-hold" => {
            hold_synchronized(arg(0)).unwrap();
            0
        }
        "sync-try" => match try_synchronized(arg(0)) {
            Ok(()) => 0,
            Err(e) if e.is_acquire_failed() => 1,
            Err(e) => {
                eprintln!("sync-try: {e}");
                2
            }
        },
        "spawn-and-exit-holding" => {
            let g = hold();
            spawn_grandchild();
            // Exit holding the lock: only closing every descriptor of it frees it now.
            std::mem::forget(g);
            0
        }
        "fork" => fork_role(arg(0), arg(1)),
        "cancel-ext" => cancel_role(arg(0), arg(1)),
        "async-count" => {
            let (counter, iters, tasks): (PathBuf, usize, usize) = (
                arg(2).into(),
                arg(3).parse().unwrap(),
                arg(4).parse().unwrap(),
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (name, dir) = (arg(0).to_owned(), arg(1).to_owned());
            runtime.block_on(async move {
                let handles: Vec<_> = (0..tasks)
                    .map(|_| {
                        let (name, dir, counter) = (name.clone(), dir.clone(), counter.clone());
                        tokio::spawn(async move {
                            for _ in 0..iters {
                                let _g = lock(&name)
                                    .external(true)
                                    .lock_path(&dir)
                                    .acquire_async()
                                    .await
                                    .unwrap();
                                increment_counter(&counter);
                                tokio::task::yield_now().await;
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    h.await.unwrap();
                }
            });
            0
        }
        "rw-hold" => {
            let rw = InterProcessReaderWriterLock::new(arg(0));
            let _read;
            let _write;
            if arg(1) == "read" {
                _read = rw.read().unwrap();
            } else {
                _write = rw.write().unwrap();
            }
            println!("held");
            wait_for_stdin_close();
            0
        }
        other => panic!("unknown child role {other}"),
    }
}

/// Holds `nova-sync-ext` in `dir` until stdin closes.
#[lockutils::synchronized("sync-ext", external = true, prefix = "nova", lock_path = dir)]
fn hold_synchronized(dir: &str) -> std::io::Result<()> {
    println!("held");
    wait_for_stdin_close();
    Ok(())
}

#[lockutils::synchronized("sync-ext", external = true, prefix = "nova-", lock_path = dir, blocking = false)]
fn try_synchronized(dir: &str) -> Result<(), Error> {
    let _ = dir;
    Ok(())
}

/// Caches the lock file's descriptor, forks, then holds the lock in the parent; the forked
/// child tries it through its own copy of the cache. Exits 0 if the child was refused.
fn fork_role(name: &str, dir: &str) -> i32 {
    drop(lock(name).external(true).lock_path(dir).acquire().unwrap());
    let mut fds = [0; 2];
    // SAFETY: a valid two-element array for pipe(2).
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child below only waits on the pipe, tries the lock and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut byte = [0u8; 1];
        // SAFETY: reading one byte into a valid buffer from our pipe.
        unsafe { libc::read(fds[0], byte.as_mut_ptr().cast(), 1) };
        let code = match lock(name)
            .external(true)
            .lock_path(dir)
            .blocking(false)
            .acquire()
        {
            Ok(_) => 10,
            Err(e) if e.is_acquire_failed() => 11,
            Err(_) => 12,
        };
        // SAFETY: ends the forked child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let held = lock(name).external(true).lock_path(dir).acquire().unwrap();
    // SAFETY: writing one byte from a valid buffer to our pipe.
    unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) };
    let mut status = 0;
    // SAFETY: waiting for the child we forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    drop(held);
    match libc::WEXITSTATUS(status) {
        11 => 0,
        10 => {
            eprintln!("the forked child got a lock its parent held");
            1
        }
        other => other,
    }
}

#[test]
fn child() {
    child::main(play);
}

#[test]
fn a_forked_child_does_not_share_its_parents_kept_descriptor() {
    let d = dir();
    assert_eq!(spawn("fork", &["forked", path_str(d.path())]).code(), 0);
}

#[test]
fn a_holder_that_dies_frees_the_lock_even_with_a_child_still_running() {
    // Had the child inherited the descriptor, the lock would outlive its holder.
    let d = dir();
    let dir_arg = path_str(d.path());
    let mut holder = spawn("spawn-and-exit-holding", &["orphan", dir_arg]);
    let grandchild: i32 = holder.expect_prefixed("grandchild ").parse().unwrap();
    assert_eq!(holder.code(), 0);
    let free = spawn("try", &["orphan", dir_arg]).code();
    // SAFETY: sending a signal to a process id our child started.
    unsafe { libc::kill(grandchild, libc::SIGKILL) };
    assert_eq!(free, 0, "the lock outlived its holder");
}

#[test]
fn nested_fair_external_locks_on_another_file_are_refused() {
    let (d1, d2) = (dir(), dir());
    let locks = FairLocks::new();
    let outer = lock("two-files")
        .fair_locks(&locks)
        .external(true)
        .lock_path(d1.path())
        .acquire()
        .unwrap();
    let err = lock("two-files")
        .fair_locks(&locks)
        .external(true)
        .lock_path(d2.path())
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions { .. }), "{err}");
    let err = lock("two-files")
        .fair_locks(&locks)
        .external(true)
        .prefix("b")
        .lock_path(d1.path())
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions { .. }), "{err}");
    // The outer lock still holds its file.
    assert_eq!(spawn("try", &["two-files", path_str(d1.path())]).code(), 1);
    drop(outer);
}

#[test]
fn kept_descriptors_are_bounded() {
    let d = dir();
    for i in 0..2 * lockutils::MAX_KEPT_DESCRIPTORS {
        drop(
            lock(&format!("idle-{i}"))
                .external(true)
                .lock_path(d.path())
                .acquire()
                .unwrap(),
        );
    }
    let open_here = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(d.path())))
        .count();
    assert!(
        open_here <= lockutils::MAX_KEPT_DESCRIPTORS,
        "{open_here} descriptors kept"
    );
}

#[test]
fn a_shared_try_does_not_wait_behind_a_reader_waiting_in_the_kernel() {
    let d = dir();
    let path = d.path().join("rw-wait");
    let rw = InterProcessReaderWriterLock::new(&path);
    let mut writer = spawn("rw-hold", &[path_str(&path), "write"]);
    writer.expect("held");
    thread::scope(|s| {
        s.spawn(|| drop(rw.read().unwrap())); // waits in the kernel for the writer
        wait_for_blocked_waiters(&path, 1);
        assert!(rw.try_read().unwrap_err().is_acquire_failed());
        assert!(
            rw.try_read_for(Duration::from_millis(20))
                .unwrap_err()
                .is_acquire_failed()
        );
        assert_eq!(writer.code(), 0);
    });
    drop(rw.try_write().expect("free"));
}

// oslo: test_interprocess_nonblocking_external_lock, through #[synchronized].
#[test]
fn synchronized_external_with_prefix_across_processes() {
    let d = dir();
    let dir_arg = path_str(d.path());
    let mut holder = spawn("sync-hold", &[dir_arg]);
    holder.expect("held");
    assert!(d.path().join("nova-sync-ext").exists());
    assert_eq!(spawn("sync-try", &[dir_arg]).code(), 1);
    let err = lock("sync-ext")
        .prefix("nova")
        .external(true)
        .lock_path(d.path())
        .blocking(false)
        .acquire();
    assert!(err.unwrap_err().is_acquire_failed());
    assert_eq!(holder.code(), 0);
    assert_eq!(spawn("sync-try", &[dir_arg]).code(), 0);
}

#[test]
fn four_processes_two_threads_a_thousand_increments_each() {
    let d = dir();
    let counter = d.path().join("counter");
    let dir_arg = path_str(d.path());
    let counter_arg = path_str(&counter);
    let children: Vec<Proc> = (0..4)
        .map(|_| {
            spawn(
                "count",
                &["counter-lock", dir_arg, counter_arg, "1000", "2"],
            )
        })
        .collect();
    for c in children {
        assert_eq!(c.code(), 0);
    }
    assert_eq!(read_counter(&counter), 8_000);
}

#[test]
fn nonblocking_from_another_process_fails_while_held() {
    let d = dir();
    let dir_arg = path_str(d.path());
    let mut holder = spawn("hold", &["nb", dir_arg]);
    holder.expect("held");
    assert_eq!(spawn("try", &["nb", dir_arg]).code(), 1);
    // In this process too, through the file (the in-process lock here is free).
    let err = lock("nb")
        .external(true)
        .lock_path(d.path())
        .blocking(false)
        .acquire()
        .unwrap_err();
    assert_eq!(err.to_string(), "Failed to acquire the lock nb");
    let err = lock("nb")
        .external(true)
        .lock_path(d.path())
        .timeout(Duration::from_millis(30))
        .acquire()
        .unwrap_err();
    assert!(
        matches!(err, Error::AcquireLockFailed { waited: Some(w), .. } if w == Duration::from_millis(30))
    );
    // The in-process lock was given back after the file lock failed.
    drop(
        lock("nb")
            .blocking(false)
            .acquire()
            .expect("in-process lock released"),
    );
    assert_eq!(holder.code(), 0);
    assert_eq!(spawn("try", &["nb", dir_arg]).code(), 0);
    drop(
        lock("nb")
            .external(true)
            .lock_path(d.path())
            .blocking(false)
            .acquire()
            .unwrap(),
    );
}

#[test]
fn a_holder_killed_with_sigkill_frees_the_lock_for_a_blocked_waiter() {
    let d = dir();
    let dir_arg = path_str(d.path());
    let mut holder = spawn("hold", &["killed", dir_arg]);
    holder.expect("held");
    let mut waiter = spawn("wait-hold", &["killed", dir_arg]);
    waiter.expect("busy");
    // The waiter sits in the kernel's queue for the lock, not in a sleep loop.
    wait_for_blocked_waiters(&d.path().join("killed"), 1);
    holder.kill();
    waiter.expect("acquired");
    assert_eq!(
        spawn("try", &["killed", dir_arg]).code(),
        1,
        "the waiter holds it now"
    );
    assert_eq!(waiter.code(), 0);
}

#[test]
fn a_child_spawned_while_the_lock_is_held_does_not_keep_it() {
    let d = dir();
    let dir_arg = path_str(d.path());
    let mut parent = spawn("spawn-while-held", &["leak", dir_arg]);
    let grandchild: i32 = parent.expect_prefixed("grandchild ").parse().unwrap();
    parent.expect("released");
    // The grandchild (a `sleep`) still runs; had it inherited the descriptor, the lock would
    // still be held.
    assert_eq!(spawn("try", &["leak", dir_arg]).code(), 0);
    // SAFETY: sending a signal to a process id we started.
    unsafe { libc::kill(grandchild, libc::SIGKILL) };
    assert_eq!(parent.code(), 0);
}

#[test]
fn lock_descriptors_are_close_on_exec() {
    let d = dir();
    let _g = lock("cloexec")
        .external(true)
        .lock_path(d.path())
        .acquire()
        .unwrap();
    let lock_file = d.path().join("cloexec");
    let mut checked = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if std::fs::read_link(entry.path()).is_ok_and(|t| t == lock_file) {
            let fd: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
            // SAFETY: F_GETFD on a descriptor number only reads its flags.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert!(
                flags & libc::FD_CLOEXEC != 0,
                "lock descriptor {fd} lacks FD_CLOEXEC"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 1, "exactly one descriptor for the lock file");
}

#[test]
fn threads_with_separate_descriptors_exclude_each_other() {
    // Two in-process namespaces: only the file lock stands between these threads.
    let d = dir();
    let (a, b) = (Semaphores::new(), Semaphores::new());
    let _held = lock("ofd")
        .semaphores(&a)
        .external(true)
        .lock_path(d.path())
        .acquire()
        .unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            let err = lock("ofd")
                .semaphores(&b)
                .external(true)
                .lock_path(d.path())
                .blocking(false)
                .acquire()
                .unwrap_err();
            assert!(err.is_acquire_failed());
        });
    });
}

#[test]
fn deleting_the_lock_file_never_lets_two_holders_in() {
    for round in 0..3 {
        let d = dir();
        let dir_arg = path_str(d.path());
        let name = format!("deleted-{round}");
        let file = d.path().join(&name);
        let mut holder = spawn("hold", &[&name, dir_arg]);
        holder.expect("held");
        let (removed_tx, removed_rx) = mpsc::channel();
        let remover = {
            let (name, path) = (name.clone(), d.path().to_owned());
            thread::spawn(move || {
                remove_external_lock_file(&name, None, Some(&path)).unwrap();
                removed_tx.send(()).unwrap();
            })
        };
        wait_for_blocked_waiters(&file, 1);
        let mut waiter = spawn("wait-hold", &[&name, dir_arg]);
        waiter.expect("busy");
        wait_for_blocked_waiters(&file, 2);
        // Both the remover and the waiter queue on the old file; who goes first is up to the
        // kernel. Either way, once the waiter holds, nobody else may.
        assert_eq!(holder.code(), 0);
        waiter.expect("acquired");
        assert_eq!(
            spawn("try", &[&name, dir_arg]).code(),
            1,
            "round {round}: two holders"
        );
        assert_eq!(waiter.code(), 0);
        removed_rx.recv().unwrap();
        remover.join().unwrap();
    }
}

#[test]
fn a_waiter_woken_on_a_deleted_lock_file_moves_to_the_new_one() {
    for round in 0..3 {
        let d = dir();
        let dir_arg = path_str(d.path());
        let name = format!("unlinked-{round}");
        let file = d.path().join(&name);
        let mut remover = spawn("hold-unlink", &[&name, dir_arg]);
        remover.expect("held");
        let mut waiter = spawn("wait-hold", &[&name, dir_arg]);
        waiter.expect("busy");
        wait_for_blocked_waiters(&file, 1);
        // The holder deletes the file, then lets go: the waiter, queued on the old file, wakes
        // holding a file that no longer has a name, and must move to the path's new file.
        remover.send("unlink");
        remover.expect("unlinked");
        assert_eq!(remover.code(), 0);
        waiter.expect("acquired");
        assert!(
            file.exists(),
            "round {round}: the waiter made a new lock file"
        );
        assert_eq!(
            spawn("try", &[&name, dir_arg]).code(),
            1,
            "round {round}: two holders"
        );
        assert_eq!(waiter.code(), 0);
    }
}

#[test]
fn remove_external_lock_file_deletes_and_tolerates_missing_files() {
    let d = dir();
    let file = d.path().join("pre-gone");
    drop(
        lock("gone")
            .prefix("pre")
            .external(true)
            .lock_path(d.path())
            .acquire()
            .unwrap(),
    );
    assert!(file.exists(), "release never deletes the lock file");
    remove_external_lock_file("gone", Some("pre"), Some(d.path())).unwrap();
    assert!(!file.exists());
    remove_external_lock_file("gone", Some("pre"), Some(d.path())).expect("missing is fine");
    remove_external_lock_file("gone", None, Some(&d.path().join("no/such/dir"))).unwrap();
    assert!(!d.path().join("no").exists(), "removal creates nothing");
    // A failure is reported (and logged), not swallowed.
    std::fs::create_dir(d.path().join("pre-dir")).unwrap();
    let err = remove_external_lock_file("dir", Some("pre"), Some(d.path())).unwrap_err();
    assert!(matches!(err, Error::UnsafeLockFile { .. }), "{err}");
    // The prefix-bound helpers.
    let nova = remove_external_lock_file_with_prefix("nova-");
    drop(
        nova.lock("x/y")
            .external(true)
            .lock_path(d.path())
            .acquire()
            .unwrap(),
    );
    assert!(d.path().join("nova-x_y").exists());
    nova.remove_external_lock_file("x/y", Some(d.path()))
        .unwrap();
    assert!(!d.path().join("nova-x_y").exists());
}

#[test]
fn a_planted_symlink_is_refused_not_followed() {
    let d = dir();
    let target = d.path().join("victim");
    symlink(&target, d.path().join("planted")).unwrap();
    let err = lock("planted")
        .external(true)
        .lock_path(d.path())
        .acquire()
        .unwrap_err();
    match &err {
        Error::UnsafeLockFile { name, path, .. } => {
            assert_eq!(name, "planted");
            assert_eq!(path, &d.path().join("planted"));
        }
        other => panic!("expected UnsafeLockFile, got {other:?}"),
    }
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(!target.exists(), "the link was followed");
    // Nothing stays held: the in-process lock is free again.
    drop(lock("planted").blocking(false).acquire().unwrap());
    let err = external_lock("planted", None, Some(d.path()))
        .unwrap()
        .try_acquire()
        .unwrap_err();
    assert!(matches!(err, Error::UnsafeLockFile { .. }));
}

#[test]
fn a_fifo_or_directory_in_place_of_the_lock_file_is_refused() {
    let d = dir();
    let fifo = d.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let err = lock("fifo")
        .external(true)
        .lock_path(d.path())
        .acquire()
        .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    std::fs::create_dir(d.path().join("dir")).unwrap();
    let err = lock("dir")
        .external(true)
        .lock_path(d.path())
        .acquire()
        .unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
}

#[test]
fn bad_names_are_invalid_and_never_escape_the_lock_path() {
    let d = dir();
    let long = "n".repeat(256);
    for (name, prefix) in [
        ("", None),
        (".", None),
        ("..", None),
        ("a\0b", None),
        (long.as_str(), None),
        ("x", Some("../escape")),
    ] {
        let mut builder = lock(name).external(true).lock_path(d.path());
        if let Some(prefix) = prefix {
            builder = builder.prefix(prefix);
        }
        let err = builder.acquire().unwrap_err();
        assert!(
            matches!(err, Error::InvalidName { .. }),
            "{name:?}/{prefix:?}: {err}"
        );
        assert!(!err.to_string().is_empty());
    }
    // Slashes become underscores: the file stays in the directory.
    drop(
        lock("../../etc/passwd")
            .external(true)
            .lock_path(d.path())
            .acquire()
            .unwrap(),
    );
    assert!(d.path().join(".._.._etc_passwd").exists());
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
}

#[test]
fn missing_directories_are_created_and_contents_kept() {
    let d = dir();
    let nested = d.path().join("a/b/c");
    drop(
        lock("deep")
            .external(true)
            .lock_path(&nested)
            .acquire()
            .unwrap(),
    );
    assert!(nested.join("deep").is_file());
    // oslo: test_non_destructive
    std::fs::write(d.path().join("kept"), "test").unwrap();
    {
        let _g = lock("kept")
            .external(true)
            .lock_path(d.path())
            .acquire()
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("kept")).unwrap(),
            "test"
        );
    }
    assert_eq!(
        std::fs::read_to_string(d.path().join("kept")).unwrap(),
        "test"
    );
}

#[test]
fn without_a_lock_path_the_error_says_how_to_set_one() {
    let mut c = spawn_env("no-lock-path", &["nowhere"], None);
    let msg = c.expect_prefixed("error ");
    assert!(
        msg.starts_with("value required for option lock_path in group [oslo_concurrency]"),
        "{msg}"
    );
    assert!(
        msg.contains("OSLO_LOCK_PATH") && msg.contains("set_defaults"),
        "{msg}"
    );
    assert_eq!(c.code(), 0);
}

fn spawn_env(role: &str, args: &[&str], lock_path_env: Option<&Path>) -> Proc {
    // Children inherit this process's environment; set or clear OSLO_LOCK_PATH for them only.
    let exe = std::env::current_exe().unwrap();
    let mut command = std::process::Command::new(exe);
    command
        .args(["child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env("LOCKUTILS_TEST_CHILD", role)
        .env("LOCKUTILS_TEST_CHILD_ARGS", args.join("\u{1f}"));
    match lock_path_env {
        Some(p) => command.env("OSLO_LOCK_PATH", p),
        None => command.env_remove("OSLO_LOCK_PATH"),
    };
    child::start(command)
}

#[test]
fn lock_path_comes_from_oslo_lock_path_or_set_defaults() {
    let (env_dir, default_dir) = (dir(), dir());
    let mut c = spawn_env("default-lock-path", &["from-env"], Some(env_dir.path()));
    assert_eq!(c.expect_prefixed("external "), "true");
    assert_eq!(c.code(), 0);
    assert!(env_dir.path().join("from-env").exists());
    // set_defaults wins over the environment.
    let mut c = spawn_env(
        "default-lock-path",
        &["from-defaults", path_str(default_dir.path())],
        Some(env_dir.path()),
    );
    assert_eq!(c.expect_prefixed("external "), "true");
    assert_eq!(c.code(), 0);
    assert!(default_dir.path().join("from-defaults").exists());
    assert!(!env_dir.path().join("from-defaults").exists());
}

#[test]
fn disable_process_locking_makes_external_locks_in_process_only() {
    let d = dir();
    let mut c = spawn_env("disabled", &["in-process-only", path_str(d.path())], None);
    assert_eq!(c.expect_prefixed("external "), "false");
    assert_eq!(c.code(), 0);
    assert!(!d.path().join("in-process-only").exists());
}

// oslo: test_interthread_external_lock
#[test]
fn threads_queue_on_an_external_lock() {
    let d = dir();
    let calls = Mutex::new(Vec::new());
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let sems = Semaphores::new();
    thread::scope(|s| {
        let (sems_ref, calls_ref, d_ref) = (&sems, &calls, &d);
        s.spawn(move || {
            let (sems, calls, d) = (sems_ref, calls_ref, d_ref);
            let _g = lock("inter")
                .semaphores(sems)
                .external(true)
                .lock_path(d.path())
                .acquire()
                .unwrap();
            calls.lock().unwrap().push("other");
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            calls.lock().unwrap().push("other");
        });
        held_rx.recv().unwrap();
        let main = s.spawn(|| {
            let _g = lock("inter")
                .semaphores(&sems)
                .external(true)
                .lock_path(d.path())
                .acquire()
                .unwrap();
            calls.lock().unwrap().push("main");
            calls.lock().unwrap().push("main");
        });
        common::wait_until(|| sems.get("inter").queue_len() == 1);
        go_tx.send(()).unwrap();
        main.join().unwrap();
    });
    assert_eq!(*calls.lock().unwrap(), ["other", "other", "main", "main"]);
}

#[test]
fn nested_fair_external_locks_keep_the_file_locked_until_the_outer_one_ends() {
    // oslo releases the file lock when the inner block exits; this must not.
    let d = dir();
    let dir_arg = path_str(d.path());
    let locks = FairLocks::new();
    let build = || {
        lock("nested")
            .fair_locks(&locks)
            .external(true)
            .lock_path(d.path())
    };
    let outer = build().acquire().unwrap();
    let inner = build().acquire().expect("reentrant");
    assert!(inner.is_external());
    drop(inner);
    assert_eq!(
        spawn("try", &["nested", dir_arg]).code(),
        1,
        "inner release freed the file"
    );
    drop(outer);
    assert_eq!(spawn("try", &["nested", dir_arg]).code(), 0);
}

#[test]
fn a_kept_descriptor_notices_a_deletion_by_others() {
    let d = dir();
    let handle = Semaphores::global().get("reuse"); // keeps the entry, and its descriptor
    let file = d.path().join("reuse");
    drop(
        lock("reuse")
            .external(true)
            .lock_path(d.path())
            .acquire()
            .unwrap(),
    );
    // Someone deletes the file behind our back (oslo's racy way): the cached descriptor
    // now names a deleted file. The next acquire must notice and lock the new file.
    std::fs::remove_file(&file).unwrap();
    let g = lock("reuse")
        .external(true)
        .lock_path(d.path())
        .acquire()
        .unwrap();
    assert!(file.exists());
    assert_eq!(spawn("try", &["reuse", path_str(d.path())]).code(), 1);
    drop(g);
    drop(handle);
}

#[test]
fn inter_process_lock_api() {
    let d = dir();
    let lock_a = external_lock("ipl", Some("svc"), Some(d.path())).unwrap();
    assert_eq!(lock_a.path(), d.path().join("svc-ipl"));
    let g = lock_a.acquire().unwrap();
    // Another InterProcessLock object on the same file: excluded through the file.
    let lock_b = InterProcessLock::new(d.path().join("svc-ipl"));
    assert!(lock_b.try_acquire().unwrap_err().is_acquire_failed());
    assert!(lock_b.try_acquire_for(Duration::from_millis(20)).is_err());
    // The same object from another thread: excluded in-process.
    thread::scope(|s| {
        s.spawn(|| assert!(lock_a.try_acquire().is_err()));
    });
    g.release().unwrap();
    let g = lock_b.try_acquire_for(Duration::from_millis(20)).unwrap();
    drop(g);
    // lock(name) with the same prefix and path shares the file.
    let _g = lock_with_prefix("svc")
        .lock("ipl")
        .external(true)
        .lock_path(d.path())
        .acquire()
        .unwrap();
    assert!(lock_a.try_acquire().is_err());
    assert_eq!(
        lock_file_path("ipl", Some("svc-"), Some(d.path())).unwrap(),
        lock_a.path()
    );
}

#[test]
fn inter_process_reader_writer_lock_across_threads_and_processes() {
    let d = dir();
    let path = d.path().join("rw");
    let rw = InterProcessReaderWriterLock::new(&path);
    let both_in = Barrier::new(2);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let _r = rw.read().unwrap();
                both_in.wait(); // readers share
                assert!(rw.try_write().is_err());
                both_in.wait();
            });
        }
    });
    // Another process reads: we may read, not write.
    let mut reader = spawn("rw-hold", &[path_str(&path), "read"]);
    reader.expect("held");
    drop(rw.try_read().expect("shared with the other process"));
    assert!(rw.try_write().unwrap_err().is_acquire_failed());
    assert_eq!(reader.code(), 0);
    // Another process writes: neither.
    let mut writer = spawn("rw-hold", &[path_str(&path), "write"]);
    writer.expect("held");
    assert!(rw.try_read().is_err());
    assert!(rw.try_write_for(Duration::from_millis(20)).is_err());
    assert_eq!(writer.code(), 0);
    drop(rw.try_write().expect("free"));
}

// oslo: test_interthread_nonblocking_external_lock
#[test]
fn nonblocking_external_lock_between_threads() {
    let d = dir();
    let calls = Mutex::new(Vec::new());
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (a, b) = (Semaphores::new(), Semaphores::new());
    thread::scope(|s| {
        let (calls_ref, d_ref, a_ref) = (&calls, &d, &a);
        s.spawn(move || {
            let build = lock("nbx")
                .semaphores(a_ref)
                .external(true)
                .lock_path(d_ref.path());
            let _g = build.blocking(false).acquire().unwrap();
            calls_ref.lock().unwrap().push("other");
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            calls_ref.lock().unwrap().push("other");
        });
        held_rx.recv().unwrap();
        let main = lock("nbx")
            .semaphores(&b)
            .external(true)
            .lock_path(d.path());
        match main.blocking(false).acquire() {
            Ok(_) => calls.lock().unwrap().push("main"),
            Err(e) => assert!(e.is_acquire_failed(), "{e}"),
        }
        go_tx.send(()).unwrap();
    });
    assert_eq!(*calls.lock().unwrap(), ["other", "other"]);
}

/// Threads of this process named `name` (as /proc shows them, cut to 15 bytes).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .count()
}

#[test]
fn an_awaited_external_lock_blocks_no_executor_thread() {
    let d = dir();
    let dir_arg = path_str(d.path());
    let mut holder = spawn("hold", &["async-ext", dir_arg]);
    holder.expect("held");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let path = d.path().to_owned();
        let waiter = tokio::spawn(async move {
            let g = lock("async-ext")
                .external(true)
                .lock_path(&path)
                .acquire_async()
                .await;
            g.unwrap()
        });
        // This task keeps running on the runtime's only thread while the other one waits
        // for the file: the wait happens in the kernel on a helper thread.
        while child::blocked_waiters(&d.path().join("async-ext")) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        assert_eq!(holder.code(), 0);
        let guard = waiter.await.unwrap();
        assert!(guard.name() == "async-ext");
        assert_eq!(
            spawn("try", &["async-ext", dir_arg]).code(),
            1,
            "the task holds it"
        );
        drop(guard);
    });
    assert_eq!(spawn("try", &["async-ext", dir_arg]).code(), 0);
}

/// Cancels 200 waits for a lock file another process holds; checks that they shared one
/// helper thread; then, once told the holder is gone, that the helper ends. In a child process
/// of its own so that no other test's helpers are counted.
fn cancel_role(name: &str, dir: &str) -> i32 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sems = std::sync::Arc::new(Semaphores::new());
    runtime.block_on(async {
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let (name, dir, sems) = (name.to_owned(), dir.to_owned(), sems.clone());
                tokio::spawn(async move {
                    let wait = Duration::from_micros(200 + (i * 37) % 3_000);
                    let acquire = lock(&name)
                        .semaphores(&sems)
                        .external(true)
                        .lock_path(&dir)
                        .acquire_async();
                    tokio::time::timeout(wait, acquire).await.is_err()
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap(), "got a lock another process holds");
        }
    });
    let helpers = threads_named("lockutils-file-");
    assert!(helpers <= 1, "{helpers} helper threads for one name");
    assert_eq!(sems.len(), 0, "nothing queued or held in-process");
    // Waits whose registry entries are gone in between (a new namespace each time) still
    // adopt the helper that the previous one abandoned.
    runtime.block_on(async {
        for _ in 0..30 {
            let sems = Semaphores::new();
            let acquire = lock(name)
                .semaphores(&sems)
                .external(true)
                .lock_path(dir)
                .acquire_async();
            assert!(
                tokio::time::timeout(Duration::from_millis(1), acquire)
                    .await
                    .is_err()
            );
        }
    });
    let helpers = threads_named("lockutils-file-");
    assert!(helpers <= 1, "{helpers} helper threads after sweeps");
    println!("cancelled");
    wait_for_stdin_close(); // the holder is gone
    // The abandoned helper gets the lock, lets it go, and ends.
    let started = std::time::Instant::now();
    while threads_named("lockutils-file-") > 0 {
        assert!(
            started.elapsed() < child::PATIENCE,
            "the helper thread never ended"
        );
        std::thread::yield_now();
    }
    // At most the one descriptor kept for the name stays open.
    let lock_file = Path::new(dir).join(name);
    let open = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == lock_file))
        .count();
    assert!(open <= 1, "{open} descriptors of the lock file left open");
    0
}

#[test]
fn cancelled_external_waits_leave_one_helper_at_most_and_then_none() {
    let d = dir();
    let dir_arg = path_str(d.path());
    let mut holder = spawn("hold", &["cancelled-ext", dir_arg]);
    holder.expect("held");
    let mut canceller = spawn("cancel-ext", &["cancelled-ext", dir_arg]);
    canceller.expect("cancelled");
    assert_eq!(holder.code(), 0);
    assert_eq!(canceller.code(), 0);
    assert_eq!(
        spawn("try", &["cancelled-ext", dir_arg]).code(),
        0,
        "left locked"
    );
}

#[test]
fn async_tasks_threads_and_processes_share_one_external_lock() {
    let d = dir();
    let counter = d.path().join("counter");
    let (dir_arg, counter_arg) = (path_str(d.path()), path_str(&counter));
    let children = [
        spawn("async-count", &["mixed", dir_arg, counter_arg, "300", "3"]),
        spawn("count", &["mixed", dir_arg, counter_arg, "450", "2"]),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let (path, counter) = (d.path().to_owned(), counter.clone());
                tokio::spawn(async move {
                    for _ in 0..300 {
                        let _g = lock("mixed")
                            .external(true)
                            .lock_path(&path)
                            .acquire_async()
                            .await
                            .unwrap();
                        increment_counter(&counter);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    for c in children {
        assert_eq!(c.code(), 0);
    }
    assert_eq!(read_counter(&counter), 900 + 900 + 900);
}

#[test]
fn inter_process_locks_can_be_awaited() {
    let d = dir();
    let dir_arg = path_str(d.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut holder = spawn("hold", &["ipl-async", dir_arg]);
    holder.expect("held");
    let ipl = std::sync::Arc::new(external_lock("ipl-async", None, Some(d.path())).unwrap());
    runtime.block_on(async {
        let err = ipl
            .try_acquire_for_async(Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(err.is_acquire_failed(), "{err}");
        let waiter = {
            let ipl = ipl.clone();
            tokio::spawn(async move { ipl.acquire_async().await.map(drop) })
        };
        while child::blocked_waiters(&d.path().join("ipl-async")) == 0 {
            tokio::task::yield_now().await; // the runtime's only thread is free
        }
        assert_eq!(holder.code(), 0);
        waiter.await.unwrap().unwrap();
    });
    // The shared side, awaited behind another process's writer, by two tasks at once.
    let path = d.path().join("rw-read-async");
    let rw = std::sync::Arc::new(InterProcessReaderWriterLock::new(&path));
    let mut writer = spawn("rw-hold", &[path_str(&path), "write"]);
    writer.expect("held");
    runtime.block_on(async {
        let both = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (rw, both) = (rw.clone(), both.clone());
                tokio::spawn(async move {
                    let r = rw.read_async().await.unwrap();
                    both.wait().await; // readers share
                    drop(r);
                })
            })
            .collect();
        while child::blocked_waiters(&path) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(rw.try_read().unwrap_err().is_acquire_failed());
        assert_eq!(writer.code(), 0);
        for r in readers {
            r.await.unwrap();
        }
    });
    drop(rw.try_write().expect("free again"));
    // The reader/writer file lock's exclusive side, awaited behind another process's reader.
    let path = d.path().join("rw-async");
    let rw = std::sync::Arc::new(InterProcessReaderWriterLock::new(&path));
    let mut reader = spawn("rw-hold", &[path_str(&path), "read"]);
    reader.expect("held");
    runtime.block_on(async {
        let waiter = {
            let rw = rw.clone();
            tokio::spawn(async move { rw.write_async().await.map(drop) })
        };
        while child::blocked_waiters(&path) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(reader.code(), 0);
        waiter.await.unwrap().unwrap();
    });
}
