"""The systems under test, each started fresh against its own Ironic.

* :class:`Inspectord`: ``twistd -n inspectord`` from this checkout's venv
  (through :class:`devenv.daemon.InspectordProcess`).
* :class:`IronicInspector`: ironic-inspector 12.5.0 as
  :class:`devenv.ironic_inspector.IronicInspectorProcess` runs it
  (standalone, no auth, SQLite, ``[pxe_filter] driver = noop``, data in the
  database).
* The floor has no service: :mod:`bench.workload` calls Ironic directly.

Both services run under :mod:`bench.launch`, which records the modules they
imported, so that :meth:`Service.import_floor` can measure what importing
exactly those modules costs in a fresh interpreter of the same venv.
"""

import json
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

from devenv import ironic_inspector
from devenv.daemon import InspectordProcess, free_port
from devenv.ironic_inspector import IronicInspectorError, IronicInspectorProcess
from devenv.ironic_inspector import ensure_venv as ensure_inspector_venv

BENCH_DIR = pathlib.Path(__file__).resolve().parent
INSPECTOR_VERSION = ironic_inspector.VERSION
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


class IronicInspector(Service):
    name = "ironic-inspector"

    def __init__(self, workdir, ironic_url, extra_config=""):
        super().__init__(workdir, ironic_url)
        modules_file = self.modules_file

        class Process(IronicInspectorProcess):
            def command(self):
                # python launch.py MODULES ironic-inspector ARGS: same process, modules recorded at exit
                return [str(self.python), str(BENCH_DIR / "launch.py"), str(modules_file), *super().command()]

        self._process = Process(self.workdir, ironic_url, extra_config=extra_config)
        self.port = self._process.port
        self.url = self._process.url
        self.config_path = self._process.config_path
        self.log_path = self._process.log_path

    @classmethod
    def ensure_venv(cls):
        return ensure_inspector_venv()

    @property
    def venv(self):
        return self.ensure_venv()

    @property
    def python(self):
        return self.venv / "bin" / "python"

    def start(self, timeout=120):
        try:
            self._process.start(timeout=timeout)
        except IronicInspectorError as e:
            raise ServiceError(str(e)) from None
        self.pid = self._process.process.pid

    def stop(self):
        self._process.stop()

    def log_tail(self, lines=40):
        return self._process.log_tail(lines)

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
