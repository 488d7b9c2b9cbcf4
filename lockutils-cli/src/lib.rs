//! The command-line tools of lockutils: `lockutils-wrapper` (oslo's) and `lockutils run`.
//!
//! Exit statuses:
//! - the command's own status when it ran; `128 + N` when a signal N killed it;
//! - [`EXIT_USAGE`] (2) for a usage error or missing configuration (no lock directory, or
//!   one that does not exist), with a message naming the flag or variable to set;
//! - [`EXIT_NOT_FOUND`] (127) when the command does not exist, [`EXIT_CANNOT_RUN`] (126)
//!   when it cannot be run;
//! - [`EXIT_LOCK_FAILED`] (75, `EX_TEMPFAIL`) when `lockutils run` did not get its lock;
//! - [`EXIT_ERROR`] (1) for any other error (one line on stderr).
//!
//! # `lockutils run` and the death of `lockutils`
//! The lock must outlive no one and be outlived by no one. On lock files, the command
//! inherits the lock's descriptor (as `flock(1)` does): if `lockutils run` is killed, even
//! with SIGKILL, the command keeps holding the lock until it exits, and so does anything it
//! started that kept the descriptor open. A lock held on a server lives in `lockutils`'s own
//! session and cannot be shared: there the kernel kills the command (SIGKILL, through
//! `PR_SET_PDEATHSIG`) when `lockutils run` dies, so no command runs on without its lock.

#![warn(missing_docs)]

mod dir;
mod held;
mod run;
mod supervise;
mod wrapper;

pub use dir::{CleanOptions, clean, list};
pub use held::list_held;
pub use run::{RunOptions, run};
pub use supervise::{exit_code, run_command};
pub use wrapper::wrapper;

/// A usage error.
pub const EXIT_USAGE: i32 = 2;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;
/// The command was found but could not be run.
pub const EXIT_CANNOT_RUN: i32 = 126;
/// `lockutils run` did not get its lock (held, or not in time).
pub const EXIT_LOCK_FAILED: i32 = 75;
/// Any other error.
pub const EXIT_ERROR: i32 = 1;
