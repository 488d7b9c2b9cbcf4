//! Awaitable locks under tokio: tasks contending on named locks without blocking the
//! runtime's threads, an external lock awaited while another process holds it, and
//! `#[synchronized]` on an `async fn`.
//!
//! `cargo run --example async_demo`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lockutils::{lock, synchronized};

static STEPS: AtomicU64 = AtomicU64::new(0);

/// One migration per instance at a time; the lock is awaited.
#[synchronized(format!("instance-{instance}"), timeout = "2s")]
async fn migrate(instance: u32) -> Result<(), lockutils::Error> {
    STEPS.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("== 6 migrations of 2 instances on a single-threaded runtime ==");
    let started = Instant::now();
    let tasks: Vec<_> = (0..6).map(|i| tokio::spawn(migrate(i % 2))).collect();
    for t in tasks {
        t.await??;
    }
    println!(
        "{} steps in {:.0} ms: the two instances interleaved on one thread, each one at a time",
        STEPS.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64() * 1e3
    );

    println!("\n== An external lock held by a thread; a task awaits it ==");
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_owned();
    let ticks = Arc::new(AtomicU64::new(0));
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = {
        let path = path.clone();
        std::thread::spawn(move || {
            // Its own namespace: only the lock file stands between it and the task.
            let sems = lockutils::Semaphores::new();
            let guard = lock("shared")
                .semaphores(&sems)
                .external(true)
                .lock_path(&path)
                .acquire()
                .expect("external lock");
            held_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            drop(guard);
            Instant::now()
        })
    };
    held_rx.recv()?;
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                ticks.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let guard = lock("shared")
        .external(true)
        .lock_path(&path)
        .acquire_async()
        .await?;
    let got = Instant::now();
    let released = holder.join().expect("holder thread");
    ticker.abort();
    println!(
        "got {:?} {:.0} µs after its release; the runtime's only thread ticked {} times meanwhile",
        guard.name(),
        got.duration_since(released).as_secs_f64() * 1e6,
        ticks.load(Ordering::Relaxed)
    );
    Ok(())
}
