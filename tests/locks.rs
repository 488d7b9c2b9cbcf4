//! In-process locks through the public API: oslo's in-process test cases, ported, and more.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use common::{RacyCounter, wait_until};
use lockutils::{
    Error, FairLocks, NamedSemaphore, Semaphore, Semaphores, internal_fair_lock, internal_lock,
    lock,
};

// oslo: test_lock_internally_different_collections
#[test]
fn same_name_in_two_containers_is_two_locks() {
    let (s1, s2) = (Semaphores::new(), Semaphores::new());
    let (held_tx, held_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let who_ran = Mutex::new(Vec::new());
    thread::scope(|s| {
        let (s1, s2, who) = (&s1, &s2, &who_ran);
        s.spawn(move || {
            let _g = internal_lock("testing", Some(s1), true).unwrap();
            who.lock().unwrap().push(1);
            held_tx.send(()).unwrap();
            // Hold until the other thread got the same name in the other container.
            done_rx.recv().unwrap();
        });
        s.spawn(move || {
            held_rx.recv().unwrap();
            let _g = internal_lock("testing", Some(s2), false).expect("s2 is a separate namespace");
            who.lock().unwrap().push(2);
            done_tx.send(()).unwrap();
        });
    });
    let mut who_ran = who_ran.into_inner().unwrap();
    who_ran.sort();
    assert_eq!(who_ran, [1, 2]);
}

// oslo: test_lock_internally (10 threads × 10 appends, each batch contiguous, no leak)
#[test]
fn lock_internally_serialises_whole_sections() {
    let sems = Semaphores::new();
    let seen = Mutex::new(Vec::new());
    thread::scope(|s| {
        for id in 0..10 {
            let (sems, seen) = (&sems, &seen);
            s.spawn(move || {
                let _g = lock("testlock2").semaphores(sems).acquire().unwrap();
                for _ in 0..10 {
                    seen.lock().unwrap().push(id);
                    thread::yield_now();
                }
            });
        }
    });
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 100);
    for chunk in seen.chunks(10) {
        assert!(
            chunk.iter().all(|&id| id == chunk[0]),
            "interleaved: {chunk:?}"
        );
    }
    assert_eq!(sems.len(), 0, "semaphore leak detected");
}

// oslo: test_lock_internal_fair, ordered through the queue length instead of sleeps.
#[test]
fn fair_lock_serves_waiters_in_queue_order() {
    let locks = FairLocks::new();
    let order = Mutex::new(Vec::new());
    let guard = lock("testlock").fair_locks(&locks).acquire().unwrap();
    let handle = locks.get("testlock");
    thread::scope(|s| {
        for id in 0..10 {
            let (locks, order) = (&locks, &order);
            s.spawn(move || {
                let _g = lock("testlock").fair_locks(locks).acquire().unwrap();
                order.lock().unwrap().push(id);
            });
            // The next thread starts only once this one is queued.
            wait_until(|| handle.queue_len() == id + 1);
        }
        // A non-blocking try from another thread fails: the lock is held and ten queue.
        thread::scope(|s2| {
            s2.spawn(|| {
                let err = lock("testlock")
                    .fair_locks(&locks)
                    .blocking(false)
                    .acquire();
                assert!(matches!(err, Err(Error::AcquireLockFailed { .. })));
            });
        });
        drop(guard);
    });
    assert_eq!(order.into_inner().unwrap(), (0..10).collect::<Vec<_>>());
    drop(handle);
    assert_eq!(locks.len(), 0);
}

// oslo rejects fair + semaphores / fair + blocking=False with NotImplementedError; here they work.
#[test]
fn fair_lock_in_own_container_nonblocking_and_timed() {
    let locks = FairLocks::new();
    let held = lock("f")
        .fair_locks(&locks)
        .blocking(false)
        .acquire()
        .expect("free");
    assert_eq!(locks.len(), 1);
    // Reentrant for the holder, also without blocking.
    let again = lock("f")
        .fair_locks(&locks)
        .blocking(false)
        .acquire()
        .expect("reentrant");
    thread::scope(|s| {
        s.spawn(|| {
            let err = lock("f").fair_locks(&locks).blocking(false).acquire().unwrap_err();
            assert_eq!(err.to_string(), "Failed to acquire the lock f");
            let err = lock("f")
                .fair_locks(&locks)
                .timeout(Duration::from_millis(20))
                .acquire()
                .unwrap_err();
            assert!(
                matches!(err, Error::AcquireLockFailed { ref name, waited: Some(w) } if name == "f" && w == Duration::from_millis(20))
            );
            // The global fair locks are a different namespace.
            drop(lock("f").fair(true).blocking(false).acquire().expect("other container"));
        });
    });
    assert_eq!(
        locks.get("f").queue_len(),
        0,
        "a timed-out waiter left the queue"
    );
    drop((again, held));
    thread::scope(|s| {
        s.spawn(|| {
            let again = lock("f")
                .fair_locks(&locks)
                .timeout(Duration::from_millis(20))
                .acquire();
            drop(again.expect("free again"));
        });
    });
    assert_eq!(locks.len(), 0);
}

