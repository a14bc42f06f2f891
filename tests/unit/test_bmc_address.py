"""BMC addressing: driver_info fields, name resolution, the ramdisk's addresses."""

import socket

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from inspectord import bmc_address
from inspectord.threads import SynchronousRunner


def run(coro):
    return defer.Deferred.fromCoroutine(coro)


class FakeDNS:
    """``getaddrinfo`` for a few names; every other name fails like an unknown host."""

    def __init__(self, names):
        self.names = names
        self.asked = []

    def __call__(self, host, port):
        self.asked.append((host, port))
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
                for a in self.names[host]]


class RamdiskTests(SynchronousTestCase):
    def test_v4_and_v6_canonical_unset_dropped(self):
        data = {"inventory": {"bmc_address": "192.0.2.1", "bmc_v6address": "FD00:0::0200"}}
        self.assertEqual(bmc_address.from_ramdisk(data), ["192.0.2.1", "fd00::200"])
        for unset in ({"bmc_address": "0.0.0.0", "bmc_v6address": "::/0"}, {"bmc_address": "", "bmc_v6address": "::"},
                      {"bmc_address": None, "bmc_v6address": 5}):
            self.assertEqual(bmc_address.from_ramdisk({"inventory": unset}), [], unset)

    def test_flat_format_fields(self):
        self.assertEqual(bmc_address.from_ramdisk({"ipmi_address": "192.0.2.9", "ipmi_v6address": "fd00::9"}),
                         ["192.0.2.9", "fd00::9"])
        # The inventory wins over the flat fields.
        self.assertEqual(bmc_address.from_ramdisk({"ipmi_address": "192.0.2.9",
                                                   "inventory": {"bmc_address": "192.0.2.1"}}), ["192.0.2.1"])

    def test_preferred_follows_the_versions_order(self):
        data = {"inventory": {"bmc_address": "192.0.2.1", "bmc_v6address": "fd00::1"}}
        self.assertEqual(bmc_address.preferred(data, ["4", "6"]), "192.0.2.1")
        self.assertEqual(bmc_address.preferred(data, ["6", "4"]), "fd00::1")
        self.assertIsNone(bmc_address.preferred({"inventory": {"bmc_v6address": "fd00::1"}}, ["4"]))


class NodeTests(SynchronousTestCase):
    NODE = {"driver": "idrac-redfish", "driver_info": {
        "ipmi_address": " 10.0.0.1 ", "redfish_address": "https://[2001:DB8::7]:8000/redfish/v1",
        "idrac_redfish_address": "BMC-7.example.net", "ilo_address": "", "other_address": "192.0.2.99",
        "ipmi_port": 623}}

    def test_fields_ipmi_configured_and_driver_named(self):
        self.assertEqual(bmc_address.address_fields(self.NODE, ("redfish_address",)),
                         ["ipmi_address", "redfish_address", "idrac_redfish_address"])

    def test_hosts_are_spelled_once(self):
        self.assertEqual(bmc_address.node_hosts(self.NODE, ["redfish_address", "ilo_address"]),
                         {"10.0.0.1", "2001:db8::7", "bmc-7.example.net"})
        self.assertEqual(bmc_address.host("fe80::1%eth0"), "fe80::1")
        self.assertEqual(bmc_address.host("ipmi://[FD00::0001]:623"), "fd00::1")
        self.assertEqual(bmc_address.node_hosts({"driver_info": None}, ()), set())

    def test_addresses_resolve_names_in_the_pool(self):
        dns = FakeDNS({"bmc-7.example.net": ["192.0.2.7", "2001:db8::7%eth0"]})
        resolver = bmc_address.Resolver(SynchronousRunner(), getaddrinfo=dns)
        found = self.successResultOf(run(bmc_address.node_addresses(self.NODE, ["redfish_address"], resolver)))
        self.assertEqual(found, ["10.0.0.1", "192.0.2.7", "2001:db8::7"])
        self.assertEqual(dns.asked, [("bmc-7.example.net", None)])

    def test_unresolvable_name_gives_no_address(self):
        resolver = bmc_address.Resolver(SynchronousRunner(), getaddrinfo=FakeDNS({}))
        node = {"driver": "ipmi", "driver_info": {"ipmi_address": "gone.example.net"}}
        self.assertEqual(self.successResultOf(run(bmc_address.node_addresses(node, (), resolver))), [])

    def test_without_a_pool_names_are_not_resolved(self):
        resolver = bmc_address.Resolver(None, getaddrinfo=FakeDNS({"bmc-7.example.net": ["192.0.2.7"]}))
        found = self.successResultOf(run(bmc_address.node_addresses(self.NODE, (), resolver)))
        self.assertEqual(found, ["10.0.0.1"])
