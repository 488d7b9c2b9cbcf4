"""Handoff latency between two tooz processes (etcd3gw driver) on one lock: a holder
releases, a waiter blocked in acquire() has it. Prints the median and the worst of N.

Usage: tooz_handoff.py URL N [OUT.json]  (OUT gets {"median_ns", "max_ns", "n"})
"""

import json
import multiprocessing
import statistics
import sys
import time

from tooz import coordination

NAME = b"lockutils-bench-tooz-handoff"


def waiter(url, ready, got):
    coord = coordination.get_coordinator(url, b"bench-waiter")
    coord.start(start_heart=True)
    lock = coord.get_lock(NAME)
    ready.set()
    lock.acquire(blocking=True)
    got.value = time.time()
    lock.release()
    coord.stop()


def main():
    url, n = sys.argv[1], int(sys.argv[2])
    coord = coordination.get_coordinator(url, b"bench-holder")
    coord.start(start_heart=True)
    lock = coord.get_lock(NAME)
    times = []
    for _ in range(n):
        assert lock.acquire(blocking=True)
        ready = multiprocessing.Event()
        got = multiprocessing.Value("d", 0.0)
        proc = multiprocessing.Process(target=waiter, args=(url, ready, got))
        proc.start()
        ready.wait()
        time.sleep(0.3)  # let the waiter make its first (failed) try: it then polls
        released = time.time()
        lock.release()
        proc.join()
        times.append(got.value - released)
    coord.stop()
    times.sort()
    print(
        "etcd_handoff/handoff_tooz_to_tooz: median %.1f ms, max %.1f ms over %d"
        % (statistics.median(times) * 1000, times[-1] * 1000, n)
    )
    if len(sys.argv) > 3:
        with open(sys.argv[3], "w") as f:
            json.dump(
                {"median_ns": statistics.median(times) * 1e9, "max_ns": times[-1] * 1e9, "n": n},
                f,
            )


if __name__ == "__main__":
    main()
