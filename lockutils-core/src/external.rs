//! External (inter-process) locks: lock files in a lock directory, compatible with oslo's.
//!
//! `lock(name).external(true)` takes the in-process lock of `name` first, then the external
//! lock through an [`ExternalBackend`]; the guard releases them in reverse order. The file
//! backend ([`FileBackend`]) is the one used today; a distributed backend plugs in through
//! the same trait, selected as the [`backend`](crate::backend) module describes.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::lock_file_path;
use crate::error::Error;
use crate::file::{LockFile, Mode};
use crate::file_wait::{FileSlot, lock_async};
use crate::lock::{LOG_TARGET, LockBuilder, lock};
use crate::queue::{Acquire, AcquireUntil, MAX_PERMITS, RawSemaphore, Wait};

pub use crate::file::{DEFAULT_DELAY, MAX_KEPT_DESCRIPTORS};

/// Which external lock to take: what a backend needs to find it.
#[derive(Debug, Clone, Copy)]
pub struct ExternalTarget<'a> {
    /// The lock's name, as given to [`lock`](crate::lock()).
    pub name: &'a str,
    /// The lock file prefix, if any.
    pub prefix: Option<&'a str>,
    /// The lock directory given with the lock, if any.
    pub lock_path: Option<&'a Path>,
    /// For polling backends, the longest pause between two tries of a timed wait.
    pub delay: Duration,
}

/// State a backend keeps for one lock name while the name's in-process lock exists (an
/// open file, a connection...). Only touched while the in-process lock is held.
#[derive(Default)]
pub struct ExternalCache {
    state: Option<Box<dyn Any + Send + Sync>>,
    /// How many guards of this name's (reentrant) in-process lock hold the external lock.
    /// Only the first takes it from the backend and only the last releases it: a nested
    /// `lock(n).fair(true).external(true)` does not drop the outer one's file lock (oslo does).
    pub(crate) depth: usize,
    /// The backend holding the external lock while `depth > 0`.
    pub(crate) holder: Option<&'static dyn ExternalBackend>,
}

impl ExternalCache {
    /// The backend's state of type `T`, created with `init` if missing or of another type.
    pub fn get_or_insert_with<T: Any + Send + Sync>(&mut self, init: impl FnOnce() -> T) -> &mut T {
        if !self.state.as_ref().is_some_and(|s| s.is::<T>()) {
            self.state = Some(Box::new(init()));
        }
        self.state
            .as_mut()
            .and_then(|s| s.downcast_mut::<T>())
            .expect("state of type T was just ensured")
    }

    /// Counts one more guard level holding the external lock through `backend`.
    pub(crate) fn enter(&mut self, backend: &'static dyn ExternalBackend) {
        self.depth += 1;
        self.holder = Some(backend);
    }

    /// Drops whatever state is kept.
    pub fn clear(&mut self) {
        self.state = None;
    }
}

impl fmt::Debug for ExternalCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalCache")
            .field("filled", &self.state.is_some())
            .finish()
    }
}

/// How lockutils holds a lock outside the process. [`lock`](crate::lock()) calls it with the
/// in-process lock of the name held, so a backend never sees two concurrent calls for one
/// name from one process (fair and non-fair locks of a name are distinct, as in oslo).
pub trait ExternalBackend: Send + Sync {
    /// Takes the external lock of `target` as `wait` allows. Busy and not allowed to wait
    /// (long enough) is [`Error::AcquireLockFailed`].
    fn acquire(
        &self,
        target: &ExternalTarget<'_>,
        cache: &mut ExternalCache,
        wait: Wait,
    ) -> Result<(), Error>;

    /// Releases what [`acquire`](Self::acquire) took for the lock `name`; on an error the
    /// lock must be released all the same (by closing what holds it).
    fn release(&self, name: &str, cache: &mut ExternalCache) -> Result<(), Error>;

