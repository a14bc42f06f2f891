"""Run the real ironic-python-agent (IPA) introspection collector on this machine.

Integration tests use this in place of a ramdisk: the machine running the tests
is the "bare metal node", and ``ironic-collect-introspection-data`` from
IPA 13.0.0 (installed into a cached venv) inspects it and POSTs the result to
the callback URL the test hands it.

What the collector does and posts (learnt by running it as root on a Debian 12
Firecracker VM against a recording server on 127.0.0.1):

* One run takes about 1.1-1.2 s (inventory 0.02 s; the rest is Python start-up
  and the ``logs`` collector).  It makes exactly one POST to the callback URL,
  ``Content-Type``/``Accept: application/json``, user agent
  ``python-requests/<version>``, no auth header and no
  ``X-OpenStack-Request-ID`` unless ``--global_request_id`` is given.
* With the collectors ``default,logs`` the body's keys are ``inventory``,
  ``root_disk``, ``boot_interface``, ``configuration``, ``error`` and ``logs``.
  ``inventory`` has ``interfaces``, ``cpu`` (``count``, ``architecture``,
  ``model_name``, ``frequency``, ``flags``, ``socket_count``), ``disks``,
  ``memory`` (``total`` bytes, ``physical_mb``), ``bmc_address``,
  ``bmc_v6address``, ``system_vendor``, ``boot`` (``current_boot_mode``,
  ``pxe_interface``) and ``hostname``.  ``error`` is ``null`` on success.
  ``logs`` is a base64 tar.gz (about 15 KB here) of the journal, ``df``,
  ``dmesg``, ``ip addr``, ``lsblk``, ``lshw``, ``mount`` and udev data.
* ``interfaces`` only lists entries of /sys/class/net that have a ``device``
  link (or are bonds or ``name.VLAN``): ``lo``, ``ifb*``, veth, bridge and
  dummy interfaces are never reported.  The MAC is the permanent address
  (ethtool ioctl), falling back to the current one; a MAC starting with
  ``fa:`` makes IPA drop the interface.  Each entry has ``name``,
  ``mac_address``, ``ipv4_address``, ``ipv6_address`` (first address of each
  family, or null), ``has_carrier``, ``lldp``, ``vendor``, ``product``,
  ``client_id``, ``biosdevname``, ``speed_mbps``, ``pci_address``, ``driver``.
* Without a BOOTIF kernel parameter ``boot_interface`` and
  ``inventory.boot.pxe_interface`` are null, so the inspector sees no PXE MAC.
* Without an IPMI device (/dev/ipmi*) ``bmc_address`` and ``bmc_v6address`` are
  null and no ``bmc_mac`` key is sent.  ``system_vendor`` fields are empty
  strings where the machine has no DMI tables.
* ``configuration.managers`` lists the hardware managers IPA loaded; it also
  includes ``ContainerHardwareManager`` when podman or docker is installed.
* A collector that fails does not stop the POST: IPA posts what it has with
  ``error`` set to a "The following errors were encountered: ..." text, then
  exits 1.  If ``udevadm`` is missing, for instance, the body is only
  ``logs`` and ``error``.

How it handles the answer:

* Status < 400 other than 409: success, but the body must be JSON (IPA calls
  ``resp.json()`` and exits 1 on an empty or non-JSON body, even for a 2xx).
  IPA only reads ``uuid`` from it.
* 5xx or 409, and connection errors: up to 5 POSTs with identical bodies,
  waiting 5, 5, 6 and 12 s between them (about 28 s), then exit 1.
* Any other 4xx (400, 404, ...): no retry; exit 1 with
  ``Inspection failed: error 404: <response body>``.
* No answer within ``--http_request_timeout`` (default 30 s): no retry, exit 1.
* Several comma-separated callback URLs: IPA moves to the next URL only after
  a connection error.

What it needs from the machine:

* Root: IPA reads /dev and /sys, runs ``lshw`` and ``dmesg``, and tries
  ``modprobe`` for IPMI (it was only tried as root).  It does not need /dev/mem (the optional
  ``dmi-decode`` collector does, and fails on this VM).  It writes no files:
  all logging goes to stdout.
* The commands in ``REQUIRED_COMMANDS``; see ``ensure_system_packages``.
* The kernel command line (/proc/cmdline) is read for ``ipa-*`` parameters,
  which act as option defaults; the options ``collector_command`` passes
  override them.
* IPA waits up to 27 s for a disk of at least 4 GiB before collecting the
  inventory; a machine without one is slower and reports no ``root_disk``.
"""

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence

from devenv.venvs import ensure_venv

IPA_REQUIREMENTS = ["ironic-python-agent==13.0.0"]

#: Command that IPA runs -> Debian package that provides it.  The default
#: collector fails without ``udevadm`` (``udevadm settle`` runs before disks are
#: listed; no udev daemon is needed), ``lshw`` (memory, NIC speed, vendor),
#: ``lsblk`` or ``lscpu``.  ``ip`` only feeds ``ip addr`` to the logs
#: collector, which silently leaves out any command that fails (``ps au``
#: does here).  Commands IPA can do without and only warns about: mdadm,
#: multipath, biosdevname, modprobe, iscsistart, ipmitool, parted, efibootmgr,
#: iptables.
REQUIRED_COMMANDS = {
    "udevadm": "udev",
    "lshw": "lshw",
    "lsblk": "util-linux",
    "lscpu": "util-linux",
    "ip": "iproute2",
}

COLLECTOR_SCRIPT = "ironic-collect-introspection-data"

#: The uuid that ``capture_post``'s stand-in inspector answers with.
PROBE_NODE_UUID = "00000000-0000-4000-8000-00000000c0de"


