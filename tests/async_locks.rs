//! Awaitable in-process locks: the async side of the one waiter queue, under tokio's
//! multi-thread and current-thread runtimes and under `futures::executor::block_on`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{RacyCounter, wait_until};
use lockutils::{ReaderWriterLock, Semaphore};

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[test]
fn works_under_futures_block_on() {
    let sem = Semaphore::new(1);
    futures::executor::block_on(async {
        let guard = sem.acquire_async().await;
        assert!(sem.try_acquire().is_none());
        drop(guard);
        assert_eq!(sem.available_permits(), 1);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_a_hundred_increments_each() {
    let sem = Arc::new(Semaphore::new(1));
    let counter = Arc::new(RacyCounter::new());
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let (sem, counter) = (sem.clone(), counter.clone());
            tokio::spawn(async move {
                for _ in 0..100 {
                    // A Send guard held across an await inside a spawned task.
                    let _g = sem.acquire_async().await;
                    counter.increment();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(counter.get(), 100_000);
    assert_eq!(sem.queue_len(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn current_thread_runtime_hands_the_lock_between_tasks() {
    let sem = Arc::new(Semaphore::new(1));
    let inside = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (sem, inside) = (sem.clone(), inside.clone());
            tokio::spawn(async move {
                let _g = sem.acquire_async().await;
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[test]
fn async_tasks_and_threads_share_one_fifo_queue() {
    let sem = Arc::new(Semaphore::new(1));
    let counter = Arc::new(RacyCounter::new());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (sem, counter) = (sem.clone(), counter.clone());
            std::thread::spawn(move || {
                for _ in 0..5_000 {
                    let _g = sem.acquire();
                    counter.increment();
                }
            })
        })
        .collect();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (sem, counter) = (sem.clone(), counter.clone());
                tokio::spawn(async move {
                    for _ in 0..2_500 {
                        let _g = sem.acquire_async().await;
                        counter.increment();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(counter.get(), 20_000);

    // Order: a blocked thread queued first is served before a task queued after it.
    let held = sem.acquire();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let thread = {
        let (sem, order) = (sem.clone(), order.clone());
        std::thread::spawn(move || {
            let _g = sem.acquire();
            order.lock().unwrap().push("thread");
        })
    };
    wait_until(|| sem.queue_len() == 1);
    let task = {
        let (sem, order) = (sem.clone(), order.clone());
        runtime.spawn(async move {
            let _g = sem.acquire_async().await;
            order.lock().unwrap().push("task");
        })
    };
    wait_until(|| sem.queue_len() == 2);
    drop(held);
    thread.join().unwrap();
    runtime.block_on(task).unwrap();
    assert_eq!(*order.lock().unwrap(), ["thread", "task"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_cancelled_waits_leave_nothing_behind() {
    let sem = Arc::new(Semaphore::new(1));
    let counter = Arc::new(RacyCounter::new());
    let done = Arc::new(AtomicUsize::new(0));
    let holders: Vec<_> = (0..4)
        .map(|_| {
            let (sem, counter, done) = (sem.clone(), counter.clone(), done.clone());
            tokio::spawn(async move {
                for _ in 0..2_000 {
                    let _g = sem.acquire_async().await;
                    counter.increment();
                    done.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let cancellers: Vec<_> = (0..4u64)
        .map(|t| {
            let sem = sem.clone();
            tokio::spawn(async move {
                let mut acquired = 0;
                for i in 0..1_000u64 {
                    // Cancelled before being polled, while queued, or just after a grant.
                    let wait = Duration::from_micros((i * 7 + t) % 40);
                    if let Ok(guard) = tokio::time::timeout(wait, sem.acquire_async()).await {
                        acquired += 1;
                        drop(guard);
                    }
                    if i % 10 == 0 {
                        drop(sem.acquire_async()); // never polled
                    }
                }
                acquired
            })
        })
        .collect();
    for h in holders {
        h.await.unwrap();
    }
    for c in cancellers {
        c.await.unwrap();
    }
    assert_eq!(counter.get(), 8_000, "exclusion held throughout");
    assert_eq!(sem.queue_len(), 0, "no waiter left queued");
    assert_eq!(sem.available_permits(), 1, "no permit lost or duplicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_readers_share_and_writers_exclude() {
    let rw = Arc::new(ReaderWriterLock::with_name("async-rw"));
    let both_in = Arc::new(tokio::sync::Barrier::new(2));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (rw, both_in) = (rw.clone(), both_in.clone());
            tokio::spawn(async move {
                let _r = rw.read_async().await;
                both_in.wait().await; // both readers inside at once
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    let inside = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let (rw, inside) = (rw.clone(), inside.clone());
            tokio::spawn(async move {
                for _ in 0..200 {
                    let _w = rw.write_async().await;
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two writers");
                    tokio::task::yield_now().await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    // A blocking thread's read waits behind an async writer, and the other way round.
    let w = rw.write_async().await;
    let blocked = {
        let rw = rw.clone();
        std::thread::spawn(move || drop(rw.read()))
    };
    wait_until(|| rw.queue_len() == 1);
    drop(w);
    blocked.join().unwrap();
    assert_eq!(rw.queue_len(), 0);
}

#[test]
fn futures_and_guards_are_send() {
    let sem = Semaphore::new(1);
    let rw = ReaderWriterLock::new();
    drop(assert_send(sem.acquire_async()));
    drop(assert_send(rw.read_async()));
    drop(assert_send(rw.write_async()));
    futures::executor::block_on(async {
        drop(assert_send(sem.acquire_async().await));
        drop(assert_send(rw.write_async().await));
        drop(assert_send(rw.read_async().await));
    });
}
