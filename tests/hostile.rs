//! External locks against a hostile neighbour and an unlucky operator: a lock directory
//! swapped for a symbolic link mid-operation, a fork while a lock is held, a low descriptor
//! limit, sockets and non-lock files where lock files go, and the mode of new directories.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::thread;

use common::child::{self, spawn, wait_for_blocked_waiters, wait_for_stdin_close};
use lockutils::lock_dir::{LockDirectory, Removal};
use lockutils::{Error, InterProcessLock, lock, remove_external_lock_file};

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Forks; the child runs `in_child` and ends as `how` says, the parent waits for it.
fn fork_and_wait(how: &str, in_child: impl FnOnce()) {
    // SAFETY: the child only drops values it owns and exits; no lock that another thread
    // of this process could hold is taken in between.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        in_child();
        match how {
            // SAFETY: ends the forked child at once, without exit handlers.
            "_exit" => unsafe { libc::_exit(0) },
            _ => std::process::exit(0),
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(libc::WEXITSTATUS(status), 0);
}

/// The roles child processes play.
fn play(role: &str, args: &[String]) -> i32 {
    let arg = |i: usize| args[i].as_str();
    match role {
        "hold" => {
            let _g = lock(arg(0))
                .external(true)
                .lock_path(arg(1))
                .acquire()
                .unwrap();
            println!("held");
            wait_for_stdin_close();
            0
        }
        "try" => match lock(arg(0))
            .external(true)
            .lock_path(arg(1))
            .blocking(false)
            .acquire()
        {
            Ok(_) => 0,
            Err(e) if e.is_acquire_failed() => 1,
            Err(e) => {
                eprintln!("try: {e}");
                2
            }
        },
        "fork" => {
            // Holds arg(0), forks, and the child lets go of its copy of the guard as arg(2)
            // says: dropping it, or a scope that ends, then exit(); or _exit at once.
            let (name, dir, how) = (arg(0), arg(1), arg(2));
            let guard = lock(name).external(true).lock_path(dir).acquire().unwrap();
            match how {
                "drop" => fork_and_wait("exit", || drop(unsafe_copy(&guard))),
                "scope" => fork_and_wait("exit", || {
                    let _in_scope = unsafe_copy(&guard);
                }),
                _ => fork_and_wait("_exit", || {}),
            }
            println!("child gone");
            wait_for_stdin_close();
            drop(guard);
            0
        }
        "fork-interprocess" => {
            let lock = InterProcessLock::new(Path::new(arg(1)).join(arg(0)));
            let guard = lock.acquire().unwrap();
            // SAFETY: as `unsafe_copy`: the child's own image of the guard.
            fork_and_wait("exit", || drop(unsafe { std::ptr::read(&guard) }));
            println!("child gone");
            wait_for_stdin_close();
            drop(guard);
            0
        }
        "low-limit" => low_limit(arg(0)),
        "dir-modes" => {
            // SAFETY: sets this process's umask.
            unsafe { libc::umask(0o022) };
            let base = Path::new(arg(0));
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            drop(
                lock("a")
                    .external(true)
                    .lock_path(&base.join("default/x"))
                    .acquire()
                    .unwrap(),
            );
            assert_eq!(mode(&base.join("default")), 0o700);
            assert_eq!(mode(&base.join("default/x")), 0o700);
            lockutils::set_lock_directory_mode(0o750);
            drop(
                lock("a")
                    .external(true)
                    .lock_path(&base.join("group"))
                    .acquire()
                    .unwrap(),
            );
            assert_eq!(mode(&base.join("group")), 0o750);
            println!("modes ok");
            0
        }
        other => panic!("unknown child role {other}"),
    }
}

/// A bitwise copy of a guard, as a forked child's memory holds one: dropping it runs the
/// guard's release in the child.
fn unsafe_copy(guard: &lockutils::LockGuard) -> lockutils::LockGuard {
    // SAFETY: only used in a forked child, whose memory is a copy of the parent's: the copy
    // stands for the child's own image of the guard, and the parent's is never dropped there.
    unsafe { std::ptr::read(guard) }
}

/// Under a soft limit of 32 descriptors: hundreds of names taken one at a time, many held at
/// once, then a lock taken with every descriptor in use (the idle kept ones give way).
fn low_limit(dir: &str) -> i32 {
    let limit = libc::rlimit {
        rlim_cur: 32,
        rlim_max: 32,
    };
    // SAFETY: a valid resource and limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    for i in 0..300 {
        let guard = lock(&format!("one-{i}"))
            .external(true)
            .lock_path(dir)
            .acquire();
        assert!(guard.is_ok(), "name {i}: {guard:?}");
    }
    let held: Vec<_> = (0..16)
        .map(|i| {
            lock(&format!("many-{i}"))
                .external(true)
                .lock_path(dir)
                .acquire()
                .unwrap_or_else(|e| panic!("held at once, {i}: {e}"))
        })
        .collect();
    drop(held);
    // After all guards are gone, the process can open files again.
    let mut files: Vec<std::fs::File> = (0..16)
        .map(|i| std::fs::File::open("/dev/null").unwrap_or_else(|e| panic!("open {i} after: {e}")))
        .collect();
    // Every descriptor in use: a new lock name still works, closing kept idle ones.
    while let Ok(file) = std::fs::File::open("/dev/null") {
        files.push(file);
    }
    let got = lock("at-the-limit").external(true).lock_path(dir).acquire();
    assert!(got.is_ok(), "{got:?}");
    drop(got);
    drop(files);
    println!("limit ok");
    0
}

