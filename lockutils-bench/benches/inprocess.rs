//! In-process lock costs, each beside its physical baseline in the same run.
//!
//! `cargo bench -p lockutils-bench --bench inprocess`

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lockutils::{FairLocks, ReaderWriterLock, Semaphores, lock};

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended");
    let mutex = parking_lot::Mutex::new(());
    g.bench_function("parking_lot_mutex_pair", |b| {
        b.iter(|| drop(black_box(&mutex).lock()))
    });
    g.bench_function("lock_instance_42", |b| {
        b.iter(|| drop(lock(black_box("instance-42")).acquire().unwrap()))
    });
    let fair_mutex = parking_lot::FairMutex::new(());
    g.bench_function("parking_lot_fair_mutex_pair", |b| {
        b.iter(|| drop(black_box(&fair_mutex).lock()))
    });
    g.bench_function("lock_instance_42_fair", |b| {
        b.iter(|| drop(lock(black_box("instance-42")).fair(true).acquire().unwrap()))
    });
    let sems = Semaphores::new();
    g.bench_function("lock_own_container", |b| {
        b.iter(|| {
            drop(
                lock(black_box("instance-42"))
                    .semaphores(&sems)
                    .acquire()
                    .unwrap(),
            )
        })
    });
    let handle = sems.get("held-handle");
    g.bench_function("semaphore_handle_no_lookup", |b| {
        b.iter(|| drop(black_box(&handle).acquire()))
    });
    let fair = FairLocks::new().get("held-handle");
    g.bench_function("fair_handle_no_lookup", |b| {
        b.iter(|| drop(black_box(&fair).write().unwrap()))
    });
    let pl_rw = parking_lot::RwLock::new(());
    g.bench_function("parking_lot_rwlock_read", |b| {
        b.iter(|| drop(black_box(&pl_rw).read()))
    });
    g.bench_function("parking_lot_rwlock_write", |b| {
        b.iter(|| drop(black_box(&pl_rw).write()))
    });
    let rw = ReaderWriterLock::new();
    g.bench_function("rwlock_read", |b| b.iter(|| drop(black_box(&rw).read())));
    g.bench_function("rwlock_write", |b| {
        b.iter(|| drop(black_box(&rw).write().unwrap()))
    });
    g.finish();
}

/// Uncontended async acquire+release, polled by `futures::executor::block_on`.
fn uncontended_async(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended_async");
    let sem = lockutils::Semaphore::new(1);
    g.bench_function("block_on_empty_future", |b| {
        b.iter(|| futures::executor::block_on(async { black_box(()) }))
    });
    let tokio_mutex = tokio::sync::Mutex::new(());
    g.bench_function("tokio_mutex_lock", |b| {
        b.iter(|| futures::executor::block_on(async { drop(black_box(&tokio_mutex).lock().await) }))
    });
    g.bench_function("semaphore_acquire_async", |b| {
        b.iter(|| {
            futures::executor::block_on(async { drop(black_box(&sem).acquire_async().await) })
        })
    });
    g.bench_function("lock_instance_42_acquire_async", |b| {
        b.iter(|| {
            futures::executor::block_on(async {
                drop(
                    lock(black_box("instance-42"))
                        .acquire_async()
                        .await
                        .unwrap(),
                )
            })
        })
    });
    g.finish();
}

/// Runs `op(thread_index)` `iters` times on each of `threads` threads started together, and
/// returns the wall time of the slowest.
fn on_threads(threads: usize, iters: u64, op: impl Fn(usize) + Sync) -> Duration {
    let start = Barrier::new(threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (start, op) = (&start, &op);
                s.spawn(move || {
                    start.wait();
                    let began = Instant::now();
                    for _ in 0..iters {
                        op(t);
                    }
                    began.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

/// Throughput in lock+unlock pairs per second: one thread, two threads on two names (the
/// registry must not serialise them), two threads on one name.
fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("scaling");
    const NAMES: [&str; 2] = ["instance-1", "instance-2"];
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_thread", |b| {
        b.iter_custom(|iters| on_threads(1, iters, |_| drop(lock(NAMES[0]).acquire().unwrap())))
    });
    g.throughput(Throughput::Elements(2));
    g.bench_function("two_threads_two_names", |b| {
        b.iter_custom(|iters| on_threads(2, iters, |t| drop(lock(NAMES[t]).acquire().unwrap())))
    });
    g.bench_function("two_threads_one_name", |b| {
        b.iter_custom(|iters| on_threads(2, iters, |_| drop(lock(NAMES[0]).acquire().unwrap())))
    });
    let mutex = parking_lot::Mutex::new(());
    g.bench_function("two_threads_one_parking_lot_mutex", |b| {
        b.iter_custom(|iters| on_threads(2, iters, |_| drop(mutex.lock())))
    });
    g.finish();
}

criterion_group!(benches, uncontended, uncontended_async, scaling);
criterion_main!(benches);
