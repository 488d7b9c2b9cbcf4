//! The real binaries: `lockutils-wrapper`, `lockutils wrapper` and `lockutils run`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// Only its look at the kernel's queue of blocked waiters is used here.
#[allow(dead_code)]
#[path = "../../tests/common/child.rs"]
mod child;

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
fn run_passes_the_command_the_lock_descriptor_and_nothing_else() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    std::fs::write(d.path().join("other"), "").unwrap();
    let out = sh(LOCKUTILS, &run_args(dir, &[]), "ls -l /proc/self/fd/");
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    let lock_file = format!("{dir}/job");
    assert_eq!(
        listing.lines().filter(|l| l.ends_with(&lock_file)).count(),
        1,
        "{listing}"
    );
    assert_eq!(
        listing.lines().filter(|l| l.contains(dir)).count(),
        1,
        "nothing else of lockutils' leaks: {listing}"
    );
}

#[test]
fn a_killed_run_leaves_its_command_holding_the_lock_until_it_ends() {
    for shared in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        let mut run = holding_run(dir, "job", shared);
        // The command's stdin: it ends when this closes (`wait` would close it).
        let stdin = run.stdin.take();
        // SIGKILL `lockutils run` itself; its command (sh) goes on with the lock.
        // SAFETY: signals our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(run.id() as i32, libc::SIGKILL) }, 0);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&run.wait().unwrap()),
            Some(libc::SIGKILL)
        );
        let busy = lockutils::lock("job")
            .external(true)
            .lock_path(dir)
            .blocking(false)
            .acquire();
        assert!(
            busy.as_ref()
                .is_err_and(lockutils::Error::is_acquire_failed),
            "a second holder got in while the command ran (shared: {shared}): {busy:?}"
        );
        // The command ends when its stdin closes: then the lock is free (waited for, since
        // the command's exit is not otherwise visible here).
        drop(stdin);
        let got = lockutils::lock("job")
            .external(true)
            .lock_path(dir)
            .timeout(child::PATIENCE)
            .acquire();
        assert!(got.is_ok(), "{got:?}");
    }
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

