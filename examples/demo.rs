//! A tour of lockutils: workers contending on named locks, a fair lock's queue order, what a
//! caller that does not want to wait sees, and processes sharing an external lock.
//!
//! `cargo run --example demo`

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use lockutils::{FairLocks, lock};

/// Each worker process adds this many to the shared counter file.
const INCREMENTS: u64 = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir] = args.as_slice()
        && flag == "--counter-worker"
    {
        return counter_worker(Path::new(dir));
    }

    println!("== Named locks: 6 workers, 2 instances, each holds its instance for 20 ms ==");
    let started = Instant::now();
    thread::scope(|s| {
        for worker in 0..6 {
            s.spawn(move || {
                let name = format!("instance-{}", worker % 2);
                let asked = Instant::now();
                let guard = lock(&name).acquire().expect("blocking acquire");
                let waited = asked.elapsed();
                println!(
                    "worker {worker}: got {:<10} after waiting {:>5.1} ms",
                    guard.name(),
                    waited.as_secs_f64() * 1e3
                );
                thread::sleep(Duration::from_millis(20));
            });
        }
    });
    println!(
        "all done in {:.0} ms: the two instances ran side by side, each one worker at a time\n",
        started.elapsed().as_secs_f64() * 1e3
    );

    println!("== A fair lock serves waiters in the order they queued ==");
    let locks = FairLocks::new();
    let order = Mutex::new(Vec::new());
    let held = lock("resize").fair_locks(&locks).acquire()?;
    let queue = locks.get("resize");
    thread::scope(|s| {
        for worker in 0..5 {
            let (locks, order) = (&locks, &order);
            s.spawn(move || {
                let _g = lock("resize")
                    .fair_locks(locks)
                    .acquire()
                    .expect("fair acquire");
                order.lock().unwrap().push(worker);
            });
            while queue.queue_len() != worker + 1 {
                thread::yield_now();
            }
        }
        println!("5 workers queued behind the holder; releasing");
        drop(held);
    });
    println!("served in order: {:?}\n", order.into_inner().unwrap());

    println!("== Not waiting: blocking(false) and timeout() ==");
    let busy = lock("instance-0").acquire()?;
    thread::scope(|s| {
        s.spawn(|| {
            match lock("instance-0").blocking(false).acquire() {
                Ok(_) => println!("unexpected: got a held lock"),
                Err(e) => println!("blocking(false): {e}"),
            }
            match lock("instance-0")
                .timeout(Duration::from_millis(50))
                .acquire()
            {
                Ok(_) => println!("unexpected: got a held lock"),
                Err(e) => println!("timeout(50ms):   {e}"),
            }
        });
    });
    drop(busy);

    println!("\n== Across processes: 3 processes add {INCREMENTS} each to one counter file ==");
    // Removed when `temp` drops, on an error too.
    let temp = tempfile::Builder::new()
        .prefix("lockutils-demo-")
        .tempdir()?;
    let dir = temp.path().to_owned();
    let started = Instant::now();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .arg("--counter-worker")
                .arg(&dir)
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut worker in workers {
        worker.wait()?;
    }
    let total = std::fs::read_to_string(dir.join("counter"))?;
    println!(
        "counter = {total} (expected {}) in {:.0} ms; lock file {} (the name oslo gives it)",
        3 * INCREMENTS,
        started.elapsed().as_secs_f64() * 1e3,
        dir.join("demo-counter").display()
    );
    temp.close()?;
    Ok(())
}

/// One worker process: read-modify-write of a counter file under an external lock.
fn counter_worker(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let counter = dir.join("counter");
    for _ in 0..INCREMENTS {
        let _g = lock("counter")
            .prefix("demo")
            .external(true)
            .lock_path(dir)
            .acquire()?;
        let value: u64 = std::fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        std::fs::write(&counter, (value + 1).to_string())?;
    }
    Ok(())
}
