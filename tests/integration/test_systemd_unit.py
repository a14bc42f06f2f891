"""The shipped systemd unit, its driver drop-ins and its sysusers file.

No running systemd is needed: ``systemd-analyze verify`` and ``security
--offline`` read the files, ``systemd-sysusers --root`` creates the user in
a scratch tree, and the capabilities the unit grants are applied with
``setpriv`` (unprivileged user, ambient and bounding sets, no new
privileges, as systemd applies them) to the firewall commands the iptables
and nftables drivers run, inside a network namespace the test makes.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

from twisted.internet import reactor
from twisted.trial import unittest

from inspectord.pxe import decisions, iptables, nftables
from inspectord.pxe.process import Runner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYSTEMD = os.path.join(ROOT, "systemd")
UNIT = os.path.join(SYSTEMD, "inspectord.service")
DRIVERS = ("nftables", "dnsmasq", "builtin", "noop")
NOBODY = 65534
# The exposure score systemd-analyze security may give the unit, at most.
MAX_EXPOSURE = 2.5


def _skip_reason():
    for tool in ("systemd-analyze", "systemd-sysusers"):
        if shutil.which(tool) is None:
            return "{} is not installed (apt install systemd)".format(tool)
    return None


SKIP = _skip_reason()


def _unit_with_local_paths(directory, drop_in=None):
    """The unit as installed, its /usr/local/bin commands pointing at this venv's."""
    bindir = os.path.dirname(sys.executable)
    with open(UNIT, encoding="utf-8") as f:
        text = f.read().replace("/usr/local/bin/", bindir + "/")
    path = os.path.join(directory, "inspectord.service")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    if drop_in:
        os.makedirs(path + ".d")
        shutil.copy(os.path.join(SYSTEMD, "drivers", drop_in + ".conf"), path + ".d")
    return path


def _settings(drop_in=None):
    """``{key: value}`` of [Service], with a drop-in's resets and overrides applied."""
    values = {}
    for path in [UNIT] + ([os.path.join(SYSTEMD, "drivers", drop_in + ".conf")] if drop_in else []):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith(("#", "[")):
                    continue
                key, _, value = line.partition("=")
                if key in ("AmbientCapabilities", "CapabilityBoundingSet"):
                    values[key] = (values.get(key, "") + " " + value).strip() if value else ""
                else:
                    values[key] = value
    return values


def _caps(value):
    return sorted(c.lower()[len("cap_"):] for c in value.split())


