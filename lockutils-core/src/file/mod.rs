//! Lock files: opened safely, locked with the operating system's record locks.
//!
//! # The primitive
//! - Linux: open-file-description locks (`fcntl(F_OFD_SETLK / F_OFD_SETLKW)`), a write lock
//!   (or a read lock for the shared side) on the whole file. They conflict with the classic
//!   POSIX record locks Python's oslo/fasteners take (`lockf`), so a Rust process and a Python
//!   process exclude each other; and they belong to the open file, so two descriptors in one
//!   process exclude each other too. Closing a descriptor drops only its own lock.
//! - Other Unix: classic `fcntl(F_SETLK / F_SETLKW)` record locks. They belong to the process,
//!   so callers always hold an in-process lock around them (as oslo does).
//! - Windows: `File::lock` / `File::lock_shared` from std.
//!
//! Never `flock(2)`: on Linux it does not conflict with POSIX record locks, so it would not
//! exclude a Python oslo process.
//!
//! # Opening
//! Lock files are opened with `O_CREAT` (mode `0666 & ~umask`), never truncated, with
//! `O_CLOEXEC` (no descriptor leaks into child processes), `O_NOFOLLOW` (a symbolic link
//! planted where the lock file goes is refused, not followed) and `O_NONBLOCK` (a FIFO planted
//! there cannot hang the open), and must turn out to be a regular file. Missing directories
//! are created (mode `0777 & ~umask`).
//!
//! # Identity
//! After the lock is taken, the path must still name the file that was locked. If the file
//! was deleted or replaced meanwhile, the lock is worthless: it is dropped, the path
//! reopened, and the lock taken again. That is what makes deleting lock files safe (see
//! `remove_external_lock_file`). Two checks, by cost:
//! - After opening the file, the path is looked up again and must name the same device and
//!   inode.
//! - When a kept descriptor is locked (at once or after waiting), the file must still have a
//!   name: `fstat` link count above zero. Deleting it, or replacing it by a rename over it or
//!   by delete-and-create, leaves the old file without a name, so this catches what deleters
//!   do, including a deletion while this process waited on the file, for the price of one
//!   `fstat` instead of a path walk (which costs as much as locking and unlocking together,
//!   and would cut contended throughput by a third). What it cannot see is a lock file
//!   renamed *away* (or given a second hard link, then unlinked) while its descriptor was
//!   kept here; nothing in lockutils or oslo does that.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::queue::Wait;

mod dir;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) mod fifo;
mod limits;

use dir::lock_file_name_of;
pub use dir::{DEFAULT_DIRECTORY_MODE, lock_directory_mode, set_lock_directory_mode};
pub(crate) use dir::{Dir, FileKind, NOT_EMPTY, remove_unheld};
pub use limits::MAX_KEPT_DESCRIPTORS;
use limits::retry_if_out_of_descriptors;
pub(crate) use limits::{kept_descriptor_limit, set_idle_closer};

pub(crate) use crate::queue::Mode;

/// oslo's default `delay`: the longest pause between two tries of a timed external wait.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(10);

/// The shortest pause between two tries of a timed wait (also the floor of `delay`).
const FIRST_PAUSE: Duration = Duration::from_micros(50);

/// How often a try reopens a file that was deleted under it before giving up.
const MAX_STALE_RETRIES: u32 = 8;

/// Lock files open in this process (kept ones included).
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// How many times this process image was forked (see [`fork_generation`]).
static FORKS: AtomicU64 = AtomicU64::new(0);

/// A counter that changes in a child after `fork()`. A descriptor kept from before the fork
/// shares its open file description, and so its lock, with the parent: the child must not use
/// it (it would "hold" whatever the parent holds).
fn fork_generation() -> u64 {
    #[cfg(unix)]
    {
        static HOOK: std::sync::Once = std::sync::Once::new();
        extern "C" fn in_child() {
            FORKS.fetch_add(1, Ordering::Relaxed);
        }
        HOOK.call_once(|| {
            // SAFETY: registers a handler that only bumps an atomic, which is async-signal-safe
            // as a fork handler must be.
            unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        });
    }
    FORKS.load(Ordering::Relaxed)
}

/// An open lock file.
#[derive(Debug)]
pub(crate) struct LockFile {
    file: File,
    path: PathBuf,
    identity: Identity,
    /// [`fork_generation`] when opened.
    generation: u64,
}

impl Drop for LockFile {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Device and inode: what "the same file" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    dev: u64,
    ino: u64,
}

