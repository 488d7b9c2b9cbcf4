//! The guards of [`lock()`](super::lock()): [`LockGuard`] and [`AsyncLockGuard`], which release
//! the external lock, log, then give back the in-process lock.

use std::fmt;
use std::marker::PhantomData;

use crate::backend::ExternalBackend;
use crate::error::Error;
use crate::fair::FairLock;
use crate::queue::{MAX_PERMITS, RawSemaphore};
use crate::raw::RawLock;
use crate::registry::{Pinned, Taken};
use crate::rwlock::ReaderWriterLock;
use crate::semaphore::{NamedSemaphore, Semaphore};

use super::LOG_TARGET;
use super::log::{LogLine, debug_enabled, log_line};

/// What an [`AsyncLockGuard`] holds: permits of a counted handle's queue.
pub(crate) enum AsyncHeld {
    Semaphore(NamedSemaphore),
    /// All permits: the write side, held by a task.
    Fair(FairLock),
    /// One permit: the read side of the name's fair lock, held by a task.
    Shared(FairLock),
}

impl AsyncHeld {
    /// Identifies the lock (its registry entry) while the handle lives.
    pub(crate) fn id(&self) -> usize {
        match self {
            AsyncHeld::Semaphore(sem) => sem.addr(),
            AsyncHeld::Fair(lock) | AsyncHeld::Shared(lock) => lock.addr(),
        }
    }

    pub(super) fn raw(&self) -> (&RawSemaphore, usize) {
        match self {
            AsyncHeld::Semaphore(sem) => (sem.raw(), 1),
            AsyncHeld::Fair(lock) => (lock.raw(), MAX_PERMITS),
            AsyncHeld::Shared(lock) => (lock.raw(), 1),
        }
    }

    fn name(&self) -> &str {
        match self {
            AsyncHeld::Semaphore(sem) => sem.name(),
            AsyncHeld::Fair(lock) | AsyncHeld::Shared(lock) => lock.name(),
        }
    }

    pub(super) fn external(&self) -> &parking_lot::Mutex<crate::backend::ExternalCache> {
        match self {
            AsyncHeld::Semaphore(sem) => sem.extra(),
            AsyncHeld::Fair(lock) | AsyncHeld::Shared(lock) => &lock.extra().cache,
        }
    }

    /// The gate of the name's shared holders (see `FairState::stage`); `None` for other
    /// locks.
    pub(super) fn stage(&self) -> Option<&RawSemaphore> {
        match self {
            AsyncHeld::Shared(lock) => Some(&lock.extra().stage),
            AsyncHeld::Semaphore(_) | AsyncHeld::Fair(_) => None,
        }
    }
}

/// A lock held by an async task, from [`LockBuilder::acquire_async`](crate::LockBuilder::acquire_async); released when dropped.
///
/// `Send`: a task may hold it across `.await` and move between threads.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct AsyncLockGuard {
    pub(super) held: AsyncHeld,
    pub(super) do_log: bool,
    /// The backend holding the external lock, if one is held.
    pub(super) external: Option<&'static dyn ExternalBackend>,
}

impl AsyncLockGuard {
    /// The name of the held lock.
    pub fn name(&self) -> &str {
        self.held.name()
    }

    /// Whether an external lock is held too.
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// See [`LockGuard::is_external_held`].
    pub fn is_external_held(&self) -> Result<bool, Error> {
        is_external_held(self.name(), self.held.external(), self.external)
    }

    /// See [`LockGuard::fencing_token`].
    pub fn fencing_token(&self) -> Option<i64> {
        fencing_token(self.held.external(), self.external)
    }

    /// Identifies the held lock (see `AsyncHeld::id`).
    pub(crate) fn id(&self) -> usize {
        self.held.id()
    }
}

impl Drop for AsyncLockGuard {
    fn drop(&mut self) {
        release_external_and_log(
            self.name(),
            self.held.external(),
            self.external,
            self.do_log,
        );
        let (raw, permits) = self.held.raw();
        raw.release(permits);
    }
}

impl fmt::Debug for AsyncLockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncLockGuard")
            .field("name", &self.name())
            .finish()
    }
}

/// What a [`LockGuard`] holds.
pub(crate) enum Held {
    /// `Option` only so that `drop` can move a pinned entry out to release it.
    Semaphore(Option<Taken<Semaphore>>),
    /// A level of the write side, taken by this thread. `Option` as for `Semaphore`.
    Fair(Option<Taken<ReaderWriterLock>>),
    /// The read side of the name's fair lock, one level, taken by this thread.
    Shared(Taken<ReaderWriterLock>),
}

