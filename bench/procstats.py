"""CPU time and memory of processes, from /proc (through psutil)."""

import psutil


def tree(pid):
    """The process ``pid`` and its live descendants."""
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid):
    """User + system CPU seconds of ``pid`` and its descendants (live, and reaped ones)."""
    total = 0.0
    for process in tree(pid):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _status_kb(pid, field):
    try:
        with open("/proc/{}/status".format(pid)) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pid):
    return _status_kb(pid, "VmRSS") / 1024.0


def peak_rss_mb(pid):
    """Peak resident set (VmHWM) of the process since it started."""
    return _status_kb(pid, "VmHWM") / 1024.0


def tree_rss_mb(pid):
    return sum(rss_mb(p.pid) for p in tree(pid))
