//! The SQL of the advisory locks: lock, try, unlock, check, and reading the answers.

use lockutils_core::Wait;
use tokio_postgres::SimpleQueryMessage;

use crate::*;

pub(crate) fn lock_sql(key: i64, mode: Mode, wait: Wait) -> String {
    let suffix = suffix(mode);
    match wait_millis(wait) {
        None => format!(
            "SELECT CASE WHEN pg_try_advisory_lock{suffix}({key}) \
             THEN pg_current_xact_id()::text::bigint END"
        ),
        Some(ms) => format!(
            "SET lock_timeout = {ms}; SET statement_timeout = 0; \
             SELECT pg_advisory_lock{suffix}({key}); SELECT pg_current_xact_id()::text::bigint"
        ),
    }
}

/// The `lock_timeout` of a wait (0: none), or `None` for one try.
pub(crate) fn wait_millis(wait: Wait) -> Option<u64> {
    match wait {
        Wait::Never => None,
        Wait::Forever => Some(0),
        Wait::For(timeout) if timeout.is_zero() => None,
        Wait::For(timeout) => {
            // Rounded up: a server that gives up earlier than asked would be wrong.
            let ms = timeout.as_nanos().div_ceil(1_000_000);
            Some(
                u64::try_from(ms)
                    .unwrap_or(i32::MAX as u64)
                    .clamp(1, i32::MAX as u64),
            )
        }
    }
}

pub(crate) fn unlock_sql(key: i64, mode: Mode) -> String {
    format!("SELECT pg_advisory_unlock{}({key})", suffix(mode))
}

/// Whether this session holds the lock: a bigint advisory lock shows in `pg_locks` with the
/// key's high 32 bits in `classid`, its low ones in `objid`, and `objsubid = 1`.
pub(crate) fn held_sql(key: i64, mode: Mode) -> String {
    let bits = key as u64;
    let (high, low) = (bits >> 32, bits & 0xffff_ffff);
    format!(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
         AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
         AND classid = '{high}'::oid AND objid = '{low}'::oid AND mode = '{}')",
        pg_locks_mode(mode)
    )
}

/// The first column of the last row of a simple query's answer.
pub(crate) fn last_value(messages: &[SimpleQueryMessage]) -> Option<&str> {
    messages.iter().rev().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.get(0)),
        _ => None,
    })?
}

/// The outcome of a lock statement: the fencing token, or `None` when the lock was busy.
pub(crate) fn token_of(messages: &[SimpleQueryMessage]) -> Option<i64> {
    last_value(messages).and_then(|v| v.parse().ok())
}

/// The function-name suffix of `mode`'s advisory lock functions.
fn suffix(mode: Mode) -> &'static str {
    match mode {
        Mode::Shared => "_shared",
        Mode::Exclusive => "",
    }
}

/// How `pg_locks` names `mode`'s advisory lock.
fn pg_locks_mode(mode: Mode) -> &'static str {
    match mode {
        Mode::Shared => "ShareLock",
        Mode::Exclusive => "ExclusiveLock",
    }
}
