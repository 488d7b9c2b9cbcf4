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

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::queue::Wait;

/// Which side of a file lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Mode {
    /// Many holders at once (a read lock).
    Shared,
    /// One holder (a write lock).
    Exclusive,
}

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
struct Identity {
    dev: u64,
    ino: u64,
}

impl LockFile {
    /// Opens (creating if needed) the lock file at `path`, refusing anything but a regular
    /// file. Errors name the lock `name`.
    pub(crate) fn open(name: &str, path: &Path) -> Result<Self, Error> {
        let file = match open_options().open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    create_dirs(dir)
                        .map_err(|e| Error::io(name, dir.to_owned(), "create lock directory", e))?;
                }
                open_options()
                    .open(path)
                    .map_err(|e| open_error(name, path, e))?
            }
            Err(e) => return Err(open_error(name, path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io(name, path.to_owned(), "inspect lock file", e))?;
        if !meta.is_file() {
            return Err(Error::UnsafeLockFile {
                name: name.to_owned(),
                path: path.to_owned(),
                reason: "it is not a regular file",
            });
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
    /// replaced. `slot` holds the open file (reused if it is for `path`); on success it holds
    /// the locked file. `pause` is the longest pause between two tries of a timed wait.
    pub(crate) fn acquire(
        slot: &mut Option<LockFile>,
        name: &str,
        path: &Path,
        mode: Mode,
        wait: Wait,
        pause: Duration,
    ) -> Result<(), Error> {
        let deadline = match wait {
            Wait::For(timeout) => Instant::now().checked_add(timeout),
            Wait::Never | Wait::Forever => None,
        };
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
        loop {
            let (file, fresh) = match slot {
                Some(file) => (file, false),
                None => (slot.insert(LockFile::open(name, path)?), true),
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
            let valid = if fresh {
                file.is_still_at_path()
            } else {
                file.is_linked()
            };
            match valid {
                Ok(true) => return Ok(()),
                // Deleted or replaced while we waited (or while the descriptor sat cached):
                // this lock guards nothing. Let it go and lock what the path names now.
                Ok(false) => {
                    *slot = None;
                    retries += 1;
                    let out_of_time = match wait {
                        Wait::Never => retries > MAX_STALE_RETRIES,
                        Wait::For(_) => deadline.is_some_and(|d| Instant::now() >= d),
                        Wait::Forever => false,
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
            use std::os::fd::AsRawFd;
            // Plain fstat: std's `File::metadata` asks statx for more than a link count.
            // SAFETY: zeroed `stat` is valid plain data; the descriptor is open.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above; `st` is exclusively borrowed.
            if unsafe { libc::fstat(self.file.as_raw_fd(), &mut st) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(st.st_nlink > 0)
        }
        #[cfg(not(unix))]
        self.is_still_at_path()
    }

    /// Whether the path still names this file.
    pub(crate) fn is_still_at_path(&self) -> io::Result<bool> {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) => Ok(identity(&meta) == self.identity),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
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

fn identity(meta: &fs::Metadata) -> Identity {
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

fn create_dirs(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o777);
    builder.create(dir)
}

#[cfg(unix)]
fn open_options() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    // Read access for shared locks, write access for exclusive ones; append so that nothing
    // could ever truncate or overwrite what a lock file contains. std adds O_CLOEXEC.
    options
        .read(true)
        .append(true)
        .create(true)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    options
}

#[cfg(windows)]
fn open_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    options
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

        pub(crate) fn unlock(&self) -> io::Result<()> {
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

        pub(crate) fn unlock(&self) -> io::Result<()> {
            self.file.unlock()
        }
    }
}
