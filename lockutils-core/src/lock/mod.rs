//! The [`lock()`] builder and its guards: what most code calls.
//!
//! - `builder`: [`lock()`] and [`LockBuilder`], and taking the in-process lock;
//! - `guard`: [`LockGuard`] and [`AsyncLockGuard`];
//! - `static_lock`: [`StaticLock`], the handles of a name known at compile time;
//! - `log`: oslo's log lines.

mod builder;
mod guard;
pub(crate) mod log;
mod state;
mod static_lock;

pub use builder::{LockBuilder, lock};
pub use guard::{AsyncLockGuard, LockGuard};
pub use log::LOG_TARGET;
pub use static_lock::StaticLock;

use crate::backend::ExternalCache;
use crate::rwlock::ReaderWriterLock;
use crate::semaphore::Semaphore;
use state::FairState;

/// The lock layer keeps each name's external-lock state (an open lock file, a server
/// session) beside the name's lock in the registries.
impl crate::registry::Create for Semaphore {
    type Extra = parking_lot::Mutex<ExternalCache>;

    fn create(_name: &std::sync::Arc<str>) -> Self {
        Semaphore::new(1)
    }

    fn is_free(&self) -> bool {
        self.is_untouched()
    }
}

impl crate::registry::Create for ReaderWriterLock {
    type Extra = FairState;

    fn create(name: &std::sync::Arc<str>) -> Self {
        Self::from_arc(name.clone())
    }

    fn is_free(&self) -> bool {
        self.is_untouched()
    }
}