impl Held {
    pub(super) fn external(&self) -> &parking_lot::Mutex<crate::backend::ExternalCache> {
        match self {
            Held::Semaphore(sem) => sem.as_ref().expect("held until drop").extra(),
            Held::Fair(lock) => &lock.as_ref().expect("held until drop").extra().cache,
            Held::Shared(lock) => &lock.extra().cache,
        }
    }

    /// The gate of the name's shared holders (see `FairState::stage`); `None` for other
    /// locks.
    pub(super) fn stage(&self) -> Option<&RawSemaphore> {
        match self {
            Held::Shared(lock) => Some(&lock.extra().stage),
            Held::Semaphore(_) | Held::Fair(_) => None,
        }
    }
}

/// A held lock from [`lock()`](crate::lock()); released when dropped, also during a panic.
///
/// The guard is bound to the thread that took it (not `Send`): the fair lock is reentrant per
/// thread, and a guard moved elsewhere would let two threads in.
///
/// # After `fork()`
/// A child process forked while the guard is held has a copy of it, but not the lock: the
/// external lock stays its parent's. Dropping the copy in the child (or ending the child in
/// any way) leaves the parent's lock held; the child only closes its inherited descriptor.
/// The child must not act as the holder. Once it has dropped its copy, it may take this name
/// for itself, waiting for its parent like any other process (with the copy still alive it
/// would wait for its own copy of the in-process lock). To hand a lock file to a program the
/// process starts, use [`share_with_child`](Self::share_with_child).
#[must_use = "the lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct LockGuard {
    pub(super) held: Held,
    pub(super) do_log: bool,
    /// The backend holding the external lock, if one is held.
    pub(super) external: Option<&'static dyn ExternalBackend>,
    pub(super) _thread_bound: PhantomData<*const ()>,
}

impl LockGuard {
    /// The name of the held lock.
    #[inline]
    pub fn name(&self) -> &str {
        match &self.held {
            Held::Semaphore(sem) => sem.as_ref().expect("held until drop").name(),
            Held::Fair(lock) => lock.as_ref().expect("held until drop").name(),
            Held::Shared(lock) => lock.name(),
        }
    }

    /// Whether this is a fair lock.
    pub fn is_fair(&self) -> bool {
        matches!(self.held, Held::Fair(_))
    }

    /// Whether this is the shared side of the name (see
    /// [`LockBuilder::shared`](crate::LockBuilder::shared)).
    pub fn is_shared(&self) -> bool {
        matches!(self.held, Held::Shared(_))
    }

    /// Whether an external (inter-process) lock is held too.
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// Whether the external lock is still held, as its backend can tell: a lock held in a
    /// server session (PostgreSQL) is lost with the session, e.g. when the server restarts
    /// or the connection drops; a lock file is held as long as the process lives. `Ok(false)`
    /// or an error means: stop acting as the holder. `Ok(true)` without an external lock.
    pub fn is_external_held(&self) -> Result<bool, Error> {
        is_external_held(self.name(), self.held.external(), self.external)
    }

    /// The fencing token of the external lock's acquisition, if its backend has them (the
    /// PostgreSQL backend does, lock files do not): it grows strictly from one acquisition to
    /// the next, so storage can refuse the writes of a holder that lost the lock unnoticed.
    pub fn fencing_token(&self) -> Option<i64> {
        fencing_token(self.held.external(), self.external)
    }

    /// Lets the process that `command` starts inherit this guard's lock file, so that the
    /// lock stays held while that process runs even if this one dies first (SIGKILL
    /// included), as `flock(1)` keeps its lock for its command. The child shares the lock's
    /// open file description: dropping this guard still releases the lock for both, and the
    /// lock outlives this process only as long as the child (or anything it hands the
    /// descriptor on to) keeps the descriptor open. Returns `false`, leaving `command` alone,
    /// when no lock file is held (not external, or held on a server).
    #[cfg(unix)]
    pub fn share_with_child(&self, command: &mut std::process::Command) -> bool {
        let fd = self
            .external
            .and_then(|_| crate::backend::held_file_descriptor(&mut self.held.external().lock()));
        match fd {
            Some(fd) => {
                crate::file::inherit_descriptor(command, fd);
                true
            }
            None => false,
        }
    }

