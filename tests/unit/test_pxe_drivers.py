"""PXE filter drivers: rules, sets and hostsdir files as pure functions, and what the drivers run."""

import os
import shutil
import tempfile

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord.pxe import dnsmasq, iptables, nftables
from inspectord.pxe.decisions import FilterState
from inspectord.pxe.process import CommandFailed, Result

from tests.unit.helpers import make_config

A, B, C, D = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c", "52:54:00:00:00:0d"

OPEN = FilterState(frozenset({A}), frozenset({C, B}), True)
CLOSED = FilterState(frozenset({A}), frozenset({B, C}), False)


class FakeRunner:
    """Records argv and stdin; answers from a script (default: exit 0, no output)."""

    def __init__(self):
        self.calls = []
        self.codes = {}
        self.outputs = {}
        self.fail_next = None

    async def run(self, argv, stdin=b"", ok=(0,)):
        argv = tuple(argv)
        self.calls.append((argv, stdin))
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        code = self.codes.get(argv[:3], 0)
        if code not in ok:
            raise CommandFailed(argv, "exited with code {}".format(code), code=code)
        return Result(code, self.outputs.get(argv, b""), b"")

    async def shell(self, command, ok=(0,)):
        return await self.run(("/bin/sh", "-c", command), ok=ok)


def run(test, coro):
    return test.successResultOf(defer.ensureDeferred(coro))


class IptablesRulesTests(SynchronousTestCase):
    def test_closed_lists_allowed_then_drops(self):
        self.assertEqual(
            iptables.restore_input("ironic-inspector", CLOSED).decode(),
            "*filter\n"
            ":ironic-inspector - [0:0]\n"
            "-A ironic-inspector -m mac --mac-source 52:54:00:00:00:0a -j ACCEPT\n"
            "-A ironic-inspector -j DROP\n"
            "COMMIT\n",
        )

    def test_open_drops_denied_then_accepts(self):
        self.assertEqual(
            iptables.chain_rules("c", OPEN),
            [
                "-A c -m mac --mac-source 52:54:00:00:00:0a -j ACCEPT",
                "-A c -m mac --mac-source 52:54:00:00:00:0b -j DROP",
                "-A c -m mac --mac-source 52:54:00:00:00:0c -j DROP",
                "-A c -j ACCEPT",
            ],
        )

    def test_jump_and_commands_by_ip_version(self):
        self.assertEqual(
            iptables.insert_jump_argv("c", "br0", "4"),
            ("iptables", "-w", "-I", "INPUT", "-i", "br0", "-p", "udp", "--dport", "67", "-j", "c"),
        )
        self.assertEqual(iptables.list_input_argv("6"), ("ip6tables", "-w", "-S", "INPUT"))
        self.assertIn("547", iptables.insert_jump_argv("c", "br0", "6"))
        self.assertEqual(iptables.restore_argv("4"), ("iptables-restore", "-w", "--noflush"))
        self.assertEqual(iptables.restore_argv("6"), ("ip6tables-restore", "-w", "--noflush"))

    def test_has_jump(self):
        listing = (
            "-P INPUT ACCEPT\n"
            "-A INPUT -i br1 -p udp -m udp --dport 67 -j c\n"
            "-A INPUT -i br0 -p udp -m udp --dport 547 -j c\n"
            "-A INPUT -i br0 -p tcp -m tcp --dport 67 -j c\n"
            "-A INPUT -i br0 -p udp -m udp --dport 67 -j other\n"
        )
        self.assertFalse(iptables.has_jump(listing, "c", "br0", "4"))
        self.assertTrue(iptables.has_jump(listing, "c", "br0", "6"))
        self.assertTrue(iptables.has_jump(listing + "-A INPUT -i br0 -p udp -m udp --dport 67 -j c\n", "c", "br0", "4"))

    def test_bad_names_refused(self):
        for chain, interface in (("a b", "br0"), ("c", "br0\n-A"), ("c", "x" * 16), ("", "br0")):
            self.assertRaises(errors.ConfigError, iptables.IptablesDriver, FakeRunner(), chain, interface)

    def test_parse_counters(self):
        text = (
            "Chain c (1 references)\n"
            "    pkts      bytes target     prot opt in     out     source               destination\n"
            "       3      984 ACCEPT     0    --  *      *       0.0.0.0/0            0.0.0.0/0"
            "            MAC 52:54:00:00:00:0A\n"
            "      12     3936 DROP       0    --  *      *       0.0.0.0/0            0.0.0.0/0\n"
        )
        self.assertEqual(iptables.parse_counters(text), [(3, "ACCEPT", A), (12, "DROP", None)])


