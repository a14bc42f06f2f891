"""DHCP requests seen, shared by instances through the database."""

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord.dhcp import shared
from inspectord.dhcp.sniffer import DHCPSeen
from inspectord.store import SQLStore, make_engine
from inspectord.store.pool import SynchronousPool

MAC, OTHER = "52:54:00:00:00:0a", "52:54:00:00:00:0b"


class SharedTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1_800_000_000)
        self.store = SQLStore(make_engine("sqlite://"), SynchronousPool())
        self.store.upgrade()
        self.puts = []
        put = self.store.put_dhcp_seen
        self.store.put_dhcp_seen = lambda rows: (self.puts.append(list(rows)), put(rows))[1]

    def instance(self):
        seen = DHCPSeen()
        sharing = shared.SharedDHCPSeen(self.store, seen, self.clock)
        sharing.startService()
        self.addCleanup(lambda: sharing.running and self.successResultOf(sharing.stopService()))
        return seen, sharing

    def test_seen_on_one_instance_known_to_the_other_within_a_second(self):
        a, _ = self.instance()
        b, _ = self.instance()
        a.record(MAC, "discover", False, self.clock.seconds())
        self.assertIsNone(b.get(MAC))
        self.clock.advance(shared.INTERVAL)
        self.clock.advance(shared.INTERVAL)
        got = b.get(MAC)
        self.assertEqual((got["dhcp_message"], got["allowed_by_filter"]), ("discover", False))
        self.assertAlmostEqual(got["last_dhcp_request"], a.get(MAC)["last_dhcp_request"], places=3)

    def test_many_packets_one_write(self):
        a, _ = self.instance()
        for i in range(50):
            a.record(MAC, "discover", True, self.clock.seconds() + i / 100)
            a.record(OTHER, "request", False, self.clock.seconds() + i / 100)
        self.puts.clear()
        self.clock.advance(shared.INTERVAL)
        self.assertEqual(len(self.puts), 1)
        self.assertEqual(sorted(r[0] for r in self.puts[0]), [MAC, OTHER])

    def test_restart_reads_what_was_seen_before(self):
        a, sharing = self.instance()
        a.record(MAC, "request", True, self.clock.seconds())
        self.successResultOf(sharing.stopService())  # the last write at stop
        b, _ = self.instance()
        self.clock.advance(0)
        self.assertEqual(b.get(MAC)["dhcp_message"], "request")

    def test_newer_request_wins_whoever_writes_last(self):
        a, _ = self.instance()
        b, _ = self.instance()
        now = self.clock.seconds()
        a.record(MAC, "request", True, now)
        b.record(MAC, "discover", False, now - 5)
        self.clock.advance(shared.INTERVAL)
        self.clock.advance(shared.INTERVAL)
        self.assertEqual(a.get(MAC)["dhcp_message"], "request")
        self.assertEqual(b.get(MAC)["dhcp_message"], "request")
        self.assertEqual(self.store.thd_dhcp_seen_since(None)[0][2], "request")

    def test_unreachable_database_keeps_rows_for_later(self):
        a, sharing = self.instance()
        self.store.put_dhcp_seen = lambda rows: defer.fail(errors.InspectordError("database is gone"))
        a.record(MAC, "discover", True, self.clock.seconds())
        self.clock.advance(shared.INTERVAL)
        self.assertEqual(sharing.failures, 1)
        del self.store.put_dhcp_seen
        self.clock.advance(shared.INTERVAL)
        self.assertEqual(sharing.failures, 0)
        self.assertEqual([r[0] for r in self.store.thd_dhcp_seen_since(None)], [MAC])
