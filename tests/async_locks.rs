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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_builder_a_thousand_tasks_on_one_name_and_on_many() {
    let one = Arc::new(RacyCounter::new());
    let many: Arc<Vec<RacyCounter>> = Arc::new((0..10).map(|_| RacyCounter::new()).collect());
    let tasks: Vec<_> = (0..1_000)
        .map(|t| {
            let (one, many) = (one.clone(), many.clone());
            tokio::spawn(async move {
                for i in 0..100 {
                    {
                        let _g = lockutils::lock("async-one").acquire_async().await.unwrap();
                        one.increment();
                        tokio::task::yield_now().await;
                    }
                    let n = (t + i) % 10;
                    let name = format!("async-many-{n}");
                    let _g = lockutils::lock(&name).acquire_async().await.unwrap();
                    many[n].increment();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(one.get(), 100_000);
    assert_eq!(many.iter().map(RacyCounter::get).sum::<usize>(), 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_builder_nonblocking_and_timeout_in_async() {
    let sems = Arc::new(lockutils::Semaphores::new());
    let held = {
        let sems = sems.clone();
        // Held by a plain thread.
        let (tx, rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _g = lockutils::lock("busy").semaphores(&sems).acquire().unwrap();
            tx.send(()).unwrap();
            release_rx.recv().unwrap();
        });
        rx.recv().unwrap();
        (thread, release_tx)
    };
    let err = lockutils::lock("busy")
        .semaphores(&sems)
        .blocking(false)
        .acquire_async()
        .await;
    assert_eq!(
        err.unwrap_err().to_string(),
        "Failed to acquire the lock busy"
    );
    let started = std::time::Instant::now();
    let err = lockutils::lock("busy")
        .semaphores(&sems)
        .timeout(Duration::from_millis(30))
        .acquire_async()
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(
        err.to_string(),
        "Failed to acquire the lock busy (gave up after waiting 30ms)"
    );
    assert_eq!(
        sems.get("busy").queue_len(),
        0,
        "the timed-out task left the queue"
    );
    held.1.send(()).unwrap();
    held.0.join().unwrap();
    let guard = lockutils::lock("busy")
        .semaphores(&sems)
        .timeout(Duration::from_secs(5))
        .acquire_async()
        .await
        .unwrap();
    assert_eq!(guard.name(), "busy");
    drop(guard);
    assert_eq!(sems.len(), 0);
}

#[test]
fn lock_builder_fair_async_under_block_on_and_current_thread() {
    static LOCKS: std::sync::LazyLock<lockutils::FairLocks> =
        std::sync::LazyLock::new(lockutils::FairLocks::new);
    let fair = || lockutils::lock("fair-async").fair_locks(&LOCKS);
    futures::executor::block_on(async {
        let g = fair().acquire_async().await.unwrap();
        // Task holders are not thread-reentrant: this thread cannot take it meanwhile.
        assert!(fair().blocking(false).acquire().is_err());
        drop(g);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    runtime.block_on(async {
        let g = fair().acquire_async().await.unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|i| {
                let order = order.clone();
                tokio::spawn(async move {
                    let _g = fair().acquire_async().await.unwrap();
                    order.lock().unwrap().push(i);
                })
            })
            .collect();
        // Let every waiter queue, in spawn order, before the holder lets go.
        while LOCKS.get("fair-async").queue_len() < 3 {
            tokio::task::yield_now().await;
        }
        drop(g);
        for w in waiters {
            w.await.unwrap();
        }
    });
    assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
    assert_eq!(LOCKS.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_builder_cancellations_leave_nothing_behind() {
    let sems = Arc::new(lockutils::Semaphores::new());
    let counter = Arc::new(RacyCounter::new());
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let (sems, counter) = (sems.clone(), counter.clone());
            tokio::spawn(async move {
                let mut got = 0;
                for i in 0..500u64 {
                    let wait = Duration::from_micros((i * 13 + t * 7) % 60);
                    let acquire = lockutils::lock("cancel-me")
                        .semaphores(&sems)
                        .acquire_async();
                    if let Ok(Ok(_guard)) = tokio::time::timeout(wait, acquire).await {
                        counter.increment();
                        got += 1;
                        tokio::task::yield_now().await;
                    }
                }
                got
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert_eq!(counter.get(), total);
    assert_eq!(sems.len(), 0, "no waiter or holder left");
    drop(
        lockutils::lock("cancel-me")
            .semaphores(&sems)
            .blocking(false)
            .acquire()
            .unwrap(),
    );
}

#[test]
fn lock_builder_async_futures_are_send() {
    drop(assert_send(lockutils::lock("x").acquire_async()));
    drop(assert_send(
        lockutils::lock("x")
            .external(true)
            .lock_path("/tmp")
            .acquire_async(),
    ));
}

static SYNC_COUNTER: RacyCounter = RacyCounter::new();

#[lockutils::synchronized("async-synchronized")]
async fn bump_async() {
    SYNC_COUNTER.increment();
    tokio::task::yield_now().await;
}

#[lockutils::synchronized(format!("async-{}", id), blocking = false)]
async fn try_async(id: u32) -> Result<u32, lockutils::Error> {
    Ok(id)
}

struct Service {
    name: String,
}

impl Service {
    #[lockutils::synchronized(self.name.as_str(), timeout = "5s")]
    async fn call(&self, x: u32) -> std::io::Result<u32> {
        tokio::task::yield_now().await;
        Ok(x + 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronized_async_fns_exclude_without_blocking_threads() {
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            tokio::spawn(async {
                for _ in 0..100 {
                    bump_async().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(SYNC_COUNTER.get(), 100_000);

    let service = Service { name: "svc".into() };
    assert_eq!(service.call(1).await.unwrap(), 2);
    let held = lockutils::lock("async-7").acquire_async().await.unwrap();
    assert!(try_async(7).await.unwrap_err().is_acquire_failed());
    drop(held);
    assert_eq!(try_async(7).await.unwrap(), 7);
}

#[test]
fn futures_of_synchronized_async_fns_are_send() {
    let service = Service {
        name: "send".into(),
    };
    drop(assert_send(bump_async()));
    drop(assert_send(try_async(1)));
    drop(assert_send(service.call(1)));
    futures::executor::block_on(async {
        assert_eq!(service.call(2).await.unwrap(), 3);
    });
}

#[lockutils::synchronized("nested-fair", fair = true)]
async fn fair_outer() -> Result<u32, lockutils::Error> {
    // Another task is refused while this one holds the lock...
    let other = tokio::spawn(async {
        lockutils::lock("nested-fair")
            .fair(true)
            .blocking(false)
            .acquire_async()
            .await
            .map(drop)
    });
    assert!(other.await.unwrap().unwrap_err().is_acquire_failed());
    // ...and so are nested calls of this task, alone or side by side: entering again would
    // let siblings in together.
    let (a, b) = tokio::join!(fair_inner(), fair_inner());
    assert!(a.is_err() && b.is_err());
    fair_inner().await
}

#[lockutils::synchronized("nested-fair", fair = true)]
async fn fair_inner() -> Result<u32, lockutils::Error> {
    Ok(1)
}

#[lockutils::synchronized("nested-plain")]
async fn plain_outer() -> Result<u32, lockutils::Error> {
    plain_inner().await
}

#[lockutils::synchronized("nested-plain")]
async fn plain_inner() -> Result<u32, lockutils::Error> {
    Ok(1)
}

#[lockutils::synchronized("nested-plain")]
fn plain_blocking() -> Result<u32, lockutils::Error> {
    Ok(1)
}

#[lockutils::synchronized("nested-plain")]
async fn plain_outer_calls_blocking() -> Result<u32, lockutils::Error> {
    plain_blocking()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_use_of_a_lock_by_the_task_holding_it_fails_instead_of_waiting() {
    let err = fair_outer().await.unwrap_err();
    assert!(err.to_string().contains("already holds this lock"), "{err}");
    let err = plain_outer().await.unwrap_err();
    assert!(err.to_string().contains("already holds this lock"), "{err}");
    let err = plain_outer_calls_blocking().await.unwrap_err();
    assert!(err.to_string().contains("already holds this lock"), "{err}");
    // All free afterwards, and a spawned task (another task) is not affected.
    drop(
        lockutils::lock("nested-fair")
            .fair(true)
            .blocking(false)
            .acquire_async()
            .await
            .unwrap(),
    );
    drop(
        lockutils::lock("nested-plain")
            .blocking(false)
            .acquire_async()
            .await
            .unwrap(),
    );
    assert_eq!(tokio::spawn(plain_inner()).await.unwrap().unwrap(), 1);
}
