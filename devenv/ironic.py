"""A real OpenStack Ironic, standalone on the loopback, for tests, the demo and benchmarks.

:class:`IronicServer` runs Ironic's all-in-one ``ironic`` command (API and
conductor in one service, ``rpc_transport = none``) from a cached virtualenv
(see :mod:`devenv.venvs`), with no authentication, a SQLite
database, no DHCP and only the ``fake-hardware`` hardware type, whose power,
management, inspect... interfaces act on the database alone.  Everything it
writes stays in its work directory::

    with IronicServer(tmpdir) as ironic:
        node = ironic.enroll_node("node-0", ["52:54:00:00:00:01"])
        ironic.client().node.set_power_state(node.uuid, "off")

The command line keeps one running in the background for the demo::

    python -m devenv.ironic start --workdir D [--port P]
    python -m devenv.ironic stop --workdir D

``start`` prints the API URL, also written to ``D/ironic.url``, and the
process group id to ``D/ironic.pid``.

Standard library only, plus python-ironicclient imported by :meth:`IronicServer.client`.
"""

import argparse
import configparser
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from devenv import processes, venvs

IRONIC_VERSION = "39.0.0"
IRONIC_REQUIREMENTS = [f"ironic=={IRONIC_VERSION}"]
IRONIC_VENV = f"ironic-{IRONIC_VERSION}"

API_VERSION = "1.115"
"""Bare Metal API microversion of :meth:`IronicServer.client`: the newest of Ironic 39.0.0."""

CONDUCTOR_HOST = "inspectord-devenv"
"""Host name under which the conductor registers (``GET /v1/conductors``)."""

STOP_GRACE = processes.STOP_GRACE
"""Seconds :meth:`IronicServer.stop` waits after SIGTERM before SIGKILL."""

_HARDWARE_TYPE = "fake-hardware"

# interface type -> (enabled implementations, default); the defaults are the
# fake implementations of fake-hardware except for network and storage.
_INTERFACES = {
    "bios": (["fake", "no-bios"], "fake"),
    "boot": (["fake"], "fake"),
    "console": (["fake", "no-console"], "fake"),
    "deploy": (["fake"], "fake"),
    "firmware": (["fake", "no-firmware"], "fake"),
    "inspect": (["fake", "no-inspect"], "fake"),
    "management": (["fake"], "fake"),
    "network": (["noop"], "noop"),
    "power": (["fake"], "fake"),
    "raid": (["fake", "no-raid"], "fake"),
    "rescue": (["fake", "no-rescue"], "fake"),
    "storage": (["noop", "fake"], "noop"),
    "vendor": (["fake", "no-vendor"], "fake"),
}

# IronicServer(ipmi=True) also enables Ironic's ``ipmi`` hardware type, which
# supports none of the fake interfaces: these are enabled for it, and only the
# default_*_interface options it supports too (network, storage) are written;
# Ironic computes the others per hardware type (still fake for fake-hardware).
_IPMI_INTERFACES = {"boot": "pxe", "deploy": "direct", "management": "ipmitool", "power": "ipmitool"}
_IPMI_DEFAULTS_KEPT = ("network", "storage")

# requested provision state -> (verb, state reached) steps from "enroll"
_PROVISION_PATHS = {
    "enroll": [],
    "manageable": [("manage", "manageable")],
    "available": [("manage", "manageable"), ("provide", "available")],
}

# Never send loopback requests through a proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class IronicError(RuntimeError):
    """Ironic could not be started or did not reach the expected state."""


