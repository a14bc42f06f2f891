"""A real OpenStack Swift on the loopback, for ``store_data = swift`` tests.

:class:`SwiftServer` installs ``swift`` in a cached virtualenv (see
:mod:`devenv.venvs`), builds one-replica account, container and object
rings with ``swift-ring-builder`` over a single device that is a directory
of its work directory, and runs ``swift-proxy-server``,
``swift-account-server``, ``swift-container-server`` and
``swift-object-server`` in the foreground, each on a free port of the
loopback.  Everything it writes stays in its work directory::

    with SwiftServer(tmpdir) as swift:
        swift.account_url  # http://127.0.0.1:PORT/v1/AUTH_inspector

By default the proxy's pipeline has no authentication middleware: every
request is allowed, and the account is created on first use
(``account_autocreate``), which is what ``[swift]auth_type = none`` with
``endpoint_override`` talks to.  With ``keystone=`` (the ``auth_url``,
``username``, ``password`` and ``project_name`` of a service user of a
real Keystone, see :mod:`devenv.keystone`) the pipeline validates tokens
with keystonemiddleware's ``authtoken`` and authorizes with Swift's
``keystoneauth``: accounts are ``AUTH_<project id>``, open to the
``admin`` and ``member`` roles of that project.  Swift keeps object metadata in extended attributes, so the work
directory's file system must support ``user.*`` xattrs (:func:`check_xattr`
says so plainly if it does not); ``mount_check = false`` and
``disable_fallocate = true`` let a plain directory be the device.

The command line keeps one running in the background::

    python -m devenv.swift start --workdir D
    python -m devenv.swift stop --workdir D

Standard library only.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from types import TracebackType

from devenv import processes, venvs

SWIFT_VERSION = "2.38.3"
SWIFT_REQUIREMENTS = [f"swift=={SWIFT_VERSION}", "keystonemiddleware==13.0.1"]
SWIFT_VENV = f"swift-{SWIFT_VERSION}"
ACCOUNT = "AUTH_inspector"
_SERVERS = ("account", "container", "object")
_DEVICE = "d1"

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_SWIFT_CONF = """\
[swift-hash]
swift_hash_path_suffix = inspectord-devenv
swift_hash_path_prefix = inspectord-devenv

[storage-policy:0]
name = default
default = yes
"""

_BACKEND_CONF = """\
[DEFAULT]
bind_ip = {host}
bind_port = {port}
workers = 0
swift_dir = {etc}
devices = {devices}
mount_check = false
disable_fallocate = true
log_name = {name}-server

[pipeline:main]
pipeline = {name}-server

[app:{name}-server]
use = egg:swift#{name}
"""

_PROXY_CONF = """\
[DEFAULT]
bind_ip = {host}
bind_port = {port}
workers = 0
swift_dir = {etc}
log_name = proxy-server

