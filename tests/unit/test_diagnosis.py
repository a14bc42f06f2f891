"""Diagnosis of waiting nodes from the DHCP requests the PXE filter saw."""

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from inspectord.store import schema
from tests.unit.helpers import Harness

MAC = "52:54:00:00:00:aa"
OTHER = "52:54:00:00:00:bb"


class RecordingFilter:
    """Records DHCP requests like the sniffer or the builtin server do."""

    def __init__(self):
        self.seen = {}

    def notify(self):
        pass

    def dhcp_seen(self, mac):
        return self.seen.get(mac)


class DiagnosisTests(SynchronousTestCase):
    def setUp(self):
        self.h = Harness(DEFAULT__timeout=60)
        self.filter = RecordingFilter()
        self.h.introspection._pxe_filter = self.filter
        self.uuid = self.h.fake.add_node(name="n", macs=[MAC, OTHER])
        code, _, _ = self.h.request("POST", "/v1/introspection/n")
        self.assertEqual(code, 202)
        self.h.flush()

    def status(self):
        return self.h.request("GET", "/v1/introspection/" + self.uuid)[2]

    def time_out(self):
        self.h.clock.advance(61)
        d = defer.Deferred.fromCoroutine(self.h.introspection.check_timeouts())
        self.assertEqual(self.successResultOf(d), [self.uuid])
        return self.status()["error"]

    def test_never_booted(self):
        self.assertEqual(self.status()["dhcp"], {"seen": False, "macs": [MAC, OTHER]})
        self.assertEqual(
            self.time_out(),
            "Introspection timeout: no DHCP request was seen from {}, {}: the node probably never PXE-booted".format(
                MAC, OTHER
            ),
        )

    def test_blocked_by_the_filter(self):
        now = self.h.clock.seconds()
        self.filter.seen[OTHER] = {"last_dhcp_request": now - 5, "dhcp_message": "discover", "allowed_by_filter": False}
        self.filter.seen[MAC] = {"last_dhcp_request": now - 50, "dhcp_message": "discover", "allowed_by_filter": True}
        dhcp = self.status()["dhcp"]
        self.assertEqual((dhcp["mac"], dhcp["allowed_by_filter"]), (OTHER, False))
        self.assertIn("was blocked by the PXE filter", self.time_out())

    def test_ramdisk_never_called_back(self):
        now = self.h.clock.seconds()
        self.filter.seen[MAC] = {"last_dhcp_request": now, "dhcp_message": "request", "allowed_by_filter": True}
        error = self.time_out()
        self.assertIn("but the ramdisk never called back", error)
        self.assertIn("request from " + MAC, error)

    def test_finished_nodes_carry_no_dhcp_view(self):
        self.time_out()
        self.assertNotIn("dhcp", self.status())

    def page(self):
        code, _, body = self.h.request("GET", "/v1/introspection?limit=10")
        self.assertEqual(code, 200)
        return body["introspection"]

    def spoil_ports(self):
        """Make every stored ``ports`` value undecodable: only a read that skips the column still works."""
        with self.h.store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE {} SET ports = 'not JSON'".format(schema.nodes.name))

    def test_a_page_shows_the_diagnosis(self):
        now = self.h.clock.seconds()
        self.filter.seen[MAC] = {"last_dhcp_request": now, "dhcp_message": "request", "allowed_by_filter": True}
        status, = self.page()
        self.assertEqual(status["state"], "waiting")
        self.assertEqual((status["dhcp"]["seen"], status["dhcp"]["mac"]), (True, MAC))

    def test_a_page_reads_the_ports_when_recording(self):
        """The counterpart of the next test: with a recording filter the ports are decoded."""
        self.spoil_ports()
        code, _, body = self.h.request("GET", "/v1/introspection?limit=10")
        self.assertEqual(code, 500)
        self.flushLoggedErrors()

    def test_without_recording_a_page_reads_no_ports(self):
        """Nothing records DHCP (noop, a firewall driver without sniffer): the ports are not even read."""
        self.h.introspection._pxe_filter = None
        self.spoil_ports()
        status, = self.page()
        self.assertEqual((status["uuid"], status["state"]), (self.uuid, "waiting"))
        self.assertNotIn("dhcp", status)

    def test_without_recording_the_timeout_message_is_plain(self):
        self.h.introspection._pxe_filter = None
        self.assertNotIn("dhcp", self.status())
        self.assertEqual(self.time_out(), "Introspection timeout")
