"""The PXE filter against a real PXE client: a QEMU VM booting iPXE.

Each test makes one network namespace holding a bridge (the "provisioning
network", SUBNET.1/24) with a tap device on it; QEMU runs inside the
namespace (``ip netns exec``), its e1000 NIC on the tap, no disk,
``-boot n``, the iPXE ROM of Debian's ``ipxe-qemu`` and ``-accel tcg``
(this machine's KVM does not run iPXE).  dnsmasq serves TFTP (the script
``qemu/boot.ipxe``) and, unless the test uses inspectord's builtin DHCP
server, DHCP; inspectord's PXE filter is applied to the bridge in that
namespace the way ``test_pxe_dhcp`` applies it (commands through ``ip netns
exec``, the builtin server's socket opened inside the namespace).

The tests read the VM's serial console (``-nographic``): iPXE prints its
DHCP result there, and the script echoes ``INSPECTORD-PXE-OK <mac> <ip>
<next-server>`` once it has been loaded over TFTP; the test then kills the
VM.  Every wait is bounded, the VM runs under ``timeout`` as well, and the
namespace, tap, dnsmasq and QEMU are removed even when a test fails.

dnsmasq also sends IPv6 router advertisements (``ra-only``, no DHCPv6):
without one iPXE waits about 14 s for IPv6 autoconfiguration before it
loads its boot file.

Needs root, ``ip``, ``dnsmasq`` (``dnsmasq-base``), ``nft``,
``qemu-system-x86_64`` (``qemu-system-x86``), ``/usr/lib/ipxe/qemu/pxe-e1000.rom``
(``ipxe-qemu``) and scapy; skipped with the reason otherwise.
"""

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from twisted.internet import error as net_error, protocol, reactor, task
from twisted.trial import unittest

from inspectord.dhcp import server
from inspectord.pxe import builtin, iptables, nftables
from inspectord.pxe.process import Runner, command_env
from inspectord.pxe.service import PXEFilterService
from inspectord.store import SQLStore, make_engine
from inspectord.store.pool import SynchronousPool
from tests.integration.test_pxe_dhcp import NOW, StaticPorts, in_netns, sh, wait_until

SUBNET = "10.214.0"
SUBNET6 = "fd00:214::"
VM_MAC = "52:54:00:ab:cd:01"
OTHER_MAC = "52:54:00:ab:cd:02"  # another node known to Ironic
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "qemu", "boot.ipxe")
IPXE_ROM = "/usr/lib/ipxe/qemu/pxe-e1000.rom"
QEMU = "qemu-system-x86_64"
MARKER = re.compile(rb"INSPECTORD-PXE-OK (\S+) (\S+) (\S+)\r?\n")  # a whole line: output comes in pieces
#: Hard limit on one VM's life (the test kills it sooner).
VM_TIMEOUT = 120
#: Bounds of the waits on the VM (iPXE under TCG: ~3 s to start, ~3 s of DHCP).
BOOT_TIMEOUT = 90
SBIN = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def _skip_reason():
    for variable in ("INSPECTORD_SKIP_QEMU", "INSPECTORD_SKIP_DHCP"):
        if os.environ.get(variable):
            return variable + " set"
    if os.geteuid() != 0:
        return "needs root to create network namespaces and tap devices"
    for tool, package in (
        ("ip", "iproute2"),
        ("dnsmasq", "dnsmasq-base"),
        ("nft", "nftables"),
        ("timeout", "coreutils"),
        (QEMU, "qemu-system-x86"),
    ):
        if shutil.which(tool, path=SBIN) is None:
            return "{} is not installed (apt install {})".format(tool, package)
    if not os.path.exists(IPXE_ROM):
        return "{} is missing (apt install ipxe-qemu)".format(IPXE_ROM)
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (no tap devices)"
    try:
        import scapy  # noqa: F401
    except ImportError:
        return "scapy is not installed in this Python"
    return None


SKIP = _skip_reason()
if SKIP:
    print("tests.integration.test_pxe_qemu skipped: " + SKIP, file=sys.stderr)

