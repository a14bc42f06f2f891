"""A real Ironic that still calls an external ironic-inspector, pointed at inspectord.

Ironic removed its ``inspector`` inspect interface in 33.0.0; 32.1.0 is the
newest release that has it (and installs on Python 3.11).
:class:`LegacyIronicServer` runs that release standalone exactly like
:class:`devenv.ironic.IronicServer` runs the current one (noauth,
SQLite, ``rpc_transport = none``, fake-hardware, own cached virtualenv), with
the ``inspector`` interface enabled and made the default, and its
``[inspector]`` section pointed at an inspectord URL::

    port = devenv.daemon.free_port()
    with LegacyIronicServer(tmpdir, "http://127.0.0.1:{}".format(port)) as ironic:
        with InspectordProcess(tmpdir + "/inspectord", ironic.url, port=port):
            node = ironic.enroll_node("node-0", ["52:54:00:00:00:01"])
            ironic.client().node.set_provision_state(node.uuid, "inspect")

What that Ironic does with it (``ironic/drivers/modules/inspector/``):

* ``inspect``: if the node's boot and network interfaces can boot the
  ramdisk (``validate_inspection``), Ironic boots it itself and calls
  ``POST /v1/introspection/<uuid>?manage_boot=False``; otherwise (the fake
  boot interface) a thread calls ``POST /v1/introspection/<uuid>`` and
  inspectord boots the node.  The node waits in ``inspect wait``.
* a periodic task, every ``[inspector]status_check_period`` seconds, reads
  ``GET /v1/introspection/<uuid>`` for every node in ``inspect wait``; when
  ``finished`` it fetches ``GET /v1/introspection/<uuid>/data`` (stored as
  the node's inventory) and moves the node to ``manageable``; on ``error``
  to ``inspect failed`` with the error in ``last_error``.
* ``abort`` in ``inspect wait``: ``POST /v1/introspection/<uuid>/abort``.
* data that a ramdisk posts to Ironic's own ``/v1/continue_inspection``
  is forwarded, as the body of ``POST <callback>/v1/continue``.

The callback URL (given to a ramdisk Ironic boots, and the target of that
forwarding) is ``[inspector]callback_endpoint_override``, else the inspector
endpoint; Ironic refuses a loopback *address* there, so
:attr:`LegacyIronicServer.callback_url` spells 127.0.0.1 as ``127.1``,
which its check takes for a host name and which still connects to 127.0.0.1.

Ironic logs at debug level, keystoneauth's ``REQ: curl ...`` lines included:
every request it makes to the inspector is in ``ironic.log``.
"""

import configparser
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from devenv import venvs
from devenv import processes
from devenv.ironic import IronicError, IronicServer

IRONIC_VERSION = "32.1.0"
"""The newest Ironic release with the ``inspector`` inspect interface (removed in 33.0.0)."""
IRONIC_REQUIREMENTS = [f"ironic=={IRONIC_VERSION}"]
IRONIC_VENV = f"ironic-{IRONIC_VERSION}"

API_VERSION = "1.101"
"""Bare Metal API microversion of :meth:`LegacyIronicServer.client`: the newest of Ironic 32.1.0."""

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# oslo.log's default_log_levels, with keystoneauth's request log at DEBUG.
_LOG_LEVELS = [
    "amqp=WARNING",
    "amqplib=WARNING",
    "oslo.messaging=INFO",
    "oslo_messaging=INFO",
    "stevedore=INFO",
    "iso8601=WARNING",
    "requests=WARNING",
    "urllib3.connectionpool=WARNING",
    "keystonemiddleware.auth_token=INFO",
    "keystoneauth.session=DEBUG",
    "openstack=INFO",
    "oslo_policy=WARNING",
    "oslo_concurrency.lockutils=WARNING",
    "cotyledon.oslo_config_glue=INFO",
]

