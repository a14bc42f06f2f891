"""Summarise py-spy raw profiles (collapsed stacks) recorded by ``bench.run --profile``.

``python -m bench.profiles FILE [N]`` prints the N frames with the most
samples on top of the stack (own time) and in the stack (inclusive time);
``python -m bench.profiles --parts FILE`` the busy samples by part of the
service (database thread, HTTP API, Ironic client, logging...).
The harness records with ``py-spy --gil``: only the thread holding the GIL
is sampled, so the shares are of the CPU time the process spent in Python.
Samples of a thread waiting in epoll or on a queue (if any) are idle time
and are listed apart.
"""

import collections
import sys

IDLE = ("EPollReactor.doPoll", "Condition.wait", "Queue.get", "select", "poll (", "_wait_for_tstate_lock")


def summarise(path, top=15):
    own = collections.Counter()
    inclusive = collections.Counter()
    total = idle = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue  # a line cut short when the profiled process ended
            count = int(count)
            frames = stack.split(";")
            total += count
            if any(frames[-1].startswith(marker) or marker in frames[-1] for marker in IDLE):
                idle += count
                continue
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    busy = total - idle
    return {"total": total, "idle": idle, "busy": busy, "own": own.most_common(top),
            "inclusive": [(f, n) for f, n in inclusive.most_common(top * 4)
                          if not any(skip in f for skip in ("_bootstrap", "run_path", "runpy", "launch.py",
                                                            "twistd", "app.py", "Thread.run", "<module>"))][:top]}


def markdown(path, title, top=12):
    s = summarise(path, top)
    if not s["total"]:
        return []
    lines = ["{}: {} samples at 100 Hz, {} busy ({:.0f} %), {} waiting in epoll or for work.".format(
        title, s["total"], s["busy"], 100.0 * s["busy"] / s["total"], s["idle"]), "",
        "| own % of busy | frame |", "|---|---|"]
    for frame, count in s["own"]:
        lines.append("| {:.1f} | `{}` |".format(100.0 * count / max(s["busy"], 1), frame))
    lines += ["", "| inclusive % of busy | frame |", "|---|---|"]
    for frame, count in s["inclusive"]:
        lines.append("| {:.1f} | `{}` |".format(100.0 * count / max(s["busy"], 1), frame))
    return lines + [""]


#: Where a busy sample's CPU went: the first part whose marker is in its stack.
PARTS = (
    ("database: the store's calls in the database thread (SQLAlchemy, sqlite3)",
     ("_threads/_threadworker", "inspectord/store/sql.py")),
    ("logging (twisted.logger observers, access log)", ("twisted/logger", "MetricsSite.log", "access_log_formatter")),
    ("Ironic client (treq, twisted.web.client) and what runs on its answers",
     ("treq/", "_newclient", "web/client.py", "inspectord/ironic")),
    ("processing (hooks, rules, ramdisk data)", ("inspectord/processing", "ramdisk_data")),
    ("HTTP API (twisted.web server, Klein, inspectord.api)",
     ("twisted/web/http.py", "klein/", "inspectord/api", "twisted/web/server.py")),
    ("results handed back from threads (callFromThread, waker)", ("runUntilCurrent", "_Waker", "callFromThread")),
)


def parts(path):
    """``[(part, busy samples)]``, most first: the CPU of a profile by part of the service."""
    counts = collections.Counter()
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            if any(frames[-1].startswith(marker) or marker in frames[-1] for marker in IDLE):
                continue
            for name, markers in PARTS:
                if any(m in stack for m in markers):
                    counts[name] += int(count)
                    break
            else:
                counts["reactor, Deferreds, other"] += int(count)
    return counts.most_common()


def parts_markdown(path):
    found = parts(path)
    busy = sum(n for _, n in found) or 1
    return ["| % of busy | part |", "|---|---|"] + [
        "| {:.0f} | {} |".format(100.0 * n / busy, name) for name, n in found
    ] + [""]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--parts":
        print("\n".join(parts_markdown(argv[1])))
        return 0
    print("\n".join(markdown(argv[0], argv[0], int(argv[1]) if len(argv) > 1 else 15)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
