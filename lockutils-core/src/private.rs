//! Support for the code `#[synchronized]` generates. Not a public API: it changes with the
//! macro.

use std::time::Instant;

use tracing::Level;

use crate::error::Error;
use crate::lock::{AsyncLockGuard, LOG_TARGET, LockBuilder, LockGuard};
use crate::semaphore::NamedSemaphore;

pub use crate::lock::StaticLock;

/// The lock held by a `#[synchronized]` function, with what its logs need.
#[must_use]
pub struct Synchronized {
    inner: Held,
}

enum Held {
    Guard {
        guard: Option<LockGuard>,
        /// When the lock was taken, and the function's name: set when DEBUG logs are on.
        logged: Option<(Instant, &'static str)>,
    },
    /// The fast path: a literal name with no options, taken through its kept handle.
    Static(&'static NamedSemaphore),
}

/// `#[synchronized("literal")]` with no options: the global lock of the name, through the
/// handle kept in `site`, with no name lookup and no builder. Waits as long as it takes, so
/// it cannot fail.
#[inline]
pub fn enter_static<F: Copy>(site: &'static StaticLock, here: F) -> Synchronized {
    if tracing::enabled!(target: LOG_TARGET, Level::DEBUG) {
        return match enter(site.lock(), here) {
            Ok(held) => held,
            Err(error) => lock_failed(error, here),
        };
    }
    let sem = site.semaphore();
    sem.acquire_with(crate::queue::Wait::Forever);
    Synchronized {
        inner: Held::Static(sem),
    }
}

/// The qualified name of the function that defines `here` (a nested `fn`).
fn function_name<F>() -> &'static str {
    let name = std::any::type_name::<F>();
    name.strip_suffix("::__lockutils_here").unwrap_or(name)
}

/// Takes the lock as `builder` says, logging oslo's `synchronized` lines; `here` is a `fn`
/// item nested in the synchronized function, whose type names that function.
#[inline]
pub fn enter<F>(builder: LockBuilder<'_>, _here: F) -> Result<Synchronized, Error> {
    let builder = builder.do_log(false);
    if !tracing::enabled!(target: LOG_TARGET, Level::DEBUG) {
        return builder.acquire().map(|guard| Synchronized {
            inner: Held::Guard {
                guard: Some(guard),
                logged: None,
            },
        });
    }
    let (name, func) = (builder.name(), function_name::<F>());
    tracing::debug!(target: LOG_TARGET, lock = name, "Acquiring lock \"{name}\" by \"{func}\"");
    let asked = Instant::now();
    match builder.acquire() {
        Ok(guard) => {
            let now = Instant::now();
            tracing::debug!(
                target: LOG_TARGET,
                lock = name,
                "Lock \"{name}\" acquired by \"{func}\" :: waited {:.3}s",
                (now - asked).as_secs_f64()
            );
            Ok(Synchronized {
                inner: Held::Guard {
                    guard: Some(guard),
                    logged: Some((now, func)),
                },
            })
        }
        Err(error) => {
            tracing::debug!(
                target: LOG_TARGET,
                lock = name,
                "Lock \"{name}\" \"unacquired\" by \"{func}\" :: held N/A"
            );
            Err(error)
        }
    }
}

impl Drop for Synchronized {
    #[inline]
    fn drop(&mut self) {
        let (guard, logged) = match &mut self.inner {
            Held::Static(sem) => return sem.release(),
            Held::Guard { guard, logged } => (guard.take(), *logged),
        };
        let (Some(guard), Some((taken, func))) = (guard, logged) else {
            return;
        };
        let name = guard.name().to_owned();
        drop(guard);
        tracing::debug!(
            target: LOG_TARGET,
            lock = name.as_str(),
            "Lock \"{name}\" \"released\" by \"{func}\" :: held {:.3}s",
            taken.elapsed().as_secs_f64()
        );
    }
}

/// What a synchronized function that cannot return an error does when it does not get its
/// lock.
#[cold]
#[track_caller]
pub fn lock_failed<F>(error: Error, _here: F) -> ! {
    panic!(
        "#[synchronized] function `{}` did not get its lock: {error}",
        function_name::<F>()
    )
}

/// The lock held by a `#[synchronized]` `async fn`, with what its logs need. `Send`.
#[must_use]
pub struct SynchronizedAsync {
    guard: Option<AsyncLockGuard>,
    logged: Option<(Instant, &'static str)>,
}

/// [`enter`] for `async fn`: awaits the lock without blocking the thread.
pub async fn enter_async<F>(
    builder: LockBuilder<'_>,
    _here: F,
) -> Result<SynchronizedAsync, Error> {
    let builder = builder.do_log(false);
    if !tracing::enabled!(target: LOG_TARGET, Level::DEBUG) {
        return builder
            .acquire_async()
            .await
            .map(|guard| SynchronizedAsync {
                guard: Some(guard),
                logged: None,
            });
    }
    let (name, func) = (builder.name(), function_name::<F>());
    tracing::debug!(target: LOG_TARGET, lock = name, "Acquiring lock \"{name}\" by \"{func}\"");
    let asked = Instant::now();
    match builder.acquire_async().await {
        Ok(guard) => {
            let now = Instant::now();
            tracing::debug!(
                target: LOG_TARGET,
                lock = name,
                "Lock \"{name}\" acquired by \"{func}\" :: waited {:.3}s",
                (now - asked).as_secs_f64()
            );
            Ok(SynchronizedAsync {
                guard: Some(guard),
                logged: Some((now, func)),
            })
        }
        Err(error) => {
            tracing::debug!(
                target: LOG_TARGET,
                lock = name,
                "Lock \"{name}\" \"unacquired\" by \"{func}\" :: held N/A"
            );
            Err(error)
        }
    }
}

impl Drop for SynchronizedAsync {
    fn drop(&mut self) {
        let (Some(guard), Some((taken, func))) = (self.guard.take(), self.logged) else {
            return;
        };
        let name = guard.name().to_owned();
        drop(guard);
        tracing::debug!(
            target: LOG_TARGET,
            lock = name.as_str(),
            "Lock \"{name}\" \"released\" by \"{func}\" :: held {:.3}s",
            taken.elapsed().as_secs_f64()
        );
    }
}
