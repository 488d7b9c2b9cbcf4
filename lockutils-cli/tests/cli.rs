//! The real binaries: `lockutils-wrapper`, `lockutils wrapper` and `lockutils run`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const LOCKUTILS: &str = env!("CARGO_BIN_EXE_lockutils");
const WRAPPER: &str = env!("CARGO_BIN_EXE_lockutils-wrapper");

fn sh(binary: &str, args: &[&str], script: &str) -> std::process::Output {
    Command::new(binary)
        .args(args)
        .args(["sh", "-c", script])
        .output()
        .expect("run the binary")
}

#[test]
fn wrapper_gives_a_private_lock_dir_and_removes_it() {
    for (binary, pre) in [(WRAPPER, &[][..]), (LOCKUTILS, &["wrapper"][..])] {
        let out = sh(
            binary,
            pre,
            "echo $OSLO_LOCK_PATH; stat -c %a \"$OSLO_LOCK_PATH\"; exit 3",
        );
        assert_eq!(out.status.code(), Some(3), "the command's status");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let mut lines = stdout.lines();
        let dir = lines.next().unwrap();
        assert_eq!(lines.next(), Some("700"));
        assert!(!Path::new(dir).exists(), "{dir} not removed");
    }
}

#[test]
fn wrapper_exit_statuses() {
    let out = Command::new(WRAPPER).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
    let out = Command::new(WRAPPER)
        .arg("no-such-command-here")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("command not found"));
    // A child killed by SIGKILL: 128 + 9, and the directory is still removed.
    let out = sh(WRAPPER, &[], "echo $OSLO_LOCK_PATH; kill -9 $$");
    assert_eq!(out.status.code(), Some(137));
    let dir = String::from_utf8(out.stdout).unwrap();
    assert!(!Path::new(dir.trim()).exists());
}

fn run_args<'a>(dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "job", "--lock-path", dir];
    args.extend_from_slice(extra);
    args.push("--");
    args
}

#[test]
fn run_holds_the_lock_while_the_command_runs() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    // A first `run` holds the lock until its command reads a line.
    let mut first = Command::new(LOCKUTILS)
        .args(run_args(dir, &[]))
        .args(["sh", "-c", "echo held; read line || true"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "held");
    // A second `run` fails fast with the documented status and names the lock and file.
    let out = sh(LOCKUTILS, &run_args(dir, &["--nonblocking"]), "exit 0");
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lock job") && err.contains(&format!("{dir}/job")),
        "{err}"
    );
    let out = sh(LOCKUTILS, &run_args(dir, &["--timeout", "50ms"]), "exit 0");
    assert_eq!(out.status.code(), Some(75));
    // A library user of the same lock is excluded too.
    let busy = lockutils::lock("job")
        .external(true)
        .lock_path(dir)
        .blocking(false)
        .acquire();
    assert!(busy.unwrap_err().is_acquire_failed());
    drop(first.stdin.take()); // let the command end
    assert!(first.wait().unwrap().success());
    let out = sh(LOCKUTILS, &run_args(dir, &["--nonblocking"]), "exit 4");
    assert_eq!(
        out.status.code(),
        Some(4),
        "free again; the command's status"
    );
}

#[test]
fn run_does_not_pass_the_lock_descriptor_to_the_command() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let out = sh(LOCKUTILS, &run_args(dir, &[]), "ls -l /proc/self/fd/");
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(!listing.contains(&format!("{dir}/job")), "{listing}");
}

#[test]
fn run_passes_sigterm_to_the_command_and_releases_the_lock() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let mut child = Command::new(LOCKUTILS)
        .args(run_args(dir, &[]))
        .args(["sh", "-c", "echo started; exec sleep 100"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "started");
    // SAFETY: signals a process we started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "the command got SIGTERM"
    );
    let out = sh(LOCKUTILS, &run_args(dir, &["--nonblocking"]), "exit 0");
    assert_eq!(out.status.code(), Some(0), "the lock was released");
}

#[test]
fn run_shared_admits_readers_and_excludes_writers() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let mut reader = Command::new(LOCKUTILS)
        .args(run_args(dir, &["--shared"]))
        .args(["sh", "-c", "echo held; read line || true"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(reader.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "held");
    let out = sh(
        LOCKUTILS,
        &run_args(dir, &["--shared", "--nonblocking"]),
        "exit 0",
    );
    assert_eq!(out.status.code(), Some(0), "readers share");
    let out = sh(LOCKUTILS, &run_args(dir, &["--nonblocking"]), "exit 0");
    assert_eq!(out.status.code(), Some(75), "a writer waits for readers");
    drop(reader.stdin.take());
    assert!(reader.wait().unwrap().success());
}

#[test]
fn help_and_usage_errors() {
    let out = Command::new(LOCKUTILS)
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Example:"));
    let out = Command::new(LOCKUTILS).args(["run", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(LOCKUTILS)
        .args(["run", "x", "--timeout", "5 parsecs", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("parsecs"));
}
