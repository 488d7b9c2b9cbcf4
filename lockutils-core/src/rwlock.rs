//! The reader/writer lock, with fasteners' (and so oslo's) semantics.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::Error;
use crate::queue::{Acquire, MAX_PERMITS, RawSemaphore, Wait};
use crate::sync::thread_id;

/// A reader/writer lock with per-thread reentrancy and writer preference.
///
/// Built on the same fair queue as [`Semaphore`](crate::Semaphore): a reader takes one of
/// [`Semaphore::MAX_PERMITS`](crate::Semaphore::MAX_PERMITS) permits, a writer takes all of them.
///
/// # Rules (those of fasteners' `ReaderWriterLock`, which oslo uses)
/// - Reads are reentrant per thread, and so are writes.
/// - The writer may also take the read side; a reader asking for the write side gets
///   [`Error::UpgradeNotAllowed`] instead of a deadlock.
/// - Writer preference: a new reader waits while a writer holds the lock *or waits for it*.
///   A thread that already reads may read again even then (else it would deadlock).
/// - Waiting threads, readers and writers alike, are served in FIFO order.
/// - Releasing a side the calling thread does not hold is [`Error::NotHeld`].
///
/// # Threads
/// Holding is per thread, so the guards are neither `Send` nor `Sync`: a lock is released by the
/// thread that took it.
///
/// ```
/// use lockutils::ReaderWriterLock;
///
/// let rw = ReaderWriterLock::new();
/// {
///     let _w = rw.write()?;
///     let _r = rw.read(); // the writer may read
///     assert!(rw.is_writer() && rw.is_reader());
/// }
/// let _r = rw.read();
/// assert!(rw.write().is_err()); // no upgrade
/// # Ok::<(), lockutils::Error>(())
/// ```
pub struct ReaderWriterLock {
    name: Arc<str>,
    raw: RawSemaphore,
    /// The writer's thread id, 0 when none. Only the writer stores its own id, so a thread that
    /// reads its own id here is the writer.
    writer: AtomicU64,
    /// Reentrant write depth; touched only by the writer thread.
    writes: AtomicUsize,
    /// Threads holding the read side, with their depth.
    readers: Mutex<Vec<(u64, usize)>>,
    /// `readers.len()`, readable without the mutex.
    reader_threads: AtomicUsize,
}

/// Who holds a [`ReaderWriterLock`] as a whole: fasteners' `owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A writer holds it.
    Writer,
    /// One or more readers hold it, and no writer.
    Readers,
}

impl ReaderWriterLock {
    /// Whether the lock is free and unwaited, as made (what a registry asks before dropping
    /// a name).
    pub(crate) fn is_untouched(&self) -> bool {
        self.raw.is_untouched(MAX_PERMITS)
    }

    /// A new, unnamed lock.
    pub fn new() -> Self {
        Self::with_name("")
    }

    /// A new lock whose errors carry `name`.
    pub fn with_name(name: &str) -> Self {
        Self::from_arc(Arc::from(name))
    }

    pub(crate) fn from_arc(name: Arc<str>) -> Self {
        Self {
            name,
            raw: RawSemaphore::new(MAX_PERMITS),
            writer: AtomicU64::new(0),
            writes: AtomicUsize::new(0),
            readers: Mutex::new(Vec::new()),
            reader_threads: AtomicUsize::new(0),
        }
    }

