//! The [`lock()`] builder, its [`LockGuard`], and oslo's free functions around them.

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crate::backend::external_backend;
use crate::backend::{ExternalBackend, ExternalTarget};
use crate::config::process_locking_disabled;
use crate::error::Error;
use crate::fair::{FairLock, FairLocks};
use crate::file::DEFAULT_DELAY;
use crate::queue::{Acquire, AcquireUntil, MAX_PERMITS, RawSemaphore, Wait};
use crate::registry::Taken;
use crate::rwlock::ReaderWriterLock;
use crate::semaphore::{NamedSemaphore, Semaphore, Semaphores};

/// The `tracing` target of every log line lockutils writes.
pub const LOG_TARGET: &str = "lockutils";

/// Starts building a lock on `name`: oslo's `lockutils.lock(name, ...)`.
///
/// Finish with [`acquire`](LockBuilder::acquire), which returns a [`LockGuard`] that releases
/// the lock when dropped, also when the holder panics.
///
/// By default the lock is the one-permit semaphore for `name` in [`Semaphores::global`]; it
/// waits as long as it takes and logs oslo's DEBUG lines.
///
/// ```
/// use std::time::Duration;
///
/// let guard = lockutils::lock("instance-42").acquire()?;
/// // Another thread would now wait; this one asks without waiting and is refused:
/// let busy = std::thread::scope(|s| {
///     s.spawn(|| lockutils::lock("instance-42").blocking(false).acquire().is_err())
///         .join()
///         .unwrap()
/// });
/// assert!(busy);
/// drop(guard);
///
/// // Fair (FIFO and reentrant), waiting at most 250 ms:
/// let _g = lockutils::lock("resize").fair(true).timeout(Duration::from_millis(250)).acquire()?;
/// # Ok::<(), lockutils::Error>(())
/// ```
#[inline]
pub fn lock(name: &str) -> LockBuilder<'_> {
    LockBuilder {
        name,
        blocking: true,
        timeout: None,
        fair: false,
        semaphores: None,
        fair_locks: None,
        do_log: true,
        external: false,
        prefix: None,
        lock_path: None,
        delay: DEFAULT_DELAY,
        backend: None,
        site: None,
    }
}

/// A lock name known at compile time, with its registry handles kept after first use, so
/// that taking the lock needs no name lookup. What `#[synchronized("literal")]` uses; not
/// meant to be named by users.
#[doc(hidden)]
pub struct StaticLock {
    name: &'static str,
    semaphore: OnceLock<NamedSemaphore>,
    fair: OnceLock<FairLock>,
}

impl StaticLock {
    /// A site for `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            semaphore: OnceLock::new(),
            fair: OnceLock::new(),
        }
    }

    /// The kept handle of the name's global (non-fair) lock.
    #[inline]
    pub(crate) fn semaphore(&'static self) -> &'static NamedSemaphore {
        self.semaphore
            .get_or_init(|| Semaphores::global().get(self.name))
    }

    /// [`lock`]`(name)`, taking the global lock of the name through the kept handle.
    #[inline]
    pub fn lock(&'static self) -> LockBuilder<'static> {
        LockBuilder {
            site: Some(self),
            ..lock(self.name)
        }
    }
}

/// Options for a lock on one name; made by [`lock()`], finished by [`acquire`](Self::acquire).
///
/// Every combination works, including those oslo refuses: fair and non-blocking, fair in a
/// caller's own [`FairLocks`], fair with a timeout.
#[derive(Clone, Copy)]
#[must_use = "a lock builder does nothing until `.acquire()` is called"]
pub struct LockBuilder<'a> {
    name: &'a str,
    blocking: bool,
    timeout: Option<Duration>,
    fair: bool,
    semaphores: Option<&'a Semaphores>,
    fair_locks: Option<&'a FairLocks>,
    do_log: bool,
    external: bool,
    prefix: Option<&'a str>,
    lock_path: Option<&'a Path>,
    delay: Duration,
    /// The external backend given with the lock, over the process-wide one.
    backend: Option<&'static dyn ExternalBackend>,
    /// Kept handles of the name, for the global containers.
    site: Option<&'static StaticLock>,
}

