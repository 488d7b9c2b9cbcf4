//! A lock directory as a whole: the lock files in it, who holds them, and the safe removal of
//! the unused ones (what `lockutils list` and `lockutils clean` do).
//!
//! # What counts as a lock file
//! A regular, empty file whose name is UTF-8 (and, when a prefix is given, starts with it as
//! [`lock_file_name`](crate::lock_file_name) would write it). oslo and lockutils never write
//! to a lock file, so anything with content, and anything that is not a regular file
//! (links, directories, FIFOs, sockets, devices), is not one: it is reported as skipped, with
//! the reason, and never opened, locked or removed. Subdirectories are not entered and links
//! are not followed.
//!
//! # One directory, one descriptor
//! [`LockDirectory::open`] resolves the directory's path once. Listing, probing and removal
//! then go through that descriptor (`openat`, `fstatat`, `unlinkat` without following a
//! link), so replacing the directory by a symbolic link after it was opened cannot steer a
//! removal into another directory. Whoever can rename entries in the *parent* of the lock
//! directory can still point its path elsewhere before it is opened: keep the parents of
//! lock directories writable by their owner only (as `/var/lib` and `/run` are).
//!
//! Linux only: removal relies on open-file-description locks, which a lock taken in this
//! process through another descriptor excludes too.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::file::{Dir, FileKind, NOT_EMPTY};

/// Who holds a lock file right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockFileState {
    /// Nobody.
    Free,
    /// Held shared (a read lock).
    Shared,
    /// Held exclusively.
    Exclusive,
}

/// A lock file found by [`LockDirectory::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockFileInfo {
    /// The file name (the lock's name, with its prefix).
    pub name: String,
    /// Who holds it.
    pub state: LockFileState,
    /// The holder's process id, when the kernel reports one (classic POSIX record locks, such
    /// as Python oslo's, have one; open-file-description locks do not).
    pub pid: Option<i32>,
    /// When the file was last modified (created, for a lock file).
    pub modified: SystemTime,
}

/// An entry of the directory that is not a lock file, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    /// The entry's name.
    pub name: OsString,
    /// Why it is not taken for a lock file.
    pub reason: &'static str,
}

/// What [`LockDirectory::list`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// The lock files, sorted by name.
    pub locks: Vec<LockFileInfo>,
    /// The entries left alone, sorted by name (with a prefix, names without it are not
    /// reported at all).
    pub skipped: Vec<SkippedEntry>,
    /// Lock files that could not be probed, with the error.
    pub problems: Vec<(String, io::Error)>,
}

/// What [`LockDirectory::remove_if_unused`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Removed while holding its lock.
    Removed,
    /// Held (or being taken) by someone: left alone.
    InUse,
    /// Modified more recently than the age asked for: left alone.
    TooRecent,
    /// Gone already.
    Missing,
    /// Not a lock file: left alone, for this reason.
    NotALockFile(&'static str),
}

/// A lock directory, opened once (see the [module docs](self)).
#[derive(Debug)]
pub struct LockDirectory {
    dir: Dir,
}

const NOT_UTF8: &str = "its name is not UTF-8, so it is no lock name";
const HIDDEN_DIR: &str = "it is a directory (not entered)";

