//! `lock(name).fair(true).external(true)`: first come, first served across processes, with
//! real child processes queued in a known order (checked through the kernel's list of
//! blocked lock requests, `/proc/locks`, never with sleeps), killed holders and waiters, a
//! Python oslo process taking the lock between fair holders, and random kills under load.
#![cfg(target_os = "linux")]

mod common;

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::child::{self, Proc, blocked_waiters, spawn, start, wait_for_stdin_close};
use lockutils::lock;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// The companion file of the lock `name` in `dir`.
fn queue_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(".lockutils-fifo").join(name)
}

/// How many tickets the queue of `name` has given out (its first 8 bytes).
fn tickets_issued(dir: &Path, name: &str) -> u64 {
    std::fs::read(queue_file(dir, name))
        .ok()
        .and_then(|b| Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)))
        .unwrap_or(0)
}

/// The ticket of this process's place in the queue of `name`, as the kernel lists the locks
/// of its open files (`/proc/self/fdinfo`): the slot it holds (slots of 16 bytes from byte
/// 64, in ticket order while fewer than 4,096 were issued).
fn my_ticket(dir: &Path, name: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(queue_file(dir, name)).unwrap().ino();
    let needle = format!(":{ino} ");
    let starts: Vec<u64> = std::fs::read_dir("/proc/self/fdinfo")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter(|l| l.starts_with("lock:") && l.contains(&needle))
                .filter_map(|l| l.split_whitespace().rev().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|&start| start >= 64)
        .collect();
    assert_eq!(starts.len(), 1, "one place in the queue: {starts:?}");
    (starts[0] - 64) / 16
}

/// Requests the kernel has blocked on the queue file's slots (not on its header, the first
/// 64 bytes, which only a remover locks, briefly): processes that hold a ticket.
fn blocked_on_slots(dir: &Path, name: &str) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(queue_file(dir, name)) else {
        return 0;
    };
    let needle = format!(":{} ", meta.ino());
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("->") && l.contains(&needle))
        .filter(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields
                .get(fields.len().wrapping_sub(2))
                .and_then(|start| start.parse::<u64>().ok())
                .is_some_and(|start| start >= 64)
        })
        .count()
}

/// Every process the kernel has blocked in the queue: the first on the lock file, the others
/// on their predecessors' slots.
fn blocked(dir: &Path, name: &str) -> usize {
    blocked_waiters(&dir.join(name)) + blocked_on_slots(dir, name)
}

/// Spins (yielding) until `cond` holds; fails the test after [`child::PATIENCE`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !cond() {
        assert!(started.elapsed() < child::PATIENCE, "never saw {what}");
        std::thread::yield_now();
    }
}

/// Spins until the kernel has `n` blocked requests on the lock `name` and its queue.
fn wait_for_blocked(dir: &Path, name: &str, n: usize) {
    wait_until(&format!("{n} blocked on {name}"), || {
        blocked(dir, name) >= n
    });
}

/// Appends `line` to the file `path` (one write).
fn append(path: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
}