class UnitFileTests(unittest.TestCase):
    skip = SKIP

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="inspectord-unit-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def verify(self, drop_in=None):
        path = _unit_with_local_paths(self.dir, drop_in)
        result = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True)
        # verify exits 0 on unknown keys and only warns: any output is a defect.
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""), drop_in)
        return path

    def exposure(self, path):
        result = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", path], capture_output=True, text=True, check=True
        )
        found = re.search(r"Overall exposure level for inspectord\.service: (\d+\.\d+)", result.stdout)
        self.assertIsNotNone(found, result.stdout[-500:])
        return float(found.group(1))

    def test_verify_and_exposure(self):
        path = self.verify()
        self.assertLessEqual(self.exposure(path), MAX_EXPOSURE)

    def test_each_driver_drop_in(self):
        for driver in DRIVERS:
            self.dir = tempfile.mkdtemp(prefix="inspectord-unit-")
            self.addCleanup(shutil.rmtree, self.dir, True)
            path = self.verify(driver)
            self.assertLessEqual(self.exposure(path), MAX_EXPOSURE, driver)

    def test_a_misspelt_key_is_caught(self):
        # The check above would notice a typo in a drop-in.
        path = _unit_with_local_paths(self.dir)
        os.makedirs(path + ".d")
        with open(os.path.join(path + ".d", "typo.conf"), "w") as f:
            f.write("[Service]\nAmbientCapabilitiez=CAP_NET_ADMIN\n")
        result = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True)
        self.assertIn("AmbientCapabilitiez", result.stdout + result.stderr)

    def test_drop_ins_override_capabilities(self):
        self.assertEqual(_caps(_settings()["AmbientCapabilities"]), ["net_admin", "net_raw"])
        self.assertEqual(_caps(_settings("nftables")["AmbientCapabilities"]), ["net_admin"])
        self.assertEqual(_caps(_settings("builtin")["CapabilityBoundingSet"]), ["net_bind_service", "net_raw"])
        self.assertEqual(_caps(_settings("noop")["AmbientCapabilities"]), [])
        self.assertEqual(_settings("dnsmasq")["ReadWritePaths"], "/var/lib/ironic-inspector/dhcp-hostsdir")

    def test_files_are_private(self):
        settings = _settings()
        self.assertEqual(settings["UMask"], "0077")
        self.assertEqual(settings["StateDirectoryMode"], "0700")
        self.assertEqual((settings["User"], settings["NoNewPrivileges"]), ("inspectord", "yes"))

    def test_sysusers_creates_the_user(self):
        root = os.path.join(self.dir, "root")
        os.makedirs(os.path.join(root, "etc"))
        subprocess.run(
            ["systemd-sysusers", "--root", root, os.path.join(SYSTEMD, "inspectord.sysusers.conf")],
            check=True, capture_output=True,
        )
        with open(os.path.join(root, "etc", "passwd")) as f:
            entries = {line.split(":")[0]: line.strip().split(":") for line in f}
        self.assertIn("inspectord", entries)
        user = entries["inspectord"]
        self.assertEqual(user[5], "/var/lib/inspectord")
        self.assertLess(int(user[2]), 1000)  # a system user
        self.assertIn(user[6], ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false"))


def _netns_skip():
    if SKIP:
        return SKIP
    if os.environ.get("INSPECTORD_SKIP_DHCP"):
        return "INSPECTORD_SKIP_DHCP set"
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    for tool in ("ip", "setpriv", "nft", "iptables-restore"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return "{} is not installed".format(tool)
    return None


class CapabilitiesTests(unittest.TestCase):
    """The firewall drivers work as the unit runs them: user nobody, only the unit's capabilities."""

    skip = _netns_skip()
    timeout = 60

    def setUp(self):
        self.netns = "inspd-unit-{}".format(os.getpid())
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", self.netns])
        subprocess.run(["ip", "netns", "exec", self.netns, "ip", "link", "add", "pxe0", "type", "veth", "peer", "name", "pxe1"], check=True)

    def runner(self, capabilities):
        caps = ",".join(["-all"] + ["+" + c for c in capabilities])
        prefix = (
            "ip", "netns", "exec", self.netns,
            "setpriv", "--reuid={}".format(NOBODY), "--regid={}".format(NOBODY), "--clear-groups",
            "--no-new-privs", "--inh-caps=" + caps, "--ambient-caps=" + caps, "--bounding-set=" + caps,
        )
        return Runner(reactor, prefix=prefix, timeout=20)

    def state(self):
        return decisions.decide({"52:54:00:aa:00:01"}, True, {"52:54:00:aa:00:01", "52:54:00:aa:00:02"}, False, False)

    def ruleset(self, *argv):
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv], capture_output=True, text=True, check=True
        ).stdout

    async def test_iptables_with_the_units_capabilities(self):
        caps = _caps(_settings()["AmbientCapabilities"])
        driver = iptables.IptablesDriver(self.runner(caps), "ironic-inspector", "pxe0")
        await driver.apply(self.state())
        listing = self.ruleset("iptables", "-w", "-S", "ironic-inspector")
        self.assertIn("52:54:00:aa:00:02", listing.lower())
        self.assertIn("-j ironic-inspector", self.ruleset("iptables", "-w", "-S", "INPUT"))

    async def test_nftables_with_its_drop_ins_capabilities(self):
        caps = _caps(_settings("nftables")["AmbientCapabilities"])
        driver = nftables.NftablesDriver(self.runner(caps), "inspectord", "pxe0")
        await driver.apply(self.state())
        self.assertIn("52:54:00:aa:00:01", self.ruleset("nft", "list", "table", "inet", "inspectord"))

    async def test_without_capabilities_the_driver_fails(self):
        # What the tests above would see if the unit granted too little.
        driver = nftables.NftablesDriver(self.runner(_caps(_settings("noop")["AmbientCapabilities"])),
                                         "inspectord", "pxe0")
        with self.assertRaises(Exception):
            await driver.apply(self.state())
