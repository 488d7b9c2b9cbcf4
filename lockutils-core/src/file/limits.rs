//! How many lock file descriptors a process keeps, and what happens when it runs out.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Lock file descriptors the process keeps open between uses, at most (beyond that, a
/// released lock closes its file). The bound in force is lower under a low descriptor limit:
/// an eighth of the soft `RLIMIT_NOFILE`, at least one. And when an open fails for want of
/// descriptors (`EMFILE`, `ENFILE`), lockutils closes the idle descriptors it keeps and tries
/// once more before reporting the error.
pub const MAX_KEPT_DESCRIPTORS: usize = 256;

/// Runs `open`; if the process (or system) is out of descriptors, closes the idle ones that
/// lockutils keeps and runs it once more.
pub(super) fn retry_if_out_of_descriptors<T>(
    mut open: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
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