#[test]
fn child() {
    child::main(play);
}

/// Renames `locks` away (to `moved`) and puts a link to `victim` in its place.
fn swap_for_link(locks: &Path, moved: &Path, victim: &Path) {
    std::fs::rename(locks, moved).unwrap();
    symlink(victim, locks).unwrap();
}

#[test]
fn a_directory_swapped_for_a_link_while_removal_waits_deletes_nothing_outside() {
    let (d, victim) = (dir(), dir());
    let locks = d.path().join("locks");
    let moved = d.path().join("moved");
    std::fs::create_dir(&locks).unwrap();
    // Empty, like a lock file: only the directory descriptor protects it.
    std::fs::write(victim.path().join("job"), "").unwrap();
    let mut holder = spawn("hold", &["job", path_str(&locks)]);
    holder.expect("held");
    let remover = {
        let locks = locks.clone();
        thread::spawn(move || remove_external_lock_file("job", None, Some(&locks)))
    };
    wait_for_blocked_waiters(&locks.join("job"), 1);
    swap_for_link(&locks, &moved, victim.path());
    assert_eq!(holder.code(), 0);
    let result = remover.join().unwrap();
    assert!(
        victim.path().join("job").exists(),
        "a file outside the lock directory was deleted"
    );
    let err = result.expect_err("the swap is reported");
    assert!(matches!(err, Error::UnsafeLockFile { .. }), "{err}");
    assert!(moved.join("job").exists(), "nothing removed on doubt");
}

/// A waiter (started by `wait`, given the lock directory) waits in the kernel for a lock
/// file; the directory is swapped for a link to another, and the file deleted as a remover
/// does, then let go. The waiter must open its new file in the directory it started in,
/// creating nothing in the link's target.
fn swap_while_waiting(wait: fn(PathBuf) -> Result<bool, Error>) {
    let (d, victim) = (dir(), dir());
    let locks = d.path().join("locks");
    let moved = d.path().join("moved");
    std::fs::create_dir(&locks).unwrap();
    let mut holder = spawn("hold", &["job", path_str(&locks)]);
    holder.expect("held");
    let waiter = {
        let locks = locks.clone();
        thread::spawn(move || wait(locks))
    };
    wait_for_blocked_waiters(&locks.join("job"), 1);
    swap_for_link(&locks, &moved, victim.path());
    std::fs::remove_file(moved.join("job")).unwrap();
    assert_eq!(holder.code(), 0);
    assert!(waiter.join().unwrap().unwrap());
    assert!(
        !victim.path().join("job").exists(),
        "a lock file was created outside the lock directory"
    );
    assert!(moved.join("job").exists());
}

#[test]
fn a_directory_swapped_for_a_link_while_a_waiter_waits_creates_nothing_outside() {
    swap_while_waiting(|locks| {
        let guard = lock("job").external(true).lock_path(&locks).acquire();
        guard.map(|g| g.is_external())
    });
}

#[test]
fn a_directory_swapped_for_a_link_while_a_task_waits_creates_nothing_outside() {
    // The task's helper thread is the one that waits in the kernel.
    swap_while_waiting(|locks| {
        futures::executor::block_on(async {
            let guard = lock("job")
                .external(true)
                .lock_path(&locks)
                .acquire_async()
                .await;
            guard.map(|g| g.is_external())
        })
    });
}

#[test]
fn a_directory_swapped_between_listing_and_removal_steers_no_removal() {
    let (d, victim) = (dir(), dir());
    let locks = d.path().join("locks");
    let moved = d.path().join("moved");
    std::fs::create_dir(&locks).unwrap();
    drop(
        lock("zz-victim")
            .external(true)
            .lock_path(&locks)
            .acquire()
            .unwrap(),
    );
    std::fs::write(victim.path().join("zz-victim"), "").unwrap();
    let lock_dir = LockDirectory::open(&locks).unwrap();
    let listing = lock_dir.list(None).unwrap();
    assert_eq!(listing.locks.len(), 1);
    swap_for_link(&locks, &moved, victim.path());
    assert_eq!(
        lock_dir.remove_if_unused("zz-victim", None).unwrap(),
        Removal::Removed
    );
    assert!(victim.path().join("zz-victim").exists(), "deleted outside");
    assert!(
        !moved.join("zz-victim").exists(),
        "the lock file itself went"
    );
}