    /// The lock's name (empty for an unnamed lock).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes the read side, waiting as long as it takes. Returns a guard that releases it.
    pub fn read(&self) -> ReadGuard<'_> {
        self.acquire_read();
        ReadGuard::new(self)
    }

    /// Takes the read side if that needs no waiting (no writer holds or waits).
    pub fn try_read(&self) -> Result<ReadGuard<'_>, Error> {
        self.read_with(Wait::Never).map(|()| ReadGuard::new(self))
    }

    /// Takes the read side, waiting at most `timeout`.
    pub fn try_read_for(&self, timeout: Duration) -> Result<ReadGuard<'_>, Error> {
        self.read_with(Wait::For(timeout))
            .map(|()| ReadGuard::new(self))
    }

    /// Takes the write side, waiting as long as it takes.
    ///
    /// Fails only with [`Error::UpgradeNotAllowed`] when this thread reads and does not write.
    pub fn write(&self) -> Result<WriteGuard<'_>, Error> {
        self.acquire_write().map(|()| WriteGuard::new(self))
    }

    /// Takes the write side if that needs no waiting (free, and nobody queued).
    pub fn try_write(&self) -> Result<WriteGuard<'_>, Error> {
        self.write_with(Wait::Never).map(|()| WriteGuard::new(self))
    }

    /// Takes the write side, waiting at most `timeout`.
    pub fn try_write_for(&self, timeout: Duration) -> Result<WriteGuard<'_>, Error> {
        self.write_with(Wait::For(timeout))
            .map(|()| WriteGuard::new(self))
    }

    /// Takes the read side for an async task, waiting without blocking the thread, in the same
    /// FIFO queue as threads (so behind a waiting writer).
    ///
    /// Task holders are not tracked per thread: this is not reentrant (a task holding the write
    /// side that asks again waits for itself), and [`is_reader`](Self::is_reader) and
    /// [`owner`](Self::owner) do not see it. Cancel-safe; the future and the guard are `Send`.
    pub async fn read_async(&self) -> AsyncReadGuard<'_> {
        Acquire::new(&self.raw, 1).await;
        AsyncReadGuard { lock: self }
    }

    /// Takes the write side for an async task; see [`read_async`](Self::read_async).
    pub async fn write_async(&self) -> AsyncWriteGuard<'_> {
        Acquire::new(&self.raw, MAX_PERMITS).await;
        AsyncWriteGuard { lock: self }
    }

    /// Takes the read side without a guard; pair with [`release_read`](Self::release_read).
    pub fn acquire_read(&self) {
        // Infallible: reading never fails when waiting is allowed.
        let _ = self.read_with(Wait::Forever);
    }

    /// Releases one level of the read side taken by this thread.
    pub fn release_read(&self) -> Result<(), Error> {
        let me = thread_id();
        let mut readers = self.readers.lock();
        let Some(at) = readers.iter().position(|&(tid, _)| tid == me) else {
            return Err(self.not_held("read"));
        };
        readers[at].1 -= 1;
        if readers[at].1 > 0 {
            return Ok(());
        }
        readers.swap_remove(at);
        self.reader_threads.fetch_sub(1, Ordering::Relaxed);
        drop(readers);
        // A writer's reads hold no permit of their own.
        if !self.is_writer_id(me) {
            self.raw.release(1);
        }
        Ok(())
    }

    /// Takes the write side without a guard; pair with [`release_write`](Self::release_write).
    pub fn acquire_write(&self) -> Result<(), Error> {
        self.write_with(Wait::Forever)
    }

    /// Releases one level of the write side held by this thread.
    pub fn release_write(&self) -> Result<(), Error> {
        let me = thread_id();
        if !self.is_writer_id(me) {
            return Err(self.not_held("write"));
        }
        let depth = self.writes.load(Ordering::Relaxed) - 1;
        self.writes.store(depth, Ordering::Relaxed);
        if depth == 0 {
            self.writer.store(0, Ordering::Relaxed);
            // A writer that still reads keeps one permit: it is now a plain reader.
            let keep = usize::from(self.read_depth(me) > 0);
            self.raw.release(MAX_PERMITS - keep);
        }
        Ok(())
    }

    /// Whether the calling thread holds the read side.
    pub fn is_reader(&self) -> bool {
        self.read_depth(thread_id()) > 0
    }

    /// Whether the calling thread holds the write side.
    pub fn is_writer(&self) -> bool {
        self.is_writer_id(thread_id())
    }

    /// Who holds the lock right now, if anyone.
    pub fn owner(&self) -> Option<Owner> {
        if self.writer.load(Ordering::Relaxed) != 0 {
            Some(Owner::Writer)
        } else if self.reader_threads.load(Ordering::Relaxed) > 0 {
            Some(Owner::Readers)
        } else {
            None
        }
    }

    /// Threads waiting for either side right now.
    pub fn queue_len(&self) -> usize {
        self.raw.queue_len()
    }

    fn is_writer_id(&self, me: u64) -> bool {
        self.writer.load(Ordering::Relaxed) == me
    }

    fn read_depth(&self, me: u64) -> usize {
        if self.reader_threads.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let readers = self.readers.lock();
        readers
            .iter()
            .find(|&&(tid, _)| tid == me)
            .map_or(0, |&(_, depth)| depth)
    }

    pub(crate) fn read_with(&self, wait: Wait) -> Result<(), Error> {
        let me = thread_id();
        {
            let mut readers = self.readers.lock();
            if let Some(entry) = readers.iter_mut().find(|(tid, _)| *tid == me) {
                entry.1 += 1;
                return Ok(());
            }
            if self.is_writer_id(me) {
                readers.push((me, 1));
                self.reader_threads.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        // Only this thread adds its own entry, so nothing changed for it meanwhile.
        self.wait_for(1, wait)?;
        self.readers.lock().push((me, 1));
        self.reader_threads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn write_with(&self, wait: Wait) -> Result<(), Error> {
        let me = thread_id();
        if self.is_writer_id(me) {
            self.writes.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if self.read_depth(me) > 0 {
            return Err(Error::UpgradeNotAllowed {
                name: self.name.to_string(),
            });
        }
        self.wait_for(MAX_PERMITS, wait)?;
        self.writes.store(1, Ordering::Relaxed);
        self.writer.store(me, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn raw(&self) -> &RawSemaphore {
        &self.raw
    }

    fn wait_for(&self, permits: usize, wait: Wait) -> Result<(), Error> {
        if self.raw.acquire_with(permits, wait) {
            Ok(())
        } else {
            Err(Error::acquire_failed(&self.name, wait.waited()))
        }
    }

    fn not_held(&self, side: &'static str) -> Error {
        Error::NotHeld {
            name: self.name.to_string(),
            side,
        }
    }
}

impl Default for ReaderWriterLock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ReaderWriterLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReaderWriterLock")
            .field("name", &self.name)
            .field("owner", &self.owner())
            .field("queue_len", &self.queue_len())
            .finish()
    }
}

/// Marks a guard as bound to the thread that took it.
type NotSend = std::marker::PhantomData<*const ()>;

/// The read side of a [`ReaderWriterLock`], released when dropped (also during a panic).
#[must_use = "the read lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct ReadGuard<'a> {
    lock: &'a ReaderWriterLock,
    _thread_bound: NotSend,
}

impl<'a> ReadGuard<'a> {
    fn new(lock: &'a ReaderWriterLock) -> Self {
        Self {
            lock,
            _thread_bound: NotSend::default(),
        }
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        // Fails only if the level was already released by hand with `release_read`.
        let _ = self.lock.release_read();
    }
}

impl fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGuard")
            .field("lock", &self.lock.name)
            .finish()
    }
}

