//! Benchmarks of lockutils, each case beside its physical baseline, and the report that puts
//! them beside Python's oslo.concurrency.
//!
//! - `benches/` are criterion benchmarks (`cargo bench -p lockutils-bench`). Cases that
//!   criterion cannot express (percentiles of a cross-process handoff, peak memory, how often
//!   a lock changed hands) also write a measurement file when `LOCKUTILS_BENCH_OUT` names a
//!   directory.
//! - `python/oslo_bench.py` times the same cases with the real oslo.concurrency.
//! - The `bench-report` binary reads criterion's estimates and both harnesses' measurements
//!   and writes `report.md` and `chart.svg`.
//! - `scripts/bench-compare` at the workspace root runs all of it in one command.
//!
//! This library holds what the benchmarks share: raw OFD locks (the baselines), the counter
//! file of the contention case, clocks and memory readings, and the measurement files.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The environment variable naming the directory measurement files go to.
pub const OUT_ENV: &str = "LOCKUTILS_BENCH_OUT";

/// The environment variable that asks for a smoke run (`1`): every case runs, briefly, so a
/// test can check the whole pipeline; the figures mean little.
pub const SMOKE_ENV: &str = "LOCKUTILS_BENCH_SMOKE";

/// `full` normally, `smoke` in a smoke run (see [`SMOKE_ENV`]).
pub fn size<T>(full: T, smoke: T) -> T {
    if std::env::var_os(SMOKE_ENV).is_some_and(|v| v == "1") {
        smoke
    } else {
        full
    }
}

/// A raw open-file-description lock request on the whole of `file`: `kind` is `F_WRLCK`,
/// `F_RDLCK` or `F_UNLCK`; `wait` uses `F_OFD_SETLKW`. The physical floor under every
/// external lock.
pub fn ofd(file: &File, kind: libc::c_int, wait: bool) -> io::Result<()> {
    // SAFETY: a zeroed `flock` is valid (whole file from offset 0, l_pid 0, as OFD locks
    // require).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as _;
    fl.l_whence = libc::SEEK_SET as _;
    let cmd = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    // SAFETY: the descriptor is open for the life of `file`; `fl` outlives the call.
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A classic POSIX record lock request on the whole of `file` without waiting (`F_SETLK`,
/// as Python's `fcntl.lockf` with `LOCK_NB`): what fasteners, under oslo, takes.
pub fn posix_lock(file: &File, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: as in `ofd`; l_pid is ignored by F_SETLK.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as _;
    fl.l_whence = libc::SEEK_SET as _;
    // SAFETY: as in `ofd`.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &mut fl) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens (creating) a lock file the way fasteners does: read + append.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of the machine, so a release
/// timed in one process and an acquire timed in another can be subtracted. (Python's
/// `time.monotonic_ns()` reads the same clock.)
pub fn monotonic_ns() -> u64 {
    // SAFETY: a zeroed timespec is valid and clock_gettime only writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_MONOTONIC is always available on Linux");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This process's peak resident set size in bytes (`VmHWM`).
pub fn peak_rss() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other("no VmHWM line in /proc/self/status"))
}

/// How many waiters the kernel has blocked on the lock file at `path` (the `->` lines of
/// `/proc/locks` for its inode): a holder that sees one knows its release hands over.
pub fn blocked_waiters(path: &Path) -> io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let needle = format!(":{} ", std::fs::metadata(path)?.ino());
    Ok(std::fs::read_to_string("/proc/locks")?
        .lines()
        .filter(|l| l.contains("->") && l.contains(&needle))
        .count())
}

/// The shared counter of the contention case: 16 bytes at offset 0, the count and the PID of
/// the last incrementer (both little-endian `u64`). The Python harness writes the same
/// layout, so both sides count ownership changes alike.
#[derive(Debug)]
pub struct Counter {
    file: File,
    me: u64,
    changes: u64,
}

impl Counter {
    /// Opens (creating) the counter file at `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        // Not append mode: positioned writes must land at offset 0.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Counter {
            file,
            me: u64::from(std::process::id()),
            changes: 0,
        })
    }

    /// The count and the last incrementer's PID.
    pub fn read(&self) -> io::Result<(u64, u64)> {
        let mut buf = [0u8; 16];
        let n = self.file.read_at(&mut buf, 0)?;
        if n < 16 {
            return Ok((0, 0));
        }
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        Ok((word(&buf[..8]), word(&buf[8..])))
    }

    /// Adds one (call it with the lock held) and notes whether the lock came from another
    /// process since this one's last increment (the very first increment came from none).
    pub fn increment(&mut self) -> io::Result<()> {
        let (value, last) = self.read()?;
        if last != self.me && last != 0 {
            self.changes += 1;
        }
        let mut buf = [0u8; 16];
        buf[..8].copy_from_slice(&(value + 1).to_le_bytes());
        buf[8..].copy_from_slice(&self.me.to_le_bytes());
        self.file.write_all_at(&buf, 0)
    }

    /// How many of this process's increments followed another process's.
    pub fn ownership_changes(&self) -> u64 {
        self.changes
    }
}