    /// Whether what `cache` holds (after an `acquire` not yet released) is the external lock
    /// of `target`. A reentrant in-process holder asking again with another prefix or lock
    /// path asks for a different lock, which it must not be told it holds.
    fn holds(&self, target: &ExternalTarget<'_>, cache: &mut ExternalCache) -> Result<bool, Error>;

    /// [`acquire`](Self::acquire) for an async task, without blocking the thread: what
    /// [`LockBuilder::acquire_async`] with `external(true)` awaits. `cache` may be locked only
    /// between awaits (never across one); `deadline` is when a `Wait::For` wait ends. Dropping
    /// the future before it completes must leave nothing held (or have it let go as soon as
    /// it is got).
    ///
    /// The default fails with [`Error::Backend`]: a backend that cannot be awaited says so
    /// rather than blocking an executor thread.
    fn acquire_async<'a>(
        &'a self,
        target: ExternalTarget<'a>,
        cache: &'a Mutex<ExternalCache>,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> AcquireFuture<'a> {
        let _ = (cache, wait, deadline);
        let error = Error::backend(
            target.name,
            self.describe(),
            "this external-lock backend cannot be awaited: use acquire() on a blocking thread, \
             or enable the backend's async support",
        );
        Box::pin(std::future::ready(Err(error)))
    }

    /// What this backend locks, for messages: e.g. its server's URL without the password.
    /// Must hold no secret.
    fn describe(&self) -> String {
        "external-lock backend".to_owned()
    }

    /// Whether the external lock that `cache` holds (after an `acquire` not yet released) is
    /// still held: a lock that lives in a server session is lost with the session. An error
    /// says why it is not known (and the lock must then be taken as lost). The default, for
    /// locks that cannot be lost while the process lives, is `Ok(true)`.
    fn is_held(&self, name: &str, cache: &mut ExternalCache) -> Result<bool, Error> {
        let _ = (name, cache);
        Ok(true)
    }

    /// A fencing token of the acquisition that `cache` holds: a number that grows strictly
    /// from one acquisition of any lock of the backend to the next, for storage that refuses
    /// writes with a token older than the last one it saw. `None` if the backend has none.
    fn fencing_token(&self, cache: &mut ExternalCache) -> Option<i64> {
        let _ = cache;
        None
    }
}

/// The future of [`ExternalBackend::acquire_async`].
pub type AcquireFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// External locks as lock files (see the `file` module docs for the primitive): the backend
/// of `lock(name).external(true)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileBackend;

impl ExternalBackend for FileBackend {
    fn acquire(
        &self,
        target: &ExternalTarget<'_>,
        cache: &mut ExternalCache,
        wait: Wait,
    ) -> Result<(), Error> {
        let state = cache.get_or_insert_with(FileState::new);
        state.update(target)?;
        LockFile::acquire(
            &mut state.slot.file,
            &mut None,
            target.name,
            &state.slot.path,
            Mode::Exclusive,
            wait,
            target.delay,
        )
    }

    fn release(&self, name: &str, cache: &mut ExternalCache) -> Result<(), Error> {
        let state = cache.get_or_insert_with(FileState::new);
        let result = unlock_slot(&mut state.slot.file, name);
        // Descriptors are kept for speed, but not without bound: names used once each must
        // not exhaust the process's descriptor limit before the registry sweeps them.
        if LockFile::open_count() > crate::file::kept_descriptor_limit() {
            state.slot.file = None;
        }
        result
    }

    fn holds(&self, target: &ExternalTarget<'_>, cache: &mut ExternalCache) -> Result<bool, Error> {
        let state = cache.get_or_insert_with(FileState::new);
        let path = lock_file_path(target.name, target.prefix, target.lock_path)?;
        Ok(state.slot.file.as_ref().is_some_and(|f| f.path() == path))
    }

    fn acquire_async<'a>(
        &'a self,
        target: ExternalTarget<'a>,
        cache: &'a Mutex<ExternalCache>,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> AcquireFuture<'a> {
        Box::pin(async move { acquire_async(cache, &target, wait, deadline).await })
    }

