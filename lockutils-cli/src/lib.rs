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

use std::ffi::OsString;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

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

/// Signals passed on to the command while it runs (rather than ending this process, which
/// would release the lock, or leave the wrapper's directory, while the command still runs).
const FORWARDED: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
];

/// oslo's `lockutils-wrapper`: runs `command` with `OSLO_LOCK_PATH` set to a new private
/// directory (mode 0700), removes the directory afterwards, and returns the command's exit
/// status. If the directory cannot be removed, that is reported on stderr, and the status is
/// [`EXIT_ERROR`] when the command succeeded (a failed command's own status is kept).
pub fn wrapper(program: &str, command: &[OsString]) -> i32 {
    let Some((cmd, args)) = command.split_first() else {
        eprintln!("usage: {program} COMMAND [ARGS...]");
        return EXIT_USAGE;
    };
    let dir = match private_dir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("{program}: cannot create a private lock directory: {e}");
            return EXIT_ERROR;
        }
    };
    let mut child = Command::new(cmd);
    child.args(args).env(lockutils::LOCK_PATH_ENV, &dir);
    let code = run_command(program, child);
    let removed = std::fs::remove_dir_all(&dir);
    if let Err(e) = &removed {
        eprintln!("{program}: cannot remove {}: {e}", dir.display());
    }
    status_after_cleanup(code, &removed)
}

/// The wrapper's status: the command's, unless the command succeeded and the clean-up
/// failed (the command's own failure says more than ours; its success must not hide ours).
fn status_after_cleanup(code: i32, removed: &io::Result<()>) -> i32 {
    match removed {
        Err(_) if code == 0 => EXIT_ERROR,
        _ => code,
    }
}

/// A new directory only this user can use, in the system's temporary directory.
fn private_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    let pid = std::process::id();
    for attempt in 0..1000u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("lockutils-{pid}-{nanos:x}-{attempt}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free directory name"))
}

