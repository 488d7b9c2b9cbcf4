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

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
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

/// oslo's default `delay`: the longest pause between two tries of a timed external wait.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(10);

/// Lock file descriptors the process keeps open between uses, at most (beyond that, a
/// released lock closes its file). The bound in force is lower under a low descriptor limit:
/// an eighth of the soft `RLIMIT_NOFILE`, at least one. And when an open fails for want of
/// descriptors (`EMFILE`, `ENFILE`), lockutils closes the idle descriptors it keeps and tries
/// once more before reporting the error.
pub const MAX_KEPT_DESCRIPTORS: usize = 256;

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
    /// replaced. `slot` holds the open file (reused if it is for `path`); on success it holds
    /// the locked file. `dir` is the directory of `path` as this operation opened it (opened
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
    ) -> Result<(), Error> {
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
                Ok(true) => return Ok(()),
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
    pub(crate) fn remove(&self, name: &str) -> Result<(), Error> {
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
                Err(Error::io(name, self.path.clone(), "remove lock file", e))
            }
            _ => Ok(()),
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

/// The mode of lock directories that lockutils creates (before the umask): see
/// [`set_lock_directory_mode`].
static DIRECTORY_MODE: AtomicU32 = AtomicU32::new(DEFAULT_DIRECTORY_MODE);

/// The default mode of lock directories that lockutils creates: `0o700`, before the umask.
///
/// Anyone who can open a lock file, even only for reading, can hold its lock (a shared
/// record lock needs nothing more) and so stall every process that wants it. A directory
/// only its owner can enter closes that door; oslo's default (`0o777` minus the umask,
/// usually `0o755`) leaves it open to every local user. Services of several users that
/// share a lock directory set `0o750` or `0o770` with a group of their own.
pub const DEFAULT_DIRECTORY_MODE: u32 = 0o700;

/// Sets the mode (before the umask) of the lock directories lockutils creates from now on,
/// e.g. `0o750` for services that share a directory through a group. Directories that
/// exist already are left as they are. Only the permission bits (`0o777`) are used.
pub fn set_lock_directory_mode(mode: u32) {
    DIRECTORY_MODE.store(mode & 0o777, Ordering::Relaxed);
}

/// The mode set with [`set_lock_directory_mode`] ([`DEFAULT_DIRECTORY_MODE`] if none).
pub fn lock_directory_mode() -> u32 {
    DIRECTORY_MODE.load(Ordering::Relaxed)
}

fn create_dirs(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, lock_directory_mode());
    builder.create(dir)
}

/// The file name part of a lock file's `path`.
fn lock_file_name_of<'p>(name: &str, path: &'p Path) -> Result<&'p OsStr, Error> {
    path.file_name().ok_or_else(|| Error::UnsafeLockFile {
        name: name.to_owned(),
        path: path.to_owned(),
        reason: "the path ends in `..` or `/`, so it names a directory, not a lock file",
    })
}

/// Runs `open`; if the process (or system) is out of descriptors, closes the idle ones that
/// lockutils keeps and runs it once more.
fn retry_if_out_of_descriptors<T>(mut open: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    match open() {
        Err(e) if is_out_of_descriptors(&e) => {
            refresh_descriptor_limit();
            if close_idle() == 0 {
                return Err(e);
            }
            open()
        }
        other => other,
    }
}

/// What closes the idle lock descriptors that the layers above keep (set by the file
/// backend, which keeps them): returns how many it closed.
static IDLE_CLOSER: std::sync::OnceLock<fn() -> usize> = std::sync::OnceLock::new();

/// Lets the file layer close idle kept descriptors when an open runs out of them.
pub(crate) fn set_idle_closer(closer: fn() -> usize) {
    IDLE_CLOSER.get_or_init(|| closer);
}

fn close_idle() -> usize {
    IDLE_CLOSER.get().map_or(0, |close| close())
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Idle lock descriptors kept, at most: an eighth of the soft descriptor limit, within
/// `1..=MAX_KEPT_DESCRIPTORS`. Read once and again whenever an open runs out.
static KEPT_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// How many lock file descriptors the process may keep open while idle (see
/// [`MAX_KEPT_DESCRIPTORS`]).
pub(crate) fn kept_descriptor_limit() -> usize {
    match KEPT_LIMIT.load(Ordering::Relaxed) {
        0 => refresh_descriptor_limit(),
        limit => limit,
    }
}

fn refresh_descriptor_limit() -> usize {
    let max = MAX_KEPT_DESCRIPTORS;
    #[cfg(unix)]
    let limit = {
        // SAFETY: zeroed rlimit is valid plain data; getrlimit fills it.
        let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: a valid resource and an exclusively borrowed rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
            usize::try_from(rl.rlim_cur / 8)
                .unwrap_or(max)
                .clamp(1, max)
        } else {
            max
        }
    };
    #[cfg(not(unix))]
    let limit = max;
    KEPT_LIMIT.store(limit, Ordering::Relaxed);
    limit
}