# Ironic 32.x's all-in-one ``ironic`` command calls
# ``oslo_service.service.ServiceLauncher(CONF, restart_method=..., no_fork=...)``,
# an argument that ServiceLauncher does not take in any oslo.service from
# 4.3.0 (Ironic 32.0's time) to 4.8.0 (only ProcessLauncher does), so it dies
# at start-up with "TypeError: ServiceLauncher.__init__() got an unexpected
# keyword argument 'no_fork'"; 33.0.0 switched to ProcessLauncher.  This runs the
# same ``ironic.command.singleprocess.main`` with that one argument dropped
# (it is ``[vnc]enabled``, false here, and False is ServiceLauncher's
# behaviour anyway).  Everything else is Ironic's own code.
_LAUNCHER = """\
import sys
sys.argv[0] = "ironic"
from ironic.command import singleprocess
_launcher = singleprocess.service.ServiceLauncher
def _service_launcher(conf, restart_method="reload", no_fork=False):
    return _launcher(conf, restart_method=restart_method)
singleprocess.service.ServiceLauncher = _service_launcher
sys.exit(singleprocess.main())
"""


def callback_url(inspector_url: str) -> str:
    """``inspector_url`` with a 127.0.0.1 host written ``127.1``, which Ironic accepts as a callback.

    Ironic (``_get_callback_endpoint``) refuses loopback IP addresses and the
    names ``localhost``; ``127.1`` is neither to its check, and every resolver
    reads it as 127.0.0.1.
    """
    parts = urllib.parse.urlsplit(inspector_url)
    if parts.hostname != "127.0.0.1":
        return inspector_url
    netloc = "127.1" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class LegacyIronicServer(IronicServer):
    """Ironic :data:`IRONIC_VERSION` whose default inspect interface calls the inspector at ``inspector_url``.

    ``status_check_period`` is how often (seconds) Ironic polls the
    inspector for nodes in ``inspect wait``.  ``boot_interfaces`` are the
    enabled boot interfaces (the default stays ``fake``, with which
    inspectord manages boot); add ``"pxe"`` to let Ironic boot the
    ramdisk itself for nodes that have ``boot_interface=pxe`` and
    ``driver_info`` ``deploy_kernel``/``deploy_ramdisk`` (see
    :meth:`fake_deploy_images`).
    """

    def __init__(
        self,
        workdir: Any,
        inspector_url: str,
        port: int | None = None,
        host: str = "127.0.0.1",
        status_check_period: int = 1,
        boot_interfaces: Sequence[str] = ("fake",),
    ):
        super().__init__(workdir, port=port, host=host)
        self.inspector_url = inspector_url.rstrip("/")
        self.callback_url = callback_url(self.inspector_url)
        self.status_check_period = status_check_period
        self.boot_interfaces = list(boot_interfaces)

    def start(self, timeout: float = 120) -> None:
        """As :meth:`IronicServer.start`, from the :data:`IRONIC_VENV` virtualenv."""
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
                [str(venv / "bin" / "python"), "-c", _LAUNCHER, "--config-file", str(self.config_path)],
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

    def client(self) -> Any:
        """A python-ironicclient v1 client for this server at microversion :data:`API_VERSION`."""
        from ironicclient import client as ironic_client

        return ironic_client.get_client("1", endpoint=self.url, auth_type="none", os_ironic_api_version=API_VERSION)

    def fake_deploy_images(self) -> dict[str, str]:
        """``driver_info`` with a dummy deploy kernel and ramdisk (``file://`` in the work directory).

        Enough for the ``pxe`` boot interface to write its configuration;
        nothing ever boots them.
        """
        images = self.workdir / "images"
        images.mkdir(parents=True, exist_ok=True)
        info = {}
        for name in ("deploy_kernel", "deploy_ramdisk"):
            path = images / name
            if not path.exists():
                path.write_bytes(b"not a real " + name.encode() + b"\n")
            info[name] = path.as_uri()
        return info

    def inspector_requests(self) -> list[str]:
        """keystoneauth's ``REQ: curl ...`` lines for Ironic's requests to the inspector, oldest first.

        Each names the method, URL, headers (tokens hashed) and JSON body.
        """
        hosts = {_netloc(self.inspector_url), _netloc(self.callback_url)}
        lines = []
        for line in self._log_lines():
            match = _REQ_LINE.search(line)
            if match and _netloc(match.group("url")) in hosts:
                lines.append(line[match.start() :].rsplit(" _http_log_request ", 1)[0])
        return lines

    def inspector_calls(self, node_uuid: str | None = None) -> list[tuple[str, str]]:
        """``(method, path?query)`` of Ironic's requests to the inspector (only those naming ``node_uuid``, if given)."""
        calls = []
        for line in self.inspector_requests():
            match = _REQ_LINE.search(line)
            assert match is not None
            parts = urllib.parse.urlsplit(match.group("url"))
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            if node_uuid is None or node_uuid in target:
                calls.append((match.group("method"), target))
        return calls

    def ramdisk_kernel_params(self, node_uuid: str) -> dict[str, str]:
        """``key=value`` kernel parameters of the ramdisk boot Ironic prepared for ``node_uuid`` ({} if none).

        Read from the (i)PXE or GRUB configuration the ``pxe`` boot
        interface writes into the TFTP root while the node inspects.
        """
        params: dict[str, str] = {}
        directory = self.workdir / "tftpboot" / node_uuid
        for path in sorted(directory.glob("config*")) if directory.is_dir() else []:
            for word in path.read_text(errors="replace").split():
                key, sep, value = word.partition("=")
                if sep and key.startswith("ipa-"):
                    params[key] = value
        return params

    def _log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def log_tail(self, lines: int = 60) -> str:
        return self._log_tail(lines)

    def _write_config(self) -> None:
        super()._write_config()
        config = configparser.ConfigParser(interpolation=None)
        config.optionxform = str  # type: ignore[assignment,method-assign]
        config.read(self.config_path)
        default = config["DEFAULT"]
        default["enabled_inspect_interfaces"] = "inspector,no-inspect"
        default["default_inspect_interface"] = "inspector"
        default["enabled_boot_interfaces"] = ",".join(self.boot_interfaces)
        default["default_boot_interface"] = "fake" if "fake" in self.boot_interfaces else self.boot_interfaces[0]
        # keystoneauth logs each request ("REQ: curl ...") and response at
        # debug level, which oslo.log's defaults raise to INFO.
        default["debug"] = "true"
        default["default_log_levels"] = ",".join(_LOG_LEVELS)
        config["inspector"] = {
            "auth_type": "none",
            "endpoint_override": self.inspector_url,
            "callback_endpoint_override": self.callback_url,
            "status_check_period": str(self.status_check_period),
            # Explicit: its default (None) only logs a deprecation warning.
            "require_managed_boot": "false",
        }
        if "pxe" in self.boot_interfaces or "ipxe" in self.boot_interfaces:
            tftp = self.workdir / "tftpboot"
            http = self.workdir / "httpboot"
            for path in (tftp, http, self.workdir / "master_images"):
                path.mkdir(exist_ok=True)
            config["pxe"] = {
                "tftp_root": str(tftp),
                "tftp_master_path": str(tftp / "master_images"),
                "instance_master_path": str(self.workdir / "master_images"),
                "images_path": str(self.workdir / "images-cache"),
            }
            config["deploy"] = {"http_root": str(http), "http_url": f"http://{self.host}:1"}
            config["conductor"]["file_url_allowed_paths"] = str(self.workdir / "images")
        with open(self.config_path, "w") as config_file:
            config.write(config_file)

    def _conductor_ready(self) -> bool:
        try:
            _get_json(self.url + "/v1")
            drivers = _get_json(self.url + "/v1/drivers")
        except (OSError, ValueError):
            return False
        return any(driver.get("name") == "fake-hardware" and driver.get("hosts") for driver in drivers["drivers"])


_REQ_LINE = re.compile(r"REQ: curl -g -i -X (?P<method>[A-Z]+) \"?(?P<url>https?://[^\s\"]+)")


def _netloc(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def _get_json(url: str) -> Any:
    request = urllib.request.Request(url, headers={"X-OpenStack-Ironic-API-Version": API_VERSION})
    with _HTTP.open(request, timeout=2) as response:
        return json.load(response)
