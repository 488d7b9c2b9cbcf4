//! ReaderWriterLock: fasteners' test cases, ported, plus one test per rule.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use common::wait_until;
use lockutils::{Error, Owner, ReaderWriterLock};

const WRITER: usize = 1 << 20;

/// Tracks who is inside: readers add 1, writers add WRITER.
#[derive(Default)]
struct Inside(AtomicUsize);

impl Inside {
    fn enter_read(&self) {
        let before = self.0.fetch_add(1, Ordering::SeqCst);
        assert!(
            before < WRITER,
            "a reader entered while a writer was inside"
        );
    }
    fn leave_read(&self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
    fn enter_write(&self) {
        let before = self.0.fetch_add(WRITER, Ordering::SeqCst);
        assert_eq!(before, 0, "a writer entered while others were inside");
    }
    fn leave_write(&self) {
        self.0.fetch_sub(WRITER, Ordering::SeqCst);
    }
}

// fasteners: test_no_double_writers, test_no_concurrent_readers_writers
#[test]
fn writers_exclude_everyone_readers_share() {
    let rw = ReaderWriterLock::with_name("mixed");
    let inside = Inside::default();
    thread::scope(|s| {
        for t in 0..8 {
            let (rw, inside) = (&rw, &inside);
            s.spawn(move || {
                for i in 0..3_000 {
                    if (i + t) % 3 == 0 {
                        let _w = rw.write().unwrap();
                        inside.enter_write();
                        thread::yield_now();
                        inside.leave_write();
                    } else {
                        let _r = rw.read();
                        inside.enter_read();
                        thread::yield_now();
                        inside.leave_read();
                    }
                }
            });
        }
    });
    assert_eq!(inside.0.load(Ordering::SeqCst), 0);
    assert_eq!(rw.owner(), None);
    assert_eq!(rw.queue_len(), 0);
}

#[test]
fn readers_hold_together() {
    let rw = ReaderWriterLock::new();
    let all_in = Barrier::new(4);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let _r = rw.read();
                // Opens only when all four readers are inside at once.
                all_in.wait();
            });
        }
    });
}

// fasteners: test_writer_abort, test_reader_abort
#[test]
fn a_panic_releases_either_side() {
    let rw = ReaderWriterLock::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let _w = rw.write().unwrap();
        assert_eq!(rw.owner(), Some(Owner::Writer));
        panic!("writer fails");
    }));
    assert!(r.is_err());
    assert_eq!(rw.owner(), None);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let _r = rw.read();
        assert_eq!(rw.owner(), Some(Owner::Readers));
        panic!("reader fails");
    }));
    assert!(r.is_err());
    assert_eq!(rw.owner(), None);
    thread::scope(|s| {
        s.spawn(|| drop(rw.try_write().expect("free after panics")));
    });
}

// fasteners: test_double_reader_writer — a reader may re-enter while a writer waits.
#[test]
fn reader_reenters_while_a_writer_waits() {
    let rw = ReaderWriterLock::new();
    let activated = Mutex::new(Vec::new());
    let outer = rw.read();
    thread::scope(|s| {
        s.spawn(|| {
            let _w = rw.write().unwrap();
            activated.lock().unwrap().push('w');
        });
        wait_until(|| rw.queue_len() == 1);
        let inner = rw.read(); // must not deadlock behind the queued writer
        activated.lock().unwrap().push('r');
        drop(inner);
        drop(outer);
    });
    assert_eq!(*activated.lock().unwrap(), ['r', 'w']);
}

#[test]
fn new_readers_wait_behind_a_waiting_writer() {
    let rw = Arc::new(ReaderWriterLock::with_name("pref"));
    let (tx, rx) = mpsc::channel();
    let first_reader = rw.read();
    let writer = {
        let (rw, tx) = (rw.clone(), tx.clone());
        thread::spawn(move || {
            let _w = rw.write().unwrap();
            tx.send("writer").unwrap();
        })
    };
    wait_until(|| rw.queue_len() == 1);
    let reader = {
        let rw = rw.clone();
        thread::spawn(move || {
            // Free for readers at this instant, but a writer waits: no jumping.
            let err = rw.try_read().unwrap_err();
            assert!(err.is_acquire_failed());
            assert_eq!(err.to_string(), "Failed to acquire the lock pref");
            let _r = rw.read();
            tx.send("reader").unwrap();
        })
    };
    wait_until(|| rw.queue_len() == 2);
    drop(first_reader);
    writer.join().unwrap();
    reader.join().unwrap();
    assert_eq!(rx.iter().take(2).collect::<Vec<_>>(), ["writer", "reader"]);
}

#[test]
fn writers_acquire_in_fifo_order() {
    let rw = Arc::new(ReaderWriterLock::new());
    let order = Arc::new(Mutex::new(Vec::new()));
    let held = rw.write().unwrap();
    let handles: Vec<_> = (0..6)
        .map(|id| {
            let (mine, order) = (rw.clone(), order.clone());
            let h = thread::spawn(move || {
                let _w = mine.write().unwrap();
                order.lock().unwrap().push(id);
            });
            wait_until(|| rw.queue_len() == id + 1);
            h
        })
        .collect();
    drop(held);
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
}

