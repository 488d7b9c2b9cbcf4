"""The tooz side of lockutils-etcd's interop tests: the real tooz (etcd3gw driver).

Usage: tooz_helper.py URL heart|noheart

Reads commands from stdin, one a line, and answers on stdout:
  try NAME             -> "acquired" (then held) or "busy": acquire(blocking=False)
  acquire NAME SECONDS -> "acquired" or "timeout": acquire(blocking=SECONDS)
  release NAME         -> "released True" or "released False"
  count NAME PATH N    -> "done": N increments of the number in PATH, each under the lock
"""

import sys

from tooz import coordination


def main():
    url, heart = sys.argv[1], sys.argv[2] == "heart"
    coord = coordination.get_coordinator(url, b"lockutils-test")
    coord.start(start_heart=heart)
    locks = {}

    def lock(name):
        if name not in locks:
            locks[name] = coord.get_lock(name.encode())
        return locks[name]

    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command, name = words[0], words[1]
        if command == "try":
            print("acquired" if lock(name).acquire(blocking=False) else "busy", flush=True)
        elif command == "acquire":
            try:
                ok = lock(name).acquire(blocking=float(words[2]))
            except coordination.LockAcquireFailed:
                ok = False
            print("acquired" if ok else "timeout", flush=True)
        elif command == "release":
            print("released %s" % lock(name).release(), flush=True)
        elif command == "count":
            path, n = words[2], int(words[3])
            for _ in range(n):
                with lock(name):
                    with open(path) as f:
                        value = int(f.read().strip())
                    with open(path, "w") as f:
                        f.write(str(value + 1))
            print("done", flush=True)
        else:
            print("unknown command %r" % command, flush=True)
    coord.stop()


if __name__ == "__main__":
    main()
