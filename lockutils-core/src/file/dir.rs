//! Lock directories, opened once per operation: every open, check and unlink of a lock file
//! goes through the directory's descriptor. Also what may stand where a lock file goes, and
//! the mode of the directories lockutils creates.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::limits::retry_if_out_of_descriptors;
use super::{Identity, identity};
use crate::error::Error;

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
pub(super) fn lock_file_name_of<'p>(name: &str, path: &'p Path) -> Result<&'p OsStr, Error> {
    path.file_name().ok_or_else(|| Error::UnsafeLockFile {
        name: name.to_owned(),
        path: path.to_owned(),
        reason: "the path ends in `..` or `/`, so it names a directory, not a lock file",
    })
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
    pub(super) fn of(meta: &fs::Metadata) -> Self {
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

    pub(super) fn kind_of(&self, file: &OsStr) -> io::Result<Option<FileKind>> {
        Ok(self.stat(file)?.map(|s| s.kind))
    }

    pub(super) fn identity_of(&self, file: &OsStr) -> io::Result<Option<Identity>> {
        Ok(self.stat(file)?.map(|s| s.identity))
    }

    /// Opens `file` in this directory for locking (created, mode `0o666` minus the umask, if
    /// `create`), never following a link, never blocking on a FIFO, never truncating;
    /// close-on-exec.
    pub(crate) fn open_file(&self, file: &OsStr, create: bool) -> io::Result<File> {
        #[cfg(unix)]
        {
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
            self.open_at(file, flags)
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

    /// The subdirectory `sub` of this directory, created (with the lock directory mode) if
    /// missing and `create`, opened through this directory's descriptor without following a
    /// link: a link planted there is refused (`ELOOP`/`ENOTDIR`), not followed.
    #[cfg(unix)]
    pub(crate) fn open_subdir(&self, sub: &OsStr, create: bool) -> io::Result<Dir> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let c = c_name(sub)?;
        // SAFETY: an open directory descriptor and a NUL-terminated name.
        let made = !create
            || unsafe {
                libc::mkdirat(
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    lock_directory_mode() as libc::mode_t,
                )
            } == 0;
        if !made {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
        let flags = libc::O_RDONLY
            | libc::O_DIRECTORY
            | libc::O_NOFOLLOW
            | libc::O_CLOEXEC
            | libc::O_NOCTTY;
        let fd = retry_if_out_of_descriptors(|| {
            // SAFETY: an open directory descriptor and a NUL-terminated name.
            let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) };
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })?;
        Ok(Dir {
            // SAFETY: `fd` was just opened and is owned by nothing else.
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
            path: self.path.join(sub),
        })
    }

    /// Opens (creating if `create`) `file` in this directory for reading and writing at
    /// any offset (unlike [`open_file`](Self::open_file), not appending), with the same
    /// care: no link followed, no descriptor leaked to children, no hang on a FIFO.
    #[cfg(unix)]
    pub(crate) fn open_data_file(&self, file: &OsStr, create: bool) -> io::Result<File> {
        let mut flags =
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
        if create {
            flags |= libc::O_CREAT;
        }
        retry_if_out_of_descriptors(|| self.open_at(file, flags))
    }

    /// `openat(2)` of `file` in this directory with `flags` (mode `0666` before the umask
    /// when it creates), retried on EINTR.
    #[cfg(unix)]
    fn open_at(&self, file: &OsStr, flags: libc::c_int) -> io::Result<File> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let c = c_name(file)?;
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

    /// This directory opened again through its descriptor (not its path): a new open file
    /// description of the same directory.
    #[cfg(unix)]
    fn open_self(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        // SAFETY: an open directory descriptor and a NUL-terminated name.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c".".as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }

    /// The names in this directory (`.` and `..` left out).
    pub(crate) fn entries(&self) -> io::Result<Vec<std::ffi::OsString>> {
        #[cfg(unix)]
        {
            use std::os::fd::IntoRawFd;
            use std::os::unix::ffi::OsStrExt;
            // fdopendir takes the descriptor over, so it gets one of its own: "." opened
            // through this directory's descriptor, a new open file description with its own
            // read offset (a duplicate would share the offset, and two listings at once on
            // one `Dir` would read past each other's entries).
            let own = self.open_self()?;
            let raw = own.into_raw_fd();
            // SAFETY: `raw` is an open directory descriptor that the stream now owns.
            let stream = unsafe { libc::fdopendir(raw) };
            if stream.is_null() {
                let e = io::Error::last_os_error();
                // SAFETY: fdopendir failed, so `raw` is still ours to close.
                unsafe { libc::close(raw) };
                return Err(e);
            }
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
