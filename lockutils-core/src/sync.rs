//! The synchronisation primitives the waiter queue is built from.
//!
//! Normal builds use `std` atomics and `parking_lot`'s mutex; `--cfg loom` builds swap in
//! loom's instrumented versions so that the queue can be model-checked (see `queue.rs`).

#[cfg(not(loom))]
mod imp {
    pub(crate) use std::sync::Arc;
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    pub(crate) use std::thread::{Thread, current, park, park_timeout};

    /// A mutex whose `lock` cannot fail (no poisoning), so both back ends read alike.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(parking_lot::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, T> {
            self.0.lock()
        }
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    pub(crate) use loom::thread::{Thread, current, park};

    /// loom has no clock: a timed park is an untimed one, woken only by an unpark.
    pub(crate) fn park_timeout(_: std::time::Duration) {
        park();
    }

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            // loom's mutex only reports poisoning, which the queue never causes (it never
            // panics while holding the lock).
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

pub(crate) use imp::*;

/// A small, cheap, process-unique identifier of the calling thread (never 0).
///
/// `std::thread::current().id()` clones an `Arc`; reentrant locks ask on every acquire, so a
/// thread-local counter value is used instead.
pub(crate) fn thread_id() -> u64 {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};

    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static ID: Cell<u64> = const { Cell::new(0) });

    ID.with(|id| match id.get() {
        0 => {
            let new = NEXT.fetch_add(1, Ordering::Relaxed);
            id.set(new);
            new
        }
        known => known,
    })
}