/// What sits at a lock file's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    Device,
    Other,
}

impl FileKind {
    fn of(meta: &fs::Metadata) -> Self {
        let t = meta.file_type();
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if t.is_fifo() {
                return FileKind::Fifo;
            }
            if t.is_socket() {
                return FileKind::Socket;
            }
            if t.is_block_device() || t.is_char_device() {
                return FileKind::Device;
            }
        }
        if t.is_file() {
            FileKind::Regular
        } else if t.is_dir() {
            FileKind::Directory
        } else if t.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        }
    }

    #[cfg(unix)]
    fn of_mode(mode: libc::mode_t) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFBLK | libc::S_IFCHR => FileKind::Device,
            _ => FileKind::Other,
        }
    }

    /// Why this cannot be a lock file; `None` for a regular file.
    pub(crate) fn refusal(self) -> Option<&'static str> {
        Some(match self {
            FileKind::Regular => return None,
            FileKind::Directory => "it is a directory",
            FileKind::Symlink => {
                "it is a symbolic link (which may have been planted); links to lock files are \
                 not followed"
            }
            FileKind::Fifo => "it is a FIFO (named pipe), not a regular file",
            FileKind::Socket => "it is a socket, not a regular file",
            FileKind::Device => "it is a device node, not a regular file; it was not opened",
            FileKind::Other => "it is not a regular file",
        })
    }
}

/// What a directory entry is, as [`Dir::entries`] and [`Dir::stat`] report it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub(crate) kind: FileKind,
    pub(crate) size: u64,
    /// Seconds since the epoch of the last modification.
    pub(crate) modified: std::time::SystemTime,
    identity: Identity,
}

impl Stat {
    /// Whether this is the file `meta` describes.
    pub(crate) fn same_file(&self, meta: &fs::Metadata) -> bool {
        self.identity == identity(meta)
    }
}

/// A directory opened once for one operation: every open, check and unlink in it goes
/// through this descriptor (`openat`, `fstatat`, `unlinkat`, never following a symbolic
/// link at the last step), so swapping the directory's path for a link midway cannot steer
/// the operation anywhere else.
pub(crate) struct Dir {
    #[cfg(unix)]
    fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the directory of the lock file `path`, creating it (and its parents) if missing.
    pub(crate) fn for_lock_file(name: &str, path: &Path) -> Result<Self, Error> {
        let dir = parent_of(path);
        match Self::open(dir) {
            Ok(d) => Ok(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_dirs(dir)
                    .map_err(|e| Error::io(name, dir.to_owned(), "create lock directory", e))?;
                Self::open(dir).map_err(|e| dir_error(name, dir, e))
            }
            Err(e) => Err(dir_error(name, dir, e)),
        }
    }