impl<'a> LockBuilder<'a> {
    /// The name of the lock being built.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Whether to also take the inter-process lock of this name (default `false`): a lock
    /// file in the lock directory, compatible with oslo's. The in-process lock is taken first
    /// and released last. With `disable_process_locking` configured, this is ignored, as in
    /// oslo.
    ///
    /// A process waiting without a timeout gets the file lock the moment its holder releases
    /// it (or dies): the kernel wakes it. See the crate docs for the file rules.
    pub fn external(mut self, external: bool) -> Self {
        self.external = external;
        self
    }

    /// Lock file prefix: the file is `PREFIX-NAME` (no extra `-` if the prefix ends in one).
    /// The in-process lock does not depend on it, as in oslo.
    pub fn prefix(mut self, prefix: &'a str) -> Self {
        self.prefix = Some(prefix);
        self
    }

    /// Directory of the lock file. An empty path means "not given": the configured directory
    /// is used (see [`lock_file_path`](crate::lock_file_path)).
    pub fn lock_path(mut self, lock_path: &'a (impl AsRef<Path> + ?Sized)) -> Self {
        self.lock_path = Some(lock_path.as_ref());
        self
    }

    /// The backend of the external lock (with [`external(true)`](Self::external)), over the
    /// process-wide one (see [`backend`](crate::backend) for how that is selected): e.g. a
    /// PostgreSQL backend, to lock across hosts.
    pub fn backend(mut self, backend: &'static dyn ExternalBackend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Accepted for oslo parity (`delay=0.01`), with a narrower meaning: the longest pause
    /// between two tries of a *timed* external wait (default 10 ms). An external wait without
    /// timeout does not poll at all: the kernel wakes it when the lock is released.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Whether to wait for the lock (default `true`). With `false`, one try: if the lock is
    /// held, or others are queued for it, [`acquire`](Self::acquire) fails at once with
    /// [`Error::AcquireLockFailed`]. `false` overrides [`timeout`](Self::timeout).
    pub fn blocking(mut self, blocking: bool) -> Self {
        self.blocking = blocking;
        self
    }

    /// Waits at most this long, then fails with [`Error::AcquireLockFailed`]. A waiter that
    /// gives up leaves the queue; nothing stays held or queued.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether to use the fair lock of this name (default `false`): strict FIFO among
    /// waiters, reentrant for the holding thread. Fair and non-fair locks of one name are
    /// distinct locks, as in oslo.
    pub fn fair(mut self, fair: bool) -> Self {
        self.fair = fair;
        self
    }

    /// Takes the (non-fair) lock from this container instead of [`Semaphores::global`].
    ///
    /// A container is a namespace: the same name in two containers is two locks. Combined with
    /// `fair(true)`, [`acquire`](Self::acquire) fails with [`Error::InvalidOptions`]: fair locks
    /// live in a [`FairLocks`] container, given with [`fair_locks`](Self::fair_locks).
    pub fn semaphores(mut self, semaphores: &'a Semaphores) -> Self {
        self.semaphores = Some(semaphores);
        self
    }

    /// Takes a fair lock from this container instead of [`FairLocks::global`]; implies
    /// `fair(true)`.
    pub fn fair_locks(mut self, fair_locks: &'a FairLocks) -> Self {
        self.fair_locks = Some(fair_locks);
        self.fair = true;
        self
    }

    /// Whether to log oslo's DEBUG lines (`Acquiring lock "NAME"`, `Acquired lock "NAME"`,
    /// `Releasing lock "NAME"`) on the `lockutils` target; default `true`.
    pub fn do_log(mut self, do_log: bool) -> Self {
        self.do_log = do_log;
        self
    }

    /// Takes the lock as configured.
    ///
    /// # Errors
    /// - [`Error::AcquireLockFailed`] when not blocking, or after the timeout, and the lock is
    ///   still taken.
    /// - [`Error::UpgradeNotAllowed`] for a fair lock whose read side this thread holds.
    /// - [`Error::InvalidOptions`] for `fair(true)` with a [`Semaphores`] container.
    #[inline]
    pub fn acquire(self) -> Result<LockGuard, Error> {
        let name = self.name;
        if self.do_log && debug_enabled() {
            log_line(name, LogLine::Acquiring);
        }
        // The common case, small enough to inline at the call site: the global semaphore of
        // `name`, free. Everything else (waiting, containers, fair, external) is out of line.
        if !self.fair && !self.external && self.semaphores.is_none() && self.site.is_none() {
            match Semaphores::global()
                .registry()
                .take(name, |sem| sem.try_acquire_uncontended())
            {
                Ok(pinned) => {
                    let guard = LockGuard {
                        held: Held::Semaphore(Some(Taken::Pinned(pinned))),
                        do_log: self.do_log,
                        external: None,
                        _thread_bound: PhantomData,
                    };
                    if self.do_log && debug_enabled() {
                        log_line(name, LogLine::Acquired);
                    }
                    return Ok(guard);
                }
                Err(sem) => return self.acquire_slow(Some(sem)),
            }
        }
        self.acquire_slow(None)
    }

    /// The external lock this builder names, and the backend that takes it.
    fn external_lock(&self) -> Result<(ExternalTarget<'_>, &'static dyn ExternalBackend), Error> {
        let target = ExternalTarget {
            name: self.name,
            prefix: self.prefix,
            lock_path: self.lock_path,
            delay: self.delay,
        };
        let backend = match self.backend {
            Some(backend) => backend,
            None => external_backend(self.name)?,
        };
        Ok((target, backend))
    }

    /// [`acquire`](Self::acquire) after its fast path: `global` is the global semaphore of
    /// the name when the fast path found it taken.
    #[inline(never)]
    fn acquire_slow(self, global: Option<NamedSemaphore>) -> Result<LockGuard, Error> {
        let name = self.name;
        let wait = Wait::new(self.blocking, self.timeout);
        let deadline = wait.deadline();
        let held = if self.fair {
            if self.semaphores.is_some() {
                return Err(Error::InvalidOptions {
                    name: name.to_owned(),
                    reason: "a fair lock cannot come from a Semaphores container; \
                             pass a FairLocks container with .fair_locks() instead",
                });
            }
            Held::Fair(take_fair(name, self.fair_locks, self.site, wait)?)
        } else {
            Held::Semaphore(Some(take_semaphore(
                name,
                self.semaphores,
                self.site,
                global,
                wait,
            )?))
        };
        // The guard exists before anything is logged: a panicking log subscriber must not
        // leave the lock held.
        let mut guard = LockGuard {
            held,
            do_log: self.do_log,
            external: None,
            _thread_bound: PhantomData,
        };
        if self.do_log {
            tracing::debug!(target: LOG_TARGET, lock = name, "Acquired lock \"{name}\"");
        }
        if self.external && !process_locking_disabled() {
            let (target, backend) = self.external_lock()?;
            {
                let mut cache = guard.held.external().lock();
                if cache.depth == 0 {
                    // On failure the guard, still without the external lock, releases the
                    // in-process lock (logging `Releasing lock` as oslo does).
                    backend
                        .acquire(&target, &mut cache, wait.remaining(deadline))
                        .map_err(|e| e.with_waited(wait))?;
                } else if !cache
                    .holder
                    .is_some_and(|holder| std::ptr::addr_eq(holder, backend))
                    || !backend.holds(&target, &mut cache)?
                {
                    return Err(Error::InvalidOptions {
                        name: name.to_owned(),
                        reason: "this thread already holds this name's (reentrant) lock with \
                                 another external lock (another prefix, lock path or backend); \
                                 one name cannot guard two external locks at once",
                    });
                }
                cache.enter(backend);
            }
            guard.external = Some(backend);
            if self.do_log && debug_enabled() {
                log_line(name, LogLine::AcquiredExternal);
            }
        }
        Ok(guard)
    }
}

impl LockBuilder<'_> {
    /// Takes the lock without blocking the thread: the async twin of
    /// [`acquire`](Self::acquire), on the same FIFO queue as blocking callers, with the same
    /// options (`blocking(false)` tries once; `timeout` waits at most that long, timed by a
    /// lockutils thread, so any executor works). Runtime-agnostic.
    ///
    /// The returned [`AsyncLockGuard`] is `Send`, so a spawned task can hold it across
    /// `.await`. Cancel-safe: dropping the future before it completes leaves nothing held or
    /// queued.
    ///
    /// With `external(true)` and lock files, after one try, a lockutils helper thread waits
    /// for the lock file in the kernel and hands it to the task, so the handoff is as prompt
    /// as for a blocked thread and no executor thread blocks. A cancelled wait abandons its
    /// helper, which lets the lock go as soon as it gets it; the next wait for the same name
    /// adopts it, so a name never has more than one helper. Other backends await in their own
    /// way ([`ExternalBackend::acquire_async`]); one that cannot be awaited fails with
    /// [`Error::Backend`].
    ///
    /// # Reentrancy
    /// Holders are tasks, which have no identity lockutils can see: a task that awaits a lock
    /// it already holds (fair or not) waits forever, as with any async mutex.
    pub async fn acquire_async(self) -> Result<AsyncLockGuard, Error> {
        let held = self.resolve()?;
        self.acquire_resolved(held).await
    }