    fn describe(&self) -> String {
        "lock files".to_owned()
    }
}

/// Takes the lock file of `target` for an async task, without blocking the thread (see
/// `file_wait`). On success `cache` holds the locked file.
async fn acquire_async(
    cache: &Mutex<ExternalCache>,
    target: &ExternalTarget<'_>,
    wait: Wait,
    deadline: Option<Instant>,
) -> Result<(), Error> {
    cache
        .lock()
        .get_or_insert_with(FileState::new)
        .update(target)?;
    fn slot_of(cache: &mut ExternalCache) -> &mut FileSlot {
        &mut cache.get_or_insert_with(FileState::new).slot
    }
    lock_async(
        cache,
        slot_of,
        target.name,
        Mode::Exclusive,
        wait,
        deadline,
        target.delay,
    )
    .await
}


/// The descriptor of the lock file that `cache` holds, if it holds one.
#[cfg(unix)]
pub(crate) fn held_file_descriptor(cache: &mut ExternalCache) -> Option<std::os::fd::RawFd> {
    if cache.depth == 0 {
        return None;
    }
    cache
        .state
        .as_ref()
        .and_then(|s| s.downcast_ref::<FileState>())
        .and_then(|state| state.slot.file.as_ref())
        .map(LockFile::raw_fd)
}

/// Closes the lock file descriptors kept by names nobody holds (in the process-wide
/// registries); returns how many were closed. Entries busy right now are skipped, never
/// waited for. The file layer calls it (through [`crate::file::set_idle_closer`]) when an
/// open runs out of descriptors.
fn close_idle_descriptors() -> usize {
    let mut closed = 0;
    let mut close = |cache: &Mutex<ExternalCache>| {
        let Some(mut cache) = cache.try_lock() else {
            return;
        };
        if cache.depth > 0 {
            return;
        }
        if let Some(state) = cache
            .state
            .as_mut()
            .and_then(|s| s.downcast_mut::<FileState>())
            && state.slot.file.take().is_some()
        {
            closed += 1;
        }
    };
    crate::semaphore::Semaphores::global()
        .registry()
        .for_each_extra(&mut close);
    crate::fair::FairLocks::global()
        .registry()
        .for_each_extra(&mut close);
    closed
}

/// What [`FileBackend`] keeps per name: the lock file's path, what it was worked out from, and
/// the open file.
#[derive(Default)]
struct FileState {
    prefix: Option<Box<str>>,
    lock_path: Option<PathBuf>,
    config_version: u64,
    /// The file, its path, and the helper thread of an async wait (see `file_wait`).
    slot: FileSlot,
}

impl FileState {
    /// A new state; the first one lets the file layer close idle kept descriptors.
    fn new() -> Self {
        crate::file::set_idle_closer(close_idle_descriptors);
        Self::default()
    }

    /// Works the path out again unless it was worked out from the same inputs: comparing
    /// them is cheaper than building a path, and happens inside the contended section.
    fn update(&mut self, target: &ExternalTarget<'_>) -> Result<(), Error> {
        let prefix = target.prefix.filter(|p| !p.is_empty());
        let lock_path = target.lock_path.filter(|p| !p.as_os_str().is_empty());
        let version = crate::config::version();
        let same = !self.slot.path.as_os_str().is_empty()
            && self.prefix.as_deref() == prefix
            && self.lock_path.as_deref().map(Path::as_os_str) == lock_path.map(Path::as_os_str)
            && (lock_path.is_some() || self.config_version == version);
        if !same {
            self.slot.path = lock_file_path(target.name, prefix, lock_path)?;
            self.prefix = prefix.map(Box::from);
            self.lock_path = lock_path.map(Path::to_owned);
            self.config_version = version;
        }
        Ok(())
    }
}

fn unlock_slot(slot: &mut Option<LockFile>, name: &str) -> Result<(), Error> {
    let Some(file) = slot else { return Ok(()) };
    match file.unlock() {
        Ok(()) => Ok(()),
        Err(e) => {
            let path = file.path().to_owned();
            // If unlocking failed, closing the descriptor releases the lock for sure.
            *slot = None;
            Err(Error::io(name, path, "unlock", e))
        }
    }
}

/// A lock file of its own: oslo's `external_lock(...)`, fasteners' `InterProcessLock`.
///
/// It excludes other processes through the file, and other threads through an in-process
/// lock of its own (so one `InterProcessLock` can be shared by threads). It does not take
/// the named in-process lock that [`lock`](crate::lock())`.external(true)` takes.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let lock = lockutils::external_lock("job", Some("nova"), Some(dir.path()))?;
/// assert_eq!(lock.path(), dir.path().join("nova-job"));
/// let guard = lock.acquire()?;
/// assert!(lock.try_acquire().is_err()); // held
/// guard.release()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct InterProcessLock {
    inner: GatedFile,
}

/// A lock file and the in-process gate (a fair semaphore) that this process's users of it
/// pass first: file locks do not exclude users of one descriptor from each other.
struct GatedFile {
    /// Named in errors: the lock name, or the path for a lock made from a path.
    name: String,
    path: PathBuf,
    gate: RawSemaphore,
    /// The open file (`slot.path` is `path`).
    slot: Mutex<FileSlot>,
}

