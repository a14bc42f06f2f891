"""CPU time and memory of processes, from /proc (through psutil)."""

import os

import psutil


def tree(pid):
    """The process ``pid`` and its live descendants."""
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cpu_times(pid):
    """``(user + system, system)`` CPU seconds of ``pid`` and its descendants (live, and reaped ones).

    The second is the part spent in the kernel (system calls).
    """
    total = system = 0.0
    for process in tree(pid):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.children_user
        system += times.system + times.children_system
    return total + system, system


def cpu_seconds(pid):
    """User + system CPU seconds of ``pid`` and its descendants (live, and reaped ones)."""
    return cpu_times(pid)[0]


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


def machine_busy_seconds():
    """CPU seconds every CPU of the machine spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Window:
    """CPU seconds used during a phase: by each watched process tree, and by the rest of the machine."""

    def __init__(self, **pids):
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.start_self = cpu_seconds(os.getpid())
        self.start_machine = machine_busy_seconds()

    def stop(self):
        used = {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}
        used["harness"] = cpu_seconds(os.getpid()) - self.start_self
        machine = machine_busy_seconds() - self.start_machine
        used["machine"] = machine
        used["background"] = max(0.0, machine - sum(v for k, v in used.items() if k != "machine"))
        return used
