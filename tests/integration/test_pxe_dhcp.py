"""The PXE filter against real DHCP: dnsmasq, real firewall rules, real DHCPDISCOVERs.

Each test makes two network namespaces joined by a veth pair.  dnsmasq
serves DHCP in the *server* namespace, where the filter (its commands run
through ``ip netns exec``) is applied; scapy sends DHCPDISCOVERs with
chosen MACs from the *client* namespace, all in one batch, and the test
asserts who got an OFFER, plus the rule counters.  Nothing leaves the
namespaces.  The builtin driver's server runs in this process, its socket
opened inside the server namespace.  Needs root, ``ip``, ``dnsmasq`` (Debian ``dnsmasq-base``),
``nft``, ``iptables-restore`` and scapy; skipped with the reason otherwise.
"""

import ctypes
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from inspectord import state as st
from inspectord.dhcp import server
from inspectord.dhcp.sniffer import DHCPSeen, DHCPSniffer
from inspectord.pxe import builtin, dnsmasq, iptables, nftables
from inspectord.pxe.process import Runner
from inspectord.pxe.service import PXEFilterService
from inspectord.store import SQLStore, make_engine
from inspectord.store.pool import SynchronousPool

A = "52:54:00:aa:00:01"  # node 1, put under introspection
B = "52:54:00:aa:00:02"  # node 2, known to Ironic, never introspected
U = "52:54:00:aa:00:ff"  # unknown to Ironic
SUBNET = "10.213.0"
NOW = __import__("datetime").datetime(2027, 1, 1)


def _skip_reason():
    if os.environ.get("INSPECTORD_SKIP_DHCP"):
        return "INSPECTORD_SKIP_DHCP set"
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "dnsmasq", "nft", "iptables-restore", "iptables"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return "{} is not installed (apt install dnsmasq-base nftables iptables)".format(tool)
    try:
        import scapy  # noqa: F401
    except ImportError:
        return "scapy is not installed in this Python"
    return None


SKIP = _skip_reason()
if SKIP:
    print("tests.integration.test_pxe_dhcp skipped: " + SKIP, file=sys.stderr)

_counter = itertools.count()


CLONE_NEWNET = 0x40000000


def in_netns(netns, f, *args):
    """``f(*args)`` run with this thread in ``netns`` (sockets stay in the namespace they were made in)."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/self/ns/net") as here, open("/run/netns/" + netns) as there:
        if libc.setns(there.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into " + netns)
        try:
            return f(*args)
        finally:
            if libc.setns(here.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")


def socket_in_netns(netns, interface):
    """The builtin server's socket, opened inside ``netns``."""
    return in_netns(netns, server.open_socket, interface)


def sniffer_socket_in_netns(netns, interface):
    from scapy.all import conf

    return in_netns(netns, lambda: conf.L2listen(iface=interface))