    /// The lock this builder names, looked up in its container.
    pub(crate) fn resolve(&self) -> Result<AsyncHeld, Error> {
        if self.fair && self.semaphores.is_some() {
            return Err(Error::InvalidOptions {
                name: self.name.to_owned(),
                reason: "a fair lock cannot come from a Semaphores container; \
                         pass a FairLocks container with .fair_locks() instead",
            });
        }
        Ok(if self.fair {
            AsyncHeld::Fair(
                self.fair_locks
                    .unwrap_or(FairLocks::global())
                    .get(self.name),
            )
        } else {
            AsyncHeld::Semaphore(
                self.semaphores
                    .unwrap_or(Semaphores::global())
                    .get(self.name),
            )
        })
    }

    /// [`acquire_async`](Self::acquire_async) of the lock [`resolve`](Self::resolve) found.
    pub(crate) async fn acquire_resolved(self, held: AsyncHeld) -> Result<AsyncLockGuard, Error> {
        let name = self.name;
        if self.do_log {
            tracing::debug!(target: LOG_TARGET, lock = name, "Acquiring lock \"{name}\"");
        }
        let (raw, permits) = held.raw();
        let wait = Wait::new(self.blocking, self.timeout);
        let deadline = wait.deadline();
        let acquired = match (wait, deadline) {
            (Wait::Never, _) => raw.try_acquire(permits),
            (Wait::For(_), Some(deadline)) => AcquireUntil::new(raw, permits, deadline).await,
            (Wait::For(_), None) | (Wait::Forever, _) => {
                Acquire::new(raw, permits).await;
                true
            }
        };
        if !acquired {
            return Err(Error::acquire_failed(name, wait.waited()));
        }
        let mut guard = AsyncLockGuard {
            held,
            do_log: self.do_log,
            external: None,
        };
        if self.do_log {
            tracing::debug!(target: LOG_TARGET, lock = name, "Acquired lock \"{name}\"");
        }
        if self.external && !process_locking_disabled() {
            let (target, backend) = self.external_lock()?;
            // On failure the guard, still without the external lock, releases the in-process
            // lock.
            backend
                .acquire_async(
                    target,
                    guard.held.external(),
                    wait.remaining(deadline),
                    deadline,
                )
                .await
                .map_err(|e| e.with_waited(wait))?;
            guard.held.external().lock().enter(backend);
            guard.external = Some(backend);
            if self.do_log && debug_enabled() {
                log_line(name, LogLine::AcquiredExternal);
            }
        }
        Ok(guard)
    }
}

