//! A tour of lockutils: workers contending on named locks, a fair lock's queue order, and
//! what a caller that does not want to wait sees.
//!
//! `cargo run --example demo`

use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use lockutils::{FairLocks, lock};

fn main() -> Result<(), lockutils::Error> {
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
    let _held = lock("instance-0").acquire()?;
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
    Ok(())
}