impl LockFile {
    /// Opens (creating if needed) the lock file at `path` through `dir`, the directory
    /// `path` is in, opened beforehand: a swap of the directory's path after that cannot
    /// steer the open elsewhere. What sits there is checked before anything is opened (a
    /// device's open may have side effects), and again on the open file.
    pub(crate) fn open_in(name: &str, dir: &Dir, path: &Path) -> Result<Self, Error> {
        let file_name = lock_file_name_of(name, path)?;
        let unsafe_file = |reason| Error::UnsafeLockFile {
            name: name.to_owned(),
            path: path.to_owned(),
            reason,
        };
        match dir.kind_of(file_name) {
            Ok(Some(kind)) => {
                if let Some(reason) = kind.refusal() {
                    return Err(unsafe_file(reason));
                }
            }
            Ok(None) => {}
            Err(e) => return Err(Error::io(name, path.to_owned(), "inspect lock file", e)),
        }
        let file = retry_if_out_of_descriptors(|| dir.open_file(file_name, true))
            .map_err(|e| open_error(name, path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(name, path.to_owned(), "inspect lock file", e))?;
        if let Some(reason) = FileKind::of(&meta).refusal() {
            return Err(unsafe_file(reason));
        }
        OPEN.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            file,
            path: path.to_owned(),
            identity: identity(&meta),
            generation: fork_generation(),
        })
    }

    /// Lock files open in this process right now.
    pub(crate) fn open_count() -> usize {
        OPEN.load(Ordering::Relaxed)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock as `wait` allows, reopening the path if the file was deleted or
    /// replaced. `slot` holds the kept open file (reused if it is for `path`); on success the
    /// file moves out of it into the returned [`HeldFile`]. `dir` is the directory of `path` as this operation opened it (opened
    /// here when first needed, and kept for the operation's later calls). `pause` is the
    /// longest pause between two tries of a timed wait.
    pub(crate) fn acquire(
        slot: &mut Option<LockFile>,
        dir: &mut Option<Dir>,
        name: &str,
        path: &Path,
        mode: Mode,
        wait: Wait,
        pause: Duration,
    ) -> Result<HeldFile, Error> {
        let deadline = wait.deadline();
        // A kept descriptor of another path, or inherited through fork(), is closed. (Closing
        // an inherited copy leaves the parent's lock alone: the parent keeps its descriptor.)
        if slot
            .as_ref()
            .is_some_and(|f| f.path != path || f.generation != fork_generation())
        {
            *slot = None;
        }
        // Each retry follows a deletion of the file; bounded so that a tight loop of deleters
        // cannot keep a try from returning.
        let mut retries = 0u32;
        // The directory is opened once for the whole operation (`dir` keeps it across the
        // calls of one), when a file must be opened: every reopen after a deletion, and every
        // check, goes through the same descriptor.
        loop {
            let (file, fresh) = match slot {
                Some(file) => (file, false),
                None => {
                    let dir = match dir {
                        Some(dir) => &*dir,
                        None => dir.insert(Dir::for_lock_file(name, path)?),
                    };
                    (slot.insert(LockFile::open_in(name, dir, path)?), true)
                }
            };
            let locked = match (wait, deadline) {
                (Wait::Never, _) => file.try_lock(mode),
                (Wait::Forever, _) | (Wait::For(_), None) => file.lock(mode).map(|()| true),
                (Wait::For(_), Some(deadline)) => file.lock_until(mode, deadline, pause),
            }
            .map_err(|e| Error::io(name, path.to_owned(), "lock", e))?;
            if !locked {
                return Err(Error::acquire_failed(name, wait.waited()));
            }
            let valid = match (fresh, &*dir) {
                (true, Some(dir)) => file.is_still_in(dir),
                _ => file.is_linked(),
            };
            match valid {
                Ok(true) => {
                    let file = slot.take().expect("the file just locked");
                    return Ok(HeldFile { file: Some(file) });
                }
                // Deleted or replaced while we waited (or while the descriptor sat cached):
                // this lock guards nothing. Let it go and lock what the path names now.
                Ok(false) => {
                    *slot = None;
                    retries += 1;
                    // A try is over after a bounded number of deletions; a wait, at its end.
                    let out_of_time = match wait {
                        Wait::Never => retries > MAX_STALE_RETRIES,
                        Wait::For(_) | Wait::Forever => wait.is_over(deadline),
                    };
                    if out_of_time {
                        return Err(Error::acquire_failed(name, wait.waited()));
                    }
                }
                Err(e) => {
                    let _ = file.unlock();
                    return Err(Error::io(name, path.to_owned(), "check lock file", e));
                }
            }
        }
    }

    /// Whether this file still has a name (see the module docs for when that suffices).
    fn is_linked(&self) -> io::Result<bool> {
        #[cfg(unix)]
        {
            has_name(&self.file)
        }
        #[cfg(not(unix))]
        {
            let dir = Dir::for_lock_file(&self.path.display().to_string(), &self.path)
                .map_err(io::Error::other)?;
            self.is_still_in(&dir)
        }
    }

    /// Whether `dir`, the directory this file was opened through, still names it under the
    /// file's name.
    pub(crate) fn is_still_in(&self, dir: &Dir) -> io::Result<bool> {
        let Some(file_name) = self.path.file_name() else {
            return Ok(false);
        };
        Ok(dir
            .identity_of(file_name)?
            .is_some_and(|found| found == self.identity))
    }

    /// The descriptor.
    #[cfg(unix)]
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.file.as_raw_fd()
    }

    /// Whether this descriptor was opened in this process, not inherited through `fork()`.
    /// An inherited one shares its open file description, and so its lock, with the parent.
    pub(crate) fn is_own(&self) -> bool {
        self.generation == fork_generation()
    }

    /// Deletes this lock file, which must be held: through its directory opened anew, and
    /// only if the name there is still this file and the file is empty (lock files are
    /// never written). A missing file is fine. Errors name the lock `name`.
    fn remove(&self, name: &str) -> Result<(), Error> {
        let dir = Dir::for_lock_file_existing(name, &self.path)?;
        let Some(dir) = dir else { return Ok(()) };
        let file_name = lock_file_name_of(name, &self.path)?;
        let refuse = |reason| Error::UnsafeLockFile {
            name: name.to_owned(),
            path: self.path.clone(),
            reason,
        };
        match dir.identity_of(file_name) {
            Ok(None) => return Ok(()),
            Ok(Some(found)) if found != self.identity => {
                return Err(refuse(
                    "the name no longer leads to the locked file (the lock directory or the \
                     file was replaced while it was held); nothing was removed",
                ));
            }
            Ok(Some(_)) => {}
            Err(e) => return Err(Error::io(name, self.path.clone(), "inspect lock file", e)),
        }
        let meta = self
            .file
            .metadata()
            .map_err(|e| Error::io(name, self.path.clone(), "inspect lock file", e))?;
        if meta.len() != 0 {
            return Err(refuse(NOT_EMPTY));
        }
        match dir.unlink(file_name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::io(name, self.path.clone(), "remove lock file", e));
            }
            _ => {}
        }
        // Its queue of fair waiters goes too, unless somebody queues on it.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        fifo::remove_queue_if_idle(&dir, file_name)
            .map_err(|e| Error::io(name, self.path.clone(), "remove the lock's queue file", e))?;
        Ok(())
    }

    fn lock_until(&self, mode: Mode, deadline: Instant, max_pause: Duration) -> io::Result<bool> {
        // No operating system offers a timed wait for a record lock, so a timed wait tries
        // with growing pauses (a wait without timeout blocks in the kernel instead).
        let max_pause = max_pause.max(FIRST_PAUSE);
        let mut pause = FIRST_PAUSE;
        loop {
            if self.try_lock(mode)? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(max_pause);
        }
    }
}

