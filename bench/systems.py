"""The systems under test, each started fresh against its own Ironic.

* :class:`Inspectord`: ``twistd -n inspectord`` from this checkout's venv
  (through :class:`devenv.daemon.InspectordProcess`).
* :class:`IronicInspector`: ironic-inspector 12.5.0 from its own cached
  venv, standalone (API and conductor in the one ``ironic-inspector``
  process; ``transport_url = fake://``, no auth, SQLite, ``[pxe_filter]
  driver = noop``), its schema made by ``ironic-inspector-dbsync upgrade``.
* The floor has no service: :mod:`bench.workload` calls Ironic directly.

Both services run under :mod:`bench.launch`, which records the modules they
imported, so that :meth:`Service.import_floor` can measure what importing
exactly those modules costs in a fresh interpreter of the same venv.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from devenv import venvs
from devenv.daemon import InspectordProcess, free_port

BENCH_DIR = pathlib.Path(__file__).resolve().parent
INSPECTOR_VERSION = "12.5.0"
INSPECTOR_VENV = "ironic-inspector-" + INSPECTOR_VERSION
INSPECTOR_REQUIREMENTS = ["ironic-inspector==" + INSPECTOR_VERSION]
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceError(RuntimeError):
    pass


def _wait_http(url, process, deadline, describe):
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError("{} exited with status {} during start-up:\n{}".format(
                describe.name, process.returncode, describe.log_tail()))
        try:
            with _HTTP.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise ServiceError("{} did not answer at {} in time:\n{}".format(describe.name, url, describe.log_tail()))


class Service:
    """Common part: the process, its modules file, its import floor."""

    name = None
    pid = None
    url = None

    def __init__(self, workdir, ironic_url):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ironic_url = ironic_url
        self.modules_file = self.workdir / "modules.txt"

    @property
    def python(self):
        raise NotImplementedError

    def import_floor(self):
        """``{"rss_kb", ...}`` of a fresh interpreter importing what the service imported."""
        if not self.modules_file.exists():
            return None
        result = subprocess.run(
            [str(self.python), str(BENCH_DIR / "importfloor.py"), str(self.modules_file)],
            capture_output=True, text=True, timeout=300, cwd=str(self.workdir),
        )
        if result.returncode != 0:
            raise ServiceError("import floor of {} failed:\n{}".format(self.name, result.stderr[-2000:]))
        return json.loads(result.stdout.strip().splitlines()[-1])


class Inspectord(Service):
    name = "inspectord"

    def __init__(self, workdir, ironic_url, extra_config=""):
        super().__init__(workdir, ironic_url)
        modules_file = self.modules_file

        class Process(InspectordProcess):
            def command(self):
                # python launch.py MODULES twistd ARGS: same process, modules recorded at exit
                twistd, *args = super().command()
                return [sys.executable, str(BENCH_DIR / "launch.py"), str(modules_file), twistd, *args]

        self._process = Process(self.workdir, ironic_url, extra_config=extra_config)
        self.url = self._process.url

    @property
    def python(self):
        return sys.executable

    def start(self, timeout=60):
        self._process.start(timeout=timeout)
        self.pid = self._process.process.pid

    def stop(self):
        self._process.stop(timeout=30)

    def log_tail(self):
        return self._process.log_tail()

    def config_text(self):
        return self._process.config_path.read_text()


INSPECTOR_CONFIG = """\
[DEFAULT]
auth_strategy = noauth
transport_url = fake://
standalone = True
listen_address = 127.0.0.1
listen_port = {port}
host = bench-inspector
timeout = 3600
clean_up_period = 60
introspection_delay = 0
use_stderr = false
log_file = {workdir}/ironic-inspector.log

[ironic]
auth_type = none
endpoint_override = {ironic_url}

[database]
connection = sqlite:///{workdir}/inspector.sqlite

[pxe_filter]
driver = noop

[processing]
store_data = database
ramdisk_logs_dir = {workdir}/ramdisk-logs
"""
"""Like inspectord's bench configuration: no power-on spacing, data kept in the
database, no PXE filter.  ironic-inspector's own defaults otherwise."""


class IronicInspector(Service):
    name = "ironic-inspector"

    def __init__(self, workdir, ironic_url, extra_config=""):
        super().__init__(workdir, ironic_url)
        self.port = free_port()
        self.url = "http://127.0.0.1:{}".format(self.port)
        self.config_path = self.workdir / "ironic-inspector.conf"
        self.log_path = self.workdir / "ironic-inspector.log"
        self.config_path.write_text(
            INSPECTOR_CONFIG.format(port=self.port, workdir=self.workdir, ironic_url=ironic_url) + extra_config
        )
        self.process = None

    @classmethod
    def ensure_venv(cls):
        return venvs.ensure_venv(INSPECTOR_VENV, INSPECTOR_REQUIREMENTS)

    @property
    def venv(self):
        return self.ensure_venv()

    @property
    def python(self):
        return self.venv / "bin" / "python"

    def start(self, timeout=120):
        deadline = time.monotonic() + timeout
        bindir = self.venv / "bin"
        dbsync = subprocess.run(
            [str(bindir / "ironic-inspector-dbsync"), "--config-file", str(self.config_path), "upgrade"],
            capture_output=True, text=True, cwd=str(self.workdir), timeout=timeout,
        )
        if dbsync.returncode != 0:
            raise ServiceError("ironic-inspector-dbsync upgrade failed:\n" + (dbsync.stdout + dbsync.stderr)[-3000:])
        self.process = subprocess.Popen(
            [str(self.python), str(BENCH_DIR / "launch.py"), str(self.modules_file),
             str(bindir / "ironic-inspector"), "--config-file", str(self.config_path)],
            cwd=str(self.workdir), stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "ironic-inspector.out", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid
        try:
            _wait_http(self.url + "/", self.process, deadline, self)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines=40):
        texts = []
        for path in (self.workdir / "ironic-inspector.out", self.log_path):
            if path.exists():
                texts.append("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(texts)

    def config_text(self):
        return self.config_path.read_text()


SERVICES = {"inspectord": Inspectord, "ironic-inspector": IronicInspector}


class Proxy:
    """The counting proxy (:mod:`bench.proxy`) as a child process."""

    def __init__(self, upstream_url, workdir):
        self.port = free_port()
        self.url = "http://127.0.0.1:{}".format(self.port)
        self.workdir = pathlib.Path(workdir)
        host_port = upstream_url.split("://", 1)[1].rstrip("/")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.proxy", "--listen-port", str(self.port), "--upstream", host_port],
            cwd=str(BENCH_DIR.parent), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=open(self.workdir / "proxy.err", "ab"), start_new_session=True, text=True,
        )
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise ServiceError("counting proxy did not start: {!r}".format(line))
        self.pid = self.process.pid

    def _call(self, method, what):
        request = urllib.request.Request(self.url + "/__bench__/" + what, method=method, data=b"" if method == "POST" else None)
        with _HTTP.open(request, timeout=30) as response:
            return json.load(response)

    def stats(self):
        return self._call("GET", "stats")

    def reset(self):
        """The counters so far; they start again from zero."""
        return self._call("POST", "reset")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