// fasteners: test_writer_reader_writer_ctx / _plain
#[test]
fn write_read_write_nests() {
    let rw = ReaderWriterLock::new();
    let w1 = rw.write().unwrap();
    assert!(rw.is_writer());
    let r = rw.read();
    assert!(rw.is_reader());
    let w2 = rw
        .write()
        .expect("a writer that also reads may write again");
    assert!(rw.is_writer());
    drop((w2, r, w1));
    assert!(!rw.is_writer() && !rw.is_reader());

    rw.acquire_write().unwrap();
    rw.acquire_read();
    rw.acquire_write().unwrap();
    assert!(rw.is_writer() && rw.is_reader());
    // SAFETY: each level released was taken by hand, just above, on this thread.
    unsafe {
        rw.release_write().unwrap();
        rw.release_read().unwrap();
        rw.release_write().unwrap();
    }
    assert_eq!(rw.owner(), None);
}

// fasteners: test_single_reader_writer
#[test]
fn read_then_write_then_read_in_sequence() {
    let rw = ReaderWriterLock::new();
    drop(rw.read());
    drop(rw.write().unwrap());
    drop(rw.read());
    assert!(!rw.is_reader() && !rw.is_writer());
}

// fasteners: test_reader_to_writer
#[test]
fn a_reader_cannot_upgrade() {
    let rw = ReaderWriterLock::with_name("up");
    let r = rw.read();
    for result in [
        rw.write().map(drop),
        rw.try_write().map(drop),
        rw.acquire_write(),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::UpgradeNotAllowed { ref name } if name == "up"));
        assert!(err.to_string().contains("privilege escalation"), "{err}");
    }
    assert!(rw.is_reader() && !rw.is_writer());
    drop(r);
    assert!(!rw.is_reader() && !rw.is_writer());
}

// fasteners: test_writer_to_reader
#[test]
fn a_writer_may_read() {
    let rw = ReaderWriterLock::new();
    let w = rw.write().unwrap();
    let r = rw.read();
    assert!(rw.is_writer() && rw.is_reader());
    drop(r);
    assert!(rw.is_writer() && !rw.is_reader());
    drop(w);
    assert!(!rw.is_writer() && !rw.is_reader());
}

#[test]
fn a_writer_that_stops_writing_first_stays_a_reader() {
    let rw = ReaderWriterLock::new();
    let w = rw.write().unwrap();
    let r = rw.read();
    drop(w); // now a plain reader, still holding the lock against writers
    assert!(rw.is_reader() && !rw.is_writer());
    assert_eq!(rw.owner(), Some(Owner::Readers));
    thread::scope(|s| {
        s.spawn(|| {
            assert!(rw.try_write().is_err(), "a reader still holds it");
            drop(rw.try_read().expect("readers share"));
        });
    });
    thread::scope(|s| {
        s.spawn(|| {
            let _w = rw.write().unwrap();
        });
        wait_until(|| rw.queue_len() == 1);
        drop(r);
    });
    assert_eq!(rw.owner(), None);
}

// fasteners: test_double_writer, test_double_reader
#[test]
fn both_sides_are_reentrant() {
    let rw = ReaderWriterLock::new();
    let w1 = rw.write().unwrap();
    let w2 = rw.try_write().unwrap();
    drop(w2);
    assert!(rw.is_writer());
    drop(w1);
    assert!(!rw.is_writer());

    let r1 = rw.read();
    let r2 = rw.try_read().unwrap();
    drop(r2);
    assert!(rw.is_reader());
    drop(r1);
    assert!(!rw.is_reader());
}

// fasteners: test_error_when_releasing_*_without_*
#[test]
fn releasing_what_you_do_not_hold_is_an_error() {
    let rw = ReaderWriterLock::with_name("rel");
    // SAFETY: nothing is held, so nothing can be released (each call only reports that).
    let err = unsafe { rw.release_write() }.unwrap_err();
    assert!(matches!(err, Error::NotHeld { side: "write", .. }));
    assert_eq!(
        err.to_string(),
        "lock rel: cannot release the write lock, this thread does not hold it"
    );
    assert!(matches!(
        // SAFETY: as above.
        unsafe { rw.release_read() },
        Err(Error::NotHeld { side: "read", .. })
    ));
    // Held by another thread is not held by this one.
    let _w = rw.write().unwrap();
    thread::scope(|s| {
        // SAFETY: this thread holds nothing, so nothing is released.
        s.spawn(|| assert!(unsafe { rw.release_write() }.is_err()));
    });
    assert!(rw.is_writer());
}

// fasteners: test_deadlock_reproducer
#[test]
fn write_with_nested_read_against_plain_writers_does_not_deadlock() {
    let rw = ReaderWriterLock::new();
    thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..1_000 {
                let _w = rw.write().unwrap();
                let _r = rw.read();
            }
        });
        s.spawn(|| {
            for _ in 0..1_000 {
                let _w = rw.write().unwrap();
            }
        });
    });
    assert_eq!(rw.owner(), None);
}

#[test]
fn timed_write_gives_up_and_leaves_the_queue() {
    let rw = ReaderWriterLock::new();
    let r = rw.read();
    thread::scope(|s| {
        s.spawn(|| {
            let err = rw.try_write_for(Duration::from_millis(20)).unwrap_err();
            assert!(matches!(
                err,
                Error::AcquireLockFailed {
                    waited: Some(_),
                    ..
                }
            ));
        });
    });
    assert_eq!(rw.queue_len(), 0);
    thread::scope(|s| {
        s.spawn(|| {
            rw.try_read_for(Duration::from_millis(20))
                .map(drop)
                .expect("readers share")
        });
    });
    drop(r);
    assert!(rw.try_write_for(Duration::ZERO).is_ok());
}
