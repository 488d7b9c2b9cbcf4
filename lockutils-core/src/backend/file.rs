//! The file backend: external locks as lock files, oslo's (see the `file` module for the
//! primitive).

use std::path::{Path, PathBuf};
use std::time::Instant;

use parking_lot::Mutex;

use super::{AcquireFuture, ExternalBackend, ExternalCache, ExternalTarget, HasExternalCache};
use crate::config::lock_file_path;
use crate::error::Error;
use crate::file::{HeldFile, LockFile};
use crate::file_wait::{FileSlot, lock_async};
use crate::queue::Wait;

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
        let held = LockFile::acquire(
            &mut state.slot.kept,
            &mut None,
            target.name,
            &state.slot.path,
            target.mode,
            wait,
            target.delay,
        )?;
        state.slot.held = Some(held);
        Ok(())
    }

    fn release(&self, name: &str, cache: &mut ExternalCache) -> Result<(), Error> {
        let state = cache.get_or_insert_with(FileState::new);
        let result = state.slot.release(name);
        // Descriptors are kept for speed, but not without bound: names used once each must
        // not exhaust the process's descriptor limit before the registry sweeps them.
        if LockFile::open_count() > crate::file::kept_descriptor_limit() {
            state.slot.kept = None;
        }
        result
    }

    fn holds(&self, target: &ExternalTarget<'_>, cache: &mut ExternalCache) -> Result<bool, Error> {
        let state = cache.get_or_insert_with(FileState::new);
        let path = lock_file_path(target.name, target.prefix, target.lock_path)?;
        Ok(state.slot.held.as_ref().is_some_and(|f| f.path() == path))
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

    fn supports_shared(&self) -> bool {
        true
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
        target.mode,
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
        .and_then(|state| state.slot.held.as_ref())
        .map(HeldFile::raw_fd)
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
            && state.slot.kept.take().is_some()
        {
            closed += 1;
        }
    };
    crate::semaphore::Semaphores::global()
        .registry()
        .for_each_extra(&mut |extra| close(extra.external_cache()));
    crate::fair::FairLocks::global()
        .registry()
        .for_each_extra(&mut |extra| close(extra.external_cache()));
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

/// Deletes the lock file that `cache` holds (the caller holds its lock), or, when no lock
/// file is held (process locking disabled, or another backend), what `path` names, with the
/// same checks: see [`LockFile::remove`].
pub(crate) fn remove_held_lock_file(
    cache: &mut ExternalCache,
    name: &str,
    path: &Path,
) -> Result<(), Error> {
    match cache
        .state
        .as_ref()
        .and_then(|s| s.downcast_ref::<FileState>())
        .and_then(|state| state.slot.held.as_ref())
    {
        Some(held) => held.remove(name),
        None => crate::file::remove_unheld(name, path),
    }
}
