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
use crate::queue::{Mode, Wait};

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
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if target.fair && target.mode == Mode::Exclusive {
            return fifo::acquire(state, target, wait);
        }
        let held = state
            .slot
            .lock(target.name, target.mode, wait, target.delay)?;
        state.slot.held = Some(held);
        Ok(())
    }

    fn release(&self, name: &str, cache: &mut ExternalCache) -> Result<(), Error> {
        let state = cache.get_or_insert_with(FileState::new);
        // A holder that came through the queue raises its floor first, holding the file (an
        // error there still lets the file go, and the queue).
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let raised = fifo::raise_floor(state, name);
        let result = state.slot.release(name);
        // Then out of the queue (if the lock came through it): the next one goes on.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let result = result.and(raised).and(fifo::leave(state, name));
        // Descriptors are kept for speed, but not without bound: names used once each must
        // not exhaust the process's descriptor limit before the registry sweeps them.
        if LockFile::open_count() > crate::file::kept_descriptor_limit() {
            state.slot.kept = None;
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                state.queue = None;
            }
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
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if target.fair && target.mode == Mode::Exclusive {
            return Box::pin(
                async move { fifo::acquire_async(cache, &target, wait, deadline).await },
            );
        }
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
pub(crate) fn close_idle_descriptors() -> usize {
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
        {
            if state.slot.kept.take().is_some() {
                closed += 1;
            }
            // The queue file of a fair lock too (reopened on its next use), unless a place
            // in it is held, or an acquire in progress uses it.
            #[cfg(any(target_os = "linux", target_os = "android"))]
            if state
                .queue
                .take_if(|q| std::sync::Arc::strong_count(q) == 1)
                .is_some()
            {
                closed += 1;
            }
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
    /// The queue of fair locks across processes (the companion file), once used.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    queue: Option<std::sync::Arc<crate::file::fifo::Queue>>,
    /// The place in the queue while the lock is held through it: it keeps its queue file
    /// open (whatever becomes of `queue`) until it leaves.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    place: Option<fifo::Place>,
    /// Whether the last fair acquire found others queued: the next one then queues at
    /// once, without first looking for an empty queue (which it would not find).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    contended: bool,
    /// Acquires queued at once since the queue file's name was last checked.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    unchecked: u32,
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
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                self.queue = None;
            }
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

/// Fair lock files: first come, first served across processes, through the queue of
/// `file::fifo` (Linux).
#[cfg(any(target_os = "linux", target_os = "android"))]
mod fifo {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use parking_lot::Mutex;

    use super::{ExternalCache, ExternalTarget, FileSlot, FileState, lock_async};
    use crate::error::Error;
    use crate::file::HeldFile;
    use crate::file::fifo::{Enqueue, Queue, Spin, Turn, Walk};
    use crate::file_wait::try_slot;
    use crate::queue::{Mode, Wait};

    /// How often the next in line tries the lock file while its predecessor holds it: a
    /// pause shorter than a system call.
    const NEXT_PAUSE: Duration = Duration::from_nanos(200);
    /// Every how many tries the next in line yields its processor all the same (to the
    /// holder, perhaps).
    const NEXT_YIELD: u32 = 16;
    /// Every how many acquires that queue at once the queue file's name is checked: one
    /// removed other than by lockutils (which marks it) would keep its users apart from
    /// newcomers, who queue in a new file.
    const CHECK_NAME_EVERY: u32 = 64;

    /// A place in the queue. Given up (its slot unlocked) when dropped: on an error, a
    /// timeout, or a cancelled task; left after holding by [`leave`].
    pub(super) struct Place {
        queue: Arc<Queue>,
        ticket: u64,
        left: bool,
    }

    impl Drop for Place {
        fn drop(&mut self) {
            if self.left {
                return;
            }
            if let Err(e) = self.queue.leave(self.ticket) {
                tracing::warn!(
                    target: crate::error::LOG_TARGET,
                    "leaving the queue of {}: {e}",
                    self.queue.path().display()
                );
            }
        }
    }

    /// The queue of `state`'s lock file, opened (again) if missing or inherited through
    /// `fork`. (A queue file removed since is seen where it matters: by a ticket, and by
    /// [`try_unqueued`].)
    fn queue_of(state: &mut FileState, name: &str) -> Result<Arc<Queue>, Error> {
        if let Some(queue) = &state.queue
            && queue.is_own()
        {
            return Ok(queue.clone());
        }
        let queue = Arc::new(Queue::open(name, &state.slot.path)?);
        state.queue = Some(queue.clone());
        Ok(queue)
    }

    /// Takes a ticket in `queue`, reopening the queue file if it was removed meanwhile.
    /// `Ok(None)` while the ring is full or other processes keep taking the tickets it
    /// tries for (try again later).
    fn enqueue(
        state: &mut FileState,
        name: &str,
        mut queue: Arc<Queue>,
    ) -> Result<Option<(Arc<Queue>, Walk)>, Error> {
        loop {
            match queue.enqueue() {
                Ok(Enqueue::Queued(walk)) => return Ok(Some((queue, walk))),
                Ok(Enqueue::Busy | Enqueue::Full) => return Ok(None),
                Ok(Enqueue::Removed) => {
                    state.queue = None;
                    queue = queue_of(state, name)?;
                }
                Err(e) => return Err(Error::io(name, queue.path().to_owned(), "queue", e)),
            }
        }
    }

    /// With nobody queued, the lock file at once (one try), as an unfair lock takes it: no
    /// ticket for an uncontended lock. `Ok(None)` if held; else the queue to join.
    fn try_unqueued(
        state: &mut FileState,
        name: &str,
        delay: Duration,
    ) -> Result<Option<Arc<Queue>>, Error> {
        let queue = loop {
            let queue = queue_of(state, name)?;
            let inspect = |e| Error::io(name, queue.path().to_owned(), "inspect the queue", e);
            if !queue.is_empty().map_err(inspect)? {
                return Ok(Some(queue));
            }
            // Empty; but a removed queue file would be a queue of its own, so make sure it
            // is still the one others use.
            if queue.is_linked().map_err(inspect)? {
                break queue;
            }
            state.queue = None;
        };
        let held = try_slot(&mut state.slot, &mut None, name, Mode::Exclusive, delay)?;
        Ok((!held).then_some(queue))
    }

    /// The blocking acquire of a fair lock file: the queue, then the file.
    pub(super) fn acquire(
        state: &mut FileState,
        target: &ExternalTarget<'_>,
        wait: Wait,
    ) -> Result<(), Error> {
        let name = target.name;
        let deadline = wait.deadline();
        let queue = if state.contended && wait != Wait::Never {
            let mut queue = queue_of(state, name)?;
            state.unchecked += 1;
            if state.unchecked >= CHECK_NAME_EVERY {
                state.unchecked = 0;
                if !queue.is_linked().unwrap_or(false) {
                    state.queue = None;
                    queue = queue_of(state, name)?;
                }
            }
            queue
        } else {
            let Some(queue) = try_unqueued(state, name, target.delay)? else {
                return Ok(());
            };
            if wait == Wait::Never {
                // Held, or somebody queues: a try does not pass them.
                return Err(Error::acquire_failed(name, None));
            }
            queue
        };
        // Taking a ticket waits for nothing; it pauses (for growing intervals, up to the
        // lock's delay) while the ring is full, or while other processes keep taking the
        // tickets it tries for.
        let mut pause = Duration::from_micros(50);
        let mut queue = queue;
        let (queue, mut walk) = loop {
            if let Some(queued) = enqueue(state, name, queue)? {
                break queued;
            }
            if wait.is_over(deadline) {
                return Err(Error::acquire_failed(name, wait.waited()));
            }
            let pause_now = match deadline {
                Some(deadline) => pause.min(deadline.saturating_duration_since(Instant::now())),
                None => pause,
            };
            std::thread::sleep(pause_now);
            pause = (pause * 2).min(target.delay.max(pause));
            // Looked at again only for a retry (the enqueue itself reopens a removed file).
            queue = queue_of(state, name)?;
        };
        let place = Place {
            queue: queue.clone(),
            ticket: walk.ticket(),
            left: false,
        };
        let waiting = |e| Error::io(name, queue.path().to_owned(), "wait in the queue", e);
        let turn = match (wait, deadline) {
            (Wait::For(_), Some(deadline)) => {
                queue.advance_until(&mut walk, deadline, target.delay)
            }
            _ => queue.advance(&mut walk, true),
        }
        .map_err(waiting)?;
        state.contended = walk.waited();
        let held = match turn {
            Turn::NotYet => return Err(Error::acquire_failed(name, wait.waited())),
            Turn::Next => take_after_predecessor(&mut state.slot, name, &queue.file_spin),
            Turn::First => state.slot.lock(
                name,
                Mode::Exclusive,
                wait.remaining(deadline),
                target.delay,
            ),
        }
        .map_err(|e| e.with_waited(wait))?;
        state.slot.held = Some(held);
        if let Err(e) = queue.hold(&mut walk) {
            // Not held after all: the file is let go, and the place given up.
            let _ = state.slot.release(name);
            return Err(waiting(e));
        }
        state.place = Some(place);
        Ok(())
    }

    /// The lock file, for the next in line ([`Turn::Next`]): its predecessor holds it, or
    /// is leaving the queue after it. Tried while `spin` says so (see [`Spin`]), then
    /// waited for in the kernel.
    fn take_after_predecessor(
        slot: &mut FileSlot,
        name: &str,
        spin: &Spin,
    ) -> Result<HeldFile, Error> {
        let started = Instant::now();
        let spin_until = started + spin.budget();
        let mut looks = 0u32;
        loop {
            let wait = if looks == 0 || Instant::now() < spin_until {
                Wait::Never
            } else {
                Wait::Forever
            };
            match slot.lock(name, Mode::Exclusive, wait, Duration::ZERO) {
                Err(e) if e.is_acquire_failed() && wait == Wait::Never => {}
                result => {
                    if looks > 0 {
                        spin.record(started.elapsed());
                    }
                    return result;
                }
            }
            looks += 1;
            if looks.is_multiple_of(NEXT_YIELD) {
                std::thread::yield_now();
            } else {
                let until = Instant::now() + NEXT_PAUSE;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
        }
    }

    /// The async acquire of a fair lock file: the queue (tried at growing intervals, up to
    /// the lock's delay, so that no thread blocks), then the file (see `file_wait`).
    /// Cancel-safe: a dropped future leaves the queue.
    pub(super) async fn acquire_async(
        cache: &Mutex<ExternalCache>,
        target: &ExternalTarget<'_>,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        let name = target.name;
        let mut pause = Duration::from_micros(50);
        let (queue, mut walk) = loop {
            {
                let mut cache = cache.lock();
                let state = cache.get_or_insert_with(FileState::new);
                state.update(target)?;
                let Some(queue) = try_unqueued(state, name, target.delay)? else {
                    return Ok(());
                };
                if wait == Wait::Never {
                    return Err(Error::acquire_failed(name, None));
                }
                // Taking a ticket waits for nothing (see `acquire`): no thread blocks.
                if let Some(queued) = enqueue(state, name, queue)? {
                    break queued;
                }
            }
            if wait.is_over(deadline) {
                return Err(Error::acquire_failed(name, wait.waited()));
            }
            crate::timer::Sleep::until(Instant::now() + pause).await;
            pause = (pause * 2).min(target.delay.max(pause));
        };
        pause = Duration::from_micros(50);
        let place = Place {
            queue: queue.clone(),
            ticket: walk.ticket(),
            left: false,
        };
        let waiting = |e| Error::io(name, queue.path().to_owned(), "wait in the queue", e);
        while queue.advance(&mut walk, false).map_err(waiting)? != Turn::First {
            let now = Instant::now();
            if wait.is_over(deadline) {
                return Err(Error::acquire_failed(name, wait.waited()));
            }
            let wake = deadline.map_or(now + pause, |d| d.min(now + pause));
            crate::timer::Sleep::until(wake).await;
            pause = (pause * 2).min(target.delay.max(pause));
        }
        fn slot_of(cache: &mut ExternalCache) -> &mut FileSlot {
            &mut cache.get_or_insert_with(FileState::new).slot
        }
        lock_async(
            cache,
            slot_of,
            name,
            Mode::Exclusive,
            wait.remaining(deadline),
            deadline,
            target.delay,
        )
        .await
        .map_err(|e| e.with_waited(wait))?;
        let mut cache = cache.lock();
        let state = cache.get_or_insert_with(FileState::new);
        if let Err(e) = queue.hold(&mut walk) {
            // Not held after all: the file is let go, and the place given up.
            let _ = state.slot.release(name);
            return Err(waiting(e));
        }
        state.place = Some(place);
        Ok(())
    }

    /// Raises the queue's floor to the ticket that holds the lock file, if the lock came
    /// through the queue: just before the lock file is let go (see [`Queue::raise_floor`]).
    pub(super) fn raise_floor(state: &FileState, name: &str) -> Result<(), Error> {
        match &state.place {
            Some(place) => place.queue.raise_floor(place.ticket).map_err(|e| {
                Error::io(
                    name,
                    place.queue.path().to_owned(),
                    "raise the queue's floor",
                    e,
                )
            }),
            None => Ok(()),
        }
    }

    /// Leaves the queue after the lock file was released, if the lock came through it.
    pub(super) fn leave(state: &mut FileState, name: &str) -> Result<(), Error> {
        match state.place.take() {
            Some(mut place) => {
                // Left here, with the error to return; not again when dropped.
                place.left = true;
                place.queue.leave(place.ticket).map_err(|e| {
                    Error::io(name, place.queue.path().to_owned(), "leave the queue", e)
                })
            }
            None => Ok(()),
        }
    }
}
