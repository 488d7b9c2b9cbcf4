//! Interoperability with the real Python oslo.concurrency, from PyPI.
//!
//! `scripts/test` creates the virtualenv (`scripts/oslo-venv`) and points
//! `LOCKUTILS_OSLO_PYTHON` at its python, with `LOCKUTILS_REQUIRE_OSLO=1` so that these tests
//! cannot silently skip there. A plain `cargo test` without that variable skips them, saying
//! why.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::Command;
use std::thread;

use common::child::{Proc, start};
use common::{increment_counter, read_counter};
use lockutils::lock;

/// The Python side: `python -c SCRIPT ROLE NAME PREFIX LOCK_PATH [COUNTER N]`.
const SCRIPT: &str = r#"
import sys
from oslo_concurrency import lockutils

role, name, prefix, lock_path = sys.argv[1:5]

def ext(**kw):
    return lockutils.lock(name, lock_file_prefix=prefix, external=True, lock_path=lock_path, **kw)

if role == "hold":
    with ext():
        print("held", flush=True)
        sys.stdin.read()
elif role == "try":
    try:
        with ext(blocking=False):
            pass
    except lockutils.AcquireLockFailedException:
        sys.exit(1)
elif role == "count":
    counter, n = sys.argv[5], int(sys.argv[6])
    print("ready", flush=True)
    sys.stdin.readline()  # start together with the Rust side
    for _ in range(n):
        with ext():
            try:
                with open(counter) as f:
                    value = int(f.read().strip() or 0)
            except FileNotFoundError:
                value = 0
            with open(counter, "w") as f:
                f.write(str(value + 1))
"#;

fn python() -> Option<String> {
    common::oslo_python("oslo.concurrency")
}

fn oslo(python: &str, args: &[&str]) -> Proc {
    let mut command = Command::new(python);
    command.arg("-c").arg(SCRIPT).args(args);
    start(command)
}

fn dir_str(d: &tempfile::TempDir) -> String {
    d.path().to_str().unwrap().to_owned()
}

#[test]
#[ignore = "needs the real oslo.concurrency: scripts/test runs it (LOCKUTILS_OSLO_PYTHON, --include-ignored)"]
fn python_holding_makes_our_nonblocking_acquire_fail() {
    let Some(py) = python() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = dir_str(&d);
    let mut holder = oslo(&py, &["hold", "shared/name", "nova", &dir]);
    holder.expect("held");
    let ours = || {
        lock("shared/name")
            .prefix("nova")
            .external(true)
            .lock_path(d.path())
    };
    let err = ours().blocking(false).acquire().unwrap_err();
    assert_eq!(err.to_string(), "Failed to acquire the lock shared/name");
    assert!(
        d.path().join("nova-shared_name").exists(),
        "same file name as oslo"
    );
    assert!(holder.finish().success());
    drop(
        ours()
            .blocking(false)
            .acquire()
            .expect("free after Python released"),
    );
}

#[test]
#[ignore = "needs the real oslo.concurrency: scripts/test runs it (LOCKUTILS_OSLO_PYTHON, --include-ignored)"]
fn rust_holding_makes_pythons_nonblocking_acquire_fail() {
    let Some(py) = python() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = dir_str(&d);
    // The prefix with a trailing hyphen names the same file as without.
    let guard = lock("x")
        .prefix("pre-")
        .external(true)
        .lock_path(d.path())
        .acquire()
        .unwrap();
    assert_eq!(oslo(&py, &["try", "x", "pre", &dir]).code(), 1);
    drop(guard);
    assert_eq!(oslo(&py, &["try", "x", "pre", &dir]).code(), 0);
}

#[test]
#[ignore = "needs the real oslo.concurrency: scripts/test runs it (LOCKUTILS_OSLO_PYTHON, --include-ignored)"]
fn python_and_rust_increment_one_counter_exactly() {
    let Some(py) = python() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = dir_str(&d);
    let counter = d.path().join("counter");
    let counter_arg = counter.to_str().unwrap().to_owned();
    let mut pythons: Vec<Proc> = (0..2)
        .map(|_| oslo(&py, &["count", "counter", "svc", &dir, &counter_arg, "300"]))
        .collect();
    // Python's start-up takes longer than the Rust loop: start everyone at once, so that the
    // two languages really contend.
    for p in &mut pythons {
        p.expect("ready");
    }
    for p in &mut pythons {
        p.send("go");
    }
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..300 {
                    // Separate in-process namespaces per thread would also work: the file lock
                    // excludes every process and descriptor.
                    let _g = lock("counter")
                        .prefix("svc")
                        .external(true)
                        .lock_path(Path::new(&dir))
                        .acquire()
                        .unwrap();
                    increment_counter(&counter);
                }
            });
        }
    });
    for p in pythons {
        assert!(p.finish().success());
    }
    assert_eq!(read_counter(&counter), 1_200);
}
