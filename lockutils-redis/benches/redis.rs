//! Redis lock costs over loopback, beside the bare round trip, in one run:
//! - `ping_round_trip`: `PING` on an open connection (the floor: one round trip);
//! - `lock_external_backend`: `lock(name).external(true)` with the Redis backend, acquire and
//!   release, uncontended (the in-process lock, the acquire script, the release script: two
//!   round trips; the goal is at most 2.5 × the PING);
//! - `lock_external_by_url`: the same with the backend selected by the configuration's URL.
//!
//! Then the **handoff**: a holder releases, and a blocked waiter has the lock; for a lockutils
//! waiter (woken by the release announcement), for a lockutils waiter when the release is not
//! announced (a tooz holder's: polling), and for a tooz 9.1.0 waiter (if
//! `LOCKUTILS_OSLO_PYTHON` names the virtualenv's python). The holder is played by the bench
//! itself on the wire (the key set to a token; released by the release script), with a random
//! pause before each release so that polling is not in phase with it. Medians and 99th
//! percentiles are printed, and written to `$LOCKUTILS_BENCH_OUT/redis.json` if that is set.
//!
//! Needs a server: `scripts/redis -- cargo bench -p lockutils-redis`
//! (`LOCKUTILS_BENCH_SMOKE=1`: a few rounds only).

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::Criterion;
use lockutils::{LockConfig, configure, lock};
use lockutils_redis::RedisBackend;

/// The acquire script of the crate (as in `src/script.rs`).
const ACQUIRE: &str = "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then \
    return {1, redis.call('INCR', KEYS[2])} end return {0, redis.call('PTTL', KEYS[1])}";

/// The release the bench's holder makes: lockutils' (announced) or tooz's (not).
const RELEASE_ANNOUNCED: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    redis.call('DEL', KEYS[1]); redis.call('PUBLISH', KEYS[1] .. ':released', ''); return 1 end \
    return 0";
const RELEASE_SILENT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    redis.call('DEL', KEYS[1]); return 1 end return 0";