_counter = itertools.count()


class SerialConsole(protocol.ProcessProtocol):
    """QEMU's stdout (the serial console, with ``-nographic``), kept whole."""

    def __init__(self):
        self.output = b""
        self.exited = None

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.exited = reason.value

    def text(self, tail=3000):
        """The console's last ``tail`` characters, printable (for failure messages)."""
        clean = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1bc|[\x08\r]", b"", self.output[-tail * 2:])
        return clean.decode("ascii", "replace")[-tail:]


class VM:
    """One QEMU process PXE-booting from a tap device, inside a namespace."""

    def __init__(self, net, mac):
        self.net = net
        self.mac = mac
        self.console = SerialConsole()
        self.transport = None
        self.started = None
        self.pidfile = os.path.join(net.workdir, "qemu-{}.pid".format(mac.replace(":", "")))

    def argv(self):
        return (
            "ip", "netns", "exec", self.net.ns,
            # A hard limit that holds even if the test process dies.
            "timeout", "--kill-after=5", str(VM_TIMEOUT),
            QEMU,
            "-accel", "tcg",
            "-nographic",
            "-m", "128",
            "-smp", "1",
            "-no-reboot",
            "-boot", "n",
            "-pidfile", self.pidfile,
            "-netdev", "tap,id=pxe,ifname={},script=no,downscript=no".format(self.net.tap),
            "-device", "e1000,netdev=pxe,mac={},romfile={}".format(self.mac, IPXE_ROM),
        )

    def start(self):
        argv = self.argv()
        self.started = reactor.seconds()
        self.transport = reactor.spawnProcess(self.console, argv[0], list(argv), env=command_env())

    @property
    def running(self):
        return self.console.exited is None

    def elapsed(self):
        return reactor.seconds() - self.started

    async def wait_for(self, pattern, timeout, what):
        """The first match of ``pattern`` (bytes regex) on the console; fails if the VM ends or time runs out."""
        deadline = reactor.seconds() + timeout
        while True:
            found = re.search(pattern, self.console.output)
            if found:
                return found
            if not self.running:
                raise AssertionError(self.failure("the VM ended ({}) before {}".format(self.console.exited, what)))
            if reactor.seconds() > deadline:
                raise AssertionError(self.failure("not within {}s: {}".format(timeout, what)))
            await task.deferLater(reactor, 0.1, lambda: None)

    def failure(self, message):
        return "{}; console:\n{}\n(INSPECTORD_KEEP_WORKDIR=1 keeps {})".format(
            message, self.console.text(), self.net.workdir)

    async def stop(self):
        """Kill the VM and wait (at most 10 s) for it to go; its console is kept in the workdir."""
        if self.transport is None:
            return
        try:
            await self._stop()
        finally:
            with open(self.pidfile[:-len(".pid")] + "-console.log", "wb") as f:
                f.write(self.console.output)

    async def _stop(self):
        if not self.running:
            return
        for sig, wait in (("TERM", 5), ("KILL", 5)):
            try:
                self.transport.signalProcess(sig)  # timeout(1) passes TERM on to QEMU
            except net_error.ProcessExitedAlready:
                return
            if sig == "KILL":
                _kill_group(self.transport.pid)
            deadline = reactor.seconds() + wait
            while self.running and reactor.seconds() < deadline:
                await task.deferLater(reactor, 0.05, lambda: None)
            if not self.running:
                return

    def kill_leftover(self):
        """Last resort (cleanup): SIGKILL whatever the pidfile names."""
        try:
            with open(self.pidfile) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)  # timeout(1) made its own process group
    except OSError:
        pass