pub(super) fn identity(meta: &fs::Metadata) -> Identity {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
    #[cfg(windows)]
    {
        // Stable std offers no file index on Windows; creation time and length of a lock file
        // (never written) identify it well enough for the delete-and-recreate check.
        use std::os::windows::fs::MetadataExt;
        Identity {
            dev: meta.creation_time(),
            ino: meta.file_size(),
        }
    }
}

fn open_error(name: &str, path: &Path, e: io::Error) -> Error {
    #[cfg(unix)]
    {
        match e.raw_os_error() {
            // O_NOFOLLOW on a symbolic link (Linux: ELOOP; the BSDs: EMLINK).
            Some(libc::ELOOP | libc::EMLINK) => {
                return Error::UnsafeLockFile {
                    name: name.to_owned(),
                    path: path.to_owned(),
                    reason: "it is a symbolic link (which may have been planted), or the lock \
                             directory's path loops through links; links to lock files are \
                             not followed",
                };
            }
            Some(libc::ENAMETOOLONG) => {
                let file = path.file_name().unwrap_or_default().to_string_lossy();
                return crate::config::name_too_long(name, &file);
            }
            _ => {}
        }
    }
    if path.is_dir() {
        return Error::UnsafeLockFile {
            name: name.to_owned(),
            path: path.to_owned(),
            reason: "it is a directory",
        };
    }
    Error::io(name, path.to_owned(), "open lock file", e)
}

/// A lock file whose lock this process holds: so long as it exists, the lock is held.
/// Dropping it unlocks; [`release`](Self::release) unlocks and hands the descriptor back for
/// keeping. Deleting the lock file is [`remove`](Self::remove), which needs the lock held.
#[must_use = "the lock file is unlocked as soon as this is dropped"]
#[clippy::has_significant_drop]
#[derive(Debug)]
pub(crate) struct HeldFile {
    /// Always `Some` until `release` or `drop` takes it.
    file: Option<LockFile>,
}

impl HeldFile {
    fn file(&self) -> &LockFile {
        self.file.as_ref().expect("held until released")
    }