def sh(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class DHCPNetwork:
    """Two namespaces joined by a veth pair; the server side at SUBNET.1."""

    def __init__(self):
        n = "{}{}".format(os.getpid() % 100000, next(_counter))
        self.server, self.client = "inspd-s" + n, "inspd-c" + n
        self.server_if, self.client_if = "ids" + n, "idc" + n
        self.workdir = tempfile.mkdtemp(prefix="inspectord-dhcp-")
        self.hostsdir = os.path.join(self.workdir, "hosts")
        os.mkdir(self.hostsdir)
        self.pidfile = os.path.join(self.workdir, "dnsmasq.pid")
        self.server_runner = Runner(reactor, prefix=("ip", "netns", "exec", self.server), timeout=30)
        self.client_runner = Runner(reactor, prefix=("ip", "netns", "exec", self.client), timeout=60)

    def create(self):
        sh("ip", "netns", "add", self.server)
        sh("ip", "netns", "add", self.client)
        sh("ip", "link", "add", self.server_if, "type", "veth", "peer", "name", self.client_if)
        sh("ip", "link", "set", self.server_if, "netns", self.server)
        sh("ip", "link", "set", self.client_if, "netns", self.client)
        sh("ip", "-n", self.server, "addr", "add", SUBNET + ".1/24", "dev", self.server_if)
        for ns, interface in ((self.server, self.server_if), (self.client, self.client_if)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", interface, "up")

    def dnsmasq_command(self, hostsdir=False):
        argv = [
            "dnsmasq",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=" + self.server_if,
            "--bind-interfaces",
            "--dhcp-range={0}.100,{0}.250,255.255.255.0,2m".format(SUBNET),
            "--no-ping",
            "--user=root",
            "--dhcp-leasefile=" + os.path.join(self.workdir, "leases"),
            "--pid-file=" + self.pidfile,
            "--log-dhcp",
            "--log-facility=" + os.path.join(self.workdir, "dnsmasq.log"),
        ]
        if hostsdir:
            argv.append("--dhcp-hostsdir=" + self.hostsdir)
        return argv

    def start_dnsmasq(self):
        sh("ip", "netns", "exec", self.server, *self.dnsmasq_command())
        self.wait_for_pidfile()

    def wait_for_pidfile(self):
        for _ in range(100):
            if os.path.exists(self.pidfile) and open(self.pidfile).read().strip():
                return
            time.sleep(0.02)
        raise AssertionError("dnsmasq did not start; see " + self.workdir)

    def stop_dnsmasq(self):
        try:
            with open(self.pidfile) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass

    def destroy(self):
        self.stop_dnsmasq()
        for ns in (self.server, self.client):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        if not os.environ.get("INSPECTORD_KEEP_WORKDIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def probe(self, macs, timeout=2.0, arch=None):
        """The MACs (of ``macs``) that got an OFFER, and the offers."""
        extra = ("--arch", str(arch)) if arch is not None else ()
        result = await self.client_runner.run(
            (sys.executable, "-m", "devenv.dhcp_probe", "--interface", self.client_if,
             "--timeout", str(timeout), *extra, *macs)
        )
        report = json.loads(result.stdout)
        return set(report["offers"]), report["offers"]


class StaticPorts:
    """Ironic's ports, as the filter reads them."""

    def __init__(self, macs):
        self.macs = list(macs)

    async def list_all_port_macs(self):
        return list(self.macs)


async def wait_until(predicate, timeout, what):
    start = reactor.seconds()
    while not predicate():
        if reactor.seconds() - start > timeout:
            raise AssertionError("not within {}s: {}".format(timeout, what))
        await task.deferLater(reactor, 0.01, lambda: None)
    return reactor.seconds() - start


class DriverContract:
    """The same DHCP scenarios for every driver; subclasses say how to build and observe it."""

    skip = SKIP
    timeout = 180

    def setUp(self):
        self.net = DHCPNetwork()
        self.addCleanup(self.net.destroy)
        self.net.create()
        self.store = SQLStore(make_engine("sqlite://"), SynchronousPool())
        self.store.upgrade()
        self.ironic = StaticPorts([A, B])

    def make_driver(self):
        raise NotImplementedError

    def start_dhcp(self):
        self.net.start_dnsmasq()

    async def counters(self):
        """``{"allowed", "dropped"}`` packet counts, or None if the driver has none."""
        return None

    async def counters_since(self, before):
        now = await self.counters()
        if now is None:
            return None
        return {k: now[k] - before[k] for k in now}

    async def start_filter(self, **kwargs):
        self.driver = self.make_driver()
        self.filter = PXEFilterService(self.driver, self.store, self.ironic, reactor, sync_period=0, **kwargs)
        self.filter.startService()
        self.addCleanup(self.stop_filter)
        self.assertTrue(await self.filter.sync(), self.filter.health())
        self.start_dhcp()

    async def stop_filter(self):
        if self.filter.running:
            await self.filter.stopService()

    async def event(self, change, expect):
        """Change the store, notify, and wait (at most 1 s) until the driver applied it."""
        change()
        self.filter.notify()
        return await wait_until(
            lambda: self.filter.applied is not None and self.filter.applied.allows(A) == expect,
            1.0,
            "the filter applying the event",
        )

    async def test_only_nodes_under_introspection_get_offers(self):
        await self.start_filter()
        # Nothing under introspection, no discovery: nobody gets an answer.
        before = await self.counters()
        offered, _ = await self.net.probe([A, B, U])
        self.assertEqual(offered, set())
        closed = await self.counters_since(before)

        # Node 1 under introspection: its MAC and unknown MACs are answered.
        await self.event(lambda: self.store.start("n1", NOW, True, {}, {}, [("mac", A)]), True)
        before = await self.counters()
        offered, offers = await self.net.probe([A, B, U])
        self.assertEqual(offered, {A, U})
        self.assertTrue(offers[A]["yiaddr"].startswith(SUBNET + "."))
        opened = await self.counters_since(before)

        # Introspection over: closed again, the event applied within a second.
        await self.event(lambda: self.store.transition("n1", st.Event.error, NOW, error="done"), False)
        offered, _ = await self.net.probe([A, B, U])
        self.assertEqual(offered, set())

        if closed is not None:
            # The kernel dropped the denied DISCOVERs (counted), not dnsmasq:
            # all three MACs while closed, only B's while open.
            self.assertEqual(closed["allowed"], 0, closed)
            self.assertGreaterEqual(closed["dropped"], 3, closed)
            self.assertGreaterEqual(opened["allowed"], 2, opened)
            self.assertGreaterEqual(opened["dropped"], 1, opened)
            self.assertLess(opened["dropped"], closed["dropped"], (closed, opened))

    async def test_deny_unknown_macs(self):
        await self.start_filter(deny_unknown_macs=True)
        await self.event(lambda: self.store.start("n1", NOW, True, {}, {}, [("mac", A)]), True)
        offered, _ = await self.net.probe([A, B, U])
        self.assertEqual(offered, {A})


class NftablesTests(DriverContract, unittest.TestCase):
    def make_driver(self):
        return nftables.NftablesDriver(self.net.server_runner, "inspectord", self.net.server_if)

    async def counters(self):
        found = await self.driver.counters()
        # "other" counts unknown MACs: accepted or dropped as the state says.
        unknown_allowed = self.filter.applied.allow_unknown
        return {
            "allowed": found["allowed"] + (found["other"] if unknown_allowed else 0),
            "dropped": found["denied"] + (0 if unknown_allowed else found["other"]),
        }

    async def test_recovers_when_the_table_is_deleted_behind_its_back(self):
        await self.start_filter()
        await self.net.server_runner.run(("nft", "delete", "table", "inet", "inspectord"))
        self.store.start("n1", NOW, True, {}, {}, [("mac", A)])
        self.filter.notify()
        # The incremental sync fails (the set is gone), the retry rebuilds in full.
        await wait_until(lambda: self.filter.health()["consecutive_failures"] > 0, 2, "a failed sync")
        self.assertIn("nft", self.filter.health()["last_error"])
        await wait_until(lambda: self.filter.health()["state"] == "ok", 3, "recovery")
        offered, _ = await self.net.probe([A, B])
        self.assertEqual(offered, {A})
        self.flushLoggedErrors()


    async def test_sniffer_tells_blocked_from_answered(self):
        seen = DHCPSeen()
        await self.start_filter(seen=seen)
        sniff = DHCPSniffer(
            reactor, self.net.server_if, self.filter.allows, seen=seen,
            open_socket=lambda interface: sniffer_socket_in_netns(self.net.server, interface),
        )
        sniff.startService()
        self.addCleanup(sniff.stopService)
        self.assertIsNone(sniff.error)
        await self.event(lambda: self.store.start("n1", NOW, True, {}, {}, [("mac", A)]), True)
        offered, _ = await self.net.probe([A, B])
        self.assertEqual(offered, {A})
        await wait_until(lambda: seen.get(A) and seen.get(B), 2, "the sniffer to record both")
        self.assertEqual((seen.get(A)["dhcp_message"], seen.get(A)["allowed_by_filter"]), ("discover", True))
        self.assertEqual(self.filter.dhcp_seen(B)["allowed_by_filter"], False)  # seen although dropped
        self.assertIsNone(self.filter.dhcp_seen(U))  # never asked


class IptablesTests(DriverContract, unittest.TestCase):
    def make_driver(self):
        return iptables.IptablesDriver(self.net.server_runner, "ironic-inspector", self.net.server_if)

    async def counters(self):
        rows = await self.driver.counters()
        return {
            "allowed": sum(p for p, target, _ in rows if target == "ACCEPT"),
            "dropped": sum(p for p, target, _ in rows if target == "DROP"),
        }

    async def test_full_sync_restores_a_removed_jump(self):
        await self.start_filter()
        jump = iptables.jump_rule("ironic-inspector", self.net.server_if, "4")
        await self.net.server_runner.run(("iptables", "-w", "-D") + jump)
        offered, _ = await self.net.probe([B])
        self.assertEqual(offered, {B})  # unfiltered
        self.assertTrue(await self.filter.sync(full=True))
        offered, _ = await self.net.probe([B])
        self.assertEqual(offered, set())
        result = await self.net.server_runner.run(("iptables", "-w", "-S", "INPUT"))
        self.assertEqual(result.stdout.decode().count("-j ironic-inspector"), 1)


class DnsmasqTests(DriverContract, unittest.TestCase):
    def make_driver(self):
        net = self.net
        return dnsmasq.DnsmasqDriver(
            net.server_runner,
            lambda f, *args: defer.execute(f, *args),
            net.hostsdir,
            start_command=" ".join(net.dnsmasq_command(hostsdir=True)),
            stop_command="kill $(cat {})".format(net.pidfile),
        )

    def start_dhcp(self):
        # dnsmasq_start_command started it.
        self.net.wait_for_pidfile()

    async def test_stop_command_stops_dnsmasq(self):
        await self.start_filter()
        with open(self.net.pidfile) as f:
            pid = int(f.read().strip())
        await self.filter.stopService()
        await wait_until(lambda: not os.path.exists("/proc/{}".format(pid)), 5, "dnsmasq to stop")


class BuiltinTests(DriverContract, unittest.TestCase):
    """inspectord's own DHCP server instead of dnsmasq."""

    def make_driver(self):
        options = server.ServerOptions(
            server_address=SUBNET + ".1", range_start=SUBNET + ".100", range_end=SUBNET + ".250",
            next_server=SUBNET + ".2",
        )
        return builtin.BuiltinDriver(
            reactor, options, self.net.server_if, self.store,
            open_socket=lambda interface: socket_in_netns(self.net.server, interface),
        )

    def start_dhcp(self):
        """The driver's first apply opened the socket."""

    async def test_boot_file_by_architecture_and_requests_seen(self):
        await self.start_filter()
        await self.event(lambda: self.store.start("n1", NOW, True, {}, {}, [("mac", A)]), True)
        offered, offers = await self.net.probe([A], arch=7)
        self.assertEqual(offered, {A})
        self.assertEqual((offers[A]["file"], offers[A]["siaddr"], offers[A]["server"]),
                         ("snponly.efi", SUBNET + ".2", SUBNET + ".1"))
        self.assertTrue(self.driver.seen.get(A)["allowed_by_filter"])
        offered, _ = await self.net.probe([B])
        self.assertEqual(offered, set())
        self.assertFalse(self.driver.seen.get(B)["allowed_by_filter"])
