//! Registries forget names nobody uses: a million names leave nothing behind.
//!
//! In its own test binary so that no other test's allocations blur the memory figures.

use lockutils::{FairLocks, Semaphores, lock};

/// Resident set size of this process in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_million_names_locked_and_released_leave_the_registries_empty() {
    let sems = Semaphores::new();
    let fair = FairLocks::new();
    let before = rss();
    let mut name = String::new();
    for i in 0..1_000_000u32 {
        name.clear();
        std::fmt::Write::write_fmt(&mut name, format_args!("instance-{i}")).unwrap();
        drop(lock(&name).semaphores(&sems).acquire().unwrap());
        drop(lock(&name).fair_locks(&fair).acquire().unwrap());
        drop(lock(&name).do_log(false).acquire().unwrap()); // the global registry
    }
    assert_eq!(sems.len(), 0);
    assert_eq!(fair.len(), 0);
    assert_eq!(Semaphores::global().len(), 0);
    let grown = rss().saturating_sub(before);
    // Three million entries kept alive would need hundreds of MB; idle ones are swept as
    // the shards grow, so only a few per shard ever coexist.
    assert!(grown < 16 << 20, "RSS grew by {grown} bytes");
}