    pub(crate) fn path(&self) -> &Path {
        self.file().path()
    }

    /// The descriptor that holds the lock.
    #[cfg(unix)]
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        self.file().raw_fd()
    }

    /// Deletes the lock file while the lock is held: see [`LockFile::remove`].
    pub(crate) fn remove(&self, name: &str) -> Result<(), Error> {
        self.file().remove(name)
    }

    /// Unlocks, and hands the open file back for keeping. If unlocking fails, the file is
    /// closed (which releases the lock for sure) and the error, naming lock `name`, returned.
    pub(crate) fn release(mut self, name: &str) -> Result<LockFile, Error> {
        let file = self.file.take().expect("held until released");
        match file.unlock() {
            Ok(()) => Ok(file),
            Err(e) => Err(Error::io(name, file.path().to_owned(), "unlock", e)),
        }
    }
}

impl Drop for HeldFile {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Unlocked here, or else released when the descriptor closes right after.
            let _ = file.unlock();
        }
    }
}

/// Makes the process `command` starts inherit the descriptor `fd` (which stays open here):
/// its close-on-exec flag is cleared in the child, between `fork` and `exec`.
#[cfg(unix)]
pub(crate) fn inherit_descriptor(command: &mut std::process::Command, fd: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls fcntl, which is async-signal-safe, as code between
    // fork and exec must be; it changes the child's own descriptor table.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(unix)]
mod os {
    use std::io;
    use std::os::fd::AsRawFd;

    use super::{LockFile, Mode};

    #[cfg(any(target_os = "linux", target_os = "android"))]
    const SETLK: libc::c_int = libc::F_OFD_SETLK;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const SETLKW: libc::c_int = libc::F_OFD_SETLKW;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const SETLK: libc::c_int = libc::F_SETLK;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const SETLKW: libc::c_int = libc::F_SETLKW;

    /// `fcntl(cmd)` with a whole-file lock of `kind`; retried on EINTR.
    fn fcntl_lock(file: &LockFile, cmd: libc::c_int, kind: libc::c_int) -> io::Result<()> {
        // SAFETY: `flock` is plain data; all-zero is a valid value (l_pid must be 0 for OFD
        // locks, and start 0 / length 0 means the whole file).
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = kind as _;
        lock.l_whence = libc::SEEK_SET as _;
        loop {
            // SAFETY: a valid open descriptor and a valid, exclusively borrowed `flock`.
            let rc = unsafe { libc::fcntl(file.file.as_raw_fd(), cmd, &mut lock) };
            if rc != -1 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    fn kind(mode: Mode) -> libc::c_int {
        match mode {
            Mode::Shared => libc::F_RDLCK,
            Mode::Exclusive => libc::F_WRLCK,
        }
    }

    impl LockFile {
        /// Waits in the kernel until the lock is ours.
        pub(crate) fn lock(&self, mode: Mode) -> io::Result<()> {
            fcntl_lock(self, SETLKW, kind(mode))
        }

        /// One try; `false` if another holder has it.
        pub(crate) fn try_lock(&self, mode: Mode) -> io::Result<bool> {
            match fcntl_lock(self, SETLK, kind(mode)) {
                Ok(()) => Ok(true),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        }

        /// Unlocks, unless this descriptor was inherited through `fork()`: its lock is the
        /// parent's (one open file description), and only the parent may let it go.
        pub(in crate::file) fn unlock(&self) -> io::Result<()> {
            if !self.is_own() {
                return Ok(());
            }
            fcntl_lock(self, SETLK, libc::F_UNLCK)
        }
    }
}

#[cfg(windows)]
mod os {
    use std::fs::TryLockError;
    use std::io;

    use super::{LockFile, Mode};

    impl LockFile {
        pub(crate) fn lock(&self, mode: Mode) -> io::Result<()> {
            match mode {
                Mode::Shared => self.file.lock_shared(),
                Mode::Exclusive => self.file.lock(),
            }
        }

        pub(crate) fn try_lock(&self, mode: Mode) -> io::Result<bool> {
            let result = match mode {
                Mode::Shared => self.file.try_lock_shared(),
                Mode::Exclusive => self.file.try_lock(),
            };
            match result {
                Ok(()) => Ok(true),
                Err(TryLockError::WouldBlock) => Ok(false),
                Err(TryLockError::Error(e)) => Err(e),
            }
        }

        pub(in crate::file) fn unlock(&self) -> io::Result<()> {
            self.file.unlock()
        }
    }
}

/// Whether the open `file` still has a name (a link count above 0): one plain `fstat`
/// (std's `File::metadata` asks `statx` for more than a link count).
#[cfg(unix)]
pub(crate) fn has_name(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: zeroed `stat` is valid plain data; the descriptor is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `st` is exclusively borrowed.
    if unsafe { libc::fstat(file.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_nlink > 0)
}
