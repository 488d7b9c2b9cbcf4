//! External (inter-process) locks: lock files in a lock directory, compatible with oslo's.
//!
//! `lock(name).external(true)` takes the in-process lock of `name` first, then the external
//! lock through an [`ExternalBackend`] (see [`backend`](crate::backend)); the guard releases
//! them in reverse order. This module gathers what external locking offers; each piece lives
//! on its own floor: the backends in [`backend`](crate::backend), the lock files on their own
//! in `interprocess`, oslo's helpers in `oslo`.

pub use crate::backend::{
    AcquireFuture, ExternalBackend, ExternalCache, ExternalTarget, FileBackend,
};
pub use crate::file::{DEFAULT_DELAY, MAX_KEPT_DESCRIPTORS};
pub use crate::interprocess::{
    InterProcessGuard, InterProcessLock, InterProcessReadGuard, InterProcessReaderWriterLock,
    InterProcessWriteGuard,
};
pub use crate::oslo::{
    Prefix, external_lock, lock_with_prefix, remove_external_lock_file,
    remove_external_lock_file_with_prefix,
};