class IptablesDriverTests(SynchronousTestCase):
    def test_full_sync_restores_then_heals_jump(self):
        runner = FakeRunner()
        driver = iptables.IptablesDriver(runner, "c", "br0")
        run(self, driver.apply(CLOSED))
        argvs = [argv for argv, _ in runner.calls]
        self.assertEqual(argvs[0], ("iptables-restore", "-w", "--noflush"))
        self.assertEqual(runner.calls[0][1], iptables.restore_input("c", CLOSED))
        self.assertEqual(argvs[1], ("iptables", "-w", "-S", "INPUT"))
        self.assertEqual(argvs[2], iptables.insert_jump_argv("c", "br0", "4"))

    def test_jump_present_not_inserted(self):
        runner = FakeRunner()
        runner.outputs[("iptables", "-w", "-S", "INPUT")] = b"-A INPUT -i br0 -p udp -m udp --dport 67 -j c\n"
        driver = iptables.IptablesDriver(runner, "c", "br0")
        run(self, driver.apply(CLOSED))
        self.assertEqual([argv[:3] for argv, _ in runner.calls],
                         [("iptables-restore", "-w", "--noflush"), ("iptables", "-w", "-S")])

    def test_incremental_sync_is_one_process(self):
        runner = FakeRunner()
        driver = iptables.IptablesDriver(runner, "c", "br0")
        run(self, driver.apply(OPEN, previous=CLOSED))
        self.assertEqual(len(runner.calls), 1)
        self.assertEqual(runner.calls[0][1], iptables.restore_input("c", OPEN))

    def test_failure_propagates(self):
        runner = FakeRunner()
        runner.fail_next = CommandFailed(("iptables-restore",), "cannot be started")
        driver = iptables.IptablesDriver(runner, "c", "br0")
        failure = self.failureResultOf(defer.ensureDeferred(driver.apply(CLOSED)), CommandFailed)
        self.assertIn("cannot be started", str(failure.value))


class NftablesRulesTests(SynchronousTestCase):
    def test_full_ruleset(self):
        text = nftables.full_ruleset("inspectord", "br0", "4", OPEN)
        lines = text.splitlines()
        self.assertIn("add element inet inspectord allowed_macs { 52:54:00:00:00:0a }", lines)
        self.assertIn("add element inet inspectord denied_macs { 52:54:00:00:00:0b, 52:54:00:00:00:0c }", lines)
        self.assertIn('add rule inet inspectord input iifname "br0" meta nfproto ipv4 udp dport 67 jump pxe', lines)
        self.assertEqual(lines[-1], 'add rule inet inspectord pxe counter name "other" accept')
        # Flushes come before the new contents, in the same file (one transaction).
        self.assertLess(lines.index("flush set inet inspectord denied_macs"),
                        lines.index("add element inet inspectord denied_macs { 52:54:00:00:00:0b, 52:54:00:00:00:0c }"))

    def test_closed_drops_the_rest_and_empty_sets_have_no_elements(self):
        text = nftables.full_ruleset("t", "br0", "6", FilterState())
        self.assertNotIn("add element", text)
        self.assertIn("meta nfproto ipv6 udp dport 547", text)
        self.assertTrue(text.endswith('add rule inet t pxe counter name "other" drop\n'))

    def test_incremental(self):
        new = FilterState(frozenset({B}), frozenset({A, C}), True)
        text = nftables.incremental_ruleset("t", OPEN, new)
        self.assertEqual(
            text.splitlines(),
            [
                "delete element inet t allowed_macs { 52:54:00:00:00:0a }",
                "delete element inet t denied_macs { 52:54:00:00:00:0b }",
                "add element inet t allowed_macs { 52:54:00:00:00:0b }",
                "add element inet t denied_macs { 52:54:00:00:00:0a }",
            ],
        )
        self.assertIsNone(nftables.incremental_ruleset("t", OPEN, OPEN))

    def test_incremental_mode_change_rewrites_chain(self):
        text = nftables.incremental_ruleset("t", OPEN, CLOSED)
        self.assertEqual(
            text.splitlines(),
            [
                "flush chain inet t pxe",
                'add rule inet t pxe ether saddr @allowed_macs counter name "allowed" accept',
                'add rule inet t pxe ether saddr @denied_macs counter name "denied" drop',
                'add rule inet t pxe counter name "other" drop',
            ],
        )

    def test_bad_names_refused(self):
        for table, interface in (("in spect", "br0"), ("t;flush ruleset", "br0"), ("t", 'br0"')):
            self.assertRaises(errors.ConfigError, nftables.NftablesDriver, FakeRunner(), table, interface)

    def test_parse_counters(self):
        text = (
            '{"nftables": [{"metainfo": {"version": "1.0.6"}}, '
            '{"counter": {"family": "inet", "name": "allowed", "table": "t", "packets": 2, "bytes": 600}}, '
            '{"counter": {"family": "inet", "name": "other", "table": "t", "packets": 7, "bytes": 2100}}]}'
        )
        self.assertEqual(nftables.parse_counters(text), {"allowed": 2, "other": 7})


