//! External lock costs, each beside its physical baseline in the same run:
//! - uncontended acquire+release beside the raw `F_OFD_SETLK` lock+unlock pair on an open
//!   descriptor, and beside fasteners' full open+lock+unlock+close cycle;
//! - 4 processes contending on one lock file, beside 4 processes running a raw OFD loop that
//!   does the same work (a counter in a file incremented under the lock);
//! - the handoff: from a holder's release to a blocked waiter's acquire.
//!
//! `cargo bench --bench external`

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use lockutils::{InterProcessLock, Semaphores, lock};

const ROLE_ENV: &str = "LOCKUTILS_BENCH_CHILD";

fn ofd(file: &File, kind: libc::c_int, wait: bool) {
    // SAFETY: zeroed `flock` is valid (whole file, l_pid 0); the descriptor is open.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as _;
    fl.l_whence = libc::SEEK_SET as _;
    let cmd = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    // SAFETY: as above.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) };
    assert_eq!(rc, 0, "fcntl: {}", std::io::Error::last_os_error());
}

fn open(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
}

fn uncontended(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("external_uncontended");
    let raw = open(&dir.path().join("raw"));
    g.bench_function("raw_ofd_lock_unlock_pair", |b| {
        b.iter(|| {
            ofd(black_box(&raw), libc::F_WRLCK, false);
            ofd(&raw, libc::F_UNLCK, false);
        })
    });
    let cycle = dir.path().join("cycle");
    g.bench_function("open_lock_unlock_close_cycle", |b| {
        b.iter(|| {
            let f = open(black_box(&cycle));
            ofd(&f, libc::F_WRLCK, false);
            ofd(&f, libc::F_UNLCK, false);
        })
    });
    g.bench_function("lock_external", |b| {
        b.iter(|| {
            drop(
                lock(black_box("bench-ext"))
                    .external(true)
                    .lock_path(dir.path())
                    .acquire()
                    .unwrap(),
            )
        })
    });
    let ipl = InterProcessLock::new(dir.path().join("ipl"));
    g.bench_function("inter_process_lock", |b| {
        b.iter(|| drop(black_box(&ipl).acquire().unwrap()))
    });
    g.finish();
}

/// A child of the contention benchmark: prepares, says `ready`, waits for `go`, runs `iters`
/// increments of the counter under the lock, and prints how long that took in nanoseconds.
fn contention_child(mode: &str, dir: &Path, iters: u64) {
    // Not append mode: positioned writes must land at offset 0.
    let counter = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("counter"))
        .unwrap();
    // The file holds the count and the pid of the last incrementer; a change of pid is an
    // ownership change (the lock passed to another process).
    let me = u64::from(std::process::id());
    let changes = std::cell::Cell::new(0u64);
    let increment = || {
        let mut buf = [0u8; 16];
        let n = counter.read_at(&mut buf, 0).unwrap();
        let (value, last) = if n == 16 {
            (
                u64::from_le_bytes(buf[..8].try_into().unwrap()),
                u64::from_le_bytes(buf[8..].try_into().unwrap()),
            )
        } else {
            (0, 0)
        };
        if last != me {
            changes.set(changes.get() + 1);
        }
        buf[..8].copy_from_slice(&(value + 1).to_le_bytes());
        buf[8..].copy_from_slice(&me.to_le_bytes());
        counter.write_at(&buf, 0).unwrap();
    };
    let raw = open(&dir.join("raw-lock"));
    println!("ready");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let started = Instant::now();
    for _ in 0..iters {
        if mode == "raw" {
            ofd(&raw, libc::F_WRLCK, true);
            increment();
            ofd(&raw, libc::F_UNLCK, false);
        } else {
            let _g = lock("contended")
                .external(true)
                .lock_path(dir)
                .acquire()
                .unwrap();
            increment();
        }
    }
    println!("{} {}", started.elapsed().as_nanos(), changes.get());
}