impl GatedFile {
    fn new(path: PathBuf, permits: usize) -> Self {
        Self {
            name: path.display().to_string(),
            slot: Mutex::new(FileSlot {
                path: path.clone(),
                ..FileSlot::default()
            }),
            path,
            gate: RawSemaphore::new(permits),
        }
    }

    /// Takes `permits` of the gate; returns the deadline of `wait` for what follows.
    fn enter(&self, permits: usize, wait: Wait) -> Result<Option<Instant>, Error> {
        let deadline = wait.deadline();
        if self.gate.acquire_with(permits, wait) {
            Ok(deadline)
        } else {
            Err(Error::acquire_failed(&self.name, wait.waited()))
        }
    }

    /// Locks the file in `mode` with what is left of `wait`.
    fn lock_file(&self, mode: Mode, wait: Wait, deadline: Option<Instant>) -> Result<(), Error> {
        LockFile::acquire(
            &mut self.slot.lock().file,
            &mut None,
            &self.name,
            &self.path,
            mode,
            wait.remaining(deadline),
            DEFAULT_DELAY,
        )
        .map_err(|e| e.with_waited(wait))
    }

    /// [`acquire`](Self::acquire) for an async task: neither the gate nor the file blocks
    /// the thread (see `file_wait`). Cancel-safe.
    async fn acquire_async(&self, permits: usize, mode: Mode, wait: Wait) -> Result<(), Error> {
        let deadline = wait.deadline();
        let entered = match (wait, deadline) {
            (Wait::Never, _) => self.gate.try_acquire(permits),
            (Wait::For(_), Some(deadline)) => {
                AcquireUntil::new(&self.gate, permits, deadline).await
            }
            (Wait::For(_), None) | (Wait::Forever, _) => {
                Acquire::new(&self.gate, permits).await;
                true
            }
        };
        if !entered {
            return Err(Error::acquire_failed(&self.name, wait.waited()));
        }
        // Gives the gate back if this future is dropped while the file is awaited.
        let gate = Permits {
            gate: &self.gate,
            permits,
        };
        fn slot(slot: &mut FileSlot) -> &mut FileSlot {
            slot
        }
        let file_wait = wait.remaining(deadline);
        lock_async(
            &self.slot,
            slot,
            &self.name,
            mode,
            file_wait,
            deadline,
            DEFAULT_DELAY,
        )
        .await
        .map_err(|e| e.with_waited(wait))?;
        std::mem::forget(gate);
        Ok(())
    }

    /// The gate's `permits`, then the file in `mode`; nothing held on failure.
    fn acquire(&self, permits: usize, mode: Mode, wait: Wait) -> Result<(), Error> {
        let deadline = self.enter(permits, wait)?;
        self.lock_file(mode, wait, deadline)
            .inspect_err(|_| self.gate.release(permits))
    }

    /// Unlocks the file, then gives back the gate's `permits`.
    fn release(&self, permits: usize) -> Result<(), Error> {
        let result = unlock_slot(&mut self.slot.lock().file, &self.name);
        self.gate.release(permits);
        result
    }
}

/// Permits of an in-process semaphore held while something else is awaited: given back when
/// dropped (an error, a cancelled future), kept by forgetting this on success.
struct Permits<'a> {
    gate: &'a RawSemaphore,
    permits: usize,
}

impl Drop for Permits<'_> {
    fn drop(&mut self) {
        self.gate.release(self.permits);
    }
}

