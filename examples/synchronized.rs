//! `#[synchronized]` as a service would use it: per-instance locks from an argument, a
//! project-wide prefix bound once, and lock failures as errors.
//!
//! `cargo run --example synchronized`

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use lockutils::synchronized;

// Once per project, like `synchronized = lockutils.synchronized_with_prefix('nova')`.
lockutils::synchronized_with_prefix!(nova_synchronized, "nova");

struct Instance {
    uuid: &'static str,
    reboots: AtomicU32,
}

/// One reboot per instance at a time; different instances in parallel.
#[synchronized(format!("instance-{}", instance.uuid))]
fn reboot(instance: &Instance) {
    instance.reboots.fetch_add(1, Ordering::Relaxed);
    thread::sleep(Duration::from_millis(20));
}

/// Gives up at once if another thread is already refreshing.
#[synchronized("refresh-cache", blocking = false)]
fn refresh_cache() -> io::Result<&'static str> {
    thread::sleep(Duration::from_millis(50));
    Ok("refreshed")
}

/// The service's lock directory (a real service reads it from its config: `lock_path`).
static LOCK_DIR: OnceLock<PathBuf> = OnceLock::new();

fn lock_dir() -> &'static Path {
    LOCK_DIR.get().expect("set in main")
}

nova_synchronized!("compute-resources", external = true, lock_path = lock_dir();
    /// Across processes too: the lock file is `nova-compute-resources` in the lock directory.
    fn claim_resources(cpus: u32) -> io::Result<u32> {
        Ok(cpus)
    }
);

fn main() -> io::Result<()> {
    // A lock directory of its own, removed when `temp` drops (on an error too).
    let temp = tempfile::tempdir()?;
    LOCK_DIR.get_or_init(|| temp.path().to_owned());
    let instances = [
        Instance {
            uuid: "a1",
            reboots: AtomicU32::new(0),
        },
        Instance {
            uuid: "b2",
            reboots: AtomicU32::new(0),
        },
    ];
    let started = Instant::now();
    thread::scope(|s| {
        for i in 0..6 {
            let instance = &instances[i % 2];
            s.spawn(move || reboot(instance));
        }
    });
    println!(
        "6 reboots of 2 instances (20 ms each) took {:.0} ms: 3 in a row per instance, \
         both instances side by side",
        started.elapsed().as_secs_f64() * 1e3
    );
    for instance in &instances {
        println!(
            "instance {}: {} reboots",
            instance.uuid,
            instance.reboots.load(Ordering::Relaxed)
        );
    }

    let results: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    refresh_cache()
                        .map(String::from)
                        .unwrap_or_else(|e| e.to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!("3 concurrent refreshes: {results:?}");

    println!(
        "claimed {} cpus under the nova lock file",
        claim_resources(4)?
    );
    temp.close()
}