def ensure_system_packages() -> None:
    """Install the Debian packages for any missing ``REQUIRED_COMMANDS``.

    Runs ``apt-get update`` and ``apt-get install`` non-interactively when
    running as root. Otherwise raises RuntimeError naming the packages.
    Does nothing when all the commands are present.
    """
    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items()
                      if shutil.which(cmd) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(
            "ironic-python-agent needs the Debian packages %s; install them "
            "as root: apt-get install -y %s"
            % (", ".join(missing), " ".join(missing)))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                  *missing]):
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError("%s failed (exit %d):\n%s%s" % (
                " ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    still_missing = [cmd for cmd in REQUIRED_COMMANDS
                     if shutil.which(cmd) is None]
    if still_missing:
        raise RuntimeError("still missing after apt-get install: %s"
                           % ", ".join(still_missing))


def collector_command(callback_url: str, extra_args: Sequence[str] = ()) -> list[str]:
    """Return the argv that runs IPA's collector once against callback_url.

    ``--config-file /dev/null`` keeps any ironic-python-agent config file on the
    machine out of it. ``--inspection_dhcp_wait_timeout 0`` skips waiting for
    DHCP. ``--inspection_collectors default,logs`` is IPA's default, written out.
    extra_args come last, so they override these: for example
    ``("--inspection_collectors", "default")`` drops ``logs``, and
    ``("--debug",)`` logs every command and the collected data.
    Other collectors: pci-devices, numa-topology, usb-devices, lldp
    (listens up to --lldp_timeout, 30 s), dmi-decode (needs dmidecode and DMI
    tables), extra-hardware (needs the ``hardware`` package).
    """
    venv = ensure_venv("ipa", IPA_REQUIREMENTS)
    return [str(venv / "bin" / COLLECTOR_SCRIPT),
            "--config-file", os.devnull,
            "--inspection_callback_url", callback_url,
            "--inspection_dhcp_wait_timeout", "0",
            "--inspection_collectors", "default,logs",
            *extra_args]


def run_collector(
    callback_url: str, extra_args: Sequence[str] = (), timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run IPA's collector once, posting to callback_url; return the result.

    Ensures the system packages first. Output is captured as text; IPA logs
    everything, errors included, to stdout. Exit code 0 means the post was
    accepted and no collector failed; see the module docstring for what
    IPA does with each answer. Raises subprocess.TimeoutExpired after timeout
    seconds (the child is killed).
    """
    ensure_system_packages()
    return subprocess.run(collector_command(callback_url, extra_args),
                          capture_output=True, text=True, timeout=timeout)


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.server.bodies.append(self.rfile.read(length))
        reply = json.dumps({"uuid": PROBE_NODE_UUID}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format, *args):
        pass


def capture_post(extra_args: Sequence[str] = (), timeout: float = 300) -> dict:
    """Run IPA's collector against a stand-in inspector and return its post.

    The stand-in listens on 127.0.0.1 on a free port for this call only and
    answers ``200 {"uuid": PROBE_NODE_UUID}``. Returns the decoded JSON body,
    including ``error`` when a collector failed. Raises RuntimeError with
    IPA's output if nothing was posted.
    """
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             _RecordingHandler)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = "http://127.0.0.1:%d/v1/continue" % server.server_address[1]
        proc = run_collector(url, extra_args, timeout)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    if not server.bodies:
        raise RuntimeError("ironic-python-agent posted nothing (exit %d):\n%s%s"
                           % (proc.returncode, proc.stdout, proc.stderr))
    return json.loads(server.bodies[-1])


@functools.cache
def _probe() -> dict:
    post = capture_post(("--inspection_collectors", "default"))
    if post["error"]:
        raise RuntimeError("ironic-python-agent reported: %s" % post["error"])
    return post


def expected_macs() -> list[str]:
    """Return the MAC addresses IPA reports for this machine, in its order.

    Taken from what IPA posts (run once per process, then cached), so a test
    can enroll the node's ports before running the collector against
    inspectord. On this VM: ``["02:fc:00:00:00:01"]`` (eth0).
    """
    return [iface["mac_address"]
            for iface in _probe()["inventory"]["interfaces"]]


def expected_inventory_summary() -> dict:
    """Return the main facts IPA reports for this machine (cached like MACs).

    Keys: ``interfaces`` (name -> ``{"mac", "ipv4", "ipv6"}``), ``cpu_count``,
    ``cpu_arch``, ``memory_mb`` (``inventory.memory.physical_mb``),
    ``memory_total`` (bytes), ``root_disk`` and ``root_disk_size`` (bytes; both
    None without a root disk), ``bmc_address``, ``bmc_v6address``,
    ``boot_mode`` and ``hostname``.
    """
    post = _probe()
    inventory = post["inventory"]
    root_disk = post.get("root_disk") or {}
    return {
        "interfaces": {iface["name"]: {"mac": iface["mac_address"],
                                       "ipv4": iface["ipv4_address"],
                                       "ipv6": iface["ipv6_address"]}
                       for iface in inventory["interfaces"]},
        "cpu_count": inventory["cpu"]["count"],
        "cpu_arch": inventory["cpu"]["architecture"],
        "memory_mb": inventory["memory"]["physical_mb"],
        "memory_total": inventory["memory"]["total"],
        "root_disk": root_disk.get("name"),
        "root_disk_size": root_disk.get("size"),
        "bmc_address": inventory["bmc_address"],
        "bmc_v6address": inventory["bmc_v6address"],
        "boot_mode": inventory["boot"]["current_boot_mode"],
        "hostname": inventory["hostname"],
    }