class NftablesDriverTests(SynchronousTestCase):
    def test_full_then_incremental_then_nothing(self):
        runner = FakeRunner()
        driver = nftables.NftablesDriver(runner, "t", "br0")
        run(self, driver.apply(CLOSED))
        run(self, driver.apply(OPEN, previous=CLOSED))
        run(self, driver.apply(OPEN, previous=OPEN))
        self.assertEqual([argv for argv, _ in runner.calls], [("nft", "-f", "-")] * 2)
        self.assertEqual(runner.calls[0][1].decode(), nftables.full_ruleset("t", "br0", "4", CLOSED))
        self.assertEqual(runner.calls[1][1].decode(), nftables.incremental_ruleset("t", CLOSED, OPEN))


class DnsmasqFilesTests(SynchronousTestCase):
    def test_lines(self):
        self.assertEqual(dnsmasq.host_line(A, True), A + "\n")
        self.assertEqual(dnsmasq.host_line(A, False), A + ",ignore\n")
        self.assertEqual(dnsmasq.unknown_hosts_line(False), "*:*:*:*:*:*,ignore\n")
        self.assertEqual(dnsmasq.unknown_hosts_line(True), "*:*:*:*:*:*\n")

    def test_full_changes_only_what_differs(self):
        written = {A: True, B: True, D: False}
        # D (port deleted) is neither allowed nor denied: it follows unknown MACs.
        self.assertEqual(dnsmasq.full_changes(CLOSED, written), {B: False, C: False})
        self.assertEqual(dnsmasq.full_changes(OPEN, written), {B: False, C: False, D: True})
        self.assertEqual(dnsmasq.full_changes(OPEN, {A: True, B: False, C: False, D: True}), {})

    def test_incremental_equals_full(self):
        states = [
            FilterState(),
            CLOSED,
            OPEN,
            FilterState(frozenset({B}), frozenset({A, C}), True),
            FilterState(frozenset(), frozenset({A}), False),
            FilterState(frozenset({D}), frozenset({A}), True),
        ]
        stale = "52:54:00:00:00:ee"  # a port deleted before ``previous``: neither allowed nor denied
        for previous in states:
            for state in states:
                written = {stale: previous.allow_unknown}
                written.update(dnsmasq.full_changes(previous, written))
                full = dnsmasq.full_changes(state, dict(written))
                incremental = dnsmasq.incremental_changes(previous, state, dict(written))
                self.assertEqual(incremental, full, (previous, state))