#[test]
fn fair_with_semaphores_is_a_clear_error() {
    let sems = Semaphores::new();
    let err = lock("x")
        .semaphores(&sems)
        .fair(true)
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions { .. }));
    assert!(err.to_string().starts_with("lock x: "), "{err}");
    assert!(err.to_string().contains("fair_locks"), "{err}");
}

// oslo: test_interthread_nonblocking_internal_lock
#[test]
fn nonblocking_and_timed_fail_while_held_and_succeed_after() {
    let sems = Semaphores::new();
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        let sems_ref = &sems;
        s.spawn(move || {
            let _g = lock("foo").semaphores(sems_ref).acquire().unwrap();
            held_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        });
        held_rx.recv().unwrap();
        let err = lock("foo")
            .semaphores(&sems)
            .blocking(false)
            .acquire()
            .unwrap_err();
        assert_eq!(err.to_string(), "Failed to acquire the lock foo");
        assert!(err.is_acquire_failed());
        let err = lock("foo")
            .semaphores(&sems)
            .timeout(Duration::from_millis(10))
            .acquire()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Failed to acquire the lock foo (gave up after waiting 10ms)"
        );
        // blocking(false) wins over a timeout.
        let err = lock("foo")
            .semaphores(&sems)
            .timeout(Duration::from_secs(3600))
            .blocking(false)
            .acquire()
            .unwrap_err();
        assert!(matches!(err, Error::AcquireLockFailed { waited: None, .. }));
        assert_eq!(sems.get("foo").queue_len(), 0);
        release_tx.send(()).unwrap();
    });
    drop(
        lock("foo")
            .semaphores(&sems)
            .blocking(false)
            .acquire()
            .expect("released"),
    );
    drop(
        lock("foo")
            .semaphores(&sems)
            .timeout(Duration::ZERO)
            .acquire()
            .expect("released"),
    );
    drop(internal_lock("foo", Some(&sems), false).expect("released"));
}

#[test]
fn eight_threads_ten_thousand_increments_each() {
    let counter = RacyCounter::default();
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    let _g = lock("c").acquire().unwrap();
                    counter.increment();
                }
            });
        }
    });
    assert_eq!(counter.get(), 80_000);
}

#[test]
fn fair_lock_counter_is_exact_too() {
    let counter = RacyCounter::default();
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..2_000 {
                    let _g = lock("fair-c").fair(true).acquire().unwrap();
                    counter.increment();
                }
            });
        }
    });
    assert_eq!(counter.get(), 8_000);
}

#[test]
fn a_panic_in_the_critical_section_releases_the_lock() {
    for fair in [false, true] {
        let name = format!("panicky-{fair}");
        let result = catch_unwind(AssertUnwindSafe(|| {
            let _g = lock(&name).fair(fair).acquire().unwrap();
            panic!("boom");
        }));
        assert!(result.is_err());
        // From another thread, so that fair-lock reentrancy cannot hide a leak.
        thread::scope(|s| {
            s.spawn(|| {
                let guard = lock(&name).fair(fair).blocking(false).acquire();
                drop(guard.expect("released by unwinding"));
            });
        });
    }
}

#[test]
fn fair_and_non_fair_locks_of_one_name_are_distinct() {
    let _plain = lock("dual").acquire().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            drop(
                lock("dual")
                    .fair(true)
                    .blocking(false)
                    .acquire()
                    .expect("distinct lock"),
            )
        });
    });
}

#[test]
fn internal_fair_lock_is_the_lock_that_fair_lock_takes() {
    let guard = lock("ifl").fair(true).acquire().unwrap();
    assert!(guard.is_fair());
    thread::scope(|s| {
        s.spawn(|| {
            let err = internal_fair_lock("ifl").try_write().unwrap_err();
            assert!(err.is_acquire_failed());
            assert_eq!(err.lock_name(), "ifl");
        });
    });
    drop(guard);
    assert!(internal_fair_lock("ifl").try_write().is_ok());
}

