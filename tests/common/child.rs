//! Real child processes for inter-process tests: the test binary runs itself with a role.
//!
//! A test file that uses this declares `#[test] fn child() { common::child::main(run_role) }`;
//! in a normal run that test does nothing, in a child it plays the role and exits.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

const ROLE_ENV: &str = "LOCKUTILS_TEST_CHILD";
const ARGS_ENV: &str = "LOCKUTILS_TEST_CHILD_ARGS";
const SEP: char = '\u{1f}';

/// How long a test waits for a child's message before declaring it hung. A guard against
/// hanging CI, not a means of ordering.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `play(role, args)` and exits if this process is a child; returns otherwise.
pub fn main(play: impl FnOnce(&str, &[String]) -> i32) {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let args: Vec<String> = std::env::var(ARGS_ENV)
        .unwrap_or_default()
        .split(SEP)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let code = play(&role, &args);
    std::io::stdout().flush().ok();
    std::process::exit(code);
}

/// In a child: says `ready`, then waits for the test's `go` line, so that children started
/// one after another begin their work together.
pub fn ready_then_go() {
    println!("ready");
    let mut go = String::new();
    std::io::stdin()
        .read_line(&mut go)
        .expect("the test's go line");
}

/// In a child: runs `work` `n` times in all, split between `threads` threads at once.
pub fn in_threads(threads: usize, n: usize, work: impl Fn() + Sync) {
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..n / threads {
                    work();
                }
            });
        }
    });
}

/// One increment of the counter in the file at `path` (its decimal text), as a separate read
/// and write: only mutual exclusion across the processes that call it keeps a count exact.
pub fn increment_counter_file(path: &str) {
    let value: u64 = std::fs::read_to_string(path)
        .expect("the counter file")
        .trim()
        .parse()
        .expect("a count");
    std::fs::write(path, (value + 1).to_string()).expect("the counter file, written");
}

/// A running child with line-based stdout.
pub struct Proc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

/// Starts this test binary as a child playing `role` with `args`.
pub fn spawn(role: &str, args: &[&str]) -> Proc {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command
        .args(["child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE_ENV, role)
        .env(ARGS_ENV, args.join(&SEP.to_string()));
    start(command)
}

/// Starts any command with line-based stdout.
pub fn start(mut command: Command) -> Proc {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Proc {
        stdin: child.stdin.take(),
        child,
        lines,
    }
}

impl Proc {
    /// Waits for the child to print `line` (other lines are skipped).
    pub fn expect(&mut self, line: &str) {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(got) if got == line => return,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => panic!("child never printed {line:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "child exited ({:?}) before printing {line:?}",
                        self.child.wait()
                    )
                }
            }
        }
    }

    /// Waits for a line starting with `prefix` and returns the rest.
    pub fn expect_prefixed(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(got) => {
                    if let Some(rest) = got.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(e) => panic!("child never printed a line starting {prefix:?}: {e:?}"),
            }
        }
    }

    /// Writes `line` to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .expect("write to child");
    }

    /// Closes the child's stdin (the usual "let go now" signal) and waits for it to exit.
    pub fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.child.wait().expect("wait for child")
    }

    /// The child's exit code.
    pub fn code(self) -> i32 {
        self.finish().code().expect("child exited normally")
    }

    /// Sends SIGKILL and reaps the child.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().ok();
    }
}

/// Reads lines from stdin until it closes: how a child holds something until told.
pub fn wait_for_stdin_close() {
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
}

/// Waiters the kernel has queued, blocked, on the file at `path` (from `/proc/locks`).
pub fn blocked_waiters(path: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    let needle = format!(":{} ", meta.ino());
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("->") && l.contains(&needle))
        .count()
}

/// Spins (yielding) until the kernel has `n` blocked waiters on `path`.
pub fn wait_for_blocked_waiters(path: &Path, n: usize) {
    let started = std::time::Instant::now();
    while blocked_waiters(path) < n {
        assert!(
            started.elapsed() < PATIENCE,
            "never saw {n} blocked waiters on {path:?}"
        );
        std::thread::yield_now();
    }
}
