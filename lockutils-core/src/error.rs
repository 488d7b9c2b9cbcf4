//! The one error type of lockutils.

use std::fmt;
use std::time::Duration;

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
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The name of the lock this error concerns.
    pub fn lock_name(&self) -> &str {
        match self {
            Error::AcquireLockFailed { name, .. }
            | Error::UpgradeNotAllowed { name }
            | Error::NotHeld { name, .. }
            | Error::InvalidOptions { name, .. } => name,
        }
    }

    /// Whether this is [`Error::AcquireLockFailed`]: the lock was busy, nothing else went wrong.
    pub fn is_acquire_failed(&self) -> bool {
        matches!(self, Error::AcquireLockFailed { .. })
    }

    pub(crate) fn acquire_failed(name: &str, waited: Option<Duration>) -> Self {
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
