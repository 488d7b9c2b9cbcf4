//! The [`lock()`] builder: what to lock and how to wait, then `acquire()`.

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use crate::backend::external_backend;
use crate::backend::{ExternalBackend, ExternalCache, ExternalTarget};
use crate::config::process_locking_disabled;
use crate::error::Error;
use crate::fair::FairLocks;
use crate::file::DEFAULT_DELAY;
use crate::queue::{Mode, Permits, Wait};
use crate::registry::Taken;
use crate::rwlock::ReaderWriterLock;
use crate::semaphore::{NamedSemaphore, Semaphore, Semaphores};

use super::LOG_TARGET;
use super::guard::{AsyncHeld, AsyncLockGuard, Held, LockGuard};
use super::log::{LogLine, debug_enabled, log_line};
use super::static_lock::StaticLock;

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
        shared: false,
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

/// Options for a lock on one name; made by [`lock()`], finished by [`acquire`](Self::acquire).
///
/// Every combination works, including those oslo refuses: fair and non-blocking, fair in a
/// caller's own [`FairLocks`], fair with a timeout.
#[derive(Clone, Copy)]
#[must_use = "a lock builder does nothing until `.acquire()` is called"]
pub struct LockBuilder<'a> {
    pub(super) name: &'a str,
    pub(super) blocking: bool,
    pub(super) timeout: Option<Duration>,
    pub(super) fair: bool,
    pub(super) shared: bool,
    pub(super) semaphores: Option<&'a Semaphores>,
    pub(super) fair_locks: Option<&'a FairLocks>,
    pub(super) do_log: bool,
    pub(super) external: bool,
    pub(super) prefix: Option<&'a str>,
    pub(super) lock_path: Option<&'a Path>,
    pub(super) delay: Duration,
    /// The external backend given with the lock, over the process-wide one.
    pub(super) backend: Option<&'static dyn ExternalBackend>,
    /// Kept handles of the name, for the global containers.
    pub(super) site: Option<&'static StaticLock>,
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
    /// distinct locks, as in oslo. With [`external(true)`](Self::external) on lock files
    /// (Linux), the order holds across processes too: waiting processes and threads queue
    /// first come, first served, and a waiter or holder that dies frees its place at once
    /// (see `docs/external-locks.md`); oslo processes, which do not queue, still exclude.
    pub fn fair(mut self, fair: bool) -> Self {
        self.fair = fair;
        self
    }

    /// Whether to take the shared side of this name (default `false`): any number of shared
    /// holders run together, and exclude the exclusive holders of the name's fair lock. It is
    /// the read side of the name's [fair lock](Self::fair) (so, like the fair lock, it is
    /// distinct from the default non-fair lock of the name, as in oslo), and, with
    /// [`external(true)`](Self::external), the shared side of the external lock too: a read
    /// lock on the lock file (as fasteners' `InterProcessReaderWriterLock` takes), or a
    /// shared lock on a server. A backend that cannot share makes the acquire fail with
    /// [`Error::Backend`] saying so; it never locks exclusively instead.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let shared = || lockutils::lock("table").shared(true).external(true).lock_path(dir.path());
    /// let one = shared().acquire()?;
    /// // Another thread shares it at once:
    /// std::thread::scope(|s| s.spawn(|| shared().blocking(false).acquire().map(drop)).join())
    ///     .unwrap()?;
    /// // The exclusive side waits for the shared holders (asked from a thread holding nothing:
    /// // a shared holder asking for it would be refused as an upgrade):
    /// let busy = std::thread::scope(|s| {
    ///     s.spawn(|| lockutils::lock("table").fair(true).blocking(false).acquire().map(drop))
    ///         .join()
    ///         .unwrap()
    /// });
    /// assert!(busy.unwrap_err().is_acquire_failed());
    /// drop(one);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
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
        if !self.fair
            && !self.shared
            && !self.external
            && self.semaphores.is_none()
            && self.site.is_none()
        {
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
            mode: if self.shared {
                Mode::Shared
            } else {
                Mode::Exclusive
            },
            fair: self.fair,
        };
        let backend = match self.backend {
            Some(backend) => backend,
            None => external_backend(self.name)?,
        };
        if self.shared && !backend.supports_shared() {
            return Err(Error::backend(
                self.name,
                backend.describe(),
                "this backend cannot take shared locks: take the lock exclusively (without \
                 shared(true)), or use a backend that can share (lock files, PostgreSQL)",
            ));
        }
        Ok((target, backend))
    }

    /// [`acquire`](Self::acquire) after its fast path: `global` is the global semaphore of
    /// the name when the fast path found it taken.
    #[inline(never)]
    fn acquire_slow(self, global: Option<NamedSemaphore>) -> Result<LockGuard, Error> {
        let name = self.name;
        let wait = Wait::new(self.blocking, self.timeout);
        let deadline = wait.deadline();
        if (self.fair || self.shared) && self.semaphores.is_some() {
            return Err(fair_from_semaphores(name));
        }
        let held = if self.shared {
            Held::Shared(take_shared(name, self.fair_locks, self.site, wait)?)
        } else if self.fair {
            Held::Fair(Some(take_fair(name, self.fair_locks, self.site, wait)?))
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
        // leave the lock held. (Built where it is returned: a guard built aside and then
        // copied out costs a stalled copy.)
        let mut result = Ok(LockGuard {
            held,
            do_log: self.do_log,
            external: None,
            _thread_bound: PhantomData,
        });
        if self.do_log {
            tracing::debug!(target: LOG_TARGET, lock = name, "Acquired lock \"{name}\"");
        }
        if self.external
            && !process_locking_disabled()
            && let Ok(guard) = &mut result
            && let Err(e) = self.take_external(guard, wait, deadline)
        {
            // Dropping the guard, still without the external lock, releases the in-process
            // lock (logging `Releasing lock` as oslo does).
            result = Err(e);
        }
        result
    }

    /// The external lock of a guard that holds the in-process lock, as `wait` allows (from
    /// `deadline`).
    #[inline(never)]
    fn take_external(
        &self,
        guard: &mut LockGuard,
        wait: Wait,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), Error> {
        let name = self.name;
        let (target, backend) = self.external_lock()?;
        // Shared holders of the name pass its gate one at a time, within the timeout.
        let _stage = match guard.held.stage() {
            Some(stage) if stage.acquire_with(1, wait.remaining(deadline)) => {
                Some(Permits::taken(stage, 1))
            }
            Some(_) => return Err(Error::acquire_failed(name, wait.waited())),
            None => None,
        };
        {
            let mut cache = guard.held.external().lock();
            if cache.depth == 0 {
                backend
                    .acquire(&target, &mut cache, wait.remaining(deadline))
                    .map_err(|e| e.with_waited(wait))?;
            } else {
                join_external(name, &target, backend, &mut cache)?;
            }
            cache.enter(backend);
        }
        guard.external = Some(backend);
        if self.do_log && debug_enabled() {
            log_line(name, LogLine::AcquiredExternal);
        }
        Ok(())
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
        if (self.fair || self.shared) && self.semaphores.is_some() {
            return Err(Error::InvalidOptions {
                name: self.name.to_owned(),
                reason: "a fair or shared lock cannot come from a Semaphores container; \
                         pass a FairLocks container with .fair_locks() instead",
            });
        }
        Ok(if self.shared {
            AsyncHeld::Shared(
                self.fair_locks
                    .unwrap_or(FairLocks::global())
                    .get(self.name),
            )
        } else if self.fair {
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
        // A free lock is taken at once, before any future is made (never jumping the queue).
        let taken = raw.try_acquire(permits)
            || (wait != Wait::Never && raw.acquire_async(permits, wait, deadline).await);
        if !taken {
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
            // Shared holders of the name pass its gate one at a time, within the timeout; a
            // cancelled wait gives the gate back.
            let stage = match guard.held.stage() {
                Some(stage) if stage.acquire_async(1, wait, deadline).await => {
                    Some(Permits::taken(stage, 1))
                }
                Some(_) => return Err(Error::acquire_failed(name, wait.waited())),
                None => None,
            };
            let joined = stage.is_some() && {
                let mut cache = guard.held.external().lock();
                cache.depth > 0 && {
                    join_external(name, &target, backend, &mut cache)?;
                    cache.enter(backend);
                    true
                }
            };
            if !joined {
                // On failure the guard, still without the external lock, releases the
                // in-process lock.
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
            }
            drop(stage);
            guard.external = Some(backend);
            if self.do_log && debug_enabled() {
                log_line(name, LogLine::AcquiredExternal);
            }
        }
        Ok(guard)
    }
}

impl fmt::Debug for LockBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockBuilder")
            .field("name", &self.name)
            .field("blocking", &self.blocking)
            .field("timeout", &self.timeout)
            .field("fair", &self.fair)
            .field("shared", &self.shared)
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

/// Joins the external lock that the name's holders already hold (`cache.depth > 0`): a
/// reentrant holder, or another shared holder. Only the same external lock may be joined;
/// another prefix, lock path or backend is [`Error::InvalidOptions`].
fn join_external(
    name: &str,
    target: &ExternalTarget<'_>,
    backend: &'static dyn ExternalBackend,
    cache: &mut ExternalCache,
) -> Result<(), Error> {
    if cache
        .holder
        .is_some_and(|holder| std::ptr::addr_eq(holder, backend))
        && backend.holds(target, cache)?
    {
        return Ok(());
    }
    Err(Error::InvalidOptions {
        name: name.to_owned(),
        reason: "this name's external lock is already held here as another external lock \
                 (another prefix, lock path or backend); one name cannot guard two external \
                 locks at once",
    })
}

/// The error of a fair or shared lock asked of a `Semaphores` container.
#[cold]
fn fair_from_semaphores(name: &str) -> Error {
    Error::InvalidOptions {
        name: name.to_owned(),
        reason: "a fair or shared lock cannot come from a Semaphores container; \
                 pass a FairLocks container with .fair_locks() instead",
    }
}

/// Takes the write side of the fair lock for `name`. From the global registry, a lock free
/// (or already written by this thread) comes back pinned, with no reference count taken: a
/// level of the write side is released only by the guard that took it (releasing by hand
/// is `unsafe`, and excluded for guards' levels), so holding it keeps the entry.
#[inline]
fn take_fair(
    name: &str,
    container: Option<&FairLocks>,
    site: Option<&'static StaticLock>,
    wait: Wait,
) -> Result<Taken<ReaderWriterLock>, Error> {
    let lock = match (container, site) {
        (None, None) => match FairLocks::global()
            .registry()
            .take(name, ReaderWriterLock::try_write_uncontended)
        {
            Ok(pinned) => return Ok(Taken::Pinned(pinned)),
            Err(handle) => Taken::Handle(handle),
        },
        _ => fair_entry(name, container, site),
    };
    lock.write_with(wait)?;
    Ok(lock)
}

/// Takes one level of the read side of the fair lock for `name` (a shared lock). Out of
/// line, so that the fair lock's own path stays as small as it was.
#[inline(never)]
fn take_shared(
    name: &str,
    container: Option<&FairLocks>,
    site: Option<&'static StaticLock>,
    wait: Wait,
) -> Result<Taken<ReaderWriterLock>, Error> {
    let lock = fair_entry(name, container, site);
    lock.read_with(wait)?;
    Ok(lock)
}

/// The fair lock of `name`: from `container`, the static site's kept handle, or the global
/// registry.
#[inline]
fn fair_entry(
    name: &str,
    container: Option<&FairLocks>,
    site: Option<&'static StaticLock>,
) -> Taken<ReaderWriterLock> {
    match (container, site) {
        (Some(container), _) => Taken::Handle(container.get(name)),
        (None, Some(site)) => {
            Taken::Static(site.fair.get_or_init(|| FairLocks::global().get(site.name)))
        }
        (None, None) => Taken::Handle(FairLocks::global().get(name)),
    }
}
