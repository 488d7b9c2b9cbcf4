//! `lockutils run` and `lockutils list --backend-url` on a real etcd (`scripts/etcd`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use lockutils::lock;

const LOCKUTILS: &str = env!("CARGO_BIN_EXE_lockutils");

/// The test server's URL with a short lease TTL (`scripts/etcd` sets it), or `None`: the test
/// then skips, unless etcd tests are required.
fn etcd_url() -> Option<String> {
    match std::env::var("LOCKUTILS_TEST_ETCD_URL") {
        Ok(url) if !url.is_empty() => Some(format!("{url}?lock_timeout=5")),
        _ => {
            assert!(
                std::env::var_os("LOCKUTILS_REQUIRE_ETCD").is_none(),
                "LOCKUTILS_REQUIRE_ETCD is set but LOCKUTILS_TEST_ETCD_URL is not"
            );
            eprintln!("skipped: no etcd server (run under scripts/etcd)");
            None
        }
    }
}

/// Lets the command of a `lockutils run` end and checks that the run succeeded.
fn release(mut run: Child) {
    writeln!(run.stdin.take().unwrap()).unwrap();
    assert!(run.wait().unwrap().success());
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn run_takes_its_lock_on_etcd_and_list_shows_it() {
    let Some(url) = etcd_url() else { return };
    let etcd = lockutils_etcd::backend(&url).unwrap();
    let volume = format!("6f1c-{}", std::process::id());
    let name = format!("{volume}-delete_volume");
    let full = format!("cinder-{name}");
    let run = |extra: &[&str], command: &[&str]| {
        let mut cmd = Command::new(LOCKUTILS);
        cmd.env("LOCKUTILS_BACKEND_URL", &url)
            .args(["run", &name, "--prefix", "cinder"])
            .args(extra)
            .arg("--")
            .args(command);
        cmd
    };

    // The command runs holding tooz's key on etcd.
    let mut holding = run(&[], &["sh", "-c", "echo held; read line || true"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holding.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "held");
    let err = lock(&name)
        .prefix("cinder")
        .external(true)
        .backend(etcd)
        .blocking(false)
        .acquire()
        .unwrap_err();
    assert!(err.is_acquire_failed(), "{err}");

    // `lockutils list --backend-url` shows it, with its lease's time left.
    let out = Command::new(LOCKUTILS)
        .args(["list", "--backend-url", &url, "--prefix", &full])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&full))
        .unwrap_or_else(|| panic!("{full} not listed: {stdout}"));
    let expires: f64 = line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!((0.0..=5.0).contains(&expires), "{line}");
    assert!(line.contains("lease "), "{line}");

    // Held elsewhere: a run that may not wait fails at once with the lock's status.
    let out = run(&["--nonblocking"], &["true"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(lockutils_cli::EXIT_LOCK_FAILED),
        "{out:?}"
    );
    release(holding);

    // Released with the command: free again, and listed no more.
    let guard = lock(&name)
        .prefix("cinder")
        .external(true)
        .backend(etcd)
        .blocking(false)
        .acquire()
        .unwrap();
    drop(guard);
    let out = Command::new(LOCKUTILS)
        .args(["list", "--backend-url", &url, "--prefix", &full, "--json"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "[]");

    // --shared is refused on etcd, saying why.
    let out = run(&["--shared"], &["true"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shared"), "{stderr}");
}

#[test]
fn list_names_an_unreachable_etcd() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("etcd3+http://127.0.0.1:{port}?connect_timeout=1");
    let out = Command::new(LOCKUTILS)
        .args(["list", "--backend-url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(lockutils_cli::EXIT_ERROR));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("cannot reach"),
        "{stderr}"
    );
}
