//! External lock costs, each beside its physical baseline in the same run:
//! - uncontended acquire+release (blocking and async) beside the raw `F_OFD_SETLK`
//!   lock+unlock pair on an open descriptor, and beside fasteners' full
//!   open+lock+unlock+close cycle;
//! - 4 processes incrementing a counter file under one lock, beside 4 processes running a
//!   raw OFD loop that does the same work; how often the lock changed hands is recorded;
//! - the handoff, from a holder's release to a blocked waiter's acquire: to a thread and to
//!   an awaiting task (criterion), and to another process (median and p99, beside a raw OFD
//!   waiter).
//!
//! `cargo bench -p lockutils-bench --bench external`

use std::hint::black_box;
use std::io::{BufRead, BufReader, Lines, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use lockutils::{InterProcessLock, LockGuard, Semaphores, lock};
use lockutils_bench::{
    Counter, Samples, blocked_waiters, json, monotonic_ns, ofd, open_lock_file, posix_lock, record,
    size,
};

const ROLE_ENV: &str = "LOCKUTILS_BENCH_CHILD";
/// The lock directory of a child, apart from its role so that any path works.
const DIR_ENV: &str = "LOCKUTILS_BENCH_DIR";

fn uncontended(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("external_uncontended");
    let raw = open_lock_file(&dir.path().join("raw")).unwrap();
    g.bench_function("raw_ofd_lock_unlock_pair", |b| {
        b.iter(|| {
            ofd(black_box(&raw), libc::F_WRLCK, false).unwrap();
            ofd(&raw, libc::F_UNLCK, false).unwrap();
        })
    });
    let cycle = dir.path().join("cycle");
    g.bench_function("open_lock_unlock_close_cycle", |b| {
        b.iter(|| {
            let f = open_lock_file(black_box(&cycle)).unwrap();
            posix_lock(&f, libc::F_WRLCK).unwrap();
            posix_lock(&f, libc::F_UNLCK).unwrap();
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
    g.bench_function("lock_external_acquire_async", |b| {
        b.iter(|| {
            futures::executor::block_on(async {
                drop(
                    lock(black_box("bench-ext"))
                        .external(true)
                        .lock_path(dir.path())
                        .acquire_async()
                        .await
                        .unwrap(),
                )
            })
        })
    });
    g.bench_function("lock_external_fair", |b| {
        b.iter(|| {
            drop(
                lock(black_box("bench-ext-fair"))
                    .fair(true)
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

/// Starts this benchmark binary again as a child playing `role` in `dir`, with piped stdin
/// and stdout.
fn spawn_child(role: &str, dir: &Path) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE_ENV, role)
        .env(DIR_ENV, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    lines
        .next()
        .expect("the child ended early")
        .expect("the child's stdout")
}

/// A child of the contention benchmark: prepares, says `ready`, waits for `go`, runs `iters`
/// increments of the counter under the lock (`raw` OFD locks, the `unfair` external lock or
/// the `fair` one), and prints when it started and ended (on the machine-wide monotonic
/// clock) and how often the lock came from another process. How long each acquisition
/// waited goes to the file `waits-PID` (one number of nanoseconds per line).
fn contention_child(mode: &str, dir: &Path, iters: u64) {
    let mut counter = Counter::open(&dir.join("counter")).unwrap();
    let raw = open_lock_file(&dir.join("raw-lock")).unwrap();
    let mut waits = Vec::with_capacity(iters as usize);
    println!("ready");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let started = monotonic_ns();
    for _ in 0..iters {
        let asked = Instant::now();
        if mode == "raw" {
            ofd(&raw, libc::F_WRLCK, true).unwrap();
            waits.push(asked.elapsed().as_nanos() as u64);
            counter.increment().unwrap();
            ofd(&raw, libc::F_UNLCK, false).unwrap();
        } else {
            let _g = lock("contended")
                .fair(mode == "fair")
                .external(true)
                .lock_path(dir)
                .acquire()
                .unwrap();
            waits.push(asked.elapsed().as_nanos() as u64);
            counter.increment().unwrap();
        }
    }
    let ended = monotonic_ns();
    let text: String = waits.iter().map(|w| format!("{w}\n")).collect();
    std::fs::write(dir.join(format!("waits-{}", std::process::id())), text).unwrap();
    println!("{started} {ended} {}", counter.ownership_changes());
}

/// What one run of [`four_processes`] measured.
struct FourProcesses {
    elapsed: Duration,
    ownership_changes: u64,
    /// How long each acquisition waited, of all four processes.
    waits: Samples,
}

/// Runs 4 child processes of `mode` doing `iters` increments each; the time from the first
/// start to the last end, how often the lock passed from one process to another, and how
/// long each acquisition waited. Checks the count is exact.
fn four_processes(mode: &str, iters: u64) -> FourProcesses {
    let dir = tempfile::tempdir().unwrap();
    let role = format!("count {mode} {iters}");
    let mut children: Vec<_> = (0..4).map(|_| spawn_child(&role, dir.path())).collect();
    for (_, lines) in &mut children {
        assert_eq!(next_line(lines), "ready");
    }
    for (c, _) in &mut children {
        c.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    let (mut first_start, mut last_end, mut changes) = (u64::MAX, 0, 0);
    for (_, lines) in &mut children {
        let line = next_line(lines);
        let figures: Vec<u64> = line.split(' ').map(|f| f.parse().unwrap()).collect();
        let [start, end, changed] = figures[..] else {
            panic!("unexpected child output {line:?}");
        };
        first_start = first_start.min(start);
        last_end = last_end.max(end);
        changes += changed;
    }
    for (mut c, _) in children {
        assert!(c.wait().unwrap().success());
    }
    let counter = Counter::open(&dir.path().join("counter")).unwrap();
    assert_eq!(counter.read().unwrap().0, 4 * iters, "lost increments");
    let mut waits = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("waits-") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            waits.extend(text.lines().map(|l| l.parse::<u64>().unwrap()));
        }
    }
    FourProcesses {
        elapsed: Duration::from_nanos(last_end - first_start),
        ownership_changes: changes,
        waits: Samples::new(waits),
    }
}

fn contention(c: &mut Criterion) {
    let mut g = c.benchmark_group("external_4_processes");
    g.sample_size(10);
    g.throughput(Throughput::Elements(4));
    g.bench_function("raw_ofd_loop", |b| {
        b.iter_custom(|iters| four_processes("raw", iters).elapsed)
    });
    g.bench_function("lock_external", |b| {
        b.iter_custom(|iters| four_processes("unfair", iters).elapsed)
    });
    g.bench_function("lock_external_fair", |b| {
        b.iter_custom(|iters| four_processes("fair", iters).elapsed)
    });
    g.finish();
    // The kernel promises no fairness between processes; this shows how the lock moved, and
    // how long acquisitions waited, without and with the fair queue.
    let per_process = size(25_000, 1_000);
    let mut runs = serde_json::Map::new();
    for (mode, key) in [("raw", "raw"), ("unfair", "lockutils"), ("fair", "fair")] {
        let run = four_processes(mode, per_process);
        runs.insert(
            key.to_owned(),
            json!({
                "increments": 4 * per_process,
                "elapsed_ns": run.elapsed.as_nanos() as u64,
                "ownership_changes": run.ownership_changes,
                "wait_median_ns": run.waits.percentile(50.0),
                "wait_p99_ns": run.waits.percentile(99.0),
                "wait_p999_ns": run.waits.percentile(99.9),
                "wait_max_ns": run.waits.percentile(100.0),
            }),
        );
    }
    record("external_4_processes", serde_json::Value::Object(runs)).unwrap();
}

/// Returns once the kernel shows a waiter blocked on `file`. Fails instead of spinning for
/// ever when `gone()` says the waiter ended, or after a minute (a filesystem whose inode
/// numbers `/proc/locks` shows differently).
fn await_blocked_waiter(file: &Path, mut gone: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while blocked_waiters(file).unwrap() == 0 {
        assert!(!gone(), "the waiter ended before it blocked");
        assert!(
            Instant::now() < deadline,
            "no waiter seen blocked on {} in /proc/locks",
            file.display()
        );
        thread::yield_now();
    }
}

/// Time from a holder's release to a blocked waiter's acquire, summed over `iters` handoffs:
/// each time, `hold` takes the lock, a thread runs `wait` (which takes it and returns when),
/// and the holder releases once the kernel shows the waiter blocked on `file`.
fn timed_handoffs(
    file: &Path,
    iters: u64,
    hold: impl Fn() -> LockGuard,
    wait: impl Fn() -> Instant + Sync,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let held = hold();
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            let waiter = s.spawn(|| tx.send(wait()).unwrap());
            await_blocked_waiter(file, || waiter.is_finished());
            let released = Instant::now();
            drop(held);
            total += rx.recv().unwrap() - released;
        });
    }
    total
}

/// Handoffs to a blocked thread. Holder and waiter use separate in-process namespaces, so
/// only the file lock (and the kernel's wake-up) stands between them, as between two
/// processes.
fn handoffs(dir: &Path, iters: u64) -> Duration {
    let (holder_ns, waiter_ns) = (Semaphores::new(), Semaphores::new());
    let ext = |ns| lock("handoff").semaphores(ns).external(true).lock_path(dir);
    timed_handoffs(
        &dir.join("handoff"),
        iters,
        || ext(&holder_ns).acquire().unwrap(),
        || {
            let _g = ext(&waiter_ns).acquire().unwrap();
            Instant::now()
        },
    )
}

/// Like [`handoffs`], to a task awaiting the lock on a current-thread tokio runtime.
fn async_handoffs(dir: &Path, iters: u64) -> Duration {
    let (holder_ns, waiter_ns) = (Semaphores::new(), Semaphores::new());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ext = |ns| {
        lock("handoff-async")
            .semaphores(ns)
            .external(true)
            .lock_path(dir)
    };
    timed_handoffs(
        &dir.join("handoff-async"),
        iters,
        || ext(&holder_ns).acquire().unwrap(),
        || {
            runtime.block_on(async {
                let _g = ext(&waiter_ns).acquire_async().await.unwrap();
                Instant::now()
            })
        },
    )
}

/// The external lock of one handoff run: lockutils' or a raw OFD lock on its own descriptor.
enum Handoff {
    Lockutils(PathBuf),
    Raw(std::fs::File),
}

impl Handoff {
    fn new(mode: &str, dir: &Path) -> Self {
        match mode {
            "raw" => Handoff::Raw(open_lock_file(&dir.join("handoff")).unwrap()),
            _ => Handoff::Lockutils(dir.to_owned()),
        }
    }

    /// Blocks until the lock is held; the guard (if any) releases it.
    fn take(&self) -> Option<LockGuard> {
        match self {
            Handoff::Lockutils(dir) => Some(
                lock("handoff")
                    .external(true)
                    .lock_path(dir)
                    .acquire()
                    .unwrap(),
            ),
            Handoff::Raw(file) => {
                ofd(file, libc::F_WRLCK, true).unwrap();
                None
            }
        }
    }

    fn release(&self, guard: Option<LockGuard>) {
        match self {
            Handoff::Lockutils(_) => drop(guard),
            Handoff::Raw(file) => ofd(file, libc::F_UNLCK, false).unwrap(),
        }
    }
}

/// The waiter process of a cross-process handoff: on each `go`, blocks on the lock, reads
/// the clock the moment it has it, releases, and prints that time.
fn handoff_child(mode: &str, dir: &Path) {
    let lock = Handoff::new(mode, dir);
    println!("ready");
    for line in std::io::stdin().lines() {
        if line.unwrap() != "go" {
            break;
        }
        let guard = lock.take();
        let acquired = monotonic_ns();
        lock.release(guard);
        println!("{acquired}");
    }
}

/// `rounds` handoffs from this process to a waiter process blocked in the kernel: the time
/// from the release (here) to the acquire (there), on the machine-wide monotonic clock.
fn process_handoffs(mode: &str, rounds: usize) -> Samples {
    let dir = tempfile::tempdir().unwrap();
    let lock = Handoff::new(mode, dir.path());
    // Creates the file the waiter is found by.
    let created = lock.take();
    lock.release(created);
    let file = dir.path().join("handoff");
    let (mut child, mut lines) = spawn_child(&format!("handoff {mode}"), dir.path());
    assert_eq!(next_line(&mut lines), "ready");
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let held = lock.take();
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        // Released only once the waiter is queued in the kernel, so each sample is a wake-up.
        await_blocked_waiter(&file, || child.try_wait().unwrap().is_some());
        let released = monotonic_ns();
        lock.release(held);
        let acquired: u64 = next_line(&mut lines).parse().unwrap();
        samples.push(
            acquired
                .checked_sub(released)
                .expect("acquired after the release"),
        );
    }
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    Samples::new(samples)
}

fn handoff(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("external_handoff");
    g.bench_function("release_to_blocked_thread", |b| {
        b.iter_custom(|iters| handoffs(dir.path(), iters))
    });
    g.bench_function("release_to_awaiting_task", |b| {
        b.iter_custom(|iters| async_handoffs(dir.path(), iters))
    });
    g.finish();
    let rounds = size(2_000, 100);
    let mut runs = serde_json::Map::new();
    for mode in ["raw", "lockutils"] {
        let s = process_handoffs(mode, rounds);
        runs.insert(
            mode.to_owned(),
            json!({
                "rounds": s.len(),
                "median_ns": s.percentile(50.0),
                "p99_ns": s.percentile(99.0),
                "max_ns": s.percentile(100.0),
            }),
        );
    }
    record("external_handoff_process", serde_json::Value::Object(runs)).unwrap();
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("a child's lock directory"));
        let parts: Vec<&str> = role.split(' ').collect();
        match parts[..] {
            ["count", mode, iters] => contention_child(mode, &dir, iters.parse().unwrap()),
            ["handoff", mode] => handoff_child(mode, &dir),
            _ => panic!("unknown child role {role:?}"),
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    uncontended(&mut c);
    contention(&mut c);
    handoff(&mut c);
    c.final_summary();
}
