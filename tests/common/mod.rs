//! Helpers shared by the integration tests.
#![allow(dead_code)]

/// Spins (yielding) until `cond` holds. Used to order threads through a lock's own queue
/// length instead of sleeping.
pub fn wait_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        std::thread::yield_now();
    }
}

/// A counter whose increment is a separate load and store, so that two unsynchronised
/// incrementers lose updates: only mutual exclusion keeps it exact.
#[derive(Default)]
pub struct RacyCounter(std::sync::atomic::AtomicUsize);

impl RacyCounter {
    pub const fn new() -> Self {
        Self(std::sync::atomic::AtomicUsize::new(0))
    }

    pub fn increment(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let value = self.0.load(Relaxed);
        // Widen the window in which an intruder would be noticed.
        if value.is_multiple_of(64) {
            std::thread::yield_now();
        }
        self.0.store(value + 1, Relaxed);
    }

    pub fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(unix)]
pub mod child;

/// Reads a decimal counter file (empty or missing means 0).
pub fn read_counter(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Increments a decimal counter file by reading and rewriting it: without mutual exclusion
/// across its users, updates get lost.
pub fn increment_counter(path: &std::path::Path) {
    let value = read_counter(path);
    std::fs::write(path, (value + 1).to_string()).expect("write counter");
}

/// The python of the virtualenv with the real oslo packages (`LOCKUTILS_OSLO_PYTHON`), or
/// `None` after saying, visibly, that the test against the real `package` is skipped; a
/// missing python fails instead when `LOCKUTILS_REQUIRE_OSLO` is set.
pub fn oslo_python(package: &str) -> Option<String> {
    match std::env::var("LOCKUTILS_OSLO_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            assert!(
                std::env::var_os("LOCKUTILS_REQUIRE_OSLO").is_none(),
                "LOCKUTILS_REQUIRE_OSLO is set but LOCKUTILS_OSLO_PYTHON is not"
            );
            // Written to the stream directly: the test harness would swallow `eprintln!`.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: LOCKUTILS_OSLO_PYTHON is not set; run scripts/test (or set it to the \
                 python of `scripts/oslo-venv`) to test against the real {package}"
            );
            None
        }
    }
}