/// What an [`AsyncLockGuard`] holds: permits of a counted handle's queue.
pub(crate) enum AsyncHeld {
    Semaphore(NamedSemaphore),
    /// All permits: the write side, held by a task.
    Fair(FairLock),
}

impl AsyncHeld {
    /// Identifies the lock (its registry entry) while the handle lives.
    pub(crate) fn id(&self) -> usize {
        match self {
            AsyncHeld::Semaphore(sem) => sem.addr(),
            AsyncHeld::Fair(lock) => lock.addr(),
        }
    }

    fn raw(&self) -> (&RawSemaphore, usize) {
        match self {
            AsyncHeld::Semaphore(sem) => (sem.raw(), 1),
            AsyncHeld::Fair(lock) => (lock.raw(), MAX_PERMITS),
        }
    }

    fn name(&self) -> &str {
        match self {
            AsyncHeld::Semaphore(sem) => sem.name(),
            AsyncHeld::Fair(lock) => lock.name(),
        }
    }

    fn external(&self) -> &parking_lot::Mutex<crate::backend::ExternalCache> {
        match self {
            AsyncHeld::Semaphore(sem) => sem.extra(),
            AsyncHeld::Fair(lock) => lock.extra(),
        }
    }
}

/// A lock held by an async task, from [`LockBuilder::acquire_async`]; released when dropped.
///
/// `Send`: a task may hold it across `.await` and move between threads.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct AsyncLockGuard {
    held: AsyncHeld,
    do_log: bool,
    /// The backend holding the external lock, if one is held.
    external: Option<&'static dyn ExternalBackend>,
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

