//! The reader/writer lock, with fasteners' (and so oslo's) semantics.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::Error;
use crate::queue::{Acquire, MAX_PERMITS, RawSemaphore, Wait};
use crate::raw::{GuardNoSend, RawGuard, RawLock};
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
/// - Releasing a side by hand ([`release_read`](Self::release_read),
///   [`release_write`](Self::release_write)) is `unsafe`: only a hold taken by hand may be
///   released so, never a guard's. Releasing a side the calling thread does not hold is
///   [`Error::NotHeld`].
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
        // SAFETY: this thread just took a level of the read side, which only the guard gives
        // back.
        unsafe { ReadGuard::new(self.read_side()) }
    }

    /// Takes the read side if that needs no waiting (no writer holds or waits).
    pub fn try_read(&self) -> Result<ReadGuard<'_>, Error> {
        self.guarded(self.read_side(), Wait::Never)
    }

    /// Takes the read side, waiting at most `timeout`.
    pub fn try_read_for(&self, timeout: Duration) -> Result<ReadGuard<'_>, Error> {
        self.guarded(self.read_side(), Wait::For(timeout))
    }

    /// Takes the write side, waiting as long as it takes.
    ///
    /// Fails only with [`Error::UpgradeNotAllowed`] when this thread reads and does not write.
    pub fn write(&self) -> Result<WriteGuard<'_>, Error> {
        self.guarded(self.write_side(), Wait::Forever)
    }

    /// Takes the write side if that needs no waiting (free, and nobody queued).
    pub fn try_write(&self) -> Result<WriteGuard<'_>, Error> {
        self.guarded(self.write_side(), Wait::Never)
    }

    /// Takes the write side, waiting at most `timeout`.
    pub fn try_write_for(&self, timeout: Duration) -> Result<WriteGuard<'_>, Error> {
        self.guarded(self.write_side(), Wait::For(timeout))
    }

    /// The read side as a [`RawLock`]: what [`ReadGuard`] holds.
    pub fn read_side(&self) -> &ReadSide {
        let this: *const ReaderWriterLock = self;
        // SAFETY: `ReadSide` is a `repr(transparent)` wrapper of `ReaderWriterLock`: same
        // layout, and the reference keeps `self`'s lifetime.
        unsafe { &*this.cast::<ReadSide>() }
    }

    /// The write side as a [`RawLock`]: what [`WriteGuard`] holds.
    pub fn write_side(&self) -> &WriteSide {
        let this: *const ReaderWriterLock = self;
        // SAFETY: as in `read_side`: `WriteSide` is a `repr(transparent)` wrapper.
        unsafe { &*this.cast::<WriteSide>() }
    }

    /// A guard of `side`, taken as `wait` allows; busy is [`Error::AcquireLockFailed`].
    fn guarded<'a, S: RawLock>(&self, side: &'a S, wait: Wait) -> Result<RawGuard<'a, S>, Error> {
        RawGuard::acquire(side, wait)?
            .ok_or_else(|| Error::acquire_failed(&self.name, wait.waited()))
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
        self.read_until(|raw, n| {
            raw.acquire(n);
            true
        });
    }

    /// Releases one level of the read side that this thread took with
    /// [`acquire_read`](Self::acquire_read). [`Error::NotHeld`] if this thread holds none.
    ///
    /// # Safety
    /// The level released must be one taken by hand: releasing a level that a
    /// [`ReadGuard`] (or a `lock(..).shared(true)` guard) stands for would let that guard
    /// release a level it no longer has.
    pub unsafe fn release_read(&self) -> Result<(), Error> {
        if self.read_depth(thread_id()) == 0 {
            return Err(self.not_held("read"));
        }
        self.unlock_read();
        Ok(())
    }

    /// Takes the write side without a guard; pair with [`release_write`](Self::release_write).
    pub fn acquire_write(&self) -> Result<(), Error> {
        self.write_with(Wait::Forever)
    }

    /// Releases one level of the write side that this thread took with
    /// [`acquire_write`](Self::acquire_write). [`Error::NotHeld`] if this thread does not
    /// write.
    ///
    /// # Safety
    /// The level released must be one taken by hand: releasing a level that a
    /// [`WriteGuard`] (or a `lock(..).fair(true)` guard) stands for would let that guard
    /// release a level it no longer has, and free the lock under another holder.
    pub unsafe fn release_write(&self) -> Result<(), Error> {
        if !self.is_writer() {
            return Err(self.not_held("write"));
        }
        let permits = self.unlock_write_levels();
        if permits > 0 {
            self.raw.release(permits);
        }
        Ok(())
    }

    /// Gives back one level of the read side held by this thread.
    fn unlock_read(&self) {
        let me = thread_id();
        let mut readers = self.readers.lock();
        let Some(at) = readers.iter().position(|&(tid, _)| tid == me) else {
            debug_assert!(false, "a read level released twice");
            return;
        };
        readers[at].1 -= 1;
        if readers[at].1 > 0 {
            return;
        }
        readers.swap_remove(at);
        self.reader_threads.fetch_sub(1, Ordering::Relaxed);
        drop(readers);
        // A writer's reads hold no permit of their own.
        if !self.is_writer_id(me) {
            self.raw.release(1);
        }
    }

    /// Gives back one level of the write side held by this thread, except the permits:
    /// returns how many the caller must release (0 while outer levels remain). The lock is
    /// still held, and pins its registry entry, until they are.
    #[inline]
    pub(crate) fn unlock_write_levels(&self) -> usize {
        let depth = self.writes.load(Ordering::Relaxed) - 1;
        self.writes.store(depth, Ordering::Relaxed);
        if depth > 0 {
            return 0;
        }
        self.writer.store(0, Ordering::Relaxed);
        // A writer that still reads keeps one permit: it is now a plain reader.
        let keep = if self.reader_threads.load(Ordering::Relaxed) == 0 {
            0
        } else {
            usize::from(self.read_depth(thread_id()) > 0)
        };
        MAX_PERMITS - keep
    }

    /// Takes the write side of a free lock nobody waits for, in one try that never queues:
    /// the fast path of `lock(name).fair(true)` (reentrant levels included).
    #[inline]
    pub(crate) fn try_write_uncontended(&self) -> bool {
        let me = thread_id();
        if self.is_writer_id(me) {
            self.writes.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if self.reader_threads.load(Ordering::Relaxed) != 0 || !self.raw.try_acquire(MAX_PERMITS) {
            return false;
        }
        self.writes.store(1, Ordering::Relaxed);
        self.writer.store(me, Ordering::Relaxed);
        true
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

    /// Takes a level of the read side as `wait` allows; busy is
    /// [`Error::AcquireLockFailed`].
    pub(crate) fn read_with(&self, wait: Wait) -> Result<(), Error> {
        match self.read_side().lock_with(wait) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::acquire_failed(&self.name, wait.waited())),
            Err(e) => Err(e),
        }
    }

    /// Takes a level of the write side as `wait` allows; busy is
    /// [`Error::AcquireLockFailed`].
    pub(crate) fn write_with(&self, wait: Wait) -> Result<(), Error> {
        match self.write_side().lock_with(wait) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::acquire_failed(&self.name, wait.waited())),
            Err(e) => Err(e),
        }
    }

    /// Takes a level of the read side, waiting for a permit with `take` if this thread holds
    /// no level of either side yet. `false` if `take` gave up.
    fn read_until(&self, take: impl FnOnce(&RawSemaphore, usize) -> bool) -> bool {
        let me = thread_id();
        {
            let mut readers = self.readers.lock();
            if let Some(entry) = readers.iter_mut().find(|(tid, _)| *tid == me) {
                entry.1 += 1;
                return true;
            }
            if self.is_writer_id(me) {
                readers.push((me, 1));
                self.reader_threads.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        // Only this thread adds its own entry, so nothing changed for it meanwhile.
        if !take(&self.raw, 1) {
            return false;
        }
        self.readers.lock().push((me, 1));
        self.reader_threads.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Takes a level of the write side, waiting for the permits with `take` if this thread
    /// does not write yet. `Ok(false)` if `take` gave up; [`Error::UpgradeNotAllowed`] if
    /// this thread reads.
    fn write_until(&self, take: impl FnOnce(&RawSemaphore, usize) -> bool) -> Result<bool, Error> {
        let me = thread_id();
        if self.is_writer_id(me) {
            self.writes.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        if self.read_depth(me) > 0 {
            return Err(Error::UpgradeNotAllowed {
                name: self.name.to_string(),
            });
        }
        if !take(&self.raw, MAX_PERMITS) {
            return Ok(false);
        }
        self.writes.store(1, Ordering::Relaxed);
        self.writer.store(me, Ordering::Relaxed);
        Ok(true)
    }

    pub(crate) fn raw(&self) -> &RawSemaphore {
        &self.raw
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

/// The read side of a [`ReaderWriterLock`] as a [`RawLock`] (from
/// [`ReaderWriterLock::read_side`]): a level of the read side, per thread, reentrant.
#[repr(transparent)]
pub struct ReadSide(ReaderWriterLock);

/// The write side of a [`ReaderWriterLock`] as a [`RawLock`] (from
/// [`ReaderWriterLock::write_side`]): a level of the write side, per thread, reentrant.
/// Fails with [`Error::UpgradeNotAllowed`] for a thread that reads and does not write.
#[repr(transparent)]
pub struct WriteSide(ReaderWriterLock);

// SAFETY: a level is counted per thread (the reader list, the writer's id and depth) and
// its permits come from the fair queue: one permit per reading thread, all of them for the
// writer, so no reader holds while a writer does. Holding is per thread: `GuardNoSend`.
unsafe impl RawLock for ReadSide {
    type GuardMarker = GuardNoSend;

    fn lock(&self) -> Result<(), Error> {
        self.0.acquire_read();
        Ok(())
    }

    fn try_lock(&self) -> Result<bool, Error> {
        Ok(self.0.read_until(RawSemaphore::try_acquire))
    }

    fn try_lock_until(&self, deadline: Instant) -> Result<bool, Error> {
        Ok(self.0.read_until(|raw, n| raw.acquire_until(n, deadline)))
    }

    unsafe fn unlock(&self) {
        self.0.unlock_read();
    }
}

// SAFETY: as for `ReadSide`.
unsafe impl RawLock for WriteSide {
    type GuardMarker = GuardNoSend;

    fn lock(&self) -> Result<(), Error> {
        self.0
            .write_until(|raw, n| {
                raw.acquire(n);
                true
            })
            .map(drop)
    }

    #[inline]
    fn try_lock(&self) -> Result<bool, Error> {
        self.0.write_until(RawSemaphore::try_acquire)
    }

    fn try_lock_until(&self, deadline: Instant) -> Result<bool, Error> {
        self.0.write_until(|raw, n| raw.acquire_until(n, deadline))
    }

    #[inline]
    unsafe fn unlock(&self) {
        let permits = self.0.unlock_write_levels();
        if permits > 0 {
            self.0.raw.release(permits);
        }
    }
}

impl fmt::Debug for ReadSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadSide").field(&self.0.name).finish()
    }
}

impl fmt::Debug for WriteSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WriteSide").field(&self.0.name).finish()
    }
}

/// The read side of a [`ReaderWriterLock`], released when dropped (also during a panic).
/// Bound to the thread that took it: neither `Send` nor `Sync`.
pub type ReadGuard<'a> = RawGuard<'a, ReadSide>;

/// The write side of a [`ReaderWriterLock`], released when dropped (also during a panic).
/// Bound to the thread that took it: neither `Send` nor `Sync`.
pub type WriteGuard<'a> = RawGuard<'a, WriteSide>;

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