impl InterProcessLock {
    /// A lock on the file at `path` (created on first acquire). `path` is used as given.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            inner: GatedFile::new(path.into(), 1),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Waits as long as it takes: the kernel wakes the waiter when the holder releases.
    pub fn acquire(&self) -> Result<InterProcessGuard<'_>, Error> {
        self.acquire_with(Wait::Forever)
    }

    /// One try; [`Error::AcquireLockFailed`] if another thread or process holds it.
    pub fn try_acquire(&self) -> Result<InterProcessGuard<'_>, Error> {
        self.acquire_with(Wait::Never)
    }

    /// Waits at most `timeout` (trying with growing pauses of up to [`DEFAULT_DELAY`]).
    pub fn try_acquire_for(&self, timeout: Duration) -> Result<InterProcessGuard<'_>, Error> {
        self.acquire_with(Wait::For(timeout))
    }

    fn acquire_with(&self, wait: Wait) -> Result<InterProcessGuard<'_>, Error> {
        self.inner.acquire(1, Mode::Exclusive, wait)?;
        Ok(InterProcessGuard {
            lock: self,
            released: false,
        })
    }

    /// [`acquire`](Self::acquire) for async code: waits without blocking the thread (a
    /// helper thread waits for the file in the kernel). Cancel-safe; the guard is `Send`.
    pub async fn acquire_async(&self) -> Result<InterProcessGuard<'_>, Error> {
        self.acquire_async_with(Wait::Forever).await
    }

    /// [`try_acquire_for`](Self::try_acquire_for) for async code.
    pub async fn try_acquire_for_async(
        &self,
        timeout: Duration,
    ) -> Result<InterProcessGuard<'_>, Error> {
        self.acquire_async_with(Wait::For(timeout)).await
    }

    async fn acquire_async_with(&self, wait: Wait) -> Result<InterProcessGuard<'_>, Error> {
        self.inner.acquire_async(1, Mode::Exclusive, wait).await?;
        Ok(InterProcessGuard {
            lock: self,
            released: false,
        })
    }
}

impl fmt::Debug for InterProcessLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterProcessLock")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// A held [`InterProcessLock`]; released when dropped, or explicitly with
/// [`release`](Self::release) to see errors.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct InterProcessGuard<'a> {
    lock: &'a InterProcessLock,
    released: bool,
}

impl InterProcessGuard<'_> {
    /// Releases the lock, reporting an error the operating system gave (the lock is released
    /// either way).
    pub fn release(mut self) -> Result<(), Error> {
        self.released = true;
        self.lock.inner.release(1)
    }
}

impl Drop for InterProcessGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.lock.inner.release(1);
        }
    }
}

impl fmt::Debug for InterProcessGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterProcessGuard")
            .field("path", &self.lock.inner.path)
            .finish()
    }
}

/// A reader/writer lock across processes: shared (read) and exclusive (write) locks on one
/// lock file, compatible with fasteners' `InterProcessReaderWriterLock`.
///
/// Within the process, readers share and a writer excludes everyone, with the same FIFO
/// queue and writer preference as [`ReaderWriterLock`](crate::ReaderWriterLock) (but not
/// reentrant); across processes, the file's read and write locks do the same.
pub struct InterProcessReaderWriterLock {
    /// Readers take one permit of the gate, a writer all of them.
    inner: GatedFile,
    /// In-process readers holding the file's read lock.
    readers: Mutex<usize>,
    /// Held by the one reader that takes the file's read lock for this process (the first
    /// one); the others wait for it here, without holding `readers` meanwhile.
    first: RawSemaphore,
}