#[test]
fn names_are_raw_in_process() {
    // oslo keys in-process locks by the raw name: `a/b` and `a_b` share a file, not a lock.
    let _a = lock("a/b").acquire().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            drop(
                lock("a_b")
                    .blocking(false)
                    .acquire()
                    .expect("distinct in-process lock"),
            )
        });
        s.spawn(|| {
            drop(
                lock("")
                    .blocking(false)
                    .acquire()
                    .expect("empty names are fine"),
            )
        });
    });
    // oslo: test_no_slash_in_b64
    let _b = lock("foobar").acquire().unwrap();
}

#[test]
fn semaphores_registry_gives_one_lock_per_name() {
    let sems = Semaphores::new();
    let a = sems.get("a");
    assert!(NamedSemaphore::ptr_eq(&a, &sems.get("a")));
    assert!(!NamedSemaphore::ptr_eq(&a, &sems.get("b")));
    assert!(!NamedSemaphore::ptr_eq(&a, &Semaphores::new().get("a")));
    assert_eq!(a.name(), "a");
    assert_eq!(sems.len(), 1, "only `a` is still referenced");
    // A waiter keeps the entry alive even when no handle does.
    let guard = lock("w").semaphores(&sems).acquire().unwrap();
    drop(a);
    thread::scope(|s| {
        s.spawn(|| drop(lock("w").semaphores(&sems).acquire().unwrap()));
        wait_until(|| sems.get("w").queue_len() == 1);
        assert_eq!(sems.len(), 1);
        drop(guard);
    });
    assert!(sems.is_empty());
}

#[test]
fn counting_semaphore_admits_exactly_its_permits() {
    let sem = Semaphore::new(3);
    let inside = Barrier::new(3);
    let checked = Barrier::new(4);
    let (tx, rx) = mpsc::channel();
    thread::scope(|s| {
        for _ in 0..3 {
            let (tx, sem, inside, checked) = (tx.clone(), &sem, &inside, &checked);
            s.spawn(move || {
                let _p = sem.acquire();
                // All three must be inside at once for this barrier to open.
                inside.wait();
                tx.send(()).unwrap();
                // Keep holding until the main thread has checked.
                checked.wait();
            });
        }
        for _ in 0..3 {
            rx.recv().unwrap();
        }
        assert_eq!(sem.available_permits(), 0);
        assert!(sem.try_acquire().is_none());
        assert!(sem.try_acquire_for(Duration::from_millis(5)).is_none());
        assert_eq!(sem.queue_len(), 0);
        checked.wait();
    });
    assert_eq!(sem.available_permits(), 3);
    assert!(Semaphore::new(usize::MAX).available_permits() == Semaphore::MAX_PERMITS);
}

#[test]
fn semaphore_waiters_are_fifo_and_tries_do_not_jump() {
    let sem = Arc::new(Semaphore::new(1));
    let order = Arc::new(Mutex::new(Vec::new()));
    let first = sem.acquire();
    let handles: Vec<_> = (0..5)
        .map(|id| {
            let (mine, order) = (sem.clone(), order.clone());
            let h = thread::spawn(move || {
                let _p = mine.acquire();
                order.lock().unwrap().push(id);
            });
            wait_until(|| sem.queue_len() == id + 1);
            h
        })
        .collect();
    drop(first);
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
}

#[test]
fn errors_travel_as_boxed_errors() {
    fn take() -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        let _g = lock("boxed").acquire()?;
        thread::scope(|s| {
            s.spawn(|| lock("boxed").blocking(false).acquire().map(drop))
                .join()
        })
        .unwrap()?;
        Ok(())
    }
    let err = take().unwrap_err();
    assert_eq!(err.to_string(), "Failed to acquire the lock boxed");
}

