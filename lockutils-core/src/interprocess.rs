//! Lock files on their own: oslo's `external_lock(...)` ([`InterProcessLock`]) and fasteners'
//! reader/writer lock across processes ([`InterProcessReaderWriterLock`]). Each is a lock
//! file behind an in-process gate of its own; neither takes the named in-process lock that
//! `lock(name).external(true)` takes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::Error;
use crate::file::{DEFAULT_DELAY, HeldFile, LockFile, Mode};
use crate::file_wait::{FileSlot, lock_async};
use crate::queue::{Acquire, MAX_PERMITS, Permits, RawSemaphore, Wait};
use crate::raw::{GuardSend, RawLock};

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
        let mut slot = self.slot.lock();
        let held = LockFile::acquire(
            &mut slot.kept,
            &mut None,
            &self.name,
            &self.path,
            mode,
            wait.remaining(deadline),
            DEFAULT_DELAY,
        )
        .map_err(|e| e.with_waited(wait))?;
        slot.held = Some(held);
        Ok(())
    }

    /// [`acquire`](Self::acquire) for an async task: neither the gate nor the file blocks
    /// the thread (see `file_wait`). Cancel-safe.
    async fn acquire_async(&self, permits: usize, mode: Mode, wait: Wait) -> Result<(), Error> {
        let deadline = wait.deadline();
        if !self.gate.acquire_async(permits, wait, deadline).await {
            return Err(Error::acquire_failed(&self.name, wait.waited()));
        }
        // Gives the gate back if this future is dropped while the file is awaited.
        let gate = Permits::taken(&self.gate, permits);
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
        gate.keep();
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
        let result = self.slot.lock().release(&self.name);
        self.gate.release(permits);
        result
    }
}

impl InterProcessLock {
    /// A lock on the file at `path`, named `name` in errors.
    pub(crate) fn with_name(name: &str, path: PathBuf) -> Self {
        let mut lock = Self::new(path);
        lock.inner.name = name.to_owned();
        lock
    }

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
        if !self.lock_with(wait)? {
            return Err(Error::acquire_failed(&self.inner.name, wait.waited()));
        }
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

// SAFETY: the gate (one permit) excludes this process's other users, and the file's OS lock
// every other process; a hold is released by giving both back, from any thread (the file
// lock belongs to the open file description, not to a thread).
unsafe impl RawLock for InterProcessLock {
    type GuardMarker = GuardSend;

    fn lock(&self) -> Result<(), Error> {
        self.inner.acquire(1, Mode::Exclusive, Wait::Forever)
    }

    fn try_lock(&self) -> Result<bool, Error> {
        busy_is_false(self.inner.acquire(1, Mode::Exclusive, Wait::Never))
    }

    fn try_lock_until(&self, deadline: Instant) -> Result<bool, Error> {
        let wait = Wait::For(deadline.saturating_duration_since(Instant::now()));
        busy_is_false(self.inner.acquire(1, Mode::Exclusive, wait))
    }

    unsafe fn unlock(&self) {
        if let Err(e) = self.inner.release(1) {
            // Released all the same (the descriptor is closed); only the report is lost.
            tracing::warn!(target: crate::error::LOG_TARGET, "{e}");
        }
    }
}

/// An acquire's result as a raw lock reports it: busy is `Ok(false)`.
fn busy_is_false(result: Result<(), Error>) -> Result<bool, Error> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.is_acquire_failed() => Ok(false),
        Err(e) => Err(e),
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
#[clippy::has_significant_drop]
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
            // SAFETY: the guard stands for the hold its acquire took, released only here or
            // in `release`, which marks it released.
            unsafe { self.lock.unlock() }
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
        let gate = Permits::taken(&self.inner.gate, 1);
        if !self.join_readers() {
            Acquire::new(&self.first, 1).await;
            let _first = Permits::taken(&self.first, 1);
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
        gate.keep();
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
        let gate = Permits::taken(&self.inner.gate, 1);
        if !self.join_readers() {
            // The first reader takes the file's read lock for all of them; others wait for it
            // within what `wait` allows.
            if !self.first.acquire_with(1, wait.remaining(deadline)) {
                return Err(Error::acquire_failed(&self.inner.name, wait.waited()));
            }
            let _first = Permits::taken(&self.first, 1);
            if !self.join_readers() {
                self.inner.lock_file(Mode::Shared, wait, deadline)?;
                *self.readers.lock() += 1;
            }
        }
        gate.keep();
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
#[clippy::has_significant_drop]
pub struct InterProcessReadGuard<'a> {
    lock: &'a InterProcessReaderWriterLock,
}

impl Drop for InterProcessReadGuard<'_> {
    fn drop(&mut self) {
        let inner = &self.lock.inner;
        let mut readers = self.lock.readers.lock();
        *readers -= 1;
        if *readers == 0 {
            let _ = inner.slot.lock().release(&inner.name);
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
            .held
            .as_ref()
            .map(HeldFile::raw_fd);
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
#[clippy::has_significant_drop]
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
