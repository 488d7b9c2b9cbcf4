//! Waiting for a lock file without blocking the caller's thread: what async acquisition of an
//! external lock uses.
//!
//! No operating system offers an asynchronous record lock. A helper thread waits in the
//! kernel (`F_OFD_SETLKW`) on a descriptor of its own, so the handoff is as prompt as for a
//! blocked thread, and hands the locked file to the task.
//!
//! # Cancellation
//! A kernel wait cannot be withdrawn. A task that gives up *abandons* its helper: when the
//! helper gets the lock, it lets it go at once and ends. The helper stays with the name's
//! entry, and the next task to wait for the same file adopts it instead of starting another,
//! so abandoned helpers never pile up, however many waits are cancelled. A helper that a task
//! still waits on is never adopted: two distinct in-process locks of one file (the fair and
//! the non-fair lock of a name) can have a task each at the file stage, each with a helper
//! of its own, and each is woken.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::file::{DEFAULT_DELAY, Dir, HeldFile, LockFile, Mode};
use crate::queue::Wait;
use crate::timer::Deadline;

/// A lock file as its users keep it: the path, the open file kept between uses, and the
/// held file while the lock is held.
#[derive(Default)]
pub(crate) struct FileSlot {
    pub(crate) path: PathBuf,
    /// The open file between uses (unlocked).
    pub(crate) kept: Option<LockFile>,
    /// The file while its lock is held.
    pub(crate) held: Option<HeldFile>,
}

impl FileSlot {
    /// Locks the slot's file in `mode` as `wait` allows, through the kept descriptor if any
    /// (see [`LockFile::acquire`]): the held file, for the caller to keep in `held`.
    pub(crate) fn lock(
        &mut self,
        name: &str,
        mode: Mode,
        wait: Wait,
        pause: Duration,
    ) -> Result<HeldFile, Error> {
        LockFile::acquire(
            &mut self.kept,
            &mut None,
            name,
            &self.path,
            mode,
            wait,
            pause,
        )
    }