class DnsmasqDriverTests(SynchronousTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.runner = FakeRunner()

    def driver(self, **kwargs):
        kwargs.setdefault("start_command", "start dnsmasq")
        kwargs.setdefault("stop_command", "stop dnsmasq")
        return dnsmasq.DnsmasqDriver(self.runner, lambda f, *a: defer.execute(f, *a), self.dir, **kwargs)

    def files(self):
        out = {}
        for name in os.listdir(self.dir):
            with open(os.path.join(self.dir, name)) as f:
                out[name] = f.read()
        return out

    def test_purge_write_start_once(self):
        with open(os.path.join(self.dir, "stale"), "w") as f:
            f.write("x")
        driver = self.driver()
        run(self, driver.apply(CLOSED))
        self.assertEqual(
            self.files(),
            {A: A + "\n", B: B + ",ignore\n", C: C + ",ignore\n", "unknown_hosts_filter": "*:*:*:*:*:*,ignore\n"},
        )
        self.assertEqual(self.runner.calls, [(("/bin/sh", "-c", "start dnsmasq"), b"")])
        run(self, driver.apply(CLOSED))
        self.assertEqual(len(self.runner.calls), 1)
        self.assertEqual(driver.last_written, 0)

    def test_removed_mac_rewritten_never_deleted(self):
        driver = self.driver()
        run(self, driver.apply(CLOSED))
        before = os.stat(os.path.join(self.dir, C)).st_mtime_ns
        # A's node finished and C's port was deleted, while unknown MACs are allowed.
        state = FilterState(frozenset({D}), frozenset({A, B}), True)
        run(self, driver.apply(state, previous=CLOSED))
        files = self.files()
        self.assertEqual(files[A], A + ",ignore\n")
        self.assertEqual(files[C], C + "\n")
        self.assertEqual(files[D], D + "\n")
        self.assertEqual(files["unknown_hosts_filter"], "*:*:*:*:*:*\n")
        self.assertEqual(driver.last_written, 4)  # A, C, D and the wildcard; B unchanged
        self.assertGreaterEqual(os.stat(os.path.join(self.dir, C)).st_mtime_ns, before)
        self.assertFalse([n for n in os.listdir(self.dir) if n.startswith(".")])

    def test_unchanged_files_not_rewritten(self):
        driver = self.driver()
        run(self, driver.apply(CLOSED))
        os.remove(os.path.join(self.dir, B))  # would be rewritten if the driver rewrote everything
        run(self, driver.apply(FilterState(frozenset({A, D}), frozenset({B, C}), False), previous=CLOSED))
        self.assertNotIn(B, self.files())
        self.assertEqual(driver.last_written, 1)

    def test_no_purge_reads_back(self):
        with open(os.path.join(self.dir, B), "w") as f:
            f.write(B + ",ignore\n")
        with open(os.path.join(self.dir, "unknown_hosts_filter"), "w") as f:
            f.write("*:*:*:*:*:*,ignore\n")
        driver = self.driver(purge=False)
        run(self, driver.apply(CLOSED))
        self.assertEqual(driver.written, {A: True, B: False, C: False})
        self.assertEqual(driver.last_written, 2)  # A and C; B and the wildcard were right

    def test_failed_write_is_read_back_not_purged(self):
        driver = self.driver()
        first = FilterState(frozenset({A, D}), frozenset({B, C}), False)
        run(self, driver.apply(first))
        calls = []

        def broken(f, *args):
            calls.append(f)
            return defer.fail(OSError(28, "No space left on device"))

        driver._thread = broken
        self.failureResultOf(defer.ensureDeferred(driver.apply(OPEN, previous=first)), OSError)
        driver._thread = lambda f, *a: defer.execute(f, *a)
        run(self, driver.apply(OPEN))
        files = self.files()
        self.assertEqual(files[A], A + "\n")
        self.assertEqual(files["unknown_hosts_filter"], "*:*:*:*:*:*\n")
        # D's file was read back, not purged (dnsmasq would not notice a deletion).
        self.assertEqual(files[D], D + "\n")
        self.assertEqual(calls, [dnsmasq.thd_write])

    def test_start_failure_retried_then_stop(self):
        driver = self.driver()
        self.runner.fail_next = CommandFailed(("/bin/sh",), "exited with code 127")
        self.failureResultOf(defer.ensureDeferred(driver.apply(CLOSED)), CommandFailed)
        run(self, driver.apply(CLOSED))
        run(self, driver.stop())
        self.assertEqual(
            [argv[-1] for argv, _ in self.runner.calls], ["start dnsmasq", "start dnsmasq", "stop dnsmasq"]
        )


class FromConfigTests(SynchronousTestCase):
    """Each driver is built from its own sections."""

    def test_iptables(self):
        config = make_config(iptables__firewall_chain="discovery", iptables__dnsmasq_interface="br-pxe",
                             iptables__ip_version="6")
        driver = iptables.IptablesDriver.from_config(config.iptables, FakeRunner())
        self.assertEqual((driver.chain, driver.interface, driver.ip_version), ("discovery", "br-pxe", "6"))
        bad = make_config(iptables__firewall_chain="no chain")
        self.assertRaises(errors.ConfigError, iptables.IptablesDriver.from_config, bad.iptables, FakeRunner())

    def test_nftables(self):
        config = make_config(nftables__table="pxe", iptables__dnsmasq_interface="br-pxe")
        driver = nftables.NftablesDriver.from_config(config.nftables, config.iptables, FakeRunner())
        self.assertEqual((driver.table, driver.interface, driver.ip_version), ("pxe", "br-pxe", "4"))

    def test_dnsmasq(self):
        config = make_config(dnsmasq_pxe_filter__dhcp_hostsdir="/run/hostsdir", dnsmasq_pxe_filter__purge_dhcp_hostsdir=False)
        driver = dnsmasq.DnsmasqDriver.from_config(config.dnsmasq_pxe_filter, FakeRunner(), None)
        self.assertEqual((driver.hostsdir, driver._purge), ("/run/hostsdir", False))