class QemuNetwork:
    """A namespace with a bridge at SUBNET.1 and an empty tap port for a VM; dnsmasq there."""

    def __init__(self):
        n = "{}{}".format(os.getpid() % 100000, next(_counter))
        self.ns = "inspd-q" + n
        self.bridge, self.tap = "iqb" + n, "iqt" + n
        self.workdir = tempfile.mkdtemp(prefix="inspectord-qemu-")
        self.tftp_root = os.path.join(self.workdir, "tftp")
        os.mkdir(self.tftp_root)
        shutil.copy(SCRIPT, os.path.join(self.tftp_root, "boot.ipxe"))
        self.pidfile = os.path.join(self.workdir, "dnsmasq.pid")
        self.log = os.path.join(self.workdir, "dnsmasq.log")
        self.runner = Runner(reactor, prefix=("ip", "netns", "exec", self.ns), timeout=30)
        self.vms = []

    def create(self):
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "add", self.bridge, "type", "bridge")
        sh("ip", "-n", self.ns, "tuntap", "add", "dev", self.tap, "mode", "tap")
        sh("ip", "-n", self.ns, "link", "set", self.tap, "master", self.bridge)
        sh("ip", "-n", self.ns, "addr", "add", SUBNET + ".1/24", "dev", self.bridge)
        sh("ip", "-n", self.ns, "addr", "add", SUBNET6 + "1/64", "dev", self.bridge, "nodad")
        for interface in ("lo", self.bridge, self.tap):
            sh("ip", "-n", self.ns, "link", "set", interface, "up")

    def dnsmasq_command(self, dhcp=True):
        argv = [
            "dnsmasq",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=" + self.bridge,
            "--bind-interfaces",
            "--user=root",
            "--pid-file=" + self.pidfile,
            "--log-dhcp",
            "--log-facility=" + self.log,
            "--enable-tftp",
            "--tftp-root=" + self.tftp_root,
            # Router advertisements only (see the module docstring).
            "--enable-ra",
            "--dhcp-range=::,constructor:{},ra-only".format(self.bridge),
        ]
        if dhcp:
            argv += [
                "--dhcp-range={0}.100,{0}.150,255.255.255.0,2m".format(SUBNET),
                "--no-ping",
                "--dhcp-leasefile=" + os.path.join(self.workdir, "leases"),
                "--dhcp-boot=boot.ipxe",
            ]
        return argv

    def start_dnsmasq(self, dhcp=True):
        sh("ip", "netns", "exec", self.ns, *self.dnsmasq_command(dhcp))
        for _ in range(250):
            if os.path.exists(self.pidfile) and open(self.pidfile).read().strip():
                return
            time.sleep(0.02)
        raise AssertionError("dnsmasq did not start; see " + self.workdir)

    def dnsmasq_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def vm(self, mac):
        vm = VM(self, mac)
        self.vms.append(vm)
        return vm

    async def stop_vms(self):
        for vm in self.vms:
            await vm.stop()

    def destroy(self):
        for vm in self.vms:
            vm.kill_leftover()
        try:
            with open(self.pidfile) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        subprocess.run(["ip", "-n", self.ns, "link", "del", self.tap], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)
        if os.environ.get("INSPECTORD_KEEP_WORKDIR"):
            print("test_pxe_qemu: kept " + self.workdir, file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


class QemuBootBase:
    skip = SKIP
    timeout = 240

    def setUp(self):
        self.net = QemuNetwork()
        self.addCleanup(self.net.destroy)
        self.net.create()
        # Runs before destroy() (cleanups run last-in first-out).
        self.addCleanup(self.net.stop_vms)
        self.store = SQLStore(make_engine("sqlite://"), SynchronousPool())
        self.store.upgrade()
        self.ironic = StaticPorts([VM_MAC, OTHER_MAC])

    async def start_filter(self, driver):
        self.driver = driver
        self.filter = PXEFilterService(driver, self.store, self.ironic, reactor, sync_period=0)
        self.filter.startService()
        self.addCleanup(self.stop_filter)
        self.assertTrue(await self.filter.sync(), self.filter.health())

    async def stop_filter(self):
        if self.filter.running:
            await self.filter.stopService()

    async def introspect(self, mac):
        """Put a node with ``mac`` under introspection; wait (1 s at most) for the filter to allow it."""
        await self.store.start("n1", NOW, True, {}, {}, [("mac", mac)])
        self.filter.notify()
        await wait_until(lambda: self.filter.allows(mac), 1.0, "the filter allowing " + mac)

    async def poll(self, read, predicate, timeout, what, vm):
        """``await read()`` until ``predicate`` holds for it (every 0.2 s, at most ``timeout`` s, while ``vm`` runs)."""
        deadline = reactor.seconds() + timeout
        while True:
            value = await read()
            if predicate(value):
                return value
            if not vm.running or reactor.seconds() > deadline:
                raise AssertionError(vm.failure("not within {}s: {} (last {!r})".format(timeout, what, value)))
            await task.deferLater(reactor, 0.2, lambda: None)

    def report(self, what, vm):
        print("\n  {}: {:.1f}s after the VM started".format(what, vm.elapsed()), file=sys.stderr)

    async def assert_boots_script(self, vm):
        """The VM gets an address from SUBNET and runs ``boot.ipxe`` fetched over TFTP; its IP."""
        found = await vm.wait_for(MARKER, BOOT_TIMEOUT, "iPXE running boot.ipxe")
        self.report("boot.ipxe ran", vm)
        mac, ip, next_server = (g.decode("ascii") for g in found.groups())
        self.assertEqual(mac, vm.mac)
        self.assertTrue(ip.startswith(SUBNET + "."), ip)
        self.assertEqual(next_server, SUBNET + ".1")
        await wait_until(lambda: "sent {}/boot.ipxe to {}".format(self.net.tftp_root, ip) in self.net.dnsmasq_log(),
                         5, "dnsmasq logging the TFTP transfer")
        await vm.stop()
        return ip


class NftablesDnsmasqBoot(QemuBootBase, unittest.TestCase):
    """dnsmasq's DHCP and TFTP, filtered by the nftables driver on the bridge."""

    async def start_filtered_dnsmasq(self):
        await self.start_filter(nftables.NftablesDriver(self.net.runner, "inspectord", self.net.bridge))
        self.net.start_dnsmasq(dhcp=True)

    async def test_denied_mac_gets_no_offer(self):
        await self.start_filtered_dnsmasq()
        before = await self.driver.counters()
        vm = self.net.vm(VM_MAC)
        vm.start()
        # iPXE sends DISCOVERs for ~15 s, finds no boot file (IPv6 came up
        # from the router advertisement, IPv4 did not) and gives up.
        await vm.wait_for(rb"No more network devices", BOOT_TIMEOUT, "iPXE giving up")
        self.report("iPXE gave up", vm)
        await vm.stop()
        after = await self.driver.counters()
        dropped = after["denied"] - before["denied"]
        self.assertGreaterEqual(dropped, 2, (before, after))
        self.assertEqual(after["allowed"] - before["allowed"], 0, (before, after))
        console = vm.console.text(10**6)
        self.assertNotIn("net0: " + SUBNET, console)
        self.assertNotIn("INSPECTORD-PXE-OK", console)
        # The kernel dropped the DISCOVERs: dnsmasq never saw one.
        log = self.net.dnsmasq_log()
        self.assertEqual(re.findall(r"DHCP(?:DISCOVER|OFFER|REQUEST|ACK)\S* .*", log), [])
        print("  {} DHCP requests dropped by the nftables filter".format(dropped), file=sys.stderr)

    async def test_allowed_mac_loads_the_ipxe_script(self):
        await self.start_filtered_dnsmasq()
        await self.introspect(VM_MAC)
        before = await self.driver.counters()
        vm = self.net.vm(VM_MAC)
        vm.start()
        ip = await self.assert_boots_script(vm)
        after = await self.driver.counters()
        log = self.net.dnsmasq_log()
        self.assertIn("DHCPACK({}) {} {}".format(self.net.bridge, ip, VM_MAC), log)
        self.assertGreaterEqual(after["allowed"] - before["allowed"], 2, (before, after))  # DISCOVER, REQUEST
        self.assertEqual(after["denied"] - before["denied"], 0, (before, after))


class BuiltinServerBoot(QemuBootBase, unittest.TestCase):
    """inspectord's builtin DHCP server; dnsmasq only serves TFTP."""

    def make_driver(self):
        options = server.ServerOptions(
            server_address=SUBNET + ".1",
            range_start=SUBNET + ".100",
            range_end=SUBNET + ".150",
            next_server=SUBNET + ".1",
            ipxe_boot_file="boot.ipxe",
        )
        return builtin.BuiltinDriver(
            reactor, options, self.net.bridge, self.store,
            open_socket=lambda interface: in_netns(self.net.ns, server.open_socket, interface),
        )

    async def test_denied_mac_gets_no_offer(self):
        await self.start_filter(self.make_driver())
        self.net.start_dnsmasq(dhcp=False)
        vm = self.net.vm(VM_MAC)
        vm.start()
        await vm.wait_for(rb"No more network devices", BOOT_TIMEOUT, "iPXE giving up")
        self.report("iPXE gave up", vm)
        await vm.stop()
        console = vm.console.text(10**6)
        self.assertNotIn("net0: " + SUBNET, console)
        self.assertNotIn("INSPECTORD-PXE-OK", console)
        # The server saw the requests and refused them (what a node's status reports).
        seen = self.driver.seen.get(VM_MAC)
        self.assertIsNotNone(seen)
        self.assertEqual((seen["dhcp_message"], seen["allowed_by_filter"]), ("discover", False), seen)
        self.assertEqual(list(await self.store.dhcp_leases()), [])

    async def test_allowed_mac_loads_the_ipxe_script(self):
        await self.start_filter(self.make_driver())
        self.net.start_dnsmasq(dhcp=False)
        await self.introspect(VM_MAC)
        vm = self.net.vm(VM_MAC)
        vm.start()
        ip = await self.assert_boots_script(vm)
        seen = self.driver.seen.get(VM_MAC)
        self.assertTrue(seen["allowed_by_filter"], seen)
        leases = await self.store.dhcp_leases()
        self.assertIn((VM_MAC, ip), [(mac, address) for mac, address, _ in leases])
        log = self.net.dnsmasq_log()
        self.assertNotIn("DHCPOFFER", log)  # dnsmasq served no DHCP
        self.assertNotIn("DHCPACK", log)


class IptablesDnsmasqBoot(QemuBootBase, unittest.TestCase):
    """dnsmasq's DHCP and TFTP, filtered by the iptables driver (the default) on the bridge."""

    async def counters(self):
        rows = await self.driver.counters()
        return {
            "allowed": sum(p for p, target, _ in rows if target == "ACCEPT"),
            "dropped": sum(p for p, target, _ in rows if target == "DROP"),
        }

    async def test_boots_once_introspection_starts_during_dhcp(self):
        """The node is powered on before the filter opens: its first DISCOVERs are dropped, a retry is answered."""
        await self.start_filter(iptables.IptablesDriver(self.net.runner, "ironic-inspector", self.net.bridge))
        self.net.start_dnsmasq(dhcp=True)
        vm = self.net.vm(VM_MAC)
        vm.start()
        closed = await self.poll(self.counters, lambda c: c["dropped"] >= 1, BOOT_TIMEOUT,
                                 "a DHCP request dropped by the iptables chain", vm)
        self.report("first DISCOVER dropped", vm)
        self.assertEqual(closed["allowed"], 0, closed)
        await self.introspect(VM_MAC)
        ip = await self.assert_boots_script(vm)
        opened = await self.counters()
        self.assertGreaterEqual(opened["allowed"], 2, opened)  # DISCOVER, REQUEST
        self.assertIn("DHCPACK({}) {} {}".format(self.net.bridge, ip, VM_MAC), self.net.dnsmasq_log())
        # (iptables-restore resets the chain's counters at every sync: the drops were counted before opening.)
        print("  {} dropped before the filter opened, {} accepted after".format(closed["dropped"], opened["allowed"]),
              file=sys.stderr)
