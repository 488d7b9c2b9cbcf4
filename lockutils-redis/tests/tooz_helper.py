"""The Python side of lockutils-redis's interop tests: tooz 9.1.0's redis driver, for real.

Usage: python tooz_helper.py URL ROLE NAME [ARGS...]

Roles (each prints one line per step, flushed, for the Rust test to read):
  hold NAME            take the lock, print "held", hold it until stdin closes, release
  wait NAME            one non-blocking try; if refused, print "waiting" and take the lock
                       (blocking); print "got", release
  try NAME             one non-blocking try: print "got" (and release) or "busy"
  count NAME PATH N    print "ready", wait for a line on stdin, then N times: take the lock,
                       read the integer in PATH, write it back plus one, release; print "done"
  handoff NAME N       the waiting side of the handoff benchmark: N times, wait for a line
                       "go" on stdin, take the lock (blocking), print the time it got it
                       (time.time_ns()), release
"""

import sys
import time
import uuid

from tooz import coordination


def main():
    url, role, name = sys.argv[1:4]
    args = sys.argv[4:]
    coordinator = coordination.get_coordinator(url, uuid.uuid4().hex.encode())
    # The heartbeat thread extends held locks, as services run it.
    coordinator.start(start_heart=True)
    try:
        lock = coordinator.get_lock(name.encode())
        if role == "hold":
            lock.acquire(blocking=True)
            print("held", flush=True)
            sys.stdin.read()
            lock.release()
        elif role == "wait":
            if not lock.acquire(blocking=False):
                print("waiting", flush=True)
                lock.acquire(blocking=True)
            print("got", flush=True)
            lock.release()
        elif role == "try":
            if lock.acquire(blocking=False):
                print("got", flush=True)
                lock.release()
            else:
                print("busy", flush=True)
        elif role == "count":
            path, n = args[0], int(args[1])
            print("ready", flush=True)
            sys.stdin.readline()
            for _ in range(n):
                with lock:
                    with open(path) as f:
                        value = int(f.read().strip())
                    with open(path, "w") as f:
                        f.write(str(value + 1))
            print("done", flush=True)
        elif role == "handoff":
            for _ in range(int(args[0])):
                if sys.stdin.readline().strip() != "go":
                    break
                lock.acquire(blocking=True)
                print(time.time_ns(), flush=True)
                lock.release()
        else:
            raise SystemExit("unknown role " + role)
    finally:
        coordinator.stop()


if __name__ == "__main__":
    main()
