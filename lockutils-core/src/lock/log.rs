//! oslo's log lines, all of them: `lock()`'s (`Acquiring lock "NAME"`...) and
//! `#[synchronized]`'s (`Lock "NAME" acquired by "FUNC" :: waited 0.000s`...), on the
//! `tracing` target [`LOG_TARGET`].

use std::time::Instant;

use crate::error::Error;

pub use crate::error::LOG_TARGET;

/// Whether oslo's DEBUG lines could be wanted at all: one load, inlined into the fast path;
/// the line itself is formatted out of line by [`log_line`].
#[inline(always)]
pub(crate) fn debug_enabled() -> bool {
    tracing::level_enabled!(tracing::Level::DEBUG)
}

/// oslo's log lines of `lock()`, formatted out of line.
#[derive(Clone, Copy)]
pub(crate) enum LogLine {
    Acquiring,
    Acquired,
    AcquiredExternal,
    Releasing,
}

#[cold]
#[inline(never)]
pub(crate) fn log_line(name: &str, line: LogLine) {
    match line {
        LogLine::Acquiring => {
            tracing::debug!(target: LOG_TARGET, lock = name, "Acquiring lock \"{name}\"")
        }
        LogLine::Acquired => {
            tracing::debug!(target: LOG_TARGET, lock = name, "Acquired lock \"{name}\"")
        }
        LogLine::AcquiredExternal => {
            tracing::debug!(target: LOG_TARGET, lock = name, "Acquired external semaphore \"{name}\"")
        }
        LogLine::Releasing => {
            tracing::debug!(target: LOG_TARGET, lock = name, "Releasing lock \"{name}\"")
        }
    }
}

/// Logs oslo's `Acquiring lock "NAME" by "FUNC"`; returns when.
pub(crate) fn log_acquiring(name: &str, func: &str) -> Instant {
    tracing::debug!(target: LOG_TARGET, lock = name, "Acquiring lock \"{name}\" by \"{func}\"");
    Instant::now()
}

/// Logs how an acquire asked for at `asked` ended; on success, returns what the `released`
/// line needs.
pub(crate) fn log_outcome(
    name: &str,
    func: &'static str,
    asked: Instant,
    error: Option<&Error>,
) -> Option<(Instant, &'static str)> {
    if error.is_some() {
        tracing::debug!(
            target: LOG_TARGET,
            lock = name,
            "Lock \"{name}\" \"unacquired\" by \"{func}\" :: held N/A"
        );
        return None;
    }
    let now = Instant::now();
    tracing::debug!(
        target: LOG_TARGET,
        lock = name,
        "Lock \"{name}\" acquired by \"{func}\" :: waited {:.3}s",
        (now - asked).as_secs_f64()
    );
    Some((now, func))
}

/// Logs oslo's `Lock "NAME" "released" by "FUNC" :: held 0.000s`.
pub(crate) fn log_released(name: &str, func: &str, taken: Instant) {
    tracing::debug!(
        target: LOG_TARGET,
        lock = name,
        "Lock \"{name}\" \"released\" by \"{func}\" :: held {:.3}s",
        taken.elapsed().as_secs_f64()
    );
}