/// The write side of a [`ReaderWriterLock`], released when dropped (also during a panic).
#[must_use = "the write lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct WriteGuard<'a> {
    lock: &'a ReaderWriterLock,
    _thread_bound: NotSend,
}

impl<'a> WriteGuard<'a> {
    fn new(lock: &'a ReaderWriterLock) -> Self {
        Self {
            lock,
            _thread_bound: NotSend::default(),
        }
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        // Fails only if the level was already released by hand with `release_write`.
        let _ = self.lock.release_write();
    }
}

impl fmt::Debug for WriteGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGuard")
            .field("lock", &self.lock.name)
            .finish()
    }
}

/// The read side of a [`ReaderWriterLock`] held by an async task; released when dropped.
#[must_use = "the read lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct AsyncReadGuard<'a> {
    lock: &'a ReaderWriterLock,
}

impl Drop for AsyncReadGuard<'_> {
    fn drop(&mut self) {
        self.lock.raw.release(1);
    }
}

impl fmt::Debug for AsyncReadGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncReadGuard")
            .field("lock", &self.lock.name)
            .finish()
    }
}

/// The write side of a [`ReaderWriterLock`] held by an async task; released when dropped.
#[must_use = "the write lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct AsyncWriteGuard<'a> {
    lock: &'a ReaderWriterLock,
}

impl Drop for AsyncWriteGuard<'_> {
    fn drop(&mut self) {
        self.lock.raw.release(MAX_PERMITS);
    }
}

impl fmt::Debug for AsyncWriteGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncWriteGuard")
            .field("lock", &self.lock.name)
            .finish()
    }
}
