"""Times Python's oslo.concurrency on the cases lockutils-bench measures, for the side-by-side
report. Run by scripts/bench-compare with the virtualenv's python:

    python oslo_bench.py --out target/bench-report/data/oslo.json

Each in-process case is timed like criterion's median: several repeats of a calibrated loop,
the median of the repeats' means. The 4-process counter and the cross-process handoff use the
same protocol and counter file layout as lockutils-bench's `external` benchmark.
"""

import argparse
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from importlib import metadata

from oslo_concurrency import lockutils

REPEATS = 7
# The counter file: the count and the PID of the last incrementer, little-endian u64s.
COUNTER = struct.Struct("<QQ")


def per_call_ns(fn, repeat_s):
    """Median over REPEATS of the mean time of one call of fn (repeats of about repeat_s
    seconds each), in nanoseconds."""
    began = time.perf_counter_ns()
    calls = 0
    while time.perf_counter_ns() - began < repeat_s * 1e9 / 10:
        fn()
        calls += 1
    loops = max(1, calls * 10)
    means = []
    for _ in range(REPEATS):
        began = time.perf_counter_ns()
        for _ in range(loops):
            fn()
        means.append((time.perf_counter_ns() - began) / loops)
    return statistics.median(means)


def uncontended(lock_dir, repeat_s):
    def plain(x):
        return x * 3

    @lockutils.synchronized("bench-literal")
    def decorated(x):
        return x * 3

    @lockutils.synchronized("bench-external", external=True, lock_path=lock_dir)
    def decorated_external(x):
        return x * 3

    def in_process():
        with lockutils.lock("instance-42"):
            pass

    def fair():
        with lockutils.lock("instance-42", fair=True):
            pass

    def external():
        with lockutils.lock("bench-ext", external=True, lock_path=lock_dir):
            pass

    rw = lockutils.ReaderWriterLock()

    def rw_read():
        with rw.read_lock():
            pass

    def rw_write():
        with rw.write_lock():
            pass

    cases = {
        "lock": in_process,
        "lock_fair": fair,
        "lock_external": external,
        "rwlock_read": rw_read,
        "rwlock_write": rw_write,
        "undecorated_function": lambda: plain(7),
        "synchronized": lambda: decorated(7),
        "synchronized_external": lambda: decorated_external(7),
    }
    return {name: {"ns": per_call_ns(fn, repeat_s)} for name, fn in cases.items()}


def child(args):
    """The other processes of the contention and handoff cases."""
    role, lock_dir = args[0], args[1]
    if role == "count":
        iters = int(args[2])
        me = os.getpid()
        changes = 0
        fd = os.open(os.path.join(lock_dir, "counter"), os.O_RDWR | os.O_CREAT, 0o644)
        print("ready", flush=True)
        sys.stdin.readline()
        started = time.monotonic_ns()
        for _ in range(iters):
            with lockutils.lock("contended", external=True, lock_path=lock_dir):
                data = os.pread(fd, COUNTER.size, 0)
                value, last = COUNTER.unpack(data) if len(data) == COUNTER.size else (0, 0)
                if last not in (me, 0):
                    changes += 1
                os.pwrite(fd, COUNTER.pack(value + 1, me), 0)
        print(started, time.monotonic_ns(), changes, flush=True)
    elif role == "handoff":
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() != "go":
                break
            print("waiting", flush=True)
            with lockutils.lock("handoff", external=True, lock_path=lock_dir):
                acquired = time.monotonic_ns()
            print(acquired, flush=True)
    else:
        raise SystemExit(f"unknown child role {role!r}")


def spawn(*args):
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--child", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def four_processes(per_process):
    """4 processes x per_process increments of the counter under one external lock; the time
    from the first start to the last end (CLOCK_MONOTONIC, machine-wide)."""
    with tempfile.TemporaryDirectory() as lock_dir:
        children = [spawn("count", lock_dir, str(per_process)) for _ in range(4)]
        for c in children:
            assert c.stdout.readline().strip() == "ready"
        for c in children:
            c.stdin.write("go\n")
            c.stdin.flush()
        first_start, last_end, changes = None, 0, 0
        for c in children:
            start, end, changed = map(int, c.stdout.readline().split())
            first_start = start if first_start is None else min(first_start, start)
            last_end = max(last_end, end)
            changes += changed
        for c in children:
            c.stdin.close()
            assert c.wait() == 0
        with open(os.path.join(lock_dir, "counter"), "rb") as f:
            value, _ = COUNTER.unpack(f.read(COUNTER.size))
        assert value == 4 * per_process, f"lost increments: {value}"
    increments = 4 * per_process
    elapsed = last_end - first_start
    return {
        "increments": increments,
        "elapsed_ns": elapsed,
        "ns_per_increment": elapsed / increments,
        "ownership_changes": changes,
    }


def handoffs(rounds, hold_min, hold_max):
    """Release-to-acquire time to a waiter in another process. fasteners' waiter polls, with a
    sleep that grows to 100 ms, so the latency depends on how long it has waited: the holder
    keeps the lock a while after the waiter starts waiting (as a real holder would work),
    spread evenly over [hold_min, hold_max) seconds across the rounds so that no phase of the
    poll loop is favoured."""
    samples = []
    with tempfile.TemporaryDirectory() as lock_dir:
        c = spawn("handoff", lock_dir)
        assert c.stdout.readline().strip() == "ready"
        for i in range(rounds):
            hold_s = hold_min + (hold_max - hold_min) * (i + 0.5) / rounds
            with lockutils.lock("handoff", external=True, lock_path=lock_dir):
                c.stdin.write("go\n")
                c.stdin.flush()
                assert c.stdout.readline().strip() == "waiting"
                time.sleep(hold_s)
                released = time.monotonic_ns()
            samples.append(int(c.stdout.readline()) - released)
        c.stdin.close()
        assert c.wait() == 0
    samples.sort()

    def pct(p):
        return samples[max(1, -(-len(samples) * p // 100)) - 1]

    return {
        "rounds": rounds,
        "hold_min_ns": int(hold_min * 1e9),
        "hold_max_ns": int(hold_max * 1e9),
        "median_ns": pct(50),
        "p99_ns": pct(99),
        "max_ns": samples[-1],
    }


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where to write the JSON results")
    parser.add_argument("--repeat-seconds", type=float, default=0.2)
    parser.add_argument("--per-process", type=int, default=2500)
    parser.add_argument("--handoff-rounds", type=int, default=100)
    parser.add_argument("--handoff-hold-min", type=float, default=0.1)
    parser.add_argument("--handoff-hold-max", type=float, default=0.4)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as lock_dir:
        cases = uncontended(lock_dir, opts.repeat_seconds)
    results = {
        "versions": {
            "python": platform.python_version(),
            "oslo.concurrency": metadata.version("oslo.concurrency"),
            "fasteners": metadata.version("fasteners"),
            # Everything else in the virtualenv (oslo.concurrency's own dependencies).
            "installed": sorted(
                f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
            ),
        },
        "cases": cases,
        "external_4_processes": four_processes(opts.per_process),
        "external_handoff_process": handoffs(
            opts.handoff_rounds, opts.handoff_hold_min, opts.handoff_hold_max
        ),
    }
    os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
    with open(opts.out, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
