//! Running the command: signals passed on, exit statuses, and the command's tie to the life
//! of `lockutils` when its lock cannot be shared with it.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};

use crate::{EXIT_CANNOT_RUN, EXIT_ERROR, EXIT_NOT_FOUND};

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

/// Has the kernel kill the process `command` starts (SIGKILL) when this process dies: what
/// `lockutils run` does for a lock held on a server, which no child can share, so that a
/// killed `lockutils run` never leaves its command running without the lock.
pub(crate) fn die_with_parent(command: &mut Command) {
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