/// Runs `command` (no shell) with SIGINT, SIGTERM and SIGHUP passed on to it, and returns
/// its exit status (`128 + N` if signal N killed it).
pub fn run_command(program: &str, mut command: Command) -> i32 {
    let name = command.get_program().to_string_lossy().into_owned();
    // Block the forwarded signals here (a thread then waits for them and passes them on);
    // the command gets the usual mask back.
    let set = signal_set();
    let mut old = signal_set();
    // SAFETY: valid signal sets; changes this thread's mask only.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    // SAFETY: sigprocmask is async-signal-safe, as code between fork and exec must be.
    unsafe {
        command.pre_exec(move || {
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            // SAFETY: restores the mask saved above.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
            return match e.kind() {
                io::ErrorKind::NotFound => {
                    eprintln!("{program}: {name}: command not found");
                    EXIT_NOT_FOUND
                }
                _ => {
                    eprintln!("{program}: {name}: {e}");
                    EXIT_CANNOT_RUN
                }
            };
        }
    };
    let pid = child.id() as libc::pid_t;
    // Set, under this mutex, before the child is reaped: its PID may then be reused, and the
    // forwarder must not signal a stranger.
    let reaped = std::sync::Arc::new(std::sync::Mutex::new(false));
    {
        let reaped = reaped.clone();
        // The forwarding thread inherits the blocked mask and waits for those signals.
        std::thread::spawn(move || {
            loop {
                // SAFETY: zeroed siginfo_t is valid; sigwaitinfo fills it.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                // SAFETY: waits on a valid set of signals blocked in this thread.
                let signal = unsafe { libc::sigwaitinfo(&set, &mut info) };
                // From the terminal (Ctrl-C), the kernel signals the whole process group:
                // the command got it already and must not get it twice.
                if signal <= 0 || info.si_code == libc::SI_KERNEL {
                    continue;
                }
                let reaped = reaped.lock().unwrap_or_else(|e| e.into_inner());
                if !*reaped {
                    // SAFETY: signals our own child, not yet reaped.
                    unsafe { libc::kill(pid, signal) };
                }
            }
        });
    }
    // Wait without reaping, mark it reaped, then reap.
    // SAFETY: zeroed siginfo_t is valid; waitid fills it for our own child.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    *reaped.lock().unwrap_or_else(|e| e.into_inner()) = true;
    let mut child = child;
    match child.wait() {
        Ok(status) => exit_code(status),
        Err(e) => {
            eprintln!("{program}: waiting for {name}: {e}");
            EXIT_ERROR
        }
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset adds valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in FORWARDED {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// The shell's convention: the status, or 128 + the signal that killed the command.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// What `lockutils run` takes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The lock name.
    pub name: String,
    /// Take the inter-process lock file too (default on).
    pub external: bool,
    /// Lock file prefix.
    pub prefix: Option<String>,
    /// Lock directory (falls back to `OSLO_LOCK_PATH`).
    pub lock_path: Option<PathBuf>,
    /// Take the shared (reader) side of the inter-process reader/writer lock.
    pub shared: bool,
    /// One try only.
    pub nonblocking: bool,
    /// Wait at most this long.
    pub timeout: Option<std::time::Duration>,
}

/// `lockutils run`: holds the lock while `command` runs; returns the command's status, or
/// [`EXIT_LOCK_FAILED`] if the lock was not taken.
pub fn run(options: &RunOptions, command: &[OsString]) -> i32 {
    const PROGRAM: &str = "lockutils run";
    let Some((cmd, args)) = command.split_first() else {
        eprintln!("usage: lockutils run NAME [OPTIONS] -- COMMAND [ARGS...]");
        return EXIT_USAGE;
    };
    // A backend URL (LOCKUTILS_BACKEND_URL) moves external locks off lock files.
    let url = backend_url();
    let on_files = (options.external || options.shared) && url.is_none();
    let file = match check_run_options(options, on_files) {
        Ok(file) => file,
        Err(message) => {
            eprintln!("{PROGRAM}: {message}");
            return EXIT_USAGE;
        }
    };
    let lock_path = options.lock_path.as_deref();
    // Where the lock is, for a busy lock's message (other errors say it themselves).
    let place = match (&url, &file) {
        (Some(url), _) => format!(" on {}", lockutils::redact_url(url)),
        (None, Some(file)) => format!(" (file {})", file.display()),
        (None, None) => String::new(),
    };
    let failed = |e: lockutils::Error| {
        if e.is_acquire_failed() {
            eprintln!("{PROGRAM}: {e}{place}");
            EXIT_LOCK_FAILED
        } else {
            eprintln!("{PROGRAM}: {e}");
            EXIT_ERROR
        }
    };
    let mut child = Command::new(cmd);
    child.args(args);
    if options.shared {
        if let Some(url) = &url {
            return shared_on_server(options, url, || {
                die_with_parent(&mut child);
                run_command(PROGRAM, child)
            })
            .unwrap_or_else(failed);
        }
        let Some(path) = file else {
            unreachable!("a shared run on files has a lock file")
        };
        let rw = lockutils::InterProcessReaderWriterLock::new(path);
        let guard = match (options.nonblocking, options.timeout) {
            (true, _) => rw.try_read(),
            (false, Some(timeout)) => rw.try_read_for(timeout),
            (false, None) => rw.read(),
        };
        return match guard {
            Ok(guard) => {
                guard.share_with_child(&mut child);
                run_command(PROGRAM, child)
            }
            Err(e) => failed(e),
        };
    }
    let mut builder = lockutils::lock(&options.name)
        .external(options.external)
        .blocking(!options.nonblocking)
        .do_log(false);
    if let Some(prefix) = &options.prefix {
        builder = builder.prefix(prefix);
    }
    if let Some(dir) = lock_path {
        builder = builder.lock_path(dir);
    }
    if let Some(timeout) = options.timeout {
        builder = builder.timeout(timeout);
    }
    match builder.acquire() {
        Ok(guard) => {
            if guard.is_external() && !guard.share_with_child(&mut child) {
                die_with_parent(&mut child);
            }
            run_command(PROGRAM, child)
        }
        Err(e) => failed(e),
    }
}

/// What `run` can tell is wrong before it tries the lock: a message that names the flag or
/// variable to fix (exit [`EXIT_USAGE`]). On lock files, returns the lock file's path.
fn check_run_options(options: &RunOptions, on_files: bool) -> Result<Option<PathBuf>, String> {
    if let Some(prefix) = &options.prefix
        && prefix.contains(['/', '\\', '\0'])
    {
        return Err(format!(
            "--prefix {prefix:?}: a lock file prefix cannot contain '/', '\\' or a NUL byte"
        ));
    }
    if !on_files {
        return Ok(None);
    }
    let (dir, from) = match &options.lock_path {
        Some(dir) => (dir.clone(), "--lock-path"),
        None => match lockutils::LockConfig::from_env().lock_path {
            Some(dir) => (dir, lockutils::LOCK_PATH_ENV),
            None => {
                return Err(
                    "no lock directory: pass --lock-path or set OSLO_LOCK_PATH (or --external \
                     false for a lock inside this process only)"
                        .to_owned(),
                );
            }
        },
    };
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("{from} {}: not a directory", dir.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "{from} {}: no such directory (lockutils run does not create lock \
                 directories: check the path, or create it)",
                dir.display()
            ));
        }
        Err(e) => return Err(format!("{from} {}: {e}", dir.display())),
    }
    lockutils::lock_file_path(&options.name, options.prefix.as_deref(), Some(&dir))
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Has the kernel kill the process `command` starts (SIGKILL) when this process dies: what
/// `lockutils run` does for a lock held on a server, which no child can share, so that a
/// killed `lockutils run` never leaves its command running without the lock.
fn die_with_parent(command: &mut Command) {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: prctl, getppid and raise are async-signal-safe, as code between fork and exec
    // must be.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the request above: then nobody holds the lock.
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// The backend URL in force, unless it names lock files (`file://`).
fn backend_url() -> Option<String> {
    lockutils::current_config()
        .backend_url
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty() && !url.to_ascii_lowercase().starts_with("file://"))
}

/// Runs `body` holding the shared side of `options.name` on the PostgreSQL server of `url`,
/// taken as `--nonblocking` and `--timeout` ask.
fn shared_on_server(
    options: &RunOptions,
    url: &str,
    body: impl FnOnce() -> i32,
) -> Result<i32, lockutils::Error> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
        return Err(lockutils::Error::backend(
            &options.name,
            lockutils::redact_url(url),
            "--shared needs lock files or a postgres:// backend URL",
        ));
    }
    let lock = lockutils_postgres::backend(url)?.lock(&options.name, options.prefix.as_deref())?;
    let _guard = match (options.nonblocking, options.timeout) {
        (true, _) => lock.try_read(),
        (false, Some(timeout)) => lock.try_read_for(timeout),
        (false, None) => lock.read(),
    }?;
    Ok(body())
}