#[test]
fn exclusion_holds_while_the_registries_sweep_concurrently() {
    // Uncontended acquires from the global registries hold no reference count; the lock itself
    // keeps the entry from being swept. Sweep constantly while names come and go.
    const NAMES: usize = 4;
    // Fair and plain locks of one name are distinct locks: one counter for each.
    let counters: Vec<RacyCounter> = (0..2 * NAMES).map(|_| RacyCounter::default()).collect();
    let names: Vec<String> = (0..NAMES).map(|i| format!("sweep-race-{i}")).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                Semaphores::global().len();
                FairLocks::global().len();
            }
        });
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let (counters, names) = (&counters, &names);
                s.spawn(move || {
                    for i in 0..50_000 {
                        let (n, fair) = ((i * 7 + t) % NAMES, i % 2 == 0);
                        let _g = lock(&names[n]).fair(fair).acquire().unwrap();
                        counters[2 * n + usize::from(fair)].increment();
                    }
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(
        counters.iter().map(RacyCounter::get).sum::<usize>(),
        200_000
    );
}

#[test]
fn releasing_a_fair_level_by_hand_cannot_free_a_held_lock() {
    // A level taken by hand under a guard's, released by hand, then a sweep: the guard still
    // keeps its entry and its lock (pinned, with no reference count), and dropping it later
    // releases exactly its own level. (Releasing the guard's own level by hand is what
    // `release_write`'s `unsafe` contract excludes.)
    let stale = lock("by-hand").fair(true).acquire().unwrap();
    let by_hand = internal_fair_lock("by-hand");
    by_hand.acquire_write().unwrap();
    // SAFETY: releases the level taken by hand just above, on this thread.
    unsafe { by_hand.release_write() }.unwrap();
    drop(by_hand);
    FairLocks::global().len(); // sweeps whatever is idle
    thread::scope(|s| {
        s.spawn(|| {
            let busy = lock("by-hand").fair(true).blocking(false).acquire();
            assert!(
                busy.unwrap_err().is_acquire_failed(),
                "the guard's level was lost"
            );
        });
    });
    let (held_tx, held_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        s.spawn(move || {
            let _g2 = lock("by-hand").fair(true).acquire().unwrap();
            held_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        });
        drop(stale); // the last level: the lock goes to the waiter
        held_rx.recv().unwrap();
        thread::scope(|s2| {
            s2.spawn(|| {
                let busy = lock("by-hand").fair(true).blocking(false).acquire();
                assert!(busy.unwrap_err().is_acquire_failed(), "g2 holds the lock");
            });
        });
        done_tx.send(()).unwrap();
    });
}

#[test]
fn pinned_fair_levels_survive_sweeps_out_of_order_drops_and_timeouts() {
    // Fair guards of the global registry hold their entry by the lock alone (pinned). Nested
    // levels dropped in either order, timed-out waiters leaving and sweeps racing must keep
    // the entry alive until the last level's release, and exclusion exact.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let counter = RacyCounter::default();
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                FairLocks::global().len();
            }
        });
        let workers: Vec<_> = (0..3u32)
            .map(|t| {
                let counter = &counter;
                s.spawn(move || {
                    let mut got = 0;
                    for i in 0..10_000u32 {
                        let builder = lock("pinned-fair").fair(true);
                        let builder = if (i + t) % 3 == 0 {
                            builder.timeout(Duration::from_micros(u64::from(i % 50)))
                        } else {
                            builder
                        };
                        let Ok(outer) = builder.acquire() else {
                            continue;
                        };
                        let inner = lock("pinned-fair").fair(true).acquire().unwrap();
                        got += 1;
                        if i % 2 == 0 {
                            drop(outer);
                            // The inner level alone must still exclude the others.
                            counter.increment();
                            drop(inner);
                        } else {
                            counter.increment();
                            drop((inner, outer));
                        }
                    }
                    got
                })
            })
            .collect();
        let total: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(counter.get(), total);
    });
}

#[test]
fn timed_out_waiters_and_sweeps_race_pinned_releases() {
    // A holder's release may have to hand over through the queue while a timed-out waiter
    // leaves and the registry sweeps. The entry must outlive that release.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let counter = RacyCounter::default();
    thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                Semaphores::global().len();
            }
        });
        let workers: Vec<_> = (0..3)
            .map(|t| {
                let counter = &counter;
                s.spawn(move || {
                    let mut got = 0;
                    for i in 0..20_000u32 {
                        let builder = lock("pinned-race");
                        let builder = if (i + t) % 3 == 0 {
                            builder.timeout(Duration::from_micros(u64::from(i % 50)))
                        } else {
                            builder
                        };
                        if let Ok(_g) = builder.acquire() {
                            counter.increment();
                            got += 1;
                        }
                    }
                    got
                })
            })
            .collect();
        let total: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(counter.get(), total);
    });
}
