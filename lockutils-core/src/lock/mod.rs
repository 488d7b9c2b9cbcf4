//! The [`lock()`] builder and its guards: what most code calls.
//!
//! - `builder`: [`lock()`] and [`LockBuilder`], and taking the in-process lock;
//! - `guard`: [`LockGuard`] and [`AsyncLockGuard`];
//! - `static_lock`: [`StaticLock`], the handles of a name known at compile time;
//! - `log`: oslo's log lines.

mod builder;
mod guard;
pub(crate) mod log;
mod state;
mod static_lock;

pub use builder::{LockBuilder, lock};
pub use guard::{AsyncLockGuard, LockGuard};
pub use log::LOG_TARGET;
pub use static_lock::StaticLock;

use crate::backend::ExternalCache;
use crate::rwlock::ReaderWriterLock;
use crate::semaphore::Semaphore;
use state::FairState;

/// The lock layer keeps each name's external-lock state (an open lock file, a server
/// session) beside the name's lock in the registries.
impl crate::registry::Create for Semaphore {
    type Extra = parking_lot::Mutex<ExternalCache>;

    fn create(_name: &std::sync::Arc<str>) -> Self {
        Semaphore::new(1)
    }

    fn is_free(&self) -> bool {
        self.is_untouched()
    }
}

impl crate::registry::Create for ReaderWriterLock {
    type Extra = FairState;

    fn create(name: &std::sync::Arc<str>) -> Self {
        Self::from_arc(name.clone())
    }

    fn is_free(&self) -> bool {
        self.is_untouched()
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod fair_file_tests {
    use std::future::Future;
    use std::path::Path;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake};
    use std::thread::{self, Thread};

    use crate::lock;

    /// Runs `future` to completion on this thread.
    fn block_on<F: Future>(future: F) -> F::Output {
        struct Unpark(Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Arc::new(Unpark(thread::current())).into();
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
                return value;
            }
            thread::park();
        }
    }

    /// Whether the kernel shows a request blocked on the file `path` (`/proc/locks`).
    fn someone_waits_for(path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(path).unwrap().ino();
        let needle = format!(":{ino} ");
        std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .any(|l| l.contains("->") && l.contains(&needle))
    }

    #[test]
    fn idle_descriptors_closed_while_a_task_queues_do_not_strand_its_place() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let name = "idle-closer-task";
        let unfair = lock(name).external(true).lock_path(dir).acquire().unwrap();
        let (release, released) = std::sync::mpsc::channel::<()>();
        thread::scope(|s| {
            let task = s.spawn(move || {
                let guard = block_on(
                    lock(name)
                        .fair(true)
                        .external(true)
                        .lock_path(dir)
                        .acquire_async(),
                )
                .unwrap();
                released.recv().unwrap();
                drop(guard);
            });
            // In the queue, first, its helper thread waiting for the file in the kernel.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !someone_waits_for(&dir.join(name)) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the task never waited"
                );
                thread::yield_now();
            }
            // What a process out of descriptors does to every idle name's descriptors.
            crate::backend::close_idle_descriptors();
            drop(unfair);
            release.send(()).unwrap();
            task.join().unwrap();
        });
        // The task let go: nobody holds the lock and nobody queues, so a try gets it.
        let again = lock(name)
            .fair(true)
            .external(true)
            .lock_path(dir)
            .blocking(false)
            .acquire();
        assert!(again.is_ok(), "the task's place was left locked: {again:?}");
    }
}