    /// Releases the held file, if any, keeping its descriptor for the next use. Errors name
    /// lock `name` (the descriptor is then closed, which releases the lock).
    pub(crate) fn release(&mut self, name: &str) -> Result<(), Error> {
        match self.held.take() {
            Some(held) => {
                self.kept = Some(held.release(name)?);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// Whether lock files are awaited through helper threads. They need locks owned by the open
/// file (Linux's OFD locks, Windows' handle locks): a helper's own descriptor must exclude
/// the task's others, and closing a descriptor must not drop a lock held through another.
/// Classic POSIX locks (other Unix) are per process, so there a task tries at growing
/// intervals instead (see [`poll_file`]).
const HELPER_THREADS: bool = cfg!(any(target_os = "linux", target_os = "android", windows));

/// One try on the slot's file: `Ok(true)` if it is now locked, `Ok(false)` if it is held.
pub(crate) fn try_slot(
    slot: &mut FileSlot,
    dir: &mut Option<Dir>,
    name: &str,
    mode: Mode,
    pause: Duration,
) -> Result<bool, Error> {
    match LockFile::acquire(
        &mut slot.kept,
        dir,
        name,
        &slot.path,
        mode,
        Wait::Never,
        pause,
    ) {
        Ok(held) => {
            slot.held = Some(held);
            Ok(true)
        }
        Err(e) if e.is_acquire_failed() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Tries the slot's file at growing intervals (50 µs up to `pause`), sleeping on the
/// lockutils timer in between: the async wait where helper threads cannot be used.
#[allow(clippy::too_many_arguments)]
async fn poll_file<X>(
    cell: &Mutex<X>,
    dir: &mut Option<Dir>,
    slot_of: &impl Fn(&mut X) -> &mut FileSlot,
    name: &str,
    mode: Mode,
    wait: Wait,
    deadline: Option<Instant>,
    pause: Duration,
) -> Result<(), Error> {
    let max = pause.max(Duration::from_micros(50));
    let mut next = Duration::from_micros(50);
    loop {
        let wake_at = Instant::now() + next;
        let wake_at = deadline.map_or(wake_at, |d| d.min(wake_at));
        crate::timer::Sleep::until(wake_at).await;
        if try_slot(slot_of(&mut cell.lock()), dir, name, mode, pause)? {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::acquire_failed(name, wait.waited()));
        }
        next = (next * 2).min(max);
    }
}

/// Locks the file of the slot that `slot_of` finds in `cell`, for an async task: one try,
/// then (if `wait` allows) through a helper thread, adopting one left by a cancelled wait.
/// Only one task may be at this stage for a slot at a time (the callers' in-process lock or
/// gate sees to that). On success the slot's `file` is locked.
pub(crate) async fn lock_async<X>(
    cell: &Mutex<X>,
    slot_of: impl Fn(&mut X) -> &mut FileSlot,
    name: &str,
    mode: Mode,
    wait: Wait,
    deadline: Option<Instant>,
    pause: Duration,
) -> Result<(), Error> {
    // The lock directory as this operation opened it: every try, and the helper thread's
    // wait, open and check the file through it.
    let mut dir: Option<Dir> = None;
    loop {
        let helper = {
            let mut guard = cell.lock();
            let slot = slot_of(&mut guard);
            match try_slot(slot, &mut dir, name, mode, pause) {
                Ok(true) => return Ok(()),
                Ok(false) if wait != Wait::Never => {}
                Ok(false) => return Err(Error::acquire_failed(name, None)),
                Err(e) => return Err(e),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::acquire_failed(name, wait.waited()));
            }
            if HELPER_THREADS {
                let helper_dir = match &dir {
                    Some(d) => Some(
                        d.try_clone()
                            .map_err(|e| Error::io(name, d.path().to_owned(), "open", e))?,
                    ),
                    None => None,
                };
                Some(helpers().adopt_or_spawn(name, &slot.path, mode, helper_dir)?)
            } else {
                None
            }
        };
        // (Decided inside the block above, awaited outside it: no lock guard lives across
        // an await, so the future stays `Send`.)
        let Some(helper) = helper else {
            return poll_file(cell, &mut dir, &slot_of, name, mode, wait, deadline, pause).await;
        };
        let waited = WaitForFile::new(helper);
        let outcome = match deadline {
            Some(deadline) => Deadline::new(waited, deadline).await,
            None => Some(waited.await),
        };
        let Some(delivered) = outcome else {
            return Err(Error::acquire_failed(name, wait.waited()));
        };
        let mut guard = cell.lock();
        let slot = slot_of(&mut guard);
        match delivered {
            // The helper had been abandoned and ended: start over.
            None => continue,
            Some(Ok(held)) => {
                slot.held = Some(held);
                return Ok(());
            }
            Some(Err(e)) => return Err(e),
        }
    }
}

/// Helpers still running, by file and mode, whoever started them: a wait adopts a helper
/// left by a cancelled one even if the name's registry entry (and its cache) is gone since,
/// so a file never has more than one helper per mode.
#[derive(Default)]
pub(crate) struct Helpers {
    running: Mutex<std::collections::HashMap<(PathBuf, Mode), Arc<FileWaiter>>>,
}

pub(crate) fn helpers() -> &'static Helpers {
    static HELPERS: std::sync::LazyLock<Helpers> = std::sync::LazyLock::new(Helpers::default);
    &HELPERS
}

impl Helpers {
    /// The running helper for `path` in `mode`, or a new one.
    fn adopt_or_spawn(
        &self,
        name: &str,
        path: &Path,
        mode: Mode,
        dir: Option<Dir>,
    ) -> Result<Arc<FileWaiter>, Error> {
        let mut running = self.running.lock();
        // Only a helper nobody wants any more is adopted (and wanted again at once, under its
        // lock): one that another task still waits on stays that task's, or its wake-up
        // would go to whichever task polled last. (Two tasks of distinct locks of one file,
        // e.g. the fair and the non-fair lock of a name, can wait at once.)
        if let Some(helper) = running.get(&(path.to_owned(), mode)) {
            let mut state = helper.state.lock();
            if !state.finished && !state.wanted {
                state.wanted = true;
                drop(state);
                return Ok(helper.clone());
            }
        }
        let helper = FileWaiter::spawn(name, path.to_owned(), mode, dir)?;
        running.insert((path.to_owned(), mode), helper.clone());
        Ok(helper)
    }

    /// Forgets `helper` (it ended).
    fn remove(&self, helper: &FileWaiter) {
        let mut running = self.running.lock();
        let key = (helper.path.clone(), helper.mode);
        if running
            .get(&key)
            .is_some_and(|h| std::ptr::eq(Arc::as_ptr(h), helper))
        {
            running.remove(&key);
        }
    }
}

/// A helper thread waiting for one lock file.
pub(crate) struct FileWaiter {
    path: PathBuf,
    mode: Mode,
    state: Mutex<State>,
}

struct State {
    /// The locked file (or why not), until a task takes it.
    outcome: Option<Result<HeldFile, Error>>,
    waker: Option<Waker>,
    /// Whether a task still wants the lock.
    wanted: bool,
    /// The helper has ended (after delivering, or after letting an abandoned lock go).
    finished: bool,
}

impl FileWaiter {
    /// Starts a helper thread that waits for the lock file at `path`.
    /// `dir` is the lock directory as the waiting task's operation opened it, if it did.
    pub(crate) fn spawn(
        name: &str,
        path: PathBuf,
        mode: Mode,
        dir: Option<Dir>,
    ) -> Result<Arc<Self>, Error> {
        let waiter = Arc::new(Self {
            path: path.clone(),
            mode,
            state: Mutex::new(State {
                outcome: None,
                waker: None,
                wanted: true,
                finished: false,
            }),
        });
        let helper = waiter.clone();
        let (thread_name, thread_path) = (name.to_owned(), path.clone());
        std::thread::Builder::new()
            .name("lockutils-file-wait".into())
            .spawn(move || helper.run(&thread_name, thread_path, dir))
            .map_err(|e| Error::io(name, path, "start a thread to wait for", e))?;
        Ok(waiter)
    }

    fn run(&self, name: &str, path: PathBuf, mut dir: Option<Dir>) {
        let result = LockFile::acquire(
            &mut None,
            &mut dir,
            name,
            &path,
            self.mode,
            Wait::Forever,
            DEFAULT_DELAY,
        );
        let mut state = self.state.lock();
        state.finished = true;
        let waker = if state.wanted {
            state.outcome = Some(result);
            state.waker.take()
        } else {
            // Abandoned: nobody wants the lock any more; dropping the held file unlocks it.
            drop(result);
            None
        };
        drop(state);
        helpers().remove(self);
        // Woken without the lock: a waker may drop its task's wait, which takes it.
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The locked file once the helper has it; `Ready(None)` if the helper ended without
    /// delivering (it had been abandoned), so a new one is needed.
    fn poll(&self, cx: &mut Context<'_>) -> Poll<Option<Result<HeldFile, Error>>> {
        let mut state = self.state.lock();
        state.wanted = true;
        if let Some(outcome) = state.outcome.take() {
            return Poll::Ready(Some(outcome));
        }
        if state.finished {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The waiting task gives up. A file delivered meanwhile is unlocked here.
    fn abandon(&self) {
        let mut state = self.state.lock();
        state.wanted = false;
        state.waker = None;
        // A file delivered meanwhile is unlocked as it drops.
        drop(state.outcome.take());
    }
}

/// Waits for `helper` to deliver the lock file; abandons it when dropped before that.
pub(crate) struct WaitForFile {
    helper: Option<Arc<FileWaiter>>,
}

impl WaitForFile {
    pub(crate) fn new(helper: Arc<FileWaiter>) -> Self {
        Self {
            helper: Some(helper),
        }
    }
}

impl Future for WaitForFile {
    type Output = Option<Result<HeldFile, Error>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let helper = self.helper.as_ref().expect("polled after completion");
        let outcome = std::task::ready!(helper.poll(cx));
        self.helper = None;
        Poll::Ready(outcome)
    }
}

impl Drop for WaitForFile {
    fn drop(&mut self) {
        if let Some(helper) = self.helper.take() {
            helper.abandon();
        }
    }
}