class IronicServer:
    """An Ironic API and conductor listening on ``http://HOST:PORT``, all state in ``workdir``.

    ``port=None`` picks a free port when :meth:`start` runs.  Files in
    ``workdir``: ``ironic.conf``, ``ironic.sqlite``, ``ironic.log`` (the
    service's log and output), ``tmp/`` and ``locks/``.  The database is
    kept (and upgraded) across restarts in the same directory.
    """

    def __init__(
        self, workdir: str | os.PathLike[str], port: int | None = None, host: str = "127.0.0.1", ipmi: bool = False
    ):
        # ipmi: also enable the ``ipmi`` hardware type (ipmitool power and
        # management, Debian ``ipmitool`` needed), with short [ipmi] timings.
        self.ipmi = ipmi
        self.workdir = pathlib.Path(workdir).absolute()
        self.host = host
        self.port = port
        self.config_path = self.workdir / "ironic.conf"
        self.log_path = self.workdir / "ironic.log"
        self.database_path = self.workdir / "ironic.sqlite"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The API endpoint, ``http://HOST:PORT`` (only known once a port is chosen)."""
        if self.port is None:
            raise IronicError("no port chosen yet: start() the server first")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id (and process group id) of the running ``ironic`` command."""
        return self._process.pid if self._process else None

    def start(self, timeout: float = 120) -> None:
        """Build the venv if needed, configure, create the schema, start and wait until ready.

        Ready means ``GET /v1`` answers 200 and the conductor has registered
        the fake-hardware driver.  ``timeout`` counts from the end of the
        venv build.  On failure the process is stopped and
        :class:`IronicError` carries the end of the log.
        """
        if self._process is not None:
            raise IronicError(f"Ironic is already running at {self.url}")
        venv = venvs.ensure_venv(IRONIC_VENV, IRONIC_REQUIREMENTS)
        deadline = time.monotonic() + timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = processes.free_port(self.host)
        elif not processes.port_is_free(self.host, self.port):
            raise IronicError(f"cannot start Ironic: {self.host} port {self.port} is in use")
        self._write_config()
        self._create_schema(venv, deadline)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [str(venv / "bin" / "ironic"), "--config-file", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        try:
            self._wait_until_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM Ironic's process group, SIGKILL it after :data:`STOP_GRACE` seconds; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            processes.stop_process_group(process.pid, reap=process.poll)

    def client(self) -> Any:
        """A python-ironicclient v1 client for this server: no auth, microversion :data:`API_VERSION`."""
        from ironicclient import client as ironic_client

        return ironic_client.get_client(
            "1",
            endpoint=self.url,
            auth_type="none",
            os_ironic_api_version=API_VERSION,
        )

    def enroll_node(
        self,
        name: str,
        macs: Sequence[str],
        driver_info: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        provision_state: str = "manageable",
        timeout: float = 60,
        driver: str = _HARDWARE_TYPE,
    ) -> Any:
        """Create a node (``driver``, fake-hardware by default) with one port per MAC and move it to ``provision_state``.

        ``provision_state`` is ``"enroll"``, ``"manageable"`` or
        ``"available"`` (reached with the ``manage`` then ``provide`` verbs;
        automated cleaning is disabled).  Returns the node as the client
        reads it once there.
        """
        if provision_state not in _PROVISION_PATHS:
            raise ValueError(f"provision_state must be one of {sorted(_PROVISION_PATHS)}, not {provision_state!r}")
        client = self.client()
        node = client.node.create(
            name=name,
            driver=driver,
            driver_info=dict(driver_info or {}),
            properties=dict(properties or {}),
        )
        for mac in macs:
            client.port.create(address=mac, node_uuid=node.uuid)
        for verb, state in _PROVISION_PATHS[provision_state]:
            client.node.set_provision_state(node.uuid, verb)
            client.node.wait_for_provision_state(node.uuid, state, timeout=timeout, poll_interval=0.1)
        return client.node.get(node.uuid)

    def __enter__(self) -> "IronicServer":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_config(self) -> None:
        config = configparser.ConfigParser(interpolation=None)
        config.optionxform = str  # type: ignore[assignment,method-assign]
        default = {
            "host": CONDUCTOR_HOST,
            "auth_strategy": "noauth",
            "rpc_transport": "none",
            "state_path": str(self.workdir),
            "tempdir": str(self.workdir / "tmp"),
            "log_file": str(self.log_path),
            "enabled_hardware_types": _HARDWARE_TYPE + (",ipmi" if self.ipmi else ""),
        }
        for interface, (enabled, chosen) in _INTERFACES.items():
            if self.ipmi and interface in _IPMI_INTERFACES:
                enabled = enabled + [_IPMI_INTERFACES[interface]]
            default[f"enabled_{interface}_interfaces"] = ",".join(enabled)
            if not self.ipmi or interface in _IPMI_DEFAULTS_KEPT:
                default[f"default_{interface}_interface"] = chosen
        if self.ipmi:
            # 1 s between commands to one BMC (not 5), give up after 10 s (not 60)
            config.read_dict({"ipmi": {"min_command_interval": "1", "command_retry_timeout": "10"}})
        config.read_dict(
            {
                "DEFAULT": default,
                "api": {"host_ip": self.host, "port": str(self.port), "public_endpoint": self.url},
                "database": {"connection": f"sqlite:///{self.database_path}"},
                "dhcp": {"dhcp_provider": "none"},
                "conductor": {
                    # provide: manageable -> available at once, no cleaning
                    "automated_clean": "false",
                    # on SIGTERM wait at most this long for node locks, well within STOP_GRACE
                    "graceful_shutdown_timeout": "5",
                },
                "oslo_concurrency": {"lock_path": str(self.workdir / "locks")},
            }
        )
        (self.workdir / "tmp").mkdir(exist_ok=True)
        with open(self.config_path, "w") as config_file:
            config.write(config_file)

    def _create_schema(self, venv: pathlib.Path, deadline: float) -> None:
        command = [str(venv / "bin" / "ironic-dbsync"), "--config-file", str(self.config_path), "create_schema"]
        if self.database_path.exists():
            command[-1] = "upgrade"  # create_schema refuses an existing database
        try:
            subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=True,
                cwd=self.workdir,
                timeout=max(deadline - time.monotonic(), 1),
            )
        except subprocess.CalledProcessError as error:
            output = (error.stdout + error.stderr).decode(errors="replace")
            raise IronicError(f"ironic-dbsync {command[-1]} failed:\n{output}") from None
        except subprocess.TimeoutExpired:
            raise IronicError(f"ironic-dbsync {command[-1]} did not finish in time") from None

    def _wait_until_ready(self, deadline: float) -> None:
        assert self._process is not None
        while True:
            if self._process.poll() is not None:
                raise IronicError(
                    f"Ironic exited with status {self._process.returncode} during start-up; "
                    f"end of {self.log_path}:\n{self._log_tail()}"
                )
            if self._conductor_ready():
                return
            if time.monotonic() > deadline:
                raise IronicError(
                    f"Ironic was not ready at {self.url} in time; end of {self.log_path}:\n{self._log_tail()}"
                )
            time.sleep(0.2)

    def _conductor_ready(self) -> bool:
        """True once the API answers and lists the fake-hardware driver of a registered conductor."""
        try:
            _get_json(self.url + "/v1")
            drivers = _get_json(self.url + "/v1/drivers")
        except (OSError, ValueError):
            return False
        return any(driver.get("name") == _HARDWARE_TYPE and driver.get("hosts") for driver in drivers["drivers"])

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(no log: {error})"


def _get_json(url: str) -> Any:
    request = urllib.request.Request(url, headers={"X-OpenStack-Ironic-API-Version": API_VERSION})
    with _HTTP.open(request, timeout=2) as response:
        return json.load(response)


def start_detached(workdir: str | os.PathLike[str], port: int | None = None, timeout: float = 120) -> str:
    """Start Ironic in ``workdir`` and leave it running; return its URL.

    Writes ``ironic.pid`` and ``ironic.url`` there for :func:`stop_detached`.
    If the Ironic recorded there is still running, returns its URL.
    """
    # Ironic retitles itself "ironic: master process [COMMAND LINE]": the
    # config file's path is still in its command line.
    return processes.start_detached(IronicServer(workdir, port), "ironic", "cmdline", timeout)


def stop_detached(workdir: str | os.PathLike[str]) -> bool:
    """Stop the Ironic that :func:`start_detached` left in ``workdir``; False if none ran."""
    return processes.stop_detached(IronicServer(workdir), "ironic", "cmdline")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``start`` or ``stop`` a detached Ironic in ``--workdir``."""
    parser = argparse.ArgumentParser(
        prog="python -m devenv.ironic",
        description=f"Run a standalone OpenStack Ironic {IRONIC_VERSION} (fake-hardware, no auth) in the background.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start Ironic, print its URL and leave it running")
    start.add_argument("--workdir", required=True, help="directory for its config, database, log, pid and URL files")
    start.add_argument("--port", type=int, help="API port (default: a free one)")
    start.add_argument("--timeout", type=float, default=120, help="seconds to wait for it to be ready")
    stop = commands.add_parser("stop", help="stop the Ironic started in --workdir")
    stop.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            print(start_detached(args.workdir, args.port, args.timeout))
        elif not stop_detached(args.workdir):
            print(f"no Ironic running in {args.workdir}", file=sys.stderr)
    except (IronicError, processes.ProcessError, venvs.VenvError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