fn main() {
    let Ok(url) = std::env::var("LOCKUTILS_TEST_REDIS_URL") else {
        eprintln!(
            "skipped: no Redis server; run `scripts/redis -- cargo bench -p lockutils-redis`"
        );
        return;
    };
    let smoke = std::env::var_os("LOCKUTILS_BENCH_SMOKE").is_some();
    lockutils_redis::install();
    let redis = lockutils_redis::backend(&url).unwrap();
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("redis_uncontended");

    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    g.bench_function("ping_round_trip", |b| {
        b.iter(|| black_box(redis::cmd("PING").query::<String>(&mut con).unwrap()))
    });
    // The protocol's floor: the two scripts (as this crate sends them) on one open connection.
    let key = redis.key("bench-redis-raw", None).unwrap();
    g.bench_function("two_scripts_raw", |b| {
        b.iter(|| {
            let taken: Vec<i64> = redis::cmd("EVAL")
                .arg(ACQUIRE)
                .arg(2)
                .arg(&key)
                .arg("_tooz_fencing_token")
                .arg("raw-token")
                .arg(30_000)
                .query(&mut con)
                .unwrap();
            assert_eq!(taken[0], 1);
            let released: i64 = redis::cmd("EVAL")
                .arg(RELEASE_ANNOUNCED)
                .arg(1)
                .arg(&key)
                .arg("raw-token")
                .query(&mut con)
                .unwrap();
            assert_eq!(released, 1);
        })
    });
    g.bench_function("lock_external_backend", |b| {
        b.iter(|| {
            drop(
                lock(black_box("bench-redis"))
                    .external(true)
                    .backend(redis)
                    .do_log(false)
                    .acquire()
                    .unwrap(),
            )
        })
    });
    configure(LockConfig {
        backend_url: Some(url.clone()),
        ..LockConfig::default()
    });
    g.bench_function("lock_external_by_url", |b| {
        b.iter(|| {
            drop(
                lock(black_box("bench-redis-url"))
                    .external(true)
                    .do_log(false)
                    .acquire()
                    .unwrap(),
            )
        })
    });
    g.finish();
    c.final_summary();

    let rounds = if smoke { 3 } else { 100 };
    let mut results = Vec::new();
    let announced = handoff_lockutils(redis, rounds, RELEASE_ANNOUNCED);
    results.push(("lockutils waiter, lockutils release (announced)", announced));
    let silent = handoff_lockutils(redis, rounds, RELEASE_SILENT);
    results.push(("lockutils waiter, tooz release (polling)", silent));
    match std::env::var("LOCKUTILS_OSLO_PYTHON") {
        Ok(python) if !python.is_empty() => {
            let tooz = handoff_tooz(redis, &url, &python, rounds);
            results.push(("tooz waiter", tooz));
        }
        _ => eprintln!("tooz handoff skipped: LOCKUTILS_OSLO_PYTHON is not set"),
    }
    let mut json = Vec::new();
    println!("\nhandoff: release -> the waiter has the lock ({rounds} rounds)");
    for (what, mut samples) in results {
        samples.sort();
        let median = samples[samples.len() / 2];
        let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
        println!(
            "  {what:<50} median {:>8.3} ms   p99 {:>8.3} ms",
            ms(median),
            ms(p99)
        );
        json.push(format!(
            "{{\"case\":\"{what}\",\"median_ms\":{:.4},\"p99_ms\":{:.4},\"rounds\":{rounds}}}",
            ms(median),
            ms(p99)
        ));
    }
    if let Ok(dir) = std::env::var("LOCKUTILS_BENCH_OUT") {
        let path = std::path::Path::new(&dir).join("redis.json");
        std::fs::write(&path, format!("[{}]\n", json.join(","))).unwrap();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A pause of 0–100 ms (one polling period), so that releases fall anywhere in it.
fn jitter() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Duration::from_micros(u64::from(nanos % 100_000))
}

fn waiters(redis: &RedisBackend, key: &str) -> i64 {
    match redis.command(&["PUBSUB", "NUMSUB", &format!("{key}:released")]) {
        Ok(redis::Value::Array(items)) => match items.get(1) {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

fn hold(redis: &RedisBackend, key: &str) {
    redis
        .command(&["SET", key, "bench-holder", "PX", "60000"])
        .unwrap();
}

fn release(redis: &RedisBackend, key: &str, script: &str) {
    redis
        .command(&["EVAL", script, "1", key, "bench-holder"])
        .unwrap();
}

/// Handoffs to a lockutils waiter (a thread of this process), released with `script`.
fn handoff_lockutils(redis: &'static RedisBackend, rounds: usize, script: &str) -> Vec<Duration> {
    let name = format!("bench-handoff-{}", std::process::id());
    let key = redis.key(&name, None).unwrap();
    (0..rounds)
        .map(|_| {
            hold(redis, &key);
            let waiter = std::thread::spawn({
                let name = name.clone();
                move || {
                    let guard = lock(&name)
                        .external(true)
                        .backend(redis)
                        .do_log(false)
                        .acquire()
                        .unwrap();
                    let got = Instant::now();
                    drop(guard);
                    got
                }
            });
            while waiters(redis, &key) != 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(jitter());
            let released = Instant::now();
            release(redis, &key, script);
            waiter.join().unwrap() - released
        })
        .collect()
}

/// Handoffs to a tooz waiter (`tests/tooz_helper.py handoff`), released as tooz releases.
fn handoff_tooz(redis: &RedisBackend, url: &str, python: &str, rounds: usize) -> Vec<Duration> {
    let name = format!("bench-handoff-tooz-{}", std::process::id());
    let key = redis.key(&name, None).unwrap();
    let helper = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tooz_helper.py");
    let mut child = Command::new(python)
        .args([helper, url, "handoff", &name, &rounds.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let samples = (0..rounds)
        .map(|_| {
            hold(redis, &key);
            writeln!(stdin, "go").unwrap();
            // tooz shows no sign of waiting but its tries: give it time to start and fail one.
            std::thread::sleep(Duration::from_millis(150) + jitter());
            let released = SystemTime::now();
            release(redis, &key, RELEASE_SILENT);
            let got: u128 = lines.next().unwrap().unwrap().trim().parse().unwrap();
            let released = released.duration_since(UNIX_EPOCH).unwrap().as_nanos();
            Duration::from_nanos(u64::try_from(got.saturating_sub(released)).unwrap())
        })
        .collect();
    drop(stdin);
    child.wait().unwrap();
    samples
}
