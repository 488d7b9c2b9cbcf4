//! Fair locks and the [`FairLocks`] registry of named ones.

use std::fmt;
use std::sync::LazyLock;

use crate::registry::{Named, Registry};
use crate::rwlock::ReaderWriterLock;

/// A named fair lock: a [`ReaderWriterLock`] from a [`FairLocks`] registry.
///
/// `lock(name).fair(true)` takes its write side. That gives:
///
/// # Fairness
/// Strict FIFO: whoever started waiting first acquires first, and a non-blocking try never
/// jumps the queue.
///
/// # Reentrancy
/// The holding thread may take it again (the write side is reentrant), as in oslo.
pub type FairLock = Named<ReaderWriterLock>;

/// A garbage-collected container of named fair locks: oslo's `FairLocks`.
///
/// Works like [`Semaphores`](crate::Semaphores), holding [`ReaderWriterLock`]s. Fair and non-fair
/// locks of the same name live in different containers and do not exclude each other.
///
/// ```
/// use lockutils::FairLocks;
///
/// let locks = FairLocks::new();
/// let lock = locks.get("resize");
/// let _outer = lock.write()?;
/// let _inner = lock.write()?; // reentrant for the holding thread
/// assert_eq!(locks.len(), 1);
/// # Ok::<(), lockutils::Error>(())
/// ```
pub struct FairLocks {
    registry: Registry<ReaderWriterLock>,
}

impl FairLocks {
    /// An empty, independent namespace of fair locks.
    pub fn new() -> Self {
        Self {
            registry: Registry::new(),
        }
    }

    /// The process-wide namespace that [`lock`](crate::lock())`.fair(true)` uses by default.
    pub fn global() -> &'static FairLocks {
        static GLOBAL: LazyLock<FairLocks> = LazyLock::new(FairLocks::new);
        &GLOBAL
    }

    pub(crate) fn registry(&self) -> &Registry<ReaderWriterLock> {
        &self.registry
    }

    /// The lock for `name`, created on first use. Its errors carry `name`.
    pub fn get(&self, name: &str) -> FairLock {
        self.registry.get(name)
    }

    /// Number of names in use right now. Idle entries are dropped as a side effect.
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// Whether no name is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for FairLocks {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FairLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairLocks").finish_non_exhaustive()
    }
}