#[test]
fn list_backend_url_errors_name_the_server_without_its_password() {
    // A scheme nobody registered: a usage error, saying how to fix it.
    let out = Command::new(LOCKUTILS)
        .args(["list", "--backend-url", "nosuch://u:hunter2@h/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nosuch://u:***@h/x"), "{stderr}");
    assert!(stderr.contains("no external-lock backend"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // A registered backend that cannot list its locks says so (nothing is connected).
    let out = Command::new(LOCKUTILS)
        .args([
            "list",
            "--backend-url",
            "postgres://u:hunter2@127.0.0.1:1/db",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot list"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // A directory and a server at once: a usage error.
    let out = Command::new(LOCKUTILS)
        .args(["list", "--backend-url", "x://", "--lock-path", "/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Starts `lockutils run NAME` holding the lock in `dir` until its stdin closes.
fn holding_run(dir: &str, name: &str, shared: bool) -> std::process::Child {
    let mut args = vec!["run", name, "--lock-path", dir];
    if shared {
        args.push("--shared");
    }
    args.push("--");
    let mut child = Command::new(LOCKUTILS)
        .args(args)
        .args(["sh", "-c", "echo held; read line || true"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "held");
    child
}

fn release(mut child: std::process::Child) {
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

#[test]
fn list_shows_who_holds_what() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    drop(
        lockutils::lock("free")
            .external(true)
            .lock_path(dir)
            .acquire()
            .unwrap(),
    );
    let mine = lockutils::lock("mine")
        .external(true)
        .lock_path(dir)
        .acquire()
        .unwrap();
    let run = holding_run(dir, "by-run", false);
    let reader = holding_run(dir, "read", true);
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
    let out = Command::new(LOCKUTILS)
        .args(["list", "--lock-path", dir])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
    };
    assert_eq!(row("free").as_deref(), Some("free -"));
    assert_eq!(
        row("mine").as_deref(),
        Some("exclusive unknown"),
        "OFD locks have no pid"
    );
    assert_eq!(row("by-run").as_deref(), Some("exclusive unknown"));
    assert_eq!(row("read").as_deref(), Some("shared unknown"));
    assert_eq!(row("link"), None, "links are not lock files");
    let out = Command::new(LOCKUTILS)
        .args(["list", "--lock-path", dir, "--json"])
        .output()
        .unwrap();
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(
        json.contains(r#"{"name":"free","held":false,"mode":"free","pid":null}"#),
        "{json}"
    );
    assert!(
        json.contains(r#"{"name":"read","held":true,"mode":"shared","pid":null}"#),
        "{json}"
    );
    drop(mine);
    release(run);
    release(reader);
}

#[test]
#[ignore = "needs the real oslo.concurrency: scripts/test runs it (LOCKUTILS_OSLO_PYTHON, --include-ignored)"]
fn list_shows_the_pid_of_a_python_oslo_holder() {
    let Ok(python) = std::env::var("LOCKUTILS_OSLO_PYTHON") else {
        assert!(
            std::env::var_os("LOCKUTILS_REQUIRE_OSLO").is_none(),
            "LOCKUTILS_REQUIRE_OSLO is set but LOCKUTILS_OSLO_PYTHON is not"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: LOCKUTILS_OSLO_PYTHON is not set (scripts/test sets it)"
        );
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let script = "import sys\nfrom oslo_concurrency import lockutils\n\
                  with lockutils.lock('py', external=True, lock_path=sys.argv[1]):\n    \
                  print('held', flush=True)\n    sys.stdin.read()\n";
    let mut py = Command::new(python)
        .args(["-c", script, dir])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "held");
    let out = Command::new(LOCKUTILS)
        .args(["list", "--lock-path", dir])
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    let expected = format!("exclusive  {}", py.id());
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("py ") && l.ends_with(&expected)),
        "{table}"
    );
    drop(py.stdin.take());
    assert!(py.wait().unwrap().success());
}

#[test]
fn clean_removes_free_lock_files_and_leaves_held_ones() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    for name in ["old-a", "old-b"] {
        drop(
            lockutils::lock(name)
                .external(true)
                .lock_path(dir)
                .acquire()
                .unwrap(),
        );
    }
    let held = holding_run(dir, "busy", false);
    // A waiter queued on the held file.
    let mut waiter = Command::new(LOCKUTILS)
        .args(["run", "busy", "--lock-path", dir, "--", "true"])
        .spawn()
        .unwrap();
    child::wait_for_blocked_waiters(&d.path().join("busy"), 1);
    let out = Command::new(LOCKUTILS)
        .args(["clean", "--lock-path", dir, "--dry-run"])
        .output()
        .unwrap();
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(
        report.contains(&format!("would remove {dir}/old-a")),
        "{report}"
    );
    assert!(
        report.contains(&format!("skipped {dir}/busy: held")),
        "{report}"
    );
    assert!(!report.contains("would remove {dir}/busy"), "{report}");
    assert!(d.path().join("old-a").exists(), "a dry run removes nothing");
    let out = Command::new(LOCKUTILS)
        .args(["clean", "--lock-path", dir, "--older-than", "1h"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(out.stdout).unwrap().is_empty(),
        "nothing is an hour old"
    );
    let out = Command::new(LOCKUTILS)
        .args(["clean", "--lock-path", dir])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!d.path().join("old-a").exists() && !d.path().join("old-b").exists());
    assert!(
        d.path().join("busy").exists(),
        "a held lock file is never removed"
    );
    release(held);
    assert!(waiter.wait().unwrap().success(), "the waiter got the lock");
}

#[test]
fn list_and_clean_skip_names_that_are_not_lock_names() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let odd = d.path().join(std::ffi::OsStr::from_bytes(b"bad\xff"));
    std::fs::write(&odd, "").unwrap();
    drop(
        lockutils::lock("good")
            .external(true)
            .lock_path(dir)
            .acquire()
            .unwrap(),
    );
    let out = Command::new(LOCKUTILS)
        .args(["list", "--lock-path", dir, "--verbose"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("good"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not UTF-8"));
    let out = Command::new(LOCKUTILS)
        .args(["clean", "--lock-path", dir])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(odd.exists(), "a file that is not a lock name is left alone");
    assert!(!d.path().join("good").exists());
    assert!(
        !d.path().join("bad\u{FFFD}").exists(),
        "no look-alike file was created"
    );
}

/// Names and modification times of everything in `dir`, links not followed.
fn snapshot(dir: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                meta.modified().unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

/// A directory as a project or `/etc` looks: files with content, a subdirectory, a link to
/// a file elsewhere, a FIFO, a socket; and two unused lock files.
fn mixed_dir() -> (tempfile::TempDir, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("notes.txt"), "my notes").unwrap();
    std::fs::write(p.join("README.md"), "# readme").unwrap();
    std::fs::write(p.join("passwd"), "root:x:0:0::/root:/bin/sh").unwrap();
    std::fs::create_dir(p.join("sub")).unwrap();
    std::fs::write(p.join("sub/inner"), "").unwrap();
    std::fs::write(outside.path().join("target"), "").unwrap();
    std::os::unix::fs::symlink(outside.path().join("target"), p.join("link")).unwrap();
    let fifo = std::ffi::CString::new(p.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let _socket = std::os::unix::net::UnixListener::bind(p.join("sock")).unwrap();
    for name in ["nova-a", "other-b"] {
        drop(
            lockutils::lock(name)
                .external(true)
                .lock_path(p)
                .acquire()
                .unwrap(),
        );
    }
    (d, outside)
}

#[test]
fn list_and_dry_runs_create_and_change_nothing_and_show_only_lock_files() {
    let (d, _outside) = mixed_dir();
    let dir = d.path().to_str().unwrap();
    let before = snapshot(d.path());
    let out = Command::new(LOCKUTILS)
        .args(["list", "--lock-path", dir])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["nova-a", "other-b"], "{table}");
    let out = Command::new(LOCKUTILS)
        .args(["clean", "--lock-path", dir, "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = String::from_utf8(out.stdout).unwrap();
    for (name, reason) in [
        ("notes.txt", "not empty"),
        ("passwd", "not empty"),
        ("sub", "directory"),
        ("link", "symbolic link"),
        ("pipe", "FIFO"),
        ("sock", "socket"),
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("skipped {dir}/{name}:")))
            .unwrap_or_else(|| panic!("{name} not reported: {report}"));
        assert!(line.contains(reason), "{line}");
    }
    assert_eq!(report.matches("would remove").count(), 2, "{report}");
    assert_eq!(
        snapshot(d.path()),
        before,
        "a read-only command changed the directory"
    );
    let missing = d.path().join("missing");
    let out = Command::new(LOCKUTILS)
        .args(["list", "--lock-path", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!missing.exists(), "list created its directory");
}

#[test]
fn clean_removes_unused_lock_files_only_and_honours_the_prefix() {
    let (d, outside) = mixed_dir();
    let dir = d.path().to_str().unwrap();
    let out = Command::new(LOCKUTILS)
        .args(["clean", "--lock-path", dir, "--prefix", "nova"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("removed {dir}/nova-a\n")
    );
    assert!(d.path().join("other-b").exists(), "outside the prefix");
    let out = Command::new(LOCKUTILS)
        .args(["clean", "--lock-path", dir])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!d.path().join("other-b").exists());
    let left: Vec<String> = snapshot(d.path()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        left,
        [
            "README.md",
            "link",
            "notes.txt",
            "passwd",
            "pipe",
            "sock",
            "sub"
        ]
    );
    assert!(
        d.path().join("sub/inner").exists(),
        "a subdirectory is not entered"
    );
    assert!(
        outside.path().join("target").exists(),
        "a link is not followed"
    );
}

/// The test server's URL (`scripts/postgres` sets it), or `None`: the test then skips, unless
/// PostgreSQL tests are required.
fn pg_url() -> Option<String> {
    match std::env::var("LOCKUTILS_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("LOCKUTILS_REQUIRE_PG").is_none(),
                "LOCKUTILS_REQUIRE_PG is set but LOCKUTILS_TEST_PG_URL is not"
            );
            eprintln!("skipped: no PostgreSQL server (run under scripts/postgres)");
            None
        }
    }
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn run_takes_its_lock_on_the_server_a_backend_url_names() {
    let Some(url) = pg_url() else { return };
    let db = lockutils_postgres::backend(&url).unwrap();
    let name = format!("cli-pg-{}", std::process::id());
    let lock = db.lock(&name, None).unwrap();
    let run = |extra: &[&str], command: &[&str]| {
        let mut cmd = Command::new(LOCKUTILS);
        cmd.env("LOCKUTILS_BACKEND_URL", &url)
            .args(["run", &name])
            .args(extra)
            .arg("--")
            .args(command);
        cmd
    };
    let status = |extra: &[&str]| run(extra, &["true"]).output().unwrap();

    // The command runs holding the lock on the server.
    let mut holding = run(&[], &["sh", "-c", "echo held; read line || true"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holding.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "held");
    let err = lock.try_write().unwrap_err();
    assert!(err.is_acquire_failed(), "{err}");
    release(holding);
    drop(lock.try_write().expect("released with the command"));

    // Held elsewhere: a run fails at once, saying where the lock is, without the password.
    let writer = lock.write().unwrap();
    let out = status(&["--nonblocking"]);
    assert_eq!(out.status.code(), Some(lockutils_cli::EXIT_LOCK_FAILED));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("on postgres://lockutils:***@") && !stderr.contains("lockutils-test"),
        "{stderr}"
    );
    let out = status(&["--nonblocking", "--shared"]);
    assert_eq!(out.status.code(), Some(lockutils_cli::EXIT_LOCK_FAILED));
    drop(writer);

    // Held shared elsewhere: --shared shares it; an exclusive run does not.
    let reader = lock.read().unwrap();
    assert_eq!(
        status(&["--nonblocking", "--shared"]).status.code(),
        Some(0)
    );
    let out = status(&["--nonblocking"]);
    assert_eq!(out.status.code(), Some(lockutils_cli::EXIT_LOCK_FAILED));
    drop(reader);
    assert_eq!(status(&["--nonblocking"]).status.code(), Some(0));
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn a_killed_run_on_a_server_takes_its_command_down_with_it() {
    let Some(url) = pg_url() else { return };
    let name = format!("cli-pg-kill-{}", std::process::id());
    for shared in [false, true] {
        let mut cmd = Command::new(LOCKUTILS);
        cmd.env("LOCKUTILS_BACKEND_URL", &url).args(["run", &name]);
        if shared {
            cmd.arg("--shared");
        }
        let mut run = cmd
            .args(["--", "sh", "-c", "echo $$; read line || true"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = run.stdin.take();
        let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
        let command: i32 = lines.next().unwrap().unwrap().parse().unwrap();
        // SAFETY: signals our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(run.id() as i32, libc::SIGKILL) }, 0);
        run.wait().unwrap();
        // The command must go too (the kernel kills it): wait until it is gone.
        let started = std::time::Instant::now();
        while Path::new(&format!("/proc/{command}")).exists()
            && !std::fs::read_to_string(format!("/proc/{command}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
        {
            assert!(
                started.elapsed() < child::PATIENCE,
                "the command runs on without its lock (shared: {shared})"
            );
            std::thread::yield_now();
        }
        drop(stdin);
    }
}

#[test]
fn errors_are_one_line_name_what_to_fix_and_use_documented_statuses() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let missing = d.path().join("typo/locks");
    let cases: [(&[&str], &str); 5] = [
        (
            &["run", "job", "--", "true"],
            "lockutils run: no lock directory: pass --lock-path or set OSLO_LOCK_PATH",
        ),
        (
            &[
                "run",
                "job",
                "--lock-path",
                missing.to_str().unwrap(),
                "--",
                "true",
            ],
            "lockutils run: --lock-path",
        ),
        (
            &[
                "run",
                "job",
                "--prefix",
                "a/b",
                "--lock-path",
                dir,
                "--",
                "true",
            ],
            "lockutils run: --prefix \"a/b\"",
        ),
        (
            &["list", "--lock-path", missing.to_str().unwrap()],
            "lockutils list: lock directory",
        ),
        (
            &["clean", "--lock-path", missing.to_str().unwrap()],
            "lockutils clean: lock directory",
        ),
    ];
    for (args, start) in cases {
        let out = Command::new(LOCKUTILS)
            .args(args)
            .env_remove("OSLO_LOCK_PATH")
            .env_remove("LOCKUTILS_BACKEND_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with(start), "{args:?}: {stderr}");
        assert!(stderr.matches("job").count() <= 1, "{args:?}: {stderr}");
    }
    assert!(
        !d.path().join("typo").exists(),
        "a mistyped --lock-path was created"
    );
    // A busy lock: exit 75, the lock named once, with its file.
    let held = holding_run(dir, "job", false);
    let out = Command::new(LOCKUTILS)
        .args([
            "run",
            "job",
            "--lock-path",
            dir,
            "--nonblocking",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!("lockutils run: Failed to acquire the lock job (file {dir}/job)")
    );
    release(held);
    // Every status is documented in --help.
    let help = Command::new(LOCKUTILS).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for status in ["0 ", "1 ", "2 ", "75 ", "126 ", "127 "] {
        assert!(
            help.contains(&format!("  {status}")),
            "{status} missing: {help}"
        );
    }
}

/// The Redis test server's URL (`scripts/redis` sets it), or `None` to skip; fails instead
/// with LOCKUTILS_REQUIRE_REDIS set.
fn redis_url() -> Option<String> {
    match std::env::var("LOCKUTILS_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("LOCKUTILS_REQUIRE_REDIS").is_none(),
                "LOCKUTILS_REQUIRE_REDIS is set but LOCKUTILS_TEST_REDIS_URL is not: run the \
                 tests under scripts/redis"
            );
            eprintln!("skipped: no Redis server (run under scripts/redis)");
            None
        }
    }
}

#[test]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
fn run_takes_the_lock_on_redis_and_list_shows_it() {
    let Some(url) = redis_url() else { return };
    let url = format!("{url}?namespace=cli-test-{}", std::process::id());
    // `lockutils run` holds the lock on the server (LOCKUTILS_BACKEND_URL) while its
    // command runs.
    let mut holder = Command::new(LOCKUTILS)
        .args(["run", "1234-delete_volume", "--prefix", "cinder", "--"])
        .args(["sh", "-c", "echo held; read line || true"])
        .env("LOCKUTILS_BACKEND_URL", &url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "held");

    // A second run cannot have it meanwhile.
    let out = Command::new(LOCKUTILS)
        .args([
            "run",
            "1234-delete_volume",
            "--prefix",
            "cinder",
            "--nonblocking",
            "--",
        ])
        .args(["true"])
        .env("LOCKUTILS_BACKEND_URL", &url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{out:?}");

    // list --backend-url shows it under tooz's name, with its key and expiry.
    let out = Command::new(LOCKUTILS)
        .args(["list", "--backend-url", &url, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(
        json.contains("\"name\":\"cinder-1234-delete_volume\""),
        "{json}"
    );
    assert!(json.contains("_cinder-1234-delete_volume_lock"), "{json}");
    assert!(json.contains("\"expires_in_ms\":"), "{json}");
    let out = Command::new(LOCKUTILS)
        .args(["list", "--backend-url", &url, "--prefix", "nova"])
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(!table.contains("cinder-1234"), "{table}");
    assert!(!table.contains("lockutils-test"), "the password: {table}");

    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    let out = Command::new(LOCKUTILS)
        .args(["list", "--backend-url", &url, "--json"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "[]");
}

#[test]
fn run_fair_serves_waiting_commands_in_the_order_they_asked() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let blocked = || {
        child::blocked_waiters(&d.path().join("fifo"))
            + child::blocked_waiters(&d.path().join(".lockutils-fifo").join("fifo"))
    };
    let mut holder = Command::new(LOCKUTILS)
        .args(["run", "fifo", "--fair", "--lock-path", dir, "--"])
        .args(["sh", "-c", "echo held; read line || true"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "held");
    let order = d.path().join("order");
    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let child = Command::new(LOCKUTILS)
                .args(["run", "fifo", "--fair", "--lock-path", dir, "--"])
                .args(["sh", "-c", &format!("echo {i} >> {}", order.display())])
                .spawn()
                .unwrap();
            let started = std::time::Instant::now();
            while blocked() < i + 1 {
                assert!(
                    started.elapsed() < child::PATIENCE,
                    "waiter {i} never queued"
                );
                std::thread::yield_now();
            }
            child
        })
        .collect();
    release(holder);
    for mut waiter in waiters {
        assert!(waiter.wait().unwrap().success());
    }
    assert_eq!(std::fs::read_to_string(order).unwrap(), "0\n1\n2\n3\n");
}