fn play(role: &str, args: &[String]) -> i32 {
    let (name, dir) = (args[0].as_str(), args[1].as_str());
    let fair = || lock(name).fair(true).external(true).lock_path(dir);
    match role {
        // Holds the lock until stdin closes.
        "hold" => {
            let _g = fair().acquire().unwrap();
            println!("held");
            wait_for_stdin_close();
            0
        }
        // Queues for the lock, then notes its id in the order file, under the lock.
        "queue" => {
            let _g = fair().acquire().unwrap();
            append(&Path::new(dir).join("order"), &args[2]);
            0
        }
        // `count N`: N times, appends to the log file the next number after its last line,
        // under the lock: a lost or doubled number means two holders at once.
        "count" => {
            let n: u64 = args[2].parse().unwrap();
            let log = Path::new(dir).join("log");
            for _ in 0..n {
                let _g = fair().acquire().unwrap();
                let last = std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .last()
                    .map_or(0, |l| l.parse::<u64>().unwrap());
                append(&log, &(last + 1).to_string());
            }
            0
        }
        // `rounds ID N`: N times, takes the lock and notes its id in the order file. Before
        // its last round, it lets go only once the two others wait again (so that the order
        // of requests is known: the test's other processes, one each).
        "rounds" => {
            let n: u32 = args[3].parse().unwrap();
            for round in 0..n {
                let _g = fair().acquire().unwrap();
                if round + 1 < n {
                    // Both others hold a ticket again, behind this holder.
                    let dir = Path::new(dir);
                    let mine = my_ticket(dir, name);
                    wait_until("both others queued", || {
                        tickets_issued(dir, name) >= mine + 3
                    });
                }
                append(&Path::new(dir).join("order"), &args[2]);
            }
            0
        }
        "try" => match fair().blocking(false).acquire() {
            Ok(_) => 0,
            Err(e) if e.is_acquire_failed() => 1,
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
        "timed" => match fair().timeout(Duration::from_millis(50)).acquire() {
            Ok(_) => 0,
            Err(e) if e.is_acquire_failed() => 1,
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
        "fair-low-limit" => fair_low_limit(dir),
        other => panic!("unknown child role {other}"),
    }
}

/// Sets this process's soft and hard limit on open descriptors to `n`.
fn limit_descriptors(n: u64) {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: a valid resource and limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// Takes and lets go the fair lock `name` after it queued: the same name's unfair lock
/// (outside the queue) holds the file until a thread's fair acquire shows in the kernel,
/// waiting for it.
fn queued_cycle(dir: &str, name: &str) {
    let unfair = lock(name).external(true).lock_path(dir).acquire().unwrap();
    std::thread::scope(|s| {
        let fair = s.spawn(|| {
            lock(name)
                .fair(true)
                .external(true)
                .lock_path(dir)
                .acquire()
                .map(drop)
        });
        wait_until("the fair acquire waiting", || {
            blocked_waiters(&Path::new(dir).join(name)) > 0
        });
        drop(unfair);
        fair.join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    });
}

/// Under a limit of 32 descriptors, 100 names each taken through the queue: a queue file
/// must be closed with its name's other descriptors (once leaked by every queued acquire).
fn fair_low_limit(dir: &str) -> i32 {
    limit_descriptors(32);
    for i in 0..100 {
        queued_cycle(dir, &format!("n{i}"));
    }
    println!("limit ok");
    0
}

#[test]
fn child() {
    child::main(play);
}

/// Starts a `queue` child with `id` and waits until it has its ticket (behind `before`
/// others), then until the kernel shows it waiting.
fn queue_up(dir: &Path, name: &str, id: &str, before: usize) -> Proc {
    let child = spawn("queue", &[name, path_str(dir), id]);
    wait_until(&format!("{id}'s ticket"), || {
        tickets_issued(dir, name) > before as u64
    });
    wait_for_blocked(dir, name, before + 1);
    child
}

fn order(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("order"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn processes_queued_in_a_known_order_get_the_lock_in_that_order() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let holder = lock("fifo").fair(true).external(true).lock_path(dir);
    let held = holder.acquire().unwrap();
    let children: Vec<Proc> = (0..6)
        .map(|i| queue_up(dir, "fifo", &i.to_string(), i))
        .collect();
    drop(held);
    for child in children {
        assert_eq!(child.code(), 0);
    }
    assert_eq!(order(dir), ["0", "1", "2", "3", "4", "5"]);
}

#[test]
fn processes_that_take_the_lock_again_and_again_take_turns() {
    // Lock files alone let a process that releases and re-locks keep the lock; in the queue,
    // it goes behind those already waiting: once all three wait, strict turns.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let held = lock("turns")
        .fair(true)
        .external(true)
        .lock_path(dir)
        .acquire()
        .unwrap();
    let children: Vec<Proc> = (0..3)
        .map(|i| {
            let child = spawn("rounds", &["turns", path_str(dir), &i.to_string(), "40"]);
            wait_until("its ticket", || tickets_issued(dir, "turns") > i as u64);
            wait_for_blocked(dir, "turns", i + 1);
            child
        })
        .collect();
    drop(held);
    for child in children {
        assert_eq!(child.code(), 0);
    }
    let expected: Vec<String> = (0..120).map(|i| (i % 3).to_string()).collect();
    assert_eq!(order(dir), expected);
}

#[test]
fn a_killed_waiter_in_the_middle_and_a_killed_holder_do_not_stall_the_queue() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let mut holder = spawn("hold", &["mid", path_str(dir)]);
    holder.expect("held");
    let a = queue_up(dir, "mid", "a", 0);
    let b = queue_up(dir, "mid", "b", 1);
    let c = queue_up(dir, "mid", "c", 2);
    let e = queue_up(dir, "mid", "e", 3);
    // A waiter in the middle dies (reaped: the kernel has dropped its place); c now waits for
    // a.
    b.kill();
    // The holder dies: a goes on, then c, then e, with nothing left over from b.
    holder.kill();
    for child in [a, c, e] {
        assert_eq!(child.code(), 0);
    }
    assert_eq!(order(dir), ["a", "c", "e"]);
    // Free, and nobody queues: a try gets it.
    assert_eq!(spawn("try", &["mid", path_str(dir)]).code(), 0);
}

#[test]
fn tries_and_timeouts_do_not_pass_the_queue_and_leave_it_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let held = lock("tries")
        .fair(true)
        .external(true)
        .lock_path(dir)
        .acquire()
        .unwrap();
    let a = queue_up(dir, "tries", "a", 0);
    // Held, with a waiter: a try fails, a timed wait gives up and leaves.
    assert_eq!(spawn("try", &["tries", path_str(dir)]).code(), 1);
    assert_eq!(spawn("timed", &["tries", path_str(dir)]).code(), 1);
    let b = queue_up(dir, "tries", "b", 1);
    assert_eq!(spawn("timed", &["tries", path_str(dir)]).code(), 1);
    drop(held);
    assert_eq!(a.code(), 0);
    assert_eq!(b.code(), 0);
    assert_eq!(order(dir), ["a", "b"]);
    // In this process too: a try on a free lock with nobody queued succeeds.
    drop(
        lock("tries")
            .fair(true)
            .external(true)
            .lock_path(dir)
            .blocking(false)
            .acquire()
            .unwrap(),
    );
}

#[test]
fn an_awaiting_task_queues_in_order_and_a_dropped_one_leaves_the_queue() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let mut holder = spawn("hold", &["tasks", path_str(dir)]);
    holder.expect("held");
    let fair = || lock("tasks").fair(true).external(true).lock_path(dir);
    futures::executor::block_on(async {
        // A task that gives up (its future dropped at its timeout) leaves the queue.
        let err = fair()
            .timeout(Duration::from_millis(30))
            .acquire_async()
            .await
            .unwrap_err();
        assert!(err.is_acquire_failed(), "{err}");
    });
    // A task dropped while it queues (polled once, then dropped) leaves the queue.
    let mut queued = Box::pin(fair().acquire_async());
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(queued.as_mut().poll(&mut cx).is_pending());
    assert_eq!(tickets_issued(dir, "tasks"), 2);
    drop(queued);
    // (The given-up task's helper thread may still wait in the kernel for the lock file, so
    // the order is followed through the tickets the queue gives out.)
    let a = spawn("queue", &["tasks", path_str(dir), "a"]);
    wait_until("a's ticket", || tickets_issued(dir, "tasks") >= 3);
    std::thread::scope(|s| {
        let task = s.spawn(|| {
            futures::executor::block_on(async {
                let _g = fair().acquire_async().await.unwrap();
                append(&dir.join("order"), "task");
            })
        });
        // The task polls its place rather than blocking in the kernel: wait for the queue
        // file to show its ticket (after the one given up, and a's).
        wait_until("the task's ticket", || tickets_issued(dir, "tasks") >= 4);
        let c = spawn("queue", &["tasks", path_str(dir), "c"]);
        wait_until("c's ticket", || tickets_issued(dir, "tasks") >= 5);
        assert_eq!(holder.code(), 0);
        assert_eq!(a.code(), 0);
        task.join().unwrap();
        assert_eq!(c.code(), 0);
    });
    assert_eq!(order(dir), ["a", "task", "c"]);
    // Nobody is left in the queue: a try gets the lock.
    assert_eq!(spawn("try", &["tasks", path_str(dir)]).code(), 0);
}

#[test]
#[ignore = "needs the real oslo.concurrency: scripts/test runs it (LOCKUTILS_OSLO_PYTHON, --include-ignored)"]
fn a_python_oslo_process_takes_the_lock_between_fair_holders_and_everyone_excludes() {
    let Some(py) = common::oslo_python("oslo.concurrency") else {
        return;
    };
    const SCRIPT: &str = r#"
import sys
from oslo_concurrency import lockutils
name, lock_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = lock_path + "/log"
for _ in range(n):
    with lockutils.lock(name, external=True, lock_path=lock_path):
        try:
            with open(log) as f:
                lines = f.read().split()
        except FileNotFoundError:
            lines = []
        last = int(lines[-1]) if lines else 0
        with open(log, "a") as f:
            f.write("%d\n" % (last + 1))
"#;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let mut python = Command::new(py);
    python
        .arg("-c")
        .arg(SCRIPT)
        .args(["mixed", path_str(dir), "200"]);
    let python = start(python);
    let rust: Vec<Proc> = (0..3)
        .map(|_| spawn("count", &["mixed", path_str(dir), "200"]))
        .collect();
    assert!(python.finish().success());
    for child in rust {
        assert_eq!(child.code(), 0);
    }
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    let numbers: Vec<u64> = log.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(numbers, (1..=800).collect::<Vec<_>>());
}

#[test]
fn many_processes_with_random_kills_keep_the_count_exact() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut survivors = Vec::new();
    for round in 0..3 {
        let mut children: Vec<Proc> = (0..5)
            .map(|_| spawn("count", &["stress", path_str(dir), "60"]))
            .collect();
        // Kill two at random moments: wait until the log has grown a random amount.
        for _ in 0..2 {
            let victim = children.remove((random() % children.len() as u64) as usize);
            let target = round * 300 + 20 + random() % 100;
            let log = dir.join("log");
            wait_until("the log to grow", || {
                std::fs::read_to_string(&log).map_or(0, |t| t.lines().count() as u64) >= target
                    || victim_done(&victim)
            });
            victim.kill();
        }
        survivors.extend(children);
        for child in survivors.drain(..) {
            assert_eq!(child.code(), 0);
        }
        let log = std::fs::read_to_string(dir.join("log")).unwrap();
        let numbers: Vec<u64> = log.lines().map(|l| l.parse().unwrap()).collect();
        let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
        assert_eq!(numbers, expected, "two holders at once, round {round}");
        // The queue is empty again: a try gets the lock.
        assert_eq!(spawn("try", &["stress", path_str(dir)]).code(), 0);
    }
}

