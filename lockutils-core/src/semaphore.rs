//! Counting semaphores and the [`Semaphores`] registry of named ones.

use std::fmt;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::queue::{Acquire, MAX_PERMITS, RawSemaphore, Wait};
use crate::raw::{GuardSend, RawGuard, RawLock};
use crate::registry::{Named, Registry};

/// A counting semaphore with a strict FIFO queue of waiters.
///
/// # Fairness
/// Queued waiters are served in the order they queued; a released permit goes straight to the
/// first of them, and [`try_acquire`](Self::try_acquire) fails while anyone is queued, even if
/// a permit is free at that instant. Nobody starves. Before queueing, a blocking acquire spins
/// for a microsecond or so while the queue is empty, which keeps short critical sections from
/// paying a park and a wake-up per handover.
///
/// # What it does not do
/// It is not reentrant: a thread that holds the only permit and asks again waits forever, as
/// with oslo's `threading.Semaphore`. Use a [`FairLock`](crate::FairLock) for reentrancy.
///
/// ```
/// use lockutils::Semaphore;
///
/// let sem = Semaphore::new(2);
/// let a = sem.acquire();
/// let b = sem.try_acquire().expect("a second permit is free");
/// assert!(sem.try_acquire().is_none());
/// drop((a, b));
/// assert_eq!(sem.available_permits(), 2);
/// ```
pub struct Semaphore {
    raw: RawSemaphore,
}

impl Semaphore {
    /// Whether this one-permit semaphore is free and unwaited, as `new(1)` made it (what a
    /// registry asks before dropping a name).
    pub(crate) fn is_untouched(&self) -> bool {
        self.raw.is_untouched(1)
    }

    /// The largest number of permits a semaphore can hold; larger values are capped to it.
    pub const MAX_PERMITS: usize = MAX_PERMITS;

    /// A semaphore with `permits` permits (capped at [`Semaphore::MAX_PERMITS`]).
    pub fn new(permits: usize) -> Self {
        Self {
            raw: RawSemaphore::new(permits.min(MAX_PERMITS)),
        }
    }

    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.acquire_with(Wait::Forever);
        // SAFETY: the permit was just taken, and only the guard gives it back.
        unsafe { SemaphoreGuard::new(self) }
    }

    /// Takes a permit, waiting without blocking the thread: the async twin of
    /// [`acquire`](Self::acquire), on the same FIFO queue (async and blocking waiters are
    /// served in the order they queued). Runtime-agnostic.
    ///
    /// Cancel-safe: dropping the future before it completes leaves nothing held or queued.
    /// The future and the guard are `Send`.
    pub async fn acquire_async(&self) -> SemaphoreGuard<'_> {
        Acquire::new(&self.raw, 1).await;
        // SAFETY: the permit was just taken, and only the guard gives it back.
        unsafe { SemaphoreGuard::new(self) }
    }

    /// Takes a permit if one is free and nobody is waiting; never waits.
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        self.guard_with(Wait::Never)
    }

    /// Takes a permit, waiting at most `timeout`. `None` if it timed out; nothing is left queued.
    pub fn try_acquire_for(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
        self.guard_with(Wait::For(timeout))
    }

    /// A guarded permit, taken as `wait` allows.
    fn guard_with(&self, wait: Wait) -> Option<SemaphoreGuard<'_>> {
        // Infallible: taking a permit never fails, it only waits.
        SemaphoreGuard::acquire(self, wait).ok().flatten()
    }

    /// Permits free right now.
    pub fn available_permits(&self) -> usize {
        self.raw.available()
    }

    /// Threads waiting for a permit right now.
    pub fn queue_len(&self) -> usize {
        self.raw.queue_len()
    }

    /// Takes a permit as `wait` allows; `false` if it could not.
    ///
    /// Unlike the fair lock, a semaphore that must wait first spins briefly while nobody is
    /// queued: under contention on a short critical section this avoids a park and wake-up per
    /// handover, and it still never passes a queued waiter.
    #[inline]
    pub(crate) fn acquire_with(&self, wait: Wait) -> bool {
        self.raw.try_acquire(1)
            || (wait != Wait::Never && self.raw.spin_try_acquire(1))
            || self.raw.acquire_with(1, wait)
    }

    pub(crate) fn raw(&self) -> &RawSemaphore {
        &self.raw
    }

    /// One try that neither spins nor queues.
    #[inline]
    pub(crate) fn try_acquire_uncontended(&self) -> bool {
        self.raw.try_acquire(1)
    }

    #[inline]
    pub(crate) fn release(&self) {
        self.raw.release(1);
    }

    /// [`RawSemaphore::try_release_fast`] of one permit.
    #[inline]
    pub(crate) fn try_release_fast(&self) -> bool {
        self.raw.try_release_fast(1)
    }

    /// [`RawSemaphore::release_slow`] of one permit.
    pub(crate) fn release_slow(&self) {
        self.raw.release_slow(1);
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available_permits", &self.available_permits())
            .field("queue_len", &self.queue_len())
            .finish()
    }
}