#[test]
fn remove_external_lock_file_leaves_files_with_content_alone() {
    let d = dir();
    std::fs::write(d.path().join("notes"), "precious").unwrap();
    let err = remove_external_lock_file("notes", None, Some(d.path())).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert!(err.to_string().contains("notes"), "{err}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("notes")).unwrap(),
        "precious"
    );
}

fn check_fork(role: &str, how: &str) {
    let d = dir();
    let dir_arg = path_str(d.path());
    let mut parent = spawn(role, &["forked", dir_arg, how]);
    parent.expect("child gone");
    assert_eq!(
        spawn("try", &["forked", dir_arg]).code(),
        1,
        "{role}/{how}: the child's exit released its parent's lock"
    );
    assert_eq!(parent.code(), 0);
    assert_eq!(spawn("try", &["forked", dir_arg]).code(), 0, "released");
}

#[test]
fn a_forked_child_dropping_its_copy_of_the_guard_keeps_the_parents_lock() {
    check_fork("fork", "drop");
}

#[test]
fn a_forked_child_ending_a_scope_with_the_guard_keeps_the_parents_lock() {
    check_fork("fork", "scope");
}

#[test]
fn a_forked_child_exiting_at_once_keeps_the_parents_lock() {
    check_fork("fork", "_exit");
}

#[test]
fn a_forked_child_dropping_an_inter_process_guard_keeps_the_parents_lock() {
    check_fork("fork-interprocess", "drop");
}

#[test]
fn descriptors_follow_a_low_limit() {
    let d = dir();
    let mut p = spawn("low-limit", &[path_str(d.path())]);
    p.expect("limit ok");
    assert_eq!(p.code(), 0);
}

#[test]
fn new_lock_directories_are_private_by_default_and_take_the_mode_set() {
    let d = dir();
    let mut p = spawn("dir-modes", &[path_str(d.path())]);
    p.expect("modes ok");
    assert_eq!(p.code(), 0);
}

#[test]
fn sockets_fifos_and_directories_are_refused_before_any_open() {
    let d = dir();
    let _listener = std::os::unix::net::UnixListener::bind(d.path().join("sock")).unwrap();
    let fifo = std::ffi::CString::new(path_str(&d.path().join("pipe"))).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::create_dir(d.path().join("sub")).unwrap();
    for (name, what) in [("sock", "socket"), ("pipe", "FIFO"), ("sub", "directory")] {
        let err = lock(name)
            .external(true)
            .lock_path(d.path())
            .acquire()
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::UnsafeLockFile { .. }), "{text}");
        assert!(text.contains(what) && text.contains(name), "{text}");
    }
}

#[test]
fn a_lock_path_that_is_a_file_is_a_clear_error() {
    let d = dir();
    let file: PathBuf = d.path().join("plain");
    std::fs::write(&file, "").unwrap();
    let err = lock("x")
        .external(true)
        .lock_path(&file)
        .acquire()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("not a directory") && text.contains("plain"),
        "{text}"
    );
}

#[test]
fn a_device_node_is_refused_without_being_opened() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: creating a device node needs root");
        return;
    }
    let d = dir();
    let node = std::ffi::CString::new(path_str(&d.path().join("dev"))).unwrap();
    // The null device's numbers (1, 3): harmless if it were opened, but it must not be.
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
    if rc != 0 {
        eprintln!(
            "skipped: mknod refused here: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let err = lock("dev")
        .external(true)
        .lock_path(d.path())
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::UnsafeLockFile { .. }), "{err}");
    assert!(err.to_string().contains("device"), "{err}");
}

#[test]
fn listings_of_one_lock_directory_from_many_threads_each_see_every_lock_file() {
    let d = dir();
    // Enough entries, with long names, that one listing takes many reads of the directory.
    const FILES: usize = 3000;
    for i in 0..FILES {
        std::fs::write(d.path().join(format!("{:0>120}", i)), "").unwrap();
    }
    let lock_dir = LockDirectory::open(d.path()).unwrap();
    let barrier = std::sync::Barrier::new(4);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..5 {
                    let listing = lock_dir.list(None).unwrap();
                    assert_eq!(listing.locks.len(), FILES, "a listing missed lock files");
                }
            });
        }
    });
}