/// Whether the child has exited already (not reaped).
fn victim_done(child: &Proc) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", child.child.id()))
        .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
}

#[test]
fn removing_the_lock_file_removes_its_queue_file_too() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let fair = || lock("gone").fair(true).external(true).lock_path(dir);
    drop(fair().acquire().unwrap());
    assert!(queue_file(dir, "gone").exists());
    lockutils::remove_external_lock_file("gone", None, Some(dir)).unwrap();
    assert!(!dir.join("gone").exists());
    assert!(!queue_file(dir, "gone").exists());
    // And through lockutils clean's API.
    drop(fair().acquire().unwrap());
    let lock_dir = lockutils::lock_dir::LockDirectory::open(dir).unwrap();
    let removal = lock_dir.remove_if_unused("gone", None).unwrap();
    assert_eq!(removal, lockutils::lock_dir::Removal::Removed);
    assert!(!queue_file(dir, "gone").exists());
    // Used again afterwards: both come back.
    drop(fair().acquire().unwrap());
    assert!(dir.join("gone").exists() && queue_file(dir, "gone").exists());
}

/// A waker that counts its wake-ups.
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_fair_and_an_unfair_task_waiting_for_one_file_each_get_woken() {
    // The fair and the non-fair lock of a name are distinct in-process locks on one lock
    // file: two tasks can wait for that file at once, and each must be woken.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let own = lockutils::Semaphores::new();
    let holder = lock("both")
        .semaphores(&own)
        .external(true)
        .lock_path(dir)
        .acquire()
        .unwrap();
    type Acquire<'a> = std::pin::Pin<
        Box<dyn Future<Output = Result<lockutils::AsyncLockGuard, lockutils::Error>> + 'a>,
    >;
    let mut unfair: Acquire = Box::pin(lock("both").external(true).lock_path(dir).acquire_async());
    let mut fair: Acquire = Box::pin(
        lock("both")
            .fair(true)
            .external(true)
            .lock_path(dir)
            .acquire_async(),
    );
    let counter = || std::sync::Arc::new(CountingWaker(Default::default()));
    let (unfair_waker, fair_waker) = (counter(), counter());
    let poll = |f: &mut Acquire, w: &std::sync::Arc<CountingWaker>| {
        let waker = std::task::Waker::from(w.clone());
        f.as_mut().poll(&mut std::task::Context::from_waker(&waker))
    };
    assert!(poll(&mut unfair, &unfair_waker).is_pending());
    assert!(poll(&mut fair, &fair_waker).is_pending());
    // Each waits in the kernel through a helper of its own.
    wait_for_blocked(dir, "both", 2);
    drop(holder);
    // One of them gets the file; once it lets go, the other is woken too.
    let woken =
        |w: &std::sync::Arc<CountingWaker>| w.0.load(std::sync::atomic::Ordering::SeqCst) > 0;
    wait_until("a wake-up", || woken(&unfair_waker) || woken(&fair_waker));
    let (mut first, first_waker, mut second, second_waker) = if woken(&unfair_waker) {
        (unfair, unfair_waker, fair, fair_waker)
    } else {
        (fair, fair_waker, unfair, unfair_waker)
    };
    let std::task::Poll::Ready(guard) = poll(&mut first, &first_waker) else {
        panic!("woken without the lock");
    };
    assert!(poll(&mut second, &second_waker).is_pending());
    drop(guard.unwrap());
    wait_until("the second wake-up", || woken(&second_waker));
    drop(futures::executor::block_on(second).unwrap());
}

#[test]
fn queued_acquires_of_many_names_stay_within_a_low_descriptor_limit() {
    let d = tempfile::tempdir().unwrap();
    let mut child = spawn("fair-low-limit", &["-", path_str(d.path())]);
    child.expect("limit ok");
    assert_eq!(child.code(), 0);
}
