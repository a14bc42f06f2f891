"""Process and port helpers shared by the devenv servers (stdlib only).

A *detached* server is started by one command and stopped by another
(``make demo`` / ``make demo-stop``): its work directory holds ``NAME.pid``
and ``NAME.url``, and a pid is trusted only while that process is alive and
still serves that work directory (its config file's path appears in
``/proc/PID/<proc_file>``: ``cmdline`` or ``environ``).
"""

import os
import pathlib
import signal
import socket
import time
from collections.abc import Callable

STOP_GRACE = 10.0


class ProcessError(RuntimeError):
    pass


def stop_process_group(pgid: int, reap: Callable[[], object] = lambda: None, grace: float = STOP_GRACE) -> None:
    """SIGTERM process group ``pgid``, wait ``grace`` seconds for it to end, then SIGKILL it.

    ``reap`` is called while waiting so that a parent can collect its own
    child (``Popen.poll``); members that are zombies count as ended.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reap()
            if not live_group_members(pgid):
                return
            time.sleep(0.1)
    raise ProcessError(f"process group {pgid} survived SIGKILL")


def live_group_members(pgid: int) -> list[int]:
    """Pids of the processes of group ``pgid`` that are not zombies (from /proc)."""
    members = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


# Ports handed out by free_port, across processes, so that servers started
# at once by parallel test workers never get the same one: some (eventlet's,
# Swift's, Ironic's) listen with SO_REUSEPORT and would then silently share it.
_PORT_REGISTRY = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "inspectord-devenv-ports"
_PORT_HOLD = 600.0  # seconds a handed-out port is not handed out again


def free_port(host: str) -> int:
    """A port nothing listens on and that no other caller got in the last ten minutes."""
    import fcntl
    import json

    with open(str(_PORT_REGISTRY) + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            issued = {int(k): v for k, v in json.loads(_PORT_REGISTRY.read_text()).items()}
        except (OSError, ValueError):
            issued = {}
        now = time.time()
        issued = {port: when for port, when in issued.items() if now - when < _PORT_HOLD}
        for _ in range(100):
            with _tcp_socket(host) as sock:
                sock.bind((host, 0))
                port: int = sock.getsockname()[1]
            if port not in issued:
                break
        issued[port] = now
        _PORT_REGISTRY.write_text(json.dumps(issued))
        return port


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (binding with SO_REUSEADDR, as servers do)."""
    with _tcp_socket(host) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _tcp_socket(host: str) -> socket.socket:
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)


def detached_pid(server, name: str, proc_file: str) -> int | None:
    """The pid in ``NAME.pid`` if that process is alive and serves ``server``'s work directory."""
    try:
        pid = int((server.workdir / f"{name}.pid").read_text())
        found = pathlib.Path(f"/proc/{pid}/{proc_file}").read_bytes()
    except (OSError, ValueError):
        return None
    if os.fsencode(str(server.config_path)) not in found or pid not in live_group_members(pid):
        return None
    return pid


def start_detached(server, name: str, proc_file: str, timeout: float) -> str:
    """Start ``server`` and leave it running; its URL.  A running one is reused."""
    pid_path, url_path = server.workdir / f"{name}.pid", server.workdir / f"{name}.url"
    if detached_pid(server, name, proc_file) is not None:
        return url_path.read_text().strip()
    server.start(timeout)
    url_path.write_text(server.url + "\n")
    pid_path.write_text(f"{server.pid}\n")
    return server.url


def stop_detached(server, name: str, proc_file: str) -> bool:
    """Stop what :func:`start_detached` left in ``server``'s work directory; False if none ran."""
    pid = detached_pid(server, name, proc_file)
    if pid is not None:
        stop_process_group(pid)
    for suffix in ("pid", "url"):
        (server.workdir / f"{name}.{suffix}").unlink(missing_ok=True)
    return pid is not None