[pipeline:main]
pipeline = catch_errors healthcheck proxy-logging {auth}proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging
"""

_KEYSTONE_FILTERS = """
[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = {auth_url}
auth_url = {auth_url}
auth_type = password
username = {username}
password = {password}
project_name = {project_name}
user_domain_name = Default
project_domain_name = Default
delay_auth_decision = false

[filter:keystoneauth]
use = egg:swift#keystoneauth
operator_roles = admin, member
"""


class SwiftError(RuntimeError):
    """Swift could not be started."""


def check_xattr(directory: str | os.PathLike[str]) -> None:
    """Raise :class:`SwiftError` unless ``directory``'s file system takes ``user.*`` xattrs."""
    probe = pathlib.Path(directory) / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.swift.probe", b"1")
        if os.getxattr(probe, "user.swift.probe") != b"1":
            raise OSError("extended attribute read back differs")
    except OSError as error:
        raise SwiftError(
            f"Swift needs user extended attributes, which the file system of {directory} does not "
            f"support ({error}); put the work directory on ext4, xfs or tmpfs with user_xattr"
        ) from None
    finally:
        probe.unlink()


class SwiftServer:
    """Swift's API at ``http://HOST:PORT/v1``, all state in ``workdir``.

    Files in ``workdir``: ``etc/`` (``swift.conf``, the servers' configs,
    the ring builders and rings), ``srv/d1/`` (the device) and
    ``NAME.log`` per server.
    """

    def __init__(
        self, workdir: str | os.PathLike[str], host: str = "127.0.0.1", keystone: dict[str, str] | None = None
    ):
        self.keystone = keystone
        self.workdir = pathlib.Path(workdir).absolute()
        self.host = host
        self.etc = self.workdir / "etc"
        self.devices = self.workdir / "srv"
        self.config_path = self.etc / "proxy-server.conf"
        self.ports: dict[str, int] = {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The proxy, ``http://HOST:PORT`` (only known once started)."""
        if "proxy" not in self.ports:
            raise SwiftError("no port chosen yet: start() the server first")
        return f"http://{self.host}:{self.ports['proxy']}"

    @property
    def account_url(self) -> str:
        """The account inspectord stores into: what ``[swift]endpoint_override`` is set to."""
        return f"{self.url}/v1/{ACCOUNT}"

    @property
    def pid(self) -> int | None:
        process = self._processes.get("proxy")
        return process.pid if process else None

    def start(self, timeout: float = 120) -> None:
        """Build the venv if needed, write configs and rings, start the four servers, wait for them."""
        if self._processes:
            raise SwiftError(f"Swift is already running at {self.url}")
        venv = venvs.ensure_venv(SWIFT_VENV, SWIFT_REQUIREMENTS)
        deadline = time.monotonic() + timeout
        (self.devices / _DEVICE).mkdir(parents=True, exist_ok=True)
        self.etc.mkdir(parents=True, exist_ok=True)
        check_xattr(self.devices / _DEVICE)
        for name in ("proxy",) + _SERVERS:
            self.ports[name] = processes.free_port(self.host)
        self._write_configs()
        for name in _SERVERS:
            self._build_ring(venv, name)
        try:
            for name in _SERVERS + ("proxy",):
                self._start(venv, name)
            self._wait_until_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every server (SIGTERM, then SIGKILL); idempotent."""
        running, self._processes = self._processes, {}
        for process in running.values():
            processes.stop_process_group(process.pid, reap=process.poll)

    def __enter__(self) -> "SwiftServer":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def request(
        self, method: str, path: str, body: bytes | None = None, token: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` of a request to the proxy (``path`` from ``/v1/...``)."""
        headers = {"X-Auth-Token": token} if token else {}
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with _HTTP.open(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    # -- set-up ----------------------------------------------------------

    def _write_configs(self) -> None:
        (self.etc / "swift.conf").write_text(_SWIFT_CONF)
        for name in _SERVERS:
            (self.etc / f"{name}-server.conf").write_text(
                _BACKEND_CONF.format(
                    host=self.host, port=self.ports[name], etc=self.etc, devices=self.devices, name=name
                )
            )
        proxy = _PROXY_CONF.format(
            host=self.host, port=self.ports["proxy"], etc=self.etc, auth="authtoken keystoneauth " if self.keystone else ""
        )
        if self.keystone:
            proxy += _KEYSTONE_FILTERS.format(**self.keystone)
        self.config_path.write_text(proxy)

    def _build_ring(self, venv: pathlib.Path, name: str) -> None:
        builder = str(self.etc / f"{name}.builder")
        ring_builder = str(venv / "bin" / "swift-ring-builder")
        # 2^6 partitions, one replica, partitions movable at once.
        for args in (
            ["create", "6", "1", "0"],
            ["add", f"r1z1-{self.host}:{self.ports[name]}/{_DEVICE}", "100"],
            ["rebalance"],
        ):
            result = subprocess.run(
                [ring_builder, builder, *args], stdin=subprocess.DEVNULL, capture_output=True, cwd=self.etc
            )
            # rebalance exits 1 with a warning on a one-device ring; 2 is an error.
            if result.returncode not in (0, 1) or not (self.etc / f"{name}.builder").exists():
                output = (result.stdout + result.stderr).decode(errors="replace")
                raise SwiftError(f"swift-ring-builder {name} {' '.join(args)} failed:\n{output}")
        if not (self.etc / f"{name}.ring.gz").exists():
            raise SwiftError(f"swift-ring-builder wrote no {name}.ring.gz")

    def _start(self, venv: pathlib.Path, name: str) -> None:
        command = [str(venv / "bin" / f"swift-{name}-server"), str(self.etc / f"{name}-server.conf"), "--verbose"]
        with open(self.workdir / f"{name}.log", "ab") as log:
            self._processes[name] = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )

    def _wait_until_ready(self, deadline: float) -> None:
        """Until a container can be created through the proxy: every server answers.

        With Keystone, until the proxy answers ``/healthcheck`` (the backends
        are checked by the first request with a token).
        """
        while True:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise SwiftError(
                        f"swift-{name}-server exited with status {process.returncode}; "
                        f"end of its log:\n{self.log_tail(name)}"
                    )
            try:
                if self.keystone:
                    status = self.request("GET", "/healthcheck")[0]
                else:
                    status = self.request("PUT", f"/v1/{ACCOUNT}/devenv-ready", b"")[0]
            except OSError:
                status = None
            if status in (200, 201, 202):
                return
            if time.monotonic() > deadline:
                raise SwiftError(
                    f"Swift was not ready at {self.url} in time (last status {status}); "
                    f"end of the proxy log:\n{self.log_tail('proxy')}"
                )
            time.sleep(0.2)

    def log_tail(self, name: str = "proxy", lines: int = 40) -> str:
        try:
            text = (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.swift", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    server = SwiftServer(args.workdir)
    if args.command == "start":
        url_path = server.workdir / "swift.url"
        if processes.detached_pid(server, "swift", "cmdline") is not None:
            print(url_path.read_text().strip())
            return 0
        server.start()
        pids = " ".join(str(p.pid) for p in server._processes.values())
        (server.workdir / "swift.pids").write_text(pids + "\n")
        (server.workdir / "swift.pid").write_text(f"{server.pid}\n")
        url_path.write_text(server.account_url + "\n")
        print(server.account_url)
        return 0
    stopped = False
    try:
        pids = [int(p) for p in (server.workdir / "swift.pids").read_text().split()]
    except (OSError, ValueError):
        pids = []
    for pid in pids:
        if pid in processes.live_group_members(pid):
            processes.stop_process_group(pid)
            stopped = True
    for name in ("swift.pid", "swift.pids", "swift.url"):
        (server.workdir / name).unlink(missing_ok=True)
    print("stopped" if stopped else "not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