impl LockDirectory {
    /// Opens the directory at `path`. Creates nothing.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self {
            dir: Dir::open(path.as_ref())?,
        })
    }

    /// The path the directory was opened by.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The path of the entry `name` (for messages).
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The lock files of the directory (those whose name starts with `prefix` as a lock file
    /// prefix, when one is given), with who holds each, and the entries that are not lock
    /// files. Opens no file for writing and creates nothing.
    pub fn list(&self, prefix: Option<&str>) -> io::Result<Listing> {
        let mut listing = Listing::default();
        for entry in self.dir.entries()? {
            let Some(name) = entry.to_str().map(str::to_owned) else {
                if prefix.is_none() {
                    listing.skipped.push(SkippedEntry {
                        name: entry,
                        reason: NOT_UTF8,
                    });
                }
                continue;
            };
            if let Some(prefix) = prefix
                && !has_prefix(&name, prefix)
            {
                continue;
            }
            let stat = match self.dir.stat(entry.as_os_str()) {
                Ok(Some(stat)) => stat,
                Ok(None) => continue,
                Err(e) => {
                    listing.problems.push((name, e));
                    continue;
                }
            };
            if let Some(reason) = stat.kind.refusal() {
                let reason = if stat.kind == FileKind::Directory {
                    HIDDEN_DIR
                } else {
                    reason
                };
                listing.skipped.push(SkippedEntry {
                    name: entry,
                    reason,
                });
                continue;
            }
            if stat.size != 0 {
                listing.skipped.push(SkippedEntry {
                    name: entry,
                    reason: NOT_EMPTY,
                });
                continue;
            }
            match self.probe(&name) {
                Ok(Some((state, pid))) => listing.locks.push(LockFileInfo {
                    name,
                    state,
                    pid,
                    modified: stat.modified,
                }),
                Ok(None) => {}
                Err(e) => listing.problems.push((name, e)),
            }
        }
        listing.locks.sort_by(|a, b| a.name.cmp(&b.name));
        listing.skipped.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listing)
    }

    /// Who holds the lock file `name`, without taking its lock; `None` if it is gone.
    fn probe(&self, name: &str) -> io::Result<Option<(LockFileState, Option<i32>)>> {
        let file = match self.dir.open_for_probe(name.as_ref()) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // SAFETY: zeroed flock is valid: a whole-file write-lock query.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        // SAFETY: a valid descriptor and an exclusively borrowed flock.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } == -1 {
            return Err(io::Error::last_os_error());
        }
        let pid = (fl.l_pid > 0).then_some(fl.l_pid);
        Ok(Some(match fl.l_type as libc::c_int {
            libc::F_UNLCK => (LockFileState::Free, None),
            libc::F_RDLCK => (LockFileState::Shared, pid),
            _ => (LockFileState::Exclusive, pid),
        }))
    }

    /// Removes the lock file `name` if nobody holds it (and, with `older_than`, if it was not
    /// modified for that long): takes its lock without waiting, checks that the name still
    /// leads to that same empty regular file, unlinks it, and lets the lock go. A process
    /// that was about to wait on the file then finds it gone and moves to a new one (see
    /// [`remove_external_lock_file`](crate::remove_external_lock_file)). Anything that is not
    /// a lock file is left alone.
    ///
    /// Limitation: Python oslo (fasteners) waits by polling with non-blocking tries, so a
    /// Python process between two tries is invisible; when it retries on a removed file it
    /// opens a new one, and holds that, while no one else can hold the old one.
    pub fn remove_if_unused(
        &self,
        name: &str,
        older_than: Option<Duration>,
    ) -> io::Result<Removal> {
        let file_name = std::ffi::OsStr::new(name);
        let Some(stat) = self.dir.stat(file_name)? else {
            return Ok(Removal::Missing);
        };
        if let Some(reason) = stat.kind.refusal() {
            return Ok(Removal::NotALockFile(reason));
        }
        if stat.size != 0 {
            return Ok(Removal::NotALockFile(NOT_EMPTY));
        }
        if let Some(age) = older_than
            && stat.modified.elapsed().is_ok_and(|e| e < age)
        {
            return Ok(Removal::TooRecent);
        }
        let file = match self.dir.open_file(file_name, false) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Missing),
            Err(e) => return Err(e),
        };
        if !try_write_lock(&file)? {
            return Ok(Removal::InUse);
        }
        // Locked: the name must still lead to this file, still empty, for it to be removed.
        let meta = file.metadata()?;
        match self.dir.stat(file_name)? {
            Some(now) if now.same_file(&meta) => {}
            Some(_) | None => return Ok(Removal::Missing),
        }
        if meta.len() != 0 {
            return Ok(Removal::NotALockFile(NOT_EMPTY));
        }
        match self.dir.unlink(file_name) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Missing),
            Err(e) => return Err(e),
        }
        // Its queue of fair waiters goes too, unless somebody queues on it.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        crate::file::fifo::remove_queue_if_idle(&self.dir, file_name)?;
        Ok(Removal::Removed)
        // Closing `file` releases the lock.
    }
}

/// Whether the lock file name `name` carries `prefix` as `lock_file_name` writes it.
fn has_prefix(name: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    let sep = if prefix.ends_with('-') { "" } else { "-" };
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(sep))
        .is_some_and(|rest| !rest.is_empty())
}

fn try_write_lock(file: &File) -> io::Result<bool> {
    // SAFETY: zeroed flock is valid: a whole-file lock (l_pid 0, as OFD locks require).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    loop {
        // SAFETY: a valid descriptor and an exclusively borrowed flock.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) } != -1 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN | libc::EACCES) => return Ok(false),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::has_prefix;

    #[test]
    fn prefixes_match_as_lock_file_names_write_them() {
        assert!(has_prefix("nova-a", "nova"));
        assert!(has_prefix("nova-a", "nova-"));
        assert!(!has_prefix("novaa", "nova"));
        assert!(!has_prefix("nova-", "nova"));
        assert!(!has_prefix("other", "nova"));
        assert!(has_prefix("x", ""));
    }
}