impl fmt::Debug for LockBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockBuilder")
            .field("name", &self.name)
            .field("blocking", &self.blocking)
            .field("timeout", &self.timeout)
            .field("fair", &self.fair)
            .field(
                "own_container",
                &(self.semaphores.is_some() || self.fair_locks.is_some()),
            )
            .field("do_log", &self.do_log)
            .field("external", &self.external)
            .field("prefix", &self.prefix)
            .field("lock_path", &self.lock_path)
            .field("delay", &self.delay)
            .finish()
    }
}

/// Whether oslo's DEBUG lines could be wanted at all: one load, inlined into the fast path;
/// the line itself is formatted out of line by [`log_line`].
#[inline(always)]
fn debug_enabled() -> bool {
    tracing::level_enabled!(tracing::Level::DEBUG)
}

/// oslo's log lines of `lock()`, formatted out of line.
#[derive(Clone, Copy)]
enum LogLine {
    Acquiring,
    Acquired,
    AcquiredExternal,
    Releasing,
}

#[cold]
#[inline(never)]
fn log_line(name: &str, line: LogLine) {
    match line {
        LogLine::Acquiring => {
            tracing::debug!(target: LOG_TARGET, lock = name, "Acquiring lock \"{name}\"")
        }
        LogLine::Acquired => {
            tracing::debug!(target: LOG_TARGET, lock = name, "Acquired lock \"{name}\"")
        }
        LogLine::AcquiredExternal => {
            tracing::debug!(target: LOG_TARGET, lock = name, "Acquired external semaphore \"{name}\"")
        }
        LogLine::Releasing => {
            tracing::debug!(target: LOG_TARGET, lock = name, "Releasing lock \"{name}\"")
        }
    }
}

/// Takes the semaphore for `name`. In the global registry the uncontended case is one trip
/// to the registry with no reference count taken (see `Registry::take`).
#[inline]
fn take_semaphore(
    name: &str,
    container: Option<&Semaphores>,
    site: Option<&'static StaticLock>,
    global: Option<NamedSemaphore>,
    wait: Wait,
) -> Result<Taken<Semaphore>, Error> {
    let sem = match (container, site, global) {
        (Some(container), _, _) => container.get(name),
        // The fast path of `acquire` found it taken.
        (None, _, Some(global)) => global,
        (None, Some(site), None) => {
            let sem = site.semaphore();
            return if sem.acquire_with(wait) {
                Ok(Taken::Static(sem))
            } else {
                Err(Error::acquire_failed(name, wait.waited()))
            };
        }
        (None, None, None) => match Semaphores::global()
            .registry()
            .take(name, |sem| sem.try_acquire_uncontended())
        {
            Ok(pinned) => return Ok(Taken::Pinned(pinned)),
            Err(sem) => sem,
        },
    };
    if sem.acquire_with(wait) {
        Ok(Taken::Handle(sem))
    } else {
        Err(Error::acquire_failed(name, wait.waited()))
    }
}