impl InterProcessReaderWriterLock {
    /// A reader/writer lock on the file at `path` (created on first acquire).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            inner: GatedFile::new(path.into(), MAX_PERMITS),
            readers: Mutex::new(0),
            first: RawSemaphore::new(1),
        }
    }

    /// Joins the readers if the file's read lock is already held for this process.
    fn join_readers(&self) -> bool {
        let mut readers = self.readers.lock();
        let joined = *readers > 0;
        if joined {
            *readers += 1;
        }
        joined
    }

    /// Takes the shared side for an async task, without blocking the thread (a helper thread
    /// waits for the file in the kernel). Cancel-safe; the guard is `Send`.
    pub async fn read_async(&self) -> Result<InterProcessReadGuard<'_>, Error> {
        Acquire::new(&self.inner.gate, 1).await;
        let gate = Permits {
            gate: &self.inner.gate,
            permits: 1,
        };
        if !self.join_readers() {
            Acquire::new(&self.first, 1).await;
            let _first = Permits {
                gate: &self.first,
                permits: 1,
            };
            if !self.join_readers() {
                fn slot(slot: &mut FileSlot) -> &mut FileSlot {
                    slot
                }
                let inner = &self.inner;
                lock_async(
                    &inner.slot,
                    slot,
                    &inner.name,
                    Mode::Shared,
                    Wait::Forever,
                    None,
                    DEFAULT_DELAY,
                )
                .await?;
                *self.readers.lock() += 1;
            }
        }
        std::mem::forget(gate);
        Ok(InterProcessReadGuard { lock: self })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Takes the shared side, waiting as long as it takes.
    pub fn read(&self) -> Result<InterProcessReadGuard<'_>, Error> {
        self.read_with(Wait::Forever)
    }

    /// Takes the shared side if that needs no waiting.
    pub fn try_read(&self) -> Result<InterProcessReadGuard<'_>, Error> {
        self.read_with(Wait::Never)
    }

    /// Takes the shared side, waiting at most `timeout`.
    pub fn try_read_for(&self, timeout: Duration) -> Result<InterProcessReadGuard<'_>, Error> {
        self.read_with(Wait::For(timeout))
    }

    /// Takes the exclusive side, waiting as long as it takes.
    pub fn write(&self) -> Result<InterProcessWriteGuard<'_>, Error> {
        self.write_with(Wait::Forever)
    }

    /// Takes the exclusive side if that needs no waiting.
    pub fn try_write(&self) -> Result<InterProcessWriteGuard<'_>, Error> {
        self.write_with(Wait::Never)
    }

    /// Takes the exclusive side, waiting at most `timeout`.
    pub fn try_write_for(&self, timeout: Duration) -> Result<InterProcessWriteGuard<'_>, Error> {
        self.write_with(Wait::For(timeout))
    }

    fn read_with(&self, wait: Wait) -> Result<InterProcessReadGuard<'_>, Error> {
        let deadline = self.inner.enter(1, wait)?;
        let gate = Permits {
            gate: &self.inner.gate,
            permits: 1,
        };
        if !self.join_readers() {
            // The first reader takes the file's read lock for all of them; others wait for it
            // within what `wait` allows.
            if !self.first.acquire_with(1, wait.remaining(deadline)) {
                return Err(Error::acquire_failed(&self.inner.name, wait.waited()));
            }
            let _first = Permits {
                gate: &self.first,
                permits: 1,
            };
            if !self.join_readers() {
                self.inner.lock_file(Mode::Shared, wait, deadline)?;
                *self.readers.lock() += 1;
            }
        }
        std::mem::forget(gate);
        Ok(InterProcessReadGuard { lock: self })
    }

    fn write_with(&self, wait: Wait) -> Result<InterProcessWriteGuard<'_>, Error> {
        self.inner.acquire(MAX_PERMITS, Mode::Exclusive, wait)?;
        Ok(InterProcessWriteGuard { lock: self })
    }

    /// [`write`](Self::write) for async code, without blocking the thread. Cancel-safe.
    pub async fn write_async(&self) -> Result<InterProcessWriteGuard<'_>, Error> {
        self.inner
            .acquire_async(MAX_PERMITS, Mode::Exclusive, Wait::Forever)
            .await?;
        Ok(InterProcessWriteGuard { lock: self })
    }
}

impl fmt::Debug for InterProcessReaderWriterLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterProcessReaderWriterLock")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// The shared side of an [`InterProcessReaderWriterLock`], released when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct InterProcessReadGuard<'a> {
    lock: &'a InterProcessReaderWriterLock,
}

impl Drop for InterProcessReadGuard<'_> {
    fn drop(&mut self) {
        let inner = &self.lock.inner;
        let mut readers = self.lock.readers.lock();
        *readers -= 1;
        if *readers == 0 {
            let _ = unlock_slot(&mut inner.slot.lock().file, &inner.name);
        }
        drop(readers);
        inner.gate.release(1);
    }
}

impl InterProcessReadGuard<'_> {
    /// Lets the process that `command` starts inherit this read lock, so that it stays held
    /// while that process runs even if this one dies first: see
    /// [`LockGuard::share_with_child`](crate::LockGuard::share_with_child).
    #[cfg(unix)]
    pub fn share_with_child(&self, command: &mut std::process::Command) -> bool {
        let fd = self
            .lock
            .inner
            .slot
            .lock()
            .file
            .as_ref()
            .map(LockFile::raw_fd);
        match fd {
            Some(fd) => {
                crate::file::inherit_descriptor(command, fd);
                true
            }
            None => false,
        }
    }
}

impl fmt::Debug for InterProcessReadGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterProcessReadGuard")
            .field("path", &self.lock.inner.path)
            .finish()
    }
}

/// The exclusive side of an [`InterProcessReaderWriterLock`], released when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct InterProcessWriteGuard<'a> {
    lock: &'a InterProcessReaderWriterLock,
}

impl Drop for InterProcessWriteGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.inner.release(MAX_PERMITS);
    }
}

impl fmt::Debug for InterProcessWriteGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterProcessWriteGuard")
            .field("path", &self.lock.inner.path)
            .finish()
    }
}