    /// Runs `f` on the external state of the held name.
    pub(crate) fn with_external_cache<R>(
        &self,
        f: impl FnOnce(&mut crate::backend::ExternalCache) -> R,
    ) -> R {
        f(&mut self.held.external().lock())
    }
}

fn is_external_held(
    name: &str,
    cache: &parking_lot::Mutex<crate::backend::ExternalCache>,
    backend: Option<&'static dyn ExternalBackend>,
) -> Result<bool, Error> {
    match backend {
        Some(backend) => backend.is_held(name, &mut cache.lock()),
        None => Ok(true),
    }
}

fn fencing_token(
    cache: &parking_lot::Mutex<crate::backend::ExternalCache>,
    backend: Option<&'static dyn ExternalBackend>,
) -> Option<i64> {
    backend.and_then(|backend| backend.fencing_token(&mut cache.lock()))
}

/// Releases the external lock, then logs; the in-process lock is released after this, when
/// the `held` field drops (so also if a log subscriber panics), as oslo orders it.
impl Drop for LockGuard {
    #[inline]
    fn drop(&mut self) {
        if self.external.is_none() {
            // The fast path: a log line at most, then the in-process release, done by `held`.
            if self.do_log && debug_enabled() {
                log_line(self.name(), LogLine::Releasing);
            }
            return;
        }
        release_external_and_log(
            self.name(),
            self.held.external(),
            self.external,
            self.do_log,
        );
    }
}

/// What both guards do on drop before giving back the in-process lock: release the external
/// lock through `backend` (if held, and this was its last level), then log oslo's line.
fn release_external_and_log(
    name: &str,
    cache: &parking_lot::Mutex<crate::backend::ExternalCache>,
    backend: Option<&dyn ExternalBackend>,
    do_log: bool,
) {
    if let Some(backend) = backend {
        let mut cache = cache.lock();
        cache.depth -= 1;
        if cache.depth == 0
            && let Err(e) = backend.release(name, &mut cache)
        {
            tracing::warn!(target: LOG_TARGET, lock = name, "{e}");
        }
    }
    if do_log && debug_enabled() {
        log_line(name, LogLine::Releasing);
    }
}

impl Drop for Held {
    #[inline]
    fn drop(&mut self) {
        match self {
            Held::Semaphore(sem) => match sem.take().expect("held until drop") {
                // The last use of a pinned entry (see `Pinned::release`).
                Taken::Pinned(pinned) => {
                    pinned.release(Semaphore::try_release_fast, Semaphore::release_slow)
                }
                Taken::Handle(sem) => sem.release(),
                Taken::Static(sem) => sem.release(),
            },
            Held::Fair(lock) => release_fair(lock.take().expect("held until drop")),
            Held::Shared(lock) => release_shared(lock),
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name())
            .field("fair", &self.is_fair())
            .field("external", &self.is_external())
            .finish()
    }
}

/// Gives back one level of the read side that a shared guard took on this thread (the guard
/// is not Send). Out of line: the other locks' release stays small.
#[inline(never)]
fn release_shared(lock: &Taken<ReaderWriterLock>) {
    // SAFETY: the guard took one level of the read side on this thread, and only the guard
    // releases it.
    unsafe { lock.read_side().unlock() }
}

/// Gives back the level of the write side that a fair guard took on this thread (the guard
/// is not Send). Out of line: the semaphore's release stays small.
#[inline(never)]
fn release_fair(lock: Taken<ReaderWriterLock>) {
    match lock {
        Taken::Pinned(pinned) => release_pinned_write(pinned),
        // SAFETY: the guard took one level of the write side on this thread, and only the
        // guard releases it.
        lock => unsafe { lock.write_side().unlock() },
    }
}

/// Gives back the level of the write side that a fair guard took through a pin (see
/// `Pinned::release`): the levels first, then the permits as the last touch.
#[inline]
fn release_pinned_write(pinned: Pinned<ReaderWriterLock>) {
    let permits = std::cell::Cell::new(0);
    pinned.release(
        |lock| {
            // The guard's level is held on this thread (the guard is not Send); the permits
            // stay held, and pin the entry, until released below.
            let n = lock.unlock_write_levels();
            permits.set(n);
            n == 0 || lock.raw().try_release_fast(n)
        },
        |lock| lock.raw().release_slow(permits.get()),
    );
}