/// Takes the write side of the fair lock for `name`. Never pinned: a level of the write
/// side can be released by hand (`release_write`), so holding it does not prove that this
/// guard's level keeps the entry.
#[inline]
fn take_fair(
    name: &str,
    container: Option<&FairLocks>,
    site: Option<&'static StaticLock>,
    wait: Wait,
) -> Result<Taken<ReaderWriterLock>, Error> {
    let lock = match (container, site) {
        (Some(container), _) => Taken::Handle(container.get(name)),
        (None, Some(site)) => {
            Taken::Static(site.fair.get_or_init(|| FairLocks::global().get(site.name)))
        }
        (None, None) => Taken::Handle(FairLocks::global().get(name)),
    };
    lock.write_with(wait)?;
    Ok(lock)
}

/// What a [`LockGuard`] holds.
enum Held {
    /// `Option` only so that `drop` can move a pinned entry out to release it.
    Semaphore(Option<Taken<Semaphore>>),
    /// Never `Taken::Pinned` (see `take_fair`).
    Fair(Taken<ReaderWriterLock>),
}

impl Held {
    fn external(&self) -> &parking_lot::Mutex<crate::backend::ExternalCache> {
        match self {
            Held::Semaphore(sem) => sem.as_ref().expect("held until drop").extra(),
            Held::Fair(lock) => lock.extra(),
        }
    }
}

/// A held lock from [`lock()`]; released when dropped, also during a panic.
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
    held: Held,
    do_log: bool,
    /// The backend holding the external lock, if one is held.
    external: Option<&'static dyn ExternalBackend>,
    _thread_bound: PhantomData<*const ()>,
}

impl LockGuard {
    /// The name of the held lock.
    #[inline]
    pub fn name(&self) -> &str {
        match &self.held {
            Held::Semaphore(sem) => sem.as_ref().expect("held until drop").name(),
            Held::Fair(lock) => lock.name(),
        }
    }

    /// Whether this is a fair lock.
    pub fn is_fair(&self) -> bool {
        matches!(self.held, Held::Fair(_))
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
            Held::Fair(lock) => {
                // The guard took one level of the write side on this thread (it is not Send),
                // so this cannot fail unless that level was released by hand.
                let _ = lock.release_write();
            }
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

/// Takes the in-process (non-fair) lock for `name`: oslo's `internal_lock`.
///
/// Uses `semaphores`, or [`Semaphores::global`] for `None`. With `blocking == false`, one try.
/// Logs nothing.
pub fn internal_lock(
    name: &str,
    semaphores: Option<&Semaphores>,
    blocking: bool,
) -> Result<LockGuard, Error> {
    let builder = lock(name).blocking(blocking).do_log(false);
    match semaphores {
        Some(semaphores) => builder.semaphores(semaphores),
        None => builder,
    }
    .acquire()
}

/// The fair lock for `name` in [`FairLocks::global`]: oslo's `internal_fair_lock`.
///
/// Like oslo, this returns the lock itself; take its write side (what `lock(name).fair(true)`
/// does) with [`write`](crate::ReaderWriterLock::write), or its read side.
pub fn internal_fair_lock(name: &str) -> FairLock {
    FairLocks::global().get(name)
}

/// The lock layer keeps each name's external-lock state (an open lock file, a server
/// session) beside the name's lock in the registries.
impl crate::registry::Create for Semaphore {
    type Extra = parking_lot::Mutex<crate::backend::ExternalCache>;

    fn create(_name: &std::sync::Arc<str>) -> Self {
        Semaphore::new(1)
    }

    fn is_free(&self) -> bool {
        self.is_untouched()
    }
}

impl crate::registry::Create for ReaderWriterLock {
    type Extra = parking_lot::Mutex<crate::backend::ExternalCache>;

    fn create(name: &std::sync::Arc<str>) -> Self {
        Self::from_arc(name.clone())
    }

    fn is_free(&self) -> bool {
        self.is_untouched()
    }
}