/// Runs 4 child processes of `mode` doing `iters` increments each; the slowest one's time,
/// and how often the lock passed from one process to another.
fn four_processes(mode: &str, iters: u64) -> (Duration, u64) {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .env(ROLE_ENV, format!("{mode} {} {iters}", dir.path().display()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut readers: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()).lines())
        .collect();
    for r in &mut readers {
        assert_eq!(r.next().unwrap().unwrap(), "ready");
    }
    for c in &mut children {
        c.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    let (mut slowest, mut changes) = (0, 0);
    for r in &mut readers {
        let line = r.next().unwrap().unwrap();
        let (elapsed, changed) = line.split_once(' ').unwrap();
        slowest = slowest.max(elapsed.parse::<u64>().unwrap());
        changes += changed.parse::<u64>().unwrap();
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let total = std::fs::read(dir.path().join("counter")).unwrap();
    assert_eq!(
        u64::from_le_bytes(total[..8].try_into().unwrap()),
        4 * iters
    );
    (Duration::from_nanos(slowest), changes)
}

fn contention(c: &mut Criterion) {
    let mut g = c.benchmark_group("external_4_processes");
    g.sample_size(10);
    g.throughput(Throughput::Elements(4));
    g.bench_function("raw_ofd_loop", |b| {
        b.iter_custom(|iters| four_processes("raw", iters).0)
    });
    g.bench_function("lock_external", |b| {
        b.iter_custom(|iters| four_processes("lockutils", iters).0)
    });
    g.finish();
    // The kernel promises no fairness between processes; this shows how the lock moved.
    for mode in ["raw", "lockutils"] {
        let (elapsed, changes) = four_processes(mode, 25_000);
        println!(
            "external_4_processes/{mode}: 100000 increments in {elapsed:?}, \
             {changes} ownership changes"
        );
    }
}

/// Waiters the kernel has blocked on the file at `path`.
fn blocked_waiters(path: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let needle = format!(":{} ", std::fs::metadata(path).unwrap().ino());
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|l| l.contains("->") && l.contains(&needle))
        .count()
}

/// Time from a holder's release to a blocked waiter's acquire, summed over `iters` handoffs.
/// Holder and waiter use separate in-process namespaces, so only the file lock (and the
/// kernel's wake-up) stands between them, as between two processes.
fn handoffs(dir: &Path, iters: u64) -> Duration {
    let (holder_ns, waiter_ns) = (Semaphores::new(), Semaphores::new());
    let file: PathBuf = dir.join("handoff");
    let ext = |ns| lock("handoff").semaphores(ns).external(true).lock_path(dir);
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let held = ext(&holder_ns).acquire().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            s.spawn(|| {
                let _g = ext(&waiter_ns).acquire().unwrap();
                tx.send(Instant::now()).unwrap();
            });
            while blocked_waiters(&file) == 0 {
                thread::yield_now();
            }
            let released = Instant::now();
            drop(held);
            total += rx.recv().unwrap() - released;
        });
    }
    total
}

/// Like [`handoffs`], to a task awaiting the lock on a current-thread tokio runtime.
fn async_handoffs(dir: &Path, iters: u64) -> Duration {
    let (holder_ns, waiter_ns) = (Semaphores::new(), Semaphores::new());
    let file: PathBuf = dir.join("handoff-async");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let held = lock("handoff-async")
            .semaphores(&holder_ns)
            .external(true)
            .lock_path(dir)
            .acquire()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            s.spawn(|| {
                runtime.block_on(async {
                    let _g = lock("handoff-async")
                        .semaphores(&waiter_ns)
                        .external(true)
                        .lock_path(dir)
                        .acquire_async()
                        .await
                        .unwrap();
                    tx.send(Instant::now()).unwrap();
                })
            });
            while blocked_waiters(&file) == 0 {
                thread::yield_now();
            }
            let released = Instant::now();
            drop(held);
            total += rx.recv().unwrap() - released;
        });
    }
    total
}

fn handoff(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("external_handoff");
    g.bench_function("release_to_blocked_waiter", |b| {
        b.iter_custom(|iters| handoffs(dir.path(), iters))
    });
    g.bench_function("release_to_awaiting_task", |b| {
        b.iter_custom(|iters| async_handoffs(dir.path(), iters))
    });
    g.finish();
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let mut parts = role.split(' ');
        let (mode, dir, iters) = (
            parts.next().unwrap(),
            PathBuf::from(parts.next().unwrap()),
            parts.next().unwrap().parse().unwrap(),
        );
        contention_child(mode, &dir, iters);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    uncontended(&mut c);
    contention(&mut c);
    handoff(&mut c);
    c.final_summary();
}
