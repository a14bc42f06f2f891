"""The real ironic-inspector 12.5.0, for tests and benchmarks that compare with it or take over its database.

:class:`IronicInspectorProcess` runs it from its own cached venv
(:mod:`devenv.venvs`), standalone (API and conductor in the one
``ironic-inspector`` process; ``transport_url = fake://``, no auth,
``[pxe_filter] driver = noop``), against a given Ironic, on a free loopback
port, with its schema made by ``ironic-inspector-dbsync upgrade``.  The
database is a SQLite file in the work directory unless ``database_url``
names another (``mysql+pymysql://...`` runs it from a venv with PyMySQL).
"""

import json
import os
import pathlib
import signal
import subprocess
import time
import urllib.error
import urllib.request

from devenv import venvs
from devenv.daemon import free_port

VERSION = "12.5.0"
VENV = "ironic-inspector-" + VERSION
REQUIREMENTS = ["ironic-inspector==" + VERSION]
# MySQL/MariaDB URLs need a driver ironic-inspector does not install: another venv.
MYSQL_REQUIREMENTS = REQUIREMENTS + ["PyMySQL"]
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

CONFIG = """\
[DEFAULT]
auth_strategy = noauth
transport_url = fake://
standalone = True
listen_address = 127.0.0.1
listen_port = {port}
host = devenv-inspector
timeout = 3600
clean_up_period = 60
introspection_delay = 0
use_stderr = false
log_file = {workdir}/ironic-inspector.log

[ironic]
auth_type = none
endpoint_override = {ironic_url}

[database]
connection = {database_url}

[pxe_filter]
driver = noop

[processing]
store_data = database
ramdisk_logs_dir = {workdir}/ramdisk-logs
"""
"""No power-on spacing, data kept in the database, no PXE filter; ironic-inspector's defaults otherwise."""


class IronicInspectorError(RuntimeError):
    pass


def ensure_venv(database_url=None):
    """The cached venv holding ironic-inspector 12.5.0 (built on first use), with PyMySQL for MySQL URLs."""
    if database_url and database_url.startswith("mysql"):
        return venvs.ensure_venv(VENV + "-mysql", MYSQL_REQUIREMENTS)
    return venvs.ensure_venv(VENV, REQUIREMENTS)


class IronicInspectorProcess:
    """``ironic-inspector --config-file FILE`` with a config written into ``workdir``.

    :param extra_config: appended to the generated file (later options win).
    """

    name = "ironic-inspector"

    def __init__(self, workdir, ironic_url, database_url=None, port=None, extra_config=""):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = "http://127.0.0.1:{}".format(self.port)
        self.database_url = database_url or "sqlite:///{}/inspector.sqlite".format(self.workdir)
        self.config_path = self.workdir / "ironic-inspector.conf"
        self.log_path = self.workdir / "ironic-inspector.log"
        self.config_path.write_text(
            CONFIG.format(port=self.port, workdir=self.workdir, ironic_url=ironic_url, database_url=self.database_url)
            + extra_config
        )
        self.process = None

    @property
    def venv(self):
        return ensure_venv(self.database_url)

    @property
    def python(self):
        return self.venv / "bin" / "python"

    def command(self):
        return [str(self.venv / "bin" / "ironic-inspector"), "--config-file", str(self.config_path)]

    def dbsync(self, *args, timeout=120):
        """Run ``ironic-inspector-dbsync --config-file FILE ARGS`` (``upgrade`` by default)."""
        result = subprocess.run(
            [str(self.venv / "bin" / "ironic-inspector-dbsync"), "--config-file", str(self.config_path),
             *(args or ("upgrade",))],
            capture_output=True, text=True, cwd=str(self.workdir), timeout=timeout,
        )
        if result.returncode != 0:
            raise IronicInspectorError(
                "ironic-inspector-dbsync {} failed:\n{}".format(" ".join(args), (result.stdout + result.stderr)[-3000:])
            )
        return result.stdout + result.stderr

    def start(self, timeout=120):
        deadline = time.monotonic() + timeout
        self.dbsync(timeout=timeout)
        self.process = subprocess.Popen(
            self.command(), cwd=str(self.workdir), stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "ironic-inspector.out", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_http(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_http(self, deadline):
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise IronicInspectorError("ironic-inspector exited with status {} during start-up:\n{}".format(
                    self.process.returncode, self.log_tail()))
            try:
                with _HTTP.open(self.url + "/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise IronicInspectorError("ironic-inspector did not answer at {} in time:\n{}".format(self.url, self.log_tail()))

    def stop(self, timeout=30):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines=40):
        texts = []
        for path in (self.workdir / "ironic-inspector.out", self.log_path):
            if path.exists():
                texts.append("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(texts)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def call(self, method, path, body=None, headers=None):
        """``(status, decoded JSON or None)``; HTTP errors are returned, not raised."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(headers or {}))
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with _HTTP.open(request, timeout=60) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def wait_state(self, uuid, states, timeout=60):
        """The status once the introspection of ``uuid`` is in one of ``states``."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.call("GET", "/v1/introspection/" + uuid)
            if status == 200 and body["state"] in states:
                return body
            if time.monotonic() > deadline:
                raise AssertionError("introspection of {} not in {} after {} s: {}".format(uuid, states, timeout, body))
            time.sleep(0.2)
