//! What can go wrong on the way to the server, and how it is told.

use std::time::Duration;

use lockutils_core::Error;
use tokio_postgres::error::{DbError, SqlState};

/// Why a round trip of a [`Session`] failed.
pub(crate) enum Fail {
    /// The client's error (the server's, or the connection's).
    Pg(tokio_postgres::Error),
    /// No answer within this bound.
    Silent(Duration),
    /// Another failure, already an error (the runtime of awaited sessions).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    Other(Error),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

pub(crate) fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// Whether `e` says that the session is gone (connection lost, server shut down or crashed),
/// rather than that a statement failed on a live session.
pub(crate) fn session_gone(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || match e.code() {
            None => true,
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || code.starts_with("57P")
            }
        }
}

/// `e` with its causes: the client's own text says little ("db error").
pub(crate) fn explain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub(crate) fn db_error(e: &tokio_postgres::Error) -> Option<&DbError> {
    e.as_db_error()
}

/// Why connecting failed.
pub(crate) enum ConnectFail {
    /// The client's error (the server's, or the socket's).
    Pg(tokio_postgres::Error),
    /// No answer within `bound`, which is what was left of the lock's timeout if `by_lock`
    /// (the connect timeout otherwise).
    Silent { bound: Duration, by_lock: bool },
    /// No runtime for the session.
    Runtime(String),
}

/// `d` to the millisecond, for messages.
pub(crate) fn millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