use lockutils::lock_dir::{LockDirectory, LockFileState, Removal};

/// Opens `dir` for `list`/`clean`, or says why not (and returns the exit status).
fn open_dir(program: &str, dir: &std::path::Path) -> Result<LockDirectory, i32> {
    LockDirectory::open(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            eprintln!(
                "{program}: lock directory {}: no such directory (check --lock-path or \
                 OSLO_LOCK_PATH)",
                dir.display()
            );
            EXIT_USAGE
        }
        io::ErrorKind::NotADirectory => {
            eprintln!(
                "{program}: lock directory {}: not a directory",
                dir.display()
            );
            EXIT_USAGE
        }
        _ => {
            eprintln!("{program}: lock directory {}: {e}", dir.display());
            EXIT_ERROR
        }
    })
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `lockutils list`: prints the lock files of `dir` (with `prefix`, only those with it): a
/// table, or JSON. Entries that are not lock files are left out (with `verbose`, reported
/// on stderr with the reason). Creates nothing.
pub fn list(dir: &std::path::Path, prefix: Option<&str>, json: bool, verbose: bool) -> i32 {
    const PROGRAM: &str = "lockutils list";
    let lock_dir = match open_dir(PROGRAM, dir) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let listing = match lock_dir.list(prefix) {
        Ok(listing) => listing,
        Err(e) => {
            eprintln!("{PROGRAM}: {}: {e}", dir.display());
            return EXIT_ERROR;
        }
    };
    if verbose {
        for skipped in &listing.skipped {
            eprintln!(
                "{PROGRAM}: skipped {}: {}",
                dir.join(&skipped.name).display(),
                skipped.reason
            );
        }
    }
    for (name, e) in &listing.problems {
        eprintln!("{PROGRAM}: {}: {e}", dir.join(name).display());
    }
    let mode = |state: LockFileState| match state {
        LockFileState::Free => "free",
        LockFileState::Shared => "shared",
        LockFileState::Exclusive => "exclusive",
    };
    let pid = |info: &lockutils::lock_dir::LockFileInfo| match (info.state, info.pid) {
        (LockFileState::Free, _) => "-".to_owned(),
        (_, Some(pid)) => pid.to_string(),
        (_, None) => "unknown".to_owned(),
    };
    if json {
        let items: Vec<String> = listing
            .locks
            .iter()
            .map(|s| {
                format!(
                    "{{\"name\":{},\"held\":{},\"mode\":{},\"pid\":{}}}",
                    json_string(&s.name),
                    s.state != LockFileState::Free,
                    json_string(mode(s.state)),
                    s.pid.map_or("null".to_owned(), |p| p.to_string())
                )
            })
            .collect();
        println!("[{}]", items.join(","));
    } else {
        println!("{:<40} {:<10} PID", "NAME", "STATE");
        for s in &listing.locks {
            println!("{:<40} {:<10} {}", s.name, mode(s.state), pid(s));
        }
    }
    if listing.problems.is_empty() {
        0
    } else {
        EXIT_ERROR
    }
}

