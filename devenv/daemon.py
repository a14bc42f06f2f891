"""Run inspectord as a real ``twistd`` process (integration tests, demo, benchmarks).

Blocking helpers on the standard library only: this module is used from
test set-up and command-line tools, never from the daemon.
"""

import http.client
import json
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

from devenv import processes

class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP (or HTTPS, given a context) over a unix socket."""

    def __init__(self, path, timeout, context=None):
        super().__init__("localhost", timeout=timeout)
        self._path = path
        self._context = context

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        if self._context is not None:
            sock = self._context.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock


class _UnixHandler(urllib.request.HTTPHandler):
    """Sends http:// and https:// requests to a unix socket, whatever the host."""

    handler_order = 100  # before the default TCP handlers

    def __init__(self, path, context):
        super().__init__()
        self._path, self._context = path, context

    def _connect(self, host, timeout=None, **kwargs):
        return _UnixHTTPConnection(self._path, timeout, self._context)

    def http_open(self, request):
        return self.do_open(self._connect, request)

    https_open = http_open
    https_request = urllib.request.HTTPHandler.http_request


def client_tls_context(cafile, certfile=None, keyfile=None):
    """An ``ssl`` client context trusting ``cafile``, presenting a certificate if given."""
    context = ssl.create_default_context(cafile=str(cafile))
    if certfile:
        context.load_cert_chain(str(certfile), str(keyfile))
    return context

BASE_CONFIG = """\
[DEFAULT]
listen_address = 127.0.0.1
listen_port = {port}
auth_strategy = noauth
timeout = {timeout}
clean_up_period = {clean_up_period}
introspection_delay = 0

[ironic]
auth_type = none
endpoint_override = {ironic_url}
retry_interval = 0.5

[database]
connection = sqlite:///{workdir}/inspectord.sqlite

[pxe_filter]
driver = noop

[processing]
store_data = database
ramdisk_logs_dir = {workdir}/ramdisk-logs
"""


def free_port(host="127.0.0.1"):
    return processes.free_port(host)


class InspectordProcess:
    """``twistd -n inspectord`` with a config written into ``workdir``.

    :param extra_config: appended to the generated file (later sections
        and options win in oslo.config).
    :param tls: an ``ssl.SSLContext`` the helper's own requests use: the
        configuration serves HTTPS (``use_ssl``), and :attr:`url` is https.
    :param unix_socket: the configuration listens there
        (``listen_unix_socket``); the helper's requests go through it.
    :param extra_config_files: more ``--config-file`` after the generated one.
    :param program: ``twistd`` (``twistd -n inspectord``) or
        ``ironic-inspector`` (the console script of that name).
    :param config_files: ``--config-file`` paths used instead of the
        generated file (``ironic_url``, ``port`` and the other settings of
        the generated file are then not applied).
    """

    def __init__(self, workdir, ironic_url, port=None, timeout=3600, clean_up_period=60, extra_config="", env=None,
                 tls=None, unix_socket=None, extra_config_files=(), program="twistd", config_files=None):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.unix_socket = unix_socket
        self.extra_config_files = [str(f) for f in extra_config_files]
        self.program = program
        self.url = "{}://127.0.0.1:{}".format("https" if tls else "http", self.port)
        if unix_socket:
            self.url = "{}://localhost".format("https" if tls else "http")
        handlers = [urllib.request.ProxyHandler({})]
        if unix_socket:
            handlers.append(_UnixHandler(str(unix_socket), tls))
        elif tls:
            handlers.append(urllib.request.HTTPSHandler(context=tls))
        self._http = urllib.request.build_opener(*handlers)
        self.config_path = self.workdir / "inspectord.conf"
        self.log_path = self.workdir / "inspectord.log"
        # Given files are used as they are, instead of the generated one.
        self.config_files = [str(f) for f in config_files] if config_files else None
        self.config_path.write_text(
            BASE_CONFIG.format(
                port=self.port,
                timeout=timeout,
                clean_up_period=clean_up_period,
                ironic_url=ironic_url,
                workdir=self.workdir,
            )
            + extra_config
        )
        self.process = None
        #: Headers every :meth:`call` sends (credentials, for example).
        self.headers = {}
        # Extra environment of the twistd process (e.g. PYTHONPATH for plugin drop-ins).
        self.env = dict(env or {})

    def command(self):
        config_files = []
        for path in [*(self.config_files or [str(self.config_path)]), *self.extra_config_files]:
            config_files += ["--config-file", path]
        bindir = os.path.dirname(sys.executable)
        if self.program == "ironic-inspector":
            # Logs to standard output, as ironic-inspector did: twistd.out.
            return [os.path.join(bindir, "ironic-inspector"), *config_files]
        return [
            os.path.join(bindir, "twistd"), "-n", "--logfile", str(self.log_path), "--pidfile", "",
            "inspectord", *config_files,
        ]

    def start(self, timeout=60, detach=False):
        self.process = subprocess.Popen(
            self.command(), cwd=str(self.workdir), stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "twistd.out", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True, env=dict(os.environ, **self.env) if self.env else None,
        )
        (self.workdir / "inspectord.pid").write_text(str(self.process.pid))
        (self.workdir / "inspectord.url").write_text(self.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("inspectord exited with {}:\n{}".format(self.process.returncode, self.log_tail()))
            try:
                with self._http.open(self.url + "/", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("inspectord did not answer within {} s:\n{}".format(timeout, self.log_tail()))

    def stop(self, timeout=15):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines=40):
        texts = []
        for path in (self.workdir / "twistd.out", self.log_path):
            if path.exists():
                texts.append("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(texts)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- the API, blocking ---------------------------------------------------

    def call(self, method, path, body=None, headers=None):
        """``(status, headers, decoded JSON or None)``; HTTP errors are returned, not raised.

        ``headers`` is case-insensitive (an ``email.message.Message``).
        """
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={**self.headers, **dict(headers or {})}
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._http.open(request, timeout=60) as r:
                status, hdrs, raw = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, raw = e.code, e.headers, e.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return status, hdrs, parsed

    def wait_finished(self, uuid, timeout=60):
        """The status once the introspection of ``uuid`` finished (or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = self.call("GET", "/v1/introspection/" + uuid)
            if status == 200 and body["finished"]:
                return body
            if time.monotonic() > deadline:
                raise AssertionError("introspection of {} not finished after {} s: {}".format(uuid, timeout, body))
            time.sleep(0.1)


def stop_detached(workdir):
    """Stop an inspectord started with :meth:`InspectordProcess.start` by another process."""
    pidfile = pathlib.Path(workdir) / "inspectord.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
    except (ProcessLookupError, ValueError):
        pass
    pidfile.unlink()
    return True