    /// Opens the directory of the lock file `path`; `None` if it does not exist.
    pub(crate) fn for_lock_file_existing(name: &str, path: &Path) -> Result<Option<Self>, Error> {
        let dir = parent_of(path);
        match Self::open(dir) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(dir_error(name, dir, e)),
        }
    }

    /// Opens the directory at `path` (its path is resolved once, here).
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let file = retry_if_out_of_descriptors(|| {
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_NOCTTY)
                    .open(path)
            })?;
            Ok(Self {
                fd: file.into(),
                path: path.to_owned(),
            })
        }
        #[cfg(not(unix))]
        {
            if !fs::metadata(path)?.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "not a directory",
                ));
            }
            Ok(Self {
                path: path.to_owned(),
            })
        }
    }

    /// Another descriptor of the same open directory (for another thread's part of one
    /// operation).
    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// The path the directory was opened by.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// What `file` in this directory is (a link is reported, not followed); `None` if
    /// nothing is there.
    pub(crate) fn stat(&self, file: &OsStr) -> io::Result<Option<Stat>> {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let c = c_name(file)?;
            // SAFETY: zeroed `stat` is valid plain data; fstatat fills it.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: an open directory descriptor, a NUL-terminated name, an exclusively
            // borrowed `stat`.
            let rc = unsafe {
                libc::fstatat(
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if rc != 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                };
            }
            let modified = std::time::UNIX_EPOCH
                + Duration::new(
                    u64::try_from(st.st_mtime).unwrap_or(0),
                    u32::try_from(st.st_mtime_nsec).unwrap_or(0),
                );
            Ok(Some(Stat {
                kind: FileKind::of_mode(st.st_mode),
                size: u64::try_from(st.st_size).unwrap_or(0),
                modified,
                identity: Identity {
                    dev: st.st_dev as u64,
                    ino: st.st_ino as u64,
                },
            }))
        }
        #[cfg(not(unix))]
        {
            match fs::symlink_metadata(self.path.join(file)) {
                Ok(meta) => Ok(Some(Stat {
                    kind: FileKind::of(&meta),
                    size: meta.len(),
                    modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                    identity: identity(&meta),
                })),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }
    }

    fn kind_of(&self, file: &OsStr) -> io::Result<Option<FileKind>> {
        Ok(self.stat(file)?.map(|s| s.kind))
    }

    fn identity_of(&self, file: &OsStr) -> io::Result<Option<Identity>> {
        Ok(self.stat(file)?.map(|s| s.identity))
    }

    /// Opens `file` in this directory for locking (created, mode `0o666` minus the umask, if
    /// `create`), never following a link, never blocking on a FIFO, never truncating;
    /// close-on-exec.
    pub(crate) fn open_file(&self, file: &OsStr, create: bool) -> io::Result<File> {
        #[cfg(unix)]
        {
            use std::os::fd::{AsRawFd, FromRawFd};
            let c = c_name(file)?;
            // Read access for shared locks, write access for exclusive ones; append so that
            // nothing could ever truncate or overwrite what a lock file contains.
            let mut flags = libc::O_RDWR
                | libc::O_APPEND
                | libc::O_CLOEXEC
                | libc::O_NOFOLLOW
                | libc::O_NONBLOCK
                | libc::O_NOCTTY;
            if create {
                flags |= libc::O_CREAT;
            }
            loop {
                // SAFETY: an open directory descriptor and a NUL-terminated name.
                let fd = unsafe {
                    libc::openat(
                        self.fd.as_raw_fd(),
                        c.as_ptr(),
                        flags,
                        0o666 as libc::c_uint,
                    )
                };
                if fd >= 0 {
                    // SAFETY: `fd` was just opened and is owned by nothing else.
                    return Ok(unsafe { File::from_raw_fd(fd) });
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        #[cfg(not(unix))]
        {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(create)
                .open(self.path.join(file))
        }
    }

    /// Opens `file` read-only for probing its lock (no creation, no link followed).
    pub(crate) fn open_for_probe(&self, file: &OsStr) -> io::Result<File> {
        #[cfg(unix)]
        {
            use std::os::fd::{AsRawFd, FromRawFd};
            let c = c_name(file)?;
            let flags = libc::O_RDONLY
                | libc::O_CLOEXEC
                | libc::O_NOFOLLOW
                | libc::O_NONBLOCK
                | libc::O_NOCTTY;
            // SAFETY: an open directory descriptor and a NUL-terminated name.
            let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just opened and is owned by nothing else.
            Ok(unsafe { File::from_raw_fd(fd) })
        }
        #[cfg(not(unix))]
        {
            File::open(self.path.join(file))
        }
    }

    /// Removes `file` from this directory (a link itself, never what it points to).
    pub(crate) fn unlink(&self, file: &OsStr) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let c = c_name(file)?;
            // SAFETY: an open directory descriptor and a NUL-terminated name.
            if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
        #[cfg(not(unix))]
        {
            fs::remove_file(self.path.join(file))
        }
    }

    /// The names in this directory (`.` and `..` left out).
    pub(crate) fn entries(&self) -> io::Result<Vec<std::ffi::OsString>> {
        #[cfg(unix)]
        {
            use std::os::fd::IntoRawFd;
            use std::os::unix::ffi::OsStrExt;
            // fdopendir takes the descriptor over, so it gets a duplicate (which shares the
            // open directory, not its path).
            let dup = self.fd.try_clone()?;
            let raw = dup.into_raw_fd();
            // SAFETY: `raw` is an open directory descriptor that the stream now owns.
            let stream = unsafe { libc::fdopendir(raw) };
            if stream.is_null() {
                let e = io::Error::last_os_error();
                // SAFETY: fdopendir failed, so `raw` is still ours to close.
                unsafe { libc::close(raw) };
                return Err(e);
            }
            // The duplicate shares the offset: start from the top.
            // SAFETY: a valid stream.
            unsafe { libc::rewinddir(stream) };
            let mut names = Vec::new();
            let result = loop {
                // readdir signals an error only through errno, so clear it first.
                clear_errno();
                // SAFETY: a valid stream; the entry is read before the next call.
                let entry = unsafe { libc::readdir(stream) };
                if entry.is_null() {
                    let e = io::Error::last_os_error();
                    break if e.raw_os_error() == Some(0) {
                        Ok(())
                    } else {
                        Err(e)
                    };
                }
                // SAFETY: d_name is NUL-terminated within the entry.
                let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
                let bytes = name.to_bytes();
                if bytes != b"." && bytes != b".." {
                    names.push(OsStr::from_bytes(bytes).to_owned());
                }
            };
            // SAFETY: closes the stream (and its descriptor) exactly once.
            unsafe { libc::closedir(stream) };
            result.map(|()| names)
        }
        #[cfg(not(unix))]
        {
            fs::read_dir(&self.path)?
                .map(|e| e.map(|e| e.file_name()))
                .collect()
        }
    }
}

impl fmt::Debug for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dir").field("path", &self.path).finish()
    }
}

