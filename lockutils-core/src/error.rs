//! The one error type of lockutils.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// The `tracing` target of every log line lockutils writes (oslo's lines, and the warnings
/// of releases that failed where no caller could be told).
pub const LOG_TARGET: &str = "lockutils";

/// Everything that can go wrong when taking or releasing a lock.
///
/// Every variant names the lock it concerns. The type is `Send + Sync + 'static`, so it travels
/// through `?` into `Box<dyn Error + Send + Sync>` and similar.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A non-blocking or timed acquire did not get the lock.
    ///
    /// Displayed exactly as oslo's `AcquireLockFailedException`:
    /// `Failed to acquire the lock NAME`, followed by how long it waited when a timeout was set.
    AcquireLockFailed {
        /// The lock's name.
        name: String,
        /// How long the caller waited before giving up; `None` for a non-blocking try.
        waited: Option<Duration>,
    },
    /// A thread holding the read side of a reader/writer lock asked for the write side.
    ///
    /// Upgrading could deadlock against another reader doing the same, so it is refused.
    UpgradeNotAllowed {
        /// The lock's name.
        name: String,
    },
    /// A thread released a lock (or a side of one) that it does not hold.
    NotHeld {
        /// The lock's name.
        name: String,
        /// Which side was released: `"read"`, `"write"` or `"lock"`.
        side: &'static str,
    },
    /// The options given to [`lock`](crate::lock()) cannot be honoured together.
    InvalidOptions {
        /// The lock's name.
        name: String,
        /// What is wrong and how to fix it.
        reason: &'static str,
    },
    /// An external lock needs a lock directory and none was configured.
    ///
    /// Displayed as oslo's `value required for option lock_path in group [oslo_concurrency]`,
    /// followed by the ways to set it.
    LockPathRequired {
        /// The lock's name.
        name: String,
    },
    /// The name (or prefix) cannot be made into a lock file inside the lock directory.
    InvalidName {
        /// The lock's name.
        name: String,
        /// Why not.
        reason: String,
    },
    /// Something other than a plain file sits where the lock file goes (a symbolic link that
    /// may have been planted, a directory, a FIFO...). It is refused, never followed.
    UnsafeLockFile {
        /// The lock's name.
        name: String,
        /// The lock file's path.
        path: PathBuf,
        /// What was found there.
        reason: &'static str,
    },
    /// The operating system refused an operation on a lock file or its directory.
    Io {
        /// The lock's name.
        name: String,
        /// The path involved.
        path: PathBuf,
        /// What was being attempted, e.g. `"open lock file"`.
        action: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// The external-lock backend failed for a reason other than the lock being busy: its
    /// server cannot be reached, refused the credentials, dropped the session holding the
    /// lock, or no backend is registered for the configured URL.
    Backend {
        /// The lock's name.
        name: String,
        /// The backend's target, e.g. its URL with any password replaced by `***`. Never a
        /// secret.
        target: String,
        /// What went wrong and, where there is one, how to fix it.
        reason: String,
    },
    /// A configuration file could not be read or understood.
    Config {
        /// The file.
        path: PathBuf,
        /// The 1-based line at fault, 0 when the file could not be read at all.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// How an unnamed lock is shown in messages.
pub(crate) fn display_name(name: &str) -> &str {
    if name.is_empty() { "<unnamed>" } else { name }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AcquireLockFailed { name, waited } => {
                write!(f, "Failed to acquire the lock {}", display_name(name))?;
                match waited {
                    Some(waited) => write!(f, " (gave up after waiting {waited:?})"),
                    None => Ok(()),
                }
            }
            Error::UpgradeNotAllowed { name } => write!(
                f,
                "lock {}: a reader may not take the write lock (privilege escalation not allowed); \
                 release the read lock first",
                display_name(name)
            ),
            Error::NotHeld { name, side } => write!(
                f,
                "lock {}: cannot release the {side} lock, this thread does not hold it",
                display_name(name)
            ),
            Error::InvalidOptions { name, reason } => {
                write!(f, "lock {}: {reason}", display_name(name))
            }
            Error::LockPathRequired { name } => write!(
                f,
                "value required for option lock_path in group [oslo_concurrency] \
                 (external lock {}): set the OSLO_LOCK_PATH environment variable, call \
                 lockutils::set_defaults(path), load a config with lock_path, \
                 or pass .lock_path(path)",
                display_name(name)
            ),
            Error::InvalidName { name, reason } => {
                write!(f, "invalid lock name {name:?}: {reason}")
            }
            Error::UnsafeLockFile { name, path, reason } => write!(
                f,
                "lock {}: refusing lock file {}: {reason}",
                display_name(name),
                path.display()
            ),
            Error::Io {
                name,
                path,
                action,
                source,
            } => write!(
                f,
                "lock {}: cannot {action} {}: {source}",
                display_name(name),
                path.display()
            ),
            Error::Backend {
                name,
                target,
                reason,
            } => write!(f, "lock {} ({target}): {reason}", display_name(name)),
            Error::Config { path, line, reason } => match line {
                0 => write!(f, "{}: {reason}", path.display()),
                line => write!(f, "{}:{line}: {reason}", path.display()),
            },
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// So that functions returning `std::io::Result` can use `?` on lock errors (and
/// `#[synchronized]` on them can return lock failures).
impl From<Error> for io::Error {
    fn from(error: Error) -> Self {
        let kind = match &error {
            Error::AcquireLockFailed {
                waited: Some(_), ..
            } => io::ErrorKind::TimedOut,
            Error::AcquireLockFailed { waited: None, .. } => io::ErrorKind::WouldBlock,
            Error::Io { source, .. } => source.kind(),
            Error::InvalidName { .. } | Error::InvalidOptions { .. } => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

impl Error {
    /// The name of the lock this error concerns (empty for a configuration error).
    pub fn lock_name(&self) -> &str {
        match self {
            Error::AcquireLockFailed { name, .. }
            | Error::UpgradeNotAllowed { name }
            | Error::NotHeld { name, .. }
            | Error::InvalidOptions { name, .. }
            | Error::LockPathRequired { name }
            | Error::InvalidName { name, .. }
            | Error::UnsafeLockFile { name, .. }
            | Error::Io { name, .. }
            | Error::Backend { name, .. } => name,
            Error::Config { .. } => "",
        }
    }

    /// Whether this is [`Error::AcquireLockFailed`]: the lock was busy, nothing else went wrong.
    pub fn is_acquire_failed(&self) -> bool {
        matches!(self, Error::AcquireLockFailed { .. })
    }

    /// An [`Error::Backend`] for lock `name` at `target` (which must hold no secret).
    pub fn backend(name: &str, target: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Backend {
            name: name.to_owned(),
            target: target.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(name: &str, path: PathBuf, action: &'static str, source: io::Error) -> Self {
        Error::Io {
            name: name.to_owned(),
            path,
            action,
            source,
        }
    }

    pub(crate) fn invalid_name(name: &str, reason: impl Into<String>) -> Self {
        Error::InvalidName {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }

    /// Reports the whole wait of `wait` in an [`Error::AcquireLockFailed`] that a later stage
    /// of a multi-stage acquire produced with what was left of it.
    pub(crate) fn with_waited(self, wait: crate::queue::Wait) -> Self {
        match self {
            Error::AcquireLockFailed { name, .. } => Error::AcquireLockFailed {
                name,
                waited: wait.waited(),
            },
            other => other,
        }
    }

    /// An [`Error::AcquireLockFailed`]: `name` was busy, after waiting `waited` (`None` for
    /// one try).
    pub fn acquire_failed(name: &str, waited: Option<Duration>) -> Self {
        Error::AcquireLockFailed {
            name: name.to_owned(),
            waited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_oslo() {
        let e = Error::acquire_failed("instance-42", None);
        assert_eq!(e.to_string(), "Failed to acquire the lock instance-42");
        let e = Error::acquire_failed("x", Some(Duration::from_millis(250)));
        assert_eq!(
            e.to_string(),
            "Failed to acquire the lock x (gave up after waiting 250ms)"
        );
        assert_eq!(e.lock_name(), "x");
        assert!(e.is_acquire_failed());
    }

    #[test]
    fn is_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<Error>();
    }
}
