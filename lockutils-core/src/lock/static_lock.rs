//! [`StaticLock`]: a lock name known at compile time, for `#[synchronized("literal")]`.

use std::sync::OnceLock;

use crate::fair::FairLock;
use crate::semaphore::{NamedSemaphore, Semaphores};

use super::builder::{LockBuilder, lock};

/// A lock name known at compile time, with its registry handles kept after first use, so
/// that taking the lock needs no name lookup. What `#[synchronized("literal")]` uses; not
/// meant to be named by users.
#[doc(hidden)]
pub struct StaticLock {
    pub(super) name: &'static str,
    pub(super) semaphore: OnceLock<NamedSemaphore>,
    pub(super) fair: OnceLock<FairLock>,
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