/// Unlocks the file that `slot` holds, if any. If unlocking fails, the file is closed,
/// which releases the lock for sure, and the error is returned.
pub(crate) fn unlock_slot(slot: &mut Option<LockFile>, name: &str) -> Result<(), Error> {
    let Some(file) = slot else { return Ok(()) };
    match file.unlock() {
        Ok(()) => Ok(()),
        Err(e) => {
            let path = file.path().to_owned();
            // If unlocking failed, closing the descriptor releases the lock for sure.
            *slot = None;
            Err(Error::io(name, path, "unlock", e))
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

/// Deletes the lock file at `path` without holding its lock (what oslo always does; here
/// only where no lock file is held, e.g. with process locking disabled): through its
/// directory, only if it is an empty regular file. A missing file is fine.
pub(crate) fn remove_unheld(name: &str, path: &Path) -> Result<(), Error> {
    let Some(dir) = Dir::for_lock_file_existing(name, path)? else {
        return Ok(());
    };
    let file_name = lock_file_name_of(name, path)?;
    let refuse = |reason| Error::UnsafeLockFile {
        name: name.to_owned(),
        path: path.to_owned(),
        reason,
    };
    match dir.stat(file_name) {
        Ok(None) => return Ok(()),
        Ok(Some(stat)) => {
            if let Some(reason) = stat.kind.refusal() {
                return Err(refuse(reason));
            }
            if stat.size != 0 {
                return Err(refuse(NOT_EMPTY));
            }
        }
        Err(e) => return Err(Error::io(name, path.to_owned(), "inspect lock file", e)),
    }
    match dir.unlink(file_name) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(name, path.to_owned(), "remove lock file", e))
        }
        _ => Ok(()),
    }
}

/// Why a file with content is never deleted as a lock file.
pub(crate) const NOT_EMPTY: &str =
    "it is not empty, so it is not a lock file (lock files are never written); it was left alone";

/// The directory a lock file's `path` is in (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn dir_error(name: &str, dir: &Path, e: io::Error) -> Error {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ENOTDIR) {
        return Error::UnsafeLockFile {
            name: name.to_owned(),
            path: dir.to_owned(),
            reason: "the lock directory's path leads to something that is not a directory",
        };
    }
    Error::io(name, dir.to_owned(), "open lock directory", e)
}

/// Sets this thread's `errno` to 0.
#[cfg(unix)]
fn clear_errno() {
    // SAFETY: each returns a pointer to this thread's errno, valid for the thread's life.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "emscripten"))]
    unsafe {
        *libc::__errno_location() = 0;
    }
    // SAFETY: as above.
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "dragonfly"
    ))]
    unsafe {
        *libc::__error() = 0;
    }
    // SAFETY: as above.
    #[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
    unsafe {
        *libc::__errno() = 0;
    }
}

#[cfg(unix)]
fn c_name(file: &OsStr) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(file.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a file name"))
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
        pub(crate) fn unlock(&self) -> io::Result<()> {
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

        pub(crate) fn unlock(&self) -> io::Result<()> {
            self.file.unlock()
        }
    }
}