/// What `lockutils clean` takes.
#[derive(Debug, Clone, Default)]
pub struct CleanOptions {
    /// Only lock files with this prefix.
    pub prefix: Option<String>,
    /// Only files not modified for this long.
    pub older_than: Option<std::time::Duration>,
    /// Report; remove nothing.
    pub dry_run: bool,
    /// Report what is left alone, and why.
    pub verbose: bool,
}

/// `lockutils clean`: removes the lock files of `dir` that nobody holds (see
/// [`LockDirectory::remove_if_unused`]): only empty regular files, never a link, a
/// subdirectory or a file with content, each while holding its lock, all through one
/// descriptor of the directory. With `dry_run` (or `verbose`) what is left alone is
/// reported too, with the reason.
pub fn clean(dir: &std::path::Path, options: &CleanOptions) -> i32 {
    const PROGRAM: &str = "lockutils clean";
    let lock_dir = match open_dir(PROGRAM, dir) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let listing = match lock_dir.list(options.prefix.as_deref()) {
        Ok(listing) => listing,
        Err(e) => {
            eprintln!("{PROGRAM}: {}: {e}", dir.display());
            return EXIT_ERROR;
        }
    };
    let report_skips = options.dry_run || options.verbose;
    if report_skips {
        for skipped in &listing.skipped {
            println!(
                "skipped {}: {}",
                dir.join(&skipped.name).display(),
                skipped.reason
            );
        }
    }
    let mut problems = listing.problems.len();
    for (name, e) in &listing.problems {
        eprintln!("{PROGRAM}: {}: {e}", dir.join(name).display());
    }
    for info in &listing.locks {
        let path = lock_dir.path_of(&info.name);
        if info.state != LockFileState::Free {
            if report_skips {
                println!("skipped {}: held", path.display());
            }
            continue;
        }
        if options.dry_run {
            let recent = options
                .older_than
                .is_some_and(|age| info.modified.elapsed().is_ok_and(|e| e < age));
            if recent {
                println!("skipped {}: modified too recently", path.display());
            } else {
                println!("would remove {}", path.display());
            }
            continue;
        }
        match lock_dir.remove_if_unused(&info.name, options.older_than) {
            Ok(Removal::Removed) => println!("removed {}", path.display()),
            Ok(Removal::Missing) => {}
            Ok(Removal::InUse) if report_skips => println!("skipped {}: held", path.display()),
            Ok(Removal::TooRecent) if report_skips => {
                println!("skipped {}: modified too recently", path.display())
            }
            Ok(Removal::NotALockFile(reason)) if report_skips => {
                println!("skipped {}: {reason}", path.display())
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("{PROGRAM}: {}: {e}", path.display());
                problems += 1;
            }
        }
    }
    if problems > 0 { EXIT_ERROR } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_clean_up_fails_the_wrapper_only_when_the_command_succeeded() {
        let failed: io::Result<()> = Err(io::Error::other("busy"));
        assert_eq!(status_after_cleanup(0, &failed), EXIT_ERROR);
        assert_eq!(status_after_cleanup(3, &failed), 3);
        assert_eq!(status_after_cleanup(0, &Ok(())), 0);
        assert_eq!(status_after_cleanup(137, &Ok(())), 137);
    }
}