/// Sorted samples and their percentiles.
#[derive(Debug, Clone)]
pub struct Samples(Vec<u64>);

impl Samples {
    /// Sorts `samples`.
    pub fn new(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        Samples(samples)
    }

    /// The `p`-th percentile (nearest rank), `0 < p <= 100`; 0 with no samples.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where measurement files go: `$LOCKUTILS_BENCH_OUT`, if set.
pub fn out_dir() -> Option<PathBuf> {
    std::env::var_os(OUT_ENV).map(PathBuf::from)
}

/// Writes `value` as `<name>.json` into [`out_dir`] (nothing without one) and prints it, so
/// a plain `cargo bench` shows the figure too.
pub fn record(name: &str, value: serde_json::Value) -> io::Result<()> {
    println!("{name}: {value}");
    let Some(dir) = out_dir() else {
        return Ok(());
    };
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&value)?)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

/// Re-exported for the benchmarks' measurement files.
pub use serde_json::json;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let s = Samples::new((1..=100).rev().collect());
        assert_eq!(s.percentile(50.0), 50);
        assert_eq!(s.percentile(99.0), 99);
        assert_eq!(s.percentile(100.0), 100);
        assert_eq!(s.percentile(0.1), 1);
        assert_eq!(Samples::new(vec![]).percentile(50.0), 0);
    }

    #[test]
    fn the_first_increment_is_no_ownership_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Counter::open(&dir.path().join("counter")).unwrap();
        c.increment().unwrap();
        assert_eq!(c.read().unwrap().0, 1);
        assert_eq!(c.ownership_changes(), 0);
    }

    #[test]
    fn the_counter_counts_and_sees_its_own_increments_as_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counter");
        // Another process's last increment: PID 1 cannot be this test.
        let mut seed = [0u8; 16];
        seed[..8].copy_from_slice(&41u64.to_le_bytes());
        seed[8..].copy_from_slice(&1u64.to_le_bytes());
        std::fs::write(&path, seed).unwrap();
        let mut c = Counter::open(&path).unwrap();
        c.increment().unwrap();
        c.increment().unwrap();
        assert_eq!(c.read().unwrap(), (43, u64::from(std::process::id())));
        assert_eq!(c.ownership_changes(), 1);
    }

    #[test]
    fn ofd_locks_exclude_across_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let (a, b) = (
            open_lock_file(&path).unwrap(),
            open_lock_file(&path).unwrap(),
        );
        ofd(&a, libc::F_WRLCK, false).unwrap();
        let busy = ofd(&b, libc::F_WRLCK, false).unwrap_err();
        assert_eq!(busy.raw_os_error(), Some(libc::EAGAIN));
        ofd(&a, libc::F_UNLCK, false).unwrap();
        ofd(&b, libc::F_WRLCK, false).unwrap();
        posix_lock(&a, libc::F_WRLCK).unwrap_err(); // OFD and POSIX locks conflict
        assert!(peak_rss().unwrap() > 0);
        assert!(monotonic_ns() > 0);
    }
}