/// A permit of a [`Semaphore`], given back when dropped (also during a panic). `Send`.
pub type SemaphoreGuard<'a> = RawGuard<'a, Semaphore>;

// SAFETY: a permit is taken by the queue's atomic state; the semaphore admits as many
// holders as it has permits, and a permit may be given back from any thread.
unsafe impl RawLock for Semaphore {
    type GuardMarker = GuardSend;

    #[inline]
    fn lock(&self) -> Result<(), Error> {
        self.acquire_with(Wait::Forever);
        Ok(())
    }

    #[inline]
    fn try_lock(&self) -> Result<bool, Error> {
        Ok(self.raw.try_acquire(1))
    }

    fn try_lock_until(&self, deadline: Instant) -> Result<bool, Error> {
        Ok(self.raw.try_acquire(1)
            || self.raw.spin_try_acquire(1)
            || self.raw.acquire_until(1, deadline))
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.release();
    }
}

/// A [`Semaphore`] of one permit that lives in a [`Semaphores`] registry.
pub type NamedSemaphore = Named<Semaphore>;

/// A garbage-collected container of named semaphores (one permit each): oslo's `Semaphores`.
///
/// [`get`](Self::get) returns the semaphore for a name, creating it on first use. A name's
/// semaphore lives while anyone holds it, waits on it or keeps a handle to it, and is dropped
/// after the last one lets go, so [`len`](Self::len) goes back to 0 and memory stays
/// proportional to the names in use. Separate instances are separate namespaces. Threads
/// using different names do not contend on a shared mutex (the map is sharded).
///
/// ```
/// use lockutils::Semaphores;
///
/// let sems = Semaphores::new();
/// let a = sems.get("a");
/// assert!(lockutils::NamedSemaphore::ptr_eq(&a, &sems.get("a")));
/// assert_eq!(sems.len(), 1);
/// drop(a);
/// assert_eq!(sems.len(), 0);
/// ```
pub struct Semaphores {
    registry: Registry<Semaphore>,
}

impl Semaphores {
    /// An empty, independent namespace of semaphores.
    pub fn new() -> Self {
        Self {
            registry: Registry::new(),
        }
    }

    /// The process-wide namespace that [`lock`](crate::lock()) uses by default.
    #[inline]
    pub fn global() -> &'static Semaphores {
        static GLOBAL: LazyLock<Semaphores> = LazyLock::new(Semaphores::new);
        &GLOBAL
    }

    /// The semaphore for `name`, created on first use.
    pub fn get(&self, name: &str) -> NamedSemaphore {
        self.registry.get(name)
    }

    /// Number of names in use right now. Idle entries are dropped as a side effect.
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    pub(crate) fn registry(&self) -> &Registry<Semaphore> {
        &self.registry
    }

    /// Whether no name is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Semaphores {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Semaphores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphores").finish_non_exhaustive()
    }
}
