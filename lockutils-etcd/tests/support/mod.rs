//! Helpers of the etcd tests: the server `scripts/etcd` started, child processes, tooz.
#![allow(dead_code)]

#[path = "../../../tests/common/child.rs"]
pub mod child;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use lockutils::{ExternalCache, ExternalTarget, Mode, Wait};
use lockutils_etcd::EtcdBackend;

/// The URL of the test server (`scripts/etcd` sets it).
pub const URL_ENV: &str = "LOCKUTILS_TEST_ETCD_URL";
/// Set (as `scripts/test` does) to fail, rather than skip, without a server.
pub const REQUIRE_ENV: &str = "LOCKUTILS_REQUIRE_ETCD";
/// The server's control script (stop, start, restart, pause, resume).
pub const CTL_ENV: &str = "LOCKUTILS_TEST_ETCD_CTL";
/// The lease TTL of the tests' locks, in seconds: short, so that tests of expiry are quick.
pub const TTL: u64 = 2;

/// The test server's URL with `lock_timeout=TTL`, or `None` (with the reason printed) when
/// there is none to use.
pub fn url() -> Option<String> {
    match std::env::var(URL_ENV) {
        Ok(url) if !url.is_empty() => Some(format!("{url}?lock_timeout={TTL}")),
        _ => {
            assert!(
                std::env::var_os(REQUIRE_ENV).is_none(),
                "{REQUIRE_ENV} is set but {URL_ENV} is not: run the tests under scripts/etcd"
            );
            eprintln!(
                "skipped: no etcd server ({URL_ENV} is not set; run `scripts/etcd -- cargo \
                 test -p lockutils-etcd -- --include-ignored`)"
            );
            None
        }
    }
}

/// The bare endpoint (`http://127.0.0.1:PORT`) of the test server.
pub fn endpoint() -> String {
    std::env::var(URL_ENV)
        .expect("server URL")
        .replacen("etcd3+", "", 1)
}

/// The backend of the test server, or `None` to skip.
pub fn etcd() -> Option<&'static EtcdBackend> {
    url().map(|url| lockutils_etcd::backend(&url).expect("test server URL"))
}

/// Runs the server's control script: `stop`, `start`, `restart`, `pause`, `resume`, each
/// optionally followed by a member's number (`"stop 2"`).
pub fn ctl(action: &str) {
    let script = std::env::var(CTL_ENV).expect("scripts/etcd sets LOCKUTILS_TEST_ETCD_CTL");
    let status = Command::new(script)
        .args(action.split_whitespace())
        .status()
        .expect("run ctl");
    assert!(status.success(), "ctl {action}: {status}");
}

/// Polls (bounded by `child::PATIENCE`) until `cond` holds: how tests learn that a waiter
/// watches the key. The pause between polls only spares the machine.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < child::PATIENCE, "never saw: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts this test binary as a child playing `role`, with external locks going to the test
/// server through `LOCKUTILS_BACKEND_URL`.
pub fn spawn(role: &str, args: &[&str]) -> child::Proc {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command
        .args(["child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env("LOCKUTILS_TEST_CHILD", role)
        .env("LOCKUTILS_TEST_CHILD_ARGS", args.join("\u{1f}"))
        .env(lockutils::BACKEND_URL_ENV, url().unwrap_or_default());
    child::start(command)
}

/// A unique volume-like id for one test run (tests share one server and run in parallel).
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}

/// A lock taken straight from the backend, without the in-process lock: a second holder in
/// the same process, to contend with `lock(..)`.
pub struct Raw {
    pub etcd: &'static EtcdBackend,
    pub name: String,
    pub prefix: Option<String>,
    pub cache: ExternalCache,
}

impl Raw {
    pub fn new(etcd: &'static EtcdBackend, name: &str, prefix: Option<&str>) -> Raw {
        Raw {
            etcd,
            name: name.to_owned(),
            prefix: prefix.map(str::to_owned),
            cache: ExternalCache::default(),
        }
    }

    pub fn acquire(&mut self, wait: Wait) -> Result<(), lockutils::Error> {
        use lockutils::ExternalBackend;
        let target = ExternalTarget {
            name: &self.name,
            prefix: self.prefix.as_deref(),
            lock_path: None,
            delay: Duration::from_millis(10),
            mode: Mode::Exclusive,
            fair: false,
        };
        self.etcd.acquire(&target, &mut self.cache, wait)
    }

    pub fn release(&mut self) -> Result<(), lockutils::Error> {
        use lockutils::ExternalBackend;
        self.etcd.release(&self.name, &mut self.cache)
    }

    pub fn is_held(&mut self) -> Result<bool, lockutils::Error> {
        use lockutils::ExternalBackend;
        self.etcd.is_held(&self.name, &mut self.cache)
    }

    pub fn token(&mut self) -> Option<i64> {
        use lockutils::ExternalBackend;
        self.etcd.fencing_token(&mut self.cache)
    }

    pub fn key(&self) -> Vec<u8> {
        self.etcd.key(&self.name, self.prefix.as_deref()).unwrap()
    }
}

/// The virtualenv's python with tooz (`scripts/oslo-venv`; scripts/test sets
/// LOCKUTILS_OSLO_PYTHON), or `None` (with the reason printed) to skip.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("LOCKUTILS_OSLO_PYTHON") {
        Some(python) if !python.is_empty() => Some(PathBuf::from(python)),
        _ => {
            assert!(
                std::env::var_os("LOCKUTILS_REQUIRE_OSLO").is_none(),
                "LOCKUTILS_REQUIRE_OSLO is set but LOCKUTILS_OSLO_PYTHON is not"
            );
            eprintln!(
                "skipped: no Python with tooz (set LOCKUTILS_OSLO_PYTHON=$(scripts/oslo-venv))"
            );
            None
        }
    }
}

/// Starts the tooz helper (`tests/tooz_helper.py`) with `args`, against the test server with
/// `lock_timeout=TTL`.
pub fn tooz(python: &PathBuf, args: &[&str]) -> child::Proc {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tooz_helper.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(url().expect("server"))
        .args(args)
        .env("PYTHONUNBUFFERED", "1");
    child::start(command)
}

/// POSTs `body` to the test server's gateway at `path` (e.g. `v3/lease/revoke`), as an
/// operator's tool would, and returns the answer's body. Plain HTTP/1.0 (no chunked answer) on a socket of its
/// own: independent of the client under test.
pub fn post(path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let endpoint = endpoint();
    let host = endpoint.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(host).expect("connect to etcd");
    socket.set_read_timeout(Some(child::PATIENCE)).unwrap();
    write!(
        socket,
        "POST /{path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).expect("read the answer");
    let (head, rest) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.split_whitespace().nth(1) == Some("200"), "{head}");
    rest.to_owned()
}