/// oslo's `external_lock(name, lock_file_prefix, lock_path)`: the [`InterProcessLock`] on the
/// lock file of `name` (see [`lock_file_path`] for the file's name).
pub fn external_lock(
    name: &str,
    prefix: Option<&str>,
    lock_path: Option<&Path>,
) -> Result<InterProcessLock, Error> {
    let mut lock = InterProcessLock::new(lock_file_path(name, prefix, lock_path)?);
    lock.inner.name = name.to_owned();
    Ok(lock)
}

/// Removes the lock file of `name`, safely: oslo's `remove_external_lock_file`.
///
/// Takes the lock (in-process, then the file), unlinks the file while holding it, then
/// releases. A process that was waiting on the old file notices, when it gets it, that the
/// path no longer names it, and moves to the new file: two holders never coexist (oslo
/// deletes without the file lock, which lets them). A missing file is fine. Any other failure
/// is returned, and logged as oslo's WARNING `Failed to remove file PATH`.
pub fn remove_external_lock_file(
    name: &str,
    prefix: Option<&str>,
    lock_path: Option<&Path>,
) -> Result<(), Error> {
    let path = lock_file_path(name, prefix, lock_path)?;
    if std::fs::symlink_metadata(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Ok(());
    }
    let result = with_prefix(lock(name), prefix, lock_path)
        .external(true)
        .do_log(false)
        .acquire()
        .and_then(|guard| {
            let removed = guard.with_external_cache(|cache| {
                match cache
                    .state
                    .as_ref()
                    .and_then(|s| s.downcast_ref::<FileState>())
                    .and_then(|state| state.slot.file.as_ref())
                {
                    Some(file) => file.remove(name),
                    // No lock file is held (process locking disabled, or another backend):
                    // remove what the path names, with the same checks.
                    None => crate::file::remove_unheld(name, &path),
                }
            });
            drop(guard);
            removed
        });
    if result.is_err() {
        tracing::warn!(target: LOG_TARGET, lock = name, "Failed to remove file {}", path.display());
    }
    result
}

fn with_prefix<'a>(
    builder: LockBuilder<'a>,
    prefix: Option<&'a str>,
    lock_path: Option<&'a Path>,
) -> LockBuilder<'a> {
    let builder = match prefix {
        Some(prefix) => builder.prefix(prefix),
        None => builder,
    };
    match lock_path {
        Some(path) => builder.lock_path(path),
        None => builder,
    }
}

/// Locks and lock-file removal bound to one lock file prefix: what oslo projects make with
/// `lock_with_prefix('nova')` and `remove_external_lock_file_with_prefix('nova')`.
///
/// ```
/// // once, in the project:
/// static NOVA: std::sync::LazyLock<lockutils::Prefix> =
///     std::sync::LazyLock::new(|| lockutils::lock_with_prefix("nova"));
///
/// // anywhere:
/// let dir = tempfile::tempdir()?;
/// let guard = NOVA.lock("instance-1").external(true).lock_path(dir.path()).acquire()?;
/// assert!(dir.path().join("nova-instance-1").exists());
/// drop(guard);
/// NOVA.remove_external_lock_file("instance-1", Some(dir.path()))?;
/// assert!(!dir.path().join("nova-instance-1").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    prefix: String,
}

impl Prefix {
    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// [`lock`](crate::lock())`(name)` with this prefix.
    pub fn lock<'a>(&'a self, name: &'a str) -> LockBuilder<'a> {
        lock(name).prefix(&self.prefix)
    }

    /// [`remove_external_lock_file`] with this prefix.
    pub fn remove_external_lock_file(
        &self,
        name: &str,
        lock_path: Option<&Path>,
    ) -> Result<(), Error> {
        remove_external_lock_file(name, Some(&self.prefix), lock_path)
    }
}

/// oslo's `lock_with_prefix(prefix)`: locks bound to a lock file prefix.
pub fn lock_with_prefix(prefix: impl Into<String>) -> Prefix {
    Prefix {
        prefix: prefix.into(),
    }
}

/// oslo's `remove_external_lock_file_with_prefix(prefix)`: lock file removal bound to a
/// prefix. The same value as [`lock_with_prefix`] gives.
pub fn remove_external_lock_file_with_prefix(prefix: impl Into<String>) -> Prefix {
    lock_with_prefix(prefix)
}
