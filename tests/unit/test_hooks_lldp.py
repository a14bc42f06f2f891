"""LLDP: the TLV parser, the lldp_basic and local_link_connection hooks.

The TLVs are tests/fixtures/lldp-switches.json: one LLDPDU each of a Cisco
Nexus, an Arista, a Juniper, a Cumulus (IPv6-only management) and an HPE
switch (chassis ID as a network address), and a misbehaving agent.
"""

from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from inspectord.hooks import lldp_tlvs
from inspectord.hooks.local_link_connection import LocalLinkConnectionHook, acceptable
from inspectord.testing import _local_link_connection_problem
from tests.unit.helpers import Harness, fixture
from tests.unit.test_hooks import DEFAULT, FIXTURE_MAC, all_collectors, make_record, run_hooks

SWITCHES = fixture("lldp-switches.json")["switches"]
IB_MAC = "00:02:c9:a1:b2:c3"
IB_CLIENT_ID = "ff:00:00:00:00:00:02:00:00:02:c9:00:00:02:c9:03:00:a1:b2:c3"


def tlvs(switch):
    return SWITCHES[switch]["tlvs"]


def parse(switch):
    warnings = []
    return lldp_tlvs.parse(tlvs(switch), warnings.append), warnings


def lldp_payload(*switches, ib=None):
    """The real payload with one interface per switch name (None: no LLDP data).

    Interfaces are eth0, eth1... with MACs 02:fc:00:00:00:01, :02...; ``ib``
    adds an InfiniBand interface ib0 connected to that switch.
    """
    data = all_collectors()
    template = data["inventory"]["interfaces"][0]
    interfaces = []
    for i, switch in enumerate(switches):
        interfaces.append(dict(
            template,
            name="eth{}".format(i),
            mac_address="02:fc:00:00:00:{:02x}".format(i + 1),
            ipv4_address="192.0.2.{}".format(2 + i),
            ipv6_address=None,
            lldp=tlvs(switch) if switch else None,
        ))
    if ib:
        interfaces.append(dict(template, name="ib0", mac_address=IB_MAC, client_id=IB_CLIENT_ID,
                               ipv4_address="198.51.100.9", ipv6_address=None, driver="mlx5_core",
                               lldp=tlvs(ib)))
    data["inventory"]["interfaces"] = interfaces
    return data


class ParserTests(SynchronousTestCase):
    def test_cisco_nexus(self):
        values, warnings = parse("cisco-nexus-93180yc-fx")
        self.assertEqual(warnings, [])  # DCBX subtypes of 802.1 are ignored quietly
        self.assertEqual(values, {
            "switch_chassis_id": "00:3a:9c:5e:71:a8",
            "switch_port_id": "Ethernet1/17",
            "switch_port_description": "r12-u07-host eth0",
            "switch_system_name": "leaf-r12-a",
            "switch_system_description": "Cisco Nexus Operating System (NX-OS) Software 9.3(10)\n"
                                         "TAC support: http://www.cisco.com/tac\n"
                                         "Copyright (c) 2002-2022, Cisco Systems, Inc. All rights reserved.",
            "switch_capabilities_support": ["Bridge", "Router"],
            "switch_capabilities_enabled": ["Bridge", "Router"],
            "switch_mgmt_addresses": ["10.20.0.12", "00:3a:9c:5e:71:a8"],
            "switch_port_untagged_vlan_id": 100,
        })

    def test_arista_trunk_in_a_port_channel(self):
        values, warnings = parse("arista-7050sx3-48yc12")
        self.assertEqual(warnings, [])
        self.assertEqual(values["switch_port_id"], "Ethernet12")
        self.assertEqual(values["switch_system_name"], "tor-r12-b.dc1.example.net")
        self.assertEqual(values["switch_port_vlans"], [{"name": "tenant-a", "id": 101}, {"name": "tenant-b", "id": 102}])
        self.assertEqual(values["switch_port_untagged_vlan_id"], 1)
        self.assertEqual(
            (values["switch_port_link_aggregation_enabled"], values["switch_port_link_aggregation_support"],
             values["switch_port_link_aggregation_id"]),
            (True, True, 1000012),
        )
        self.assertEqual(values["switch_port_mau_type"], "10GBASE-SR")
        self.assertEqual(values["switch_port_physical_capabilities"], [])
        self.assertEqual(values["switch_port_autonegotiation_support"], False)
        self.assertEqual(values["switch_port_mtu"], 9236)
        self.assertEqual(values["switch_mgmt_addresses"], ["192.0.2.33"])

    def test_juniper_copper_port(self):
        values, warnings = parse("juniper-ex4300-48t")
        # Juniper's own OUI (chassis serial number) is not known: skipped with a warning.
        self.assertEqual(len(warnings), 1)
        self.assertIn("009069", warnings[0])
        self.assertEqual(values["switch_port_id"], "523")
        self.assertEqual(values["switch_port_description"], "ge-0/0/12")
        self.assertEqual(values["switch_port_vlans"], [{"name": "oob-mgmt", "id": 110}])
        self.assertEqual(
            (values["switch_port_protocol_vlan_enabled"], values["switch_port_protocol_vlan_support"],
             values["switch_port_protocol_vlan_ids"]),
            (True, True, [110]),
        )
        self.assertEqual(values["switch_port_physical_capabilities"], [
            "1000BASE-T fdx", "100BASE-TX fdx", "100BASE-TX hdx", "10BASE-T fdx", "10BASE-T hdx"])
        self.assertEqual(values["switch_port_mau_type"], "1000BASE-T full duplex")
        self.assertEqual(
            (values["switch_port_autonegotiation_enabled"], values["switch_port_autonegotiation_support"]),
            (True, True),
        )
        self.assertEqual(
            (values["switch_port_link_aggregation_enabled"], values["switch_port_link_aggregation_support"]),
            (False, True),
        )
        self.assertEqual(values["switch_port_mtu"], 1514)
        self.assertTrue(values["switch_system_description"].startswith("Juniper Networks, Inc. ex4300-48t"))

    def test_cumulus_ipv6_management(self):
        values, warnings = parse("cumulus-msn2700-ipv6")
        self.assertEqual(warnings, [])
        self.assertEqual(values["switch_mgmt_addresses"], ["2001:db8:12::7"])
        self.assertEqual(values["switch_port_mau_type"], "Unknown")
        self.assertEqual(values["switch_port_mtu"], 9216)

    def test_chassis_id_network_address(self):
        values, _ = parse("hpe-procurve-network-address-chassis")
        self.assertEqual(values["switch_chassis_id"], "192.0.2.77")
        self.assertEqual(values["switch_port_id"], "12")
        self.assertEqual(values["switch_capabilities_enabled"], ["Bridge"])

    def test_broken_agent(self):
        values, warnings = parse("broken-nic-agent")
        self.assertEqual(values, {
            "switch_port_id": "Ethernet1",
            "switch_port_description": "port 1/1",
            "switch_port_link_aggregation_enabled": False,
            "switch_port_link_aggregation_support": True,
            "switch_port_link_aggregation_id": 7,
        })
        self.assertEqual(len(warnings), 5, warnings)
        self.assertIn("unknown chassis ID subtype 0", " ".join(warnings))

    def test_first_value_wins_lists_accumulate(self):
        values = lldp_tlvs.parse([
            [1, "04112233aabbcc"], [1, "04332211ddeeff"],
            [8, "0501c000020f020000000000"], [8, "0501c0000210020000000000"],
            [127, "0080c20206000a"], [127, "0080c202020014"],
            [127, "0080c204080026424203000000"],
        ])
        self.assertEqual(values["switch_chassis_id"], "11:22:33:aa:bb:cc")
        self.assertEqual(values["switch_mgmt_addresses"], ["192.0.2.15", "192.0.2.16"])
        self.assertEqual(values["switch_port_protocol_vlan_ids"], [10, 20])
        self.assertEqual(values["switch_port_protocol_vlan_enabled"], True)
        self.assertEqual(values["switch_protocol_identities"], ["0026424203000000"])

    def test_org_specific_tlvs_first(self):
        # ironic-inspector lost them when nothing came before; not here.
        values = lldp_tlvs.parse([[127, "00120f042328"], [1, "04112233aabbcc"]])
        self.assertEqual(values, {"switch_port_mtu": 9000, "switch_chassis_id": "11:22:33:aa:bb:cc"})

    def test_truncated_and_unknown(self):
        warnings = []
        values = lldp_tlvs.parse([
            [127, "00120f04"], [127, "0080c201"], [127, "00120f01036c11ffff"], [7, "0014"],
            [8, "0507c000020f020000000000"],  # unknown address family: ignored quietly
            [10, "04112233aabbcc"], [127, "0080c20f00"],  # unknown TLV type and 802.1 subtype: ignored
        ], warnings.append)
        self.assertEqual(values, {})
        self.assertEqual(len(warnings), 4, warnings)

    def test_each_autonegotiation_capability_from_its_own_bit(self):
        # Only "10BASE-T full duplex" advertised (ironic-inspector read it from the half-duplex bit).
        self.assertEqual(lldp_tlvs.parse([[127, "00120f010320000010"]])["switch_port_physical_capabilities"],
                         ["10BASE-T fdx"])
        self.assertEqual(lldp_tlvs.parse([[127, "00120f010340000010"]])["switch_port_physical_capabilities"],
                         ["10BASE-T hdx"])

    def test_empty_strings_kept(self):
        self.assertEqual(lldp_tlvs.parse([[4, ""], [5, ""]]),
                         {"switch_port_description": "", "switch_system_name": ""})


class LLDPBasicHookTests(SynchronousTestCase):
    HOOKS = DEFAULT + ",lldp_basic"

    def test_each_interface_gets_its_switch(self):
        payload = lldp_payload("cisco-nexus-93180yc-fx", "arista-7050sx3-48yc12", None)
        data, _ = run_hooks(payload, self.HOOKS, processing__add_ports="all")
        interfaces = data["all_interfaces"]
        self.assertEqual(interfaces["eth0"]["lldp_processed"]["switch_system_name"], "leaf-r12-a")
        self.assertEqual(interfaces["eth1"]["lldp_processed"]["switch_system_name"], "tor-r12-b.dc1.example.net")
        self.assertNotIn("lldp_processed", interfaces["eth2"])

    def test_lldp_raw_wins(self):
        payload = lldp_payload("cisco-nexus-93180yc-fx")
        payload["lldp_raw"] = {"eth0": tlvs("juniper-ex4300-48t")}
        data, _ = run_hooks(payload, self.HOOKS)
        self.assertEqual(data["all_interfaces"]["eth0"]["lldp_processed"]["switch_system_name"], "ex4300-oob-r12")

    def test_interface_without_valid_mac_skipped(self):
        payload = lldp_payload("cisco-nexus-93180yc-fx", "arista-7050sx3-48yc12")
        payload["inventory"]["interfaces"][1]["mac_address"] = "not-a-mac"
        data, _ = run_hooks(payload, self.HOOKS)
        self.assertEqual(sorted(data["all_interfaces"]), ["eth0"])

    def test_real_payload_has_no_lldp(self):
        data, node = run_hooks(all_collectors(), self.HOOKS)
        self.assertNotIn("lldp_processed", data["all_interfaces"]["eth0"])

    def test_stored_and_used_by_rules(self):
        h = Harness(processing__processing_hooks=self.HOOKS, processing__store_data="database")
        uuid = h.fake.add_node(macs=[FIXTURE_MAC])
        rule = {
            "conditions": [{"op": "eq", "field": "data://all_interfaces.eth0.lldp_processed.switch_port_mtu",
                            "value": 9236}],
            "actions": [{"action": "set-attribute", "path": "/extra/switch",
                         "value": "{data[all_interfaces][eth0][lldp_processed][switch_system_name]}"}],
        }
        self.assertEqual(h.request("POST", "/v1/rules", rule)[0], 201)
        h.request("POST", "/v1/introspection/" + uuid)
        self.assertEqual(h.request("POST", "/v1/continue", lldp_payload("arista-7050sx3-48yc12"))[0], 200)
        self.assertEqual(h.fake.nodes[uuid]["extra"]["switch"], "tor-r12-b.dc1.example.net")
        code, _, stored = h.request("GET", "/v1/introspection/{}/data".format(uuid))
        self.assertEqual(code, 200)
        self.assertEqual(stored["all_interfaces"]["eth0"]["lldp_processed"]["switch_port_vlans"][1]["id"], 102)


class LocalLinkConnectionTests(SynchronousTestCase):
    WITH_BASIC = DEFAULT + ",lldp_basic,local_link_connection"
    RAW_ONLY = DEFAULT + ",local_link_connection"

    def test_new_ports_from_processed_and_from_raw(self):
        payload = lldp_payload("cisco-nexus-93180yc-fx", "juniper-ex4300-48t")
        for hooks in (self.WITH_BASIC, self.RAW_ONLY):
            _, node = run_hooks(payload, hooks)
            ports = {p["address"]: p for p in node.update.new_ports}
            self.assertEqual(ports["02:fc:00:00:00:01"]["local_link_connection"], {
                "switch_id": "00:3a:9c:5e:71:a8", "port_id": "Ethernet1/17", "switch_info": "leaf-r12-a"}, hooks)
            self.assertEqual(ports["02:fc:00:00:00:02"]["local_link_connection"], {
                "switch_id": "78:fe:3d:4a:5b:c0", "port_id": "523", "switch_info": "ex4300-oob-r12"}, hooks)

    def warnings(self):
        events = []
        self.patch(LocalLinkConnectionHook, "log", Logger(observer=events.append))
        return events

    def assertSkippedWithWarning(self, events, mac, hooks):
        warned = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn and e.get("mac") == mac]
        self.assertEqual(len(warned), 1, hooks)
        self.assertIn("port " + mac, warned[0])
        self.assertIn("switch_id", warned[0])

    def test_chassis_id_that_is_not_a_mac(self):
        """A port_id without switch_id is refused by Ironic: the port gets no local_link_connection."""
        for hooks in (self.WITH_BASIC, self.RAW_ONLY):
            events = self.warnings()
            _, node = run_hooks(lldp_payload("hpe-procurve-network-address-chassis"), hooks)
            port, = node.update.new_ports
            self.assertNotIn("local_link_connection", port, hooks)
            self.assertSkippedWithWarning(events, port["address"], hooks)

    def test_broken_agent_without_chassis_id(self):
        for hooks in (self.WITH_BASIC, self.RAW_ONLY):
            events = self.warnings()
            _, node = run_hooks(lldp_payload("broken-nic-agent"), hooks)
            port, = node.update.new_ports
            self.assertNotIn("local_link_connection", port, hooks)
            self.assertSkippedWithWarning(events, port["address"], hooks)

    def test_existing_switch_id_makes_a_port_id_acceptable(self):
        """A port that has a switch_id already may get the new port_id alone."""
        ports = {FIXTURE_MAC: {"uuid": "p1", "pxe_enabled": True,
                               "local_link_connection": {"switch_id": "00:3a:9c:5e:71:a8", "port_id": "1"}}}
        _, node = run_hooks(lldp_payload("broken-nic-agent"), self.RAW_ONLY, record=make_record(ports=ports))
        self.assertEqual(node.update.port_patches,
                         {"p1": [{"op": "add", "path": "/local_link_connection/port_id", "value": "Ethernet1"}]})

    def test_acceptable_as_ironic_schema(self):
        for llc, expected in [
            ({}, True),
            ({"port_id": "1", "switch_id": "00:3a:9c:5e:71:a8"}, True),
            ({"port_id": "1", "hostname": "nic-host"}, True),
            ({"network_type": "unmanaged"}, True),
            ({"port_id": "1"}, False),
            ({"port_id": "1", "switch_info": "leaf"}, False),
            ({"switch_info": "leaf"}, False),
        ]:
            self.assertEqual(acceptable(llc), expected, llc)
            self.assertEqual(_local_link_connection_problem(llc) is None, expected, llc)

    def test_end_to_end_port_without_chassis_mac_still_created(self):
        """Against the fake Ironic, which refuses a lone port_id as Ironic does: the port is created."""
        h = Harness(processing__processing_hooks=self.WITH_BASIC)
        uuid = h.fake.add_node(macs=[FIXTURE_MAC])
        h.request("POST", "/v1/introspection/" + uuid)
        payload = lldp_payload("cisco-nexus-93180yc-fx", "hpe-procurve-network-address-chassis")
        self.assertEqual(h.request("POST", "/v1/continue", payload)[0], 200)
        self.assertEqual(h.request("GET", "/v1/introspection/" + uuid)[2]["state"], "finished")
        llc = {p["address"]: p.get("local_link_connection") for p in h.fake.node_ports(uuid)}
        self.assertEqual(llc["02:fc:00:00:00:01"]["port_id"], "Ethernet1/17")
        self.assertIn("02:fc:00:00:00:02", llc)
        self.assertFalse(llc["02:fc:00:00:00:02"])

    def test_existing_port(self):
        current = {"switch_id": "00:3a:9c:5e:71:a8", "port_id": "Ethernet1/9", "switch_info": "leaf-r12-a"}
        ports = {FIXTURE_MAC: {"uuid": "p1", "pxe_enabled": True, "local_link_connection": current}}
        record = make_record(ports=ports)
        _, node = run_hooks(lldp_payload("cisco-nexus-93180yc-fx"), self.WITH_BASIC, record=record)
        # Only what changed is sent.
        self.assertEqual(node.update.port_patches,
                         {"p1": [{"op": "add", "path": "/local_link_connection/port_id", "value": "Ethernet1/17"}]})
        _, node = run_hooks(lldp_payload("cisco-nexus-93180yc-fx"), self.WITH_BASIC, record=record,
                            processing__overwrite_existing=False)
        self.assertEqual(node.update.port_patches, {})

    def test_missing_keys_added_without_overwrite(self):
        ports = {FIXTURE_MAC: {"uuid": "p1", "pxe_enabled": True, "local_link_connection": {"port_id": "Eth9"}}}
        _, node = run_hooks(lldp_payload("cisco-nexus-93180yc-fx"), self.RAW_ONLY, record=make_record(ports=ports),
                            processing__overwrite_existing=False)
        self.assertEqual(sorted(op["path"] for op in node.update.port_patches["p1"]),
                         ["/local_link_connection/switch_id", "/local_link_connection/switch_info"])

    def test_unchanged_port_not_patched(self):
        current = {"switch_id": "00:3a:9c:5e:71:a8", "port_id": "Ethernet1/17", "switch_info": "leaf-r12-a"}
        ports = {FIXTURE_MAC: {"uuid": "p1", "pxe_enabled": True, "local_link_connection": current}}
        _, node = run_hooks(lldp_payload("cisco-nexus-93180yc-fx"), self.WITH_BASIC, record=make_record(ports=ports))
        self.assertEqual(node.update.port_patches, {})

    def test_infiniband_port_keeps_client_id(self):
        _, node = run_hooks(lldp_payload("cisco-nexus-93180yc-fx", ib="arista-7050sx3-48yc12"), self.WITH_BASIC)
        ib = [p for p in node.update.new_ports if p["address"] == IB_MAC][0]
        self.assertEqual(ib["extra"], {"client-id": IB_CLIENT_ID})
        self.assertEqual(ib["local_link_connection"]["port_id"], "Ethernet12")

    def test_interface_without_port_skipped(self):
        payload = lldp_payload("cisco-nexus-93180yc-fx", "juniper-ex4300-48t")
        payload["boot_interface"] = "01-02-fc-00-00-00-01"  # add_ports=pxe: only eth0 gets a port
        _, node = run_hooks(payload, self.WITH_BASIC)
        self.assertEqual([p["address"] for p in node.update.new_ports], ["02:fc:00:00:00:01"])

    def test_needs_validate_interfaces_first(self):
        from inspectord import errors
        from tests.unit.helpers import make_config

        with self.assertRaises(errors.ConfigError) as caught:
            make_config(processing__processing_hooks="ramdisk_error,local_link_connection,validate_interfaces")
        self.assertIn("requires the following hooks to be enabled before it: validate_interfaces", str(caught.exception))

    def test_end_to_end_one_request_per_port(self):
        h = Harness(processing__processing_hooks=self.WITH_BASIC)
        uuid = h.fake.add_node(macs=[FIXTURE_MAC])
        existing = h.fake.node_ports(uuid)[0]["uuid"]
        h.request("POST", "/v1/introspection/" + uuid)
        h.fake.requests.clear()
        payload = lldp_payload("cisco-nexus-93180yc-fx", "arista-7050sx3-48yc12")
        self.assertEqual(h.request("POST", "/v1/continue", payload)[0], 200)
        writes = [r for r in h.fake.requests if r[0] != "GET"]
        self.assertEqual(sorted(writes), sorted([
            ("PATCH", "/v1/nodes/" + uuid), ("POST", "/v1/ports"), ("PATCH", "/v1/ports/" + existing),
            ("PUT", "/v1/nodes/{}/states/power".format(uuid)),
        ]))
        llc = {p["address"]: p.get("local_link_connection") for p in h.fake.node_ports(uuid)}
        self.assertEqual(llc["02:fc:00:00:00:01"]["port_id"], "Ethernet1/17")
        self.assertEqual(llc["02:fc:00:00:00:02"]["switch_id"], "44:4c:a8:e1:02:3f")


class RecordedPortTests(SynchronousTestCase):
    """What Introspection records of existing ports is what the hooks compare with."""

    def test_unchanged_connection_of_an_existing_port_not_sent(self):
        h = Harness(processing__processing_hooks=LocalLinkConnectionTests.WITH_BASIC)
        uuid = h.fake.add_node(macs=[FIXTURE_MAC])
        port = h.fake.node_ports(uuid)[0]
        port["local_link_connection"] = {"switch_id": "44:4c:a8:e1:02:3f", "port_id": "Ethernet12",
                                         "switch_info": "tor-r12-b.dc1.example.net"}
        port["physical_network"] = "physnet1"
        h.request("POST", "/v1/introspection/" + uuid)
        stored = self.successResultOf(h.store.get_node(uuid)).ports[FIXTURE_MAC]
        self.assertEqual(stored["local_link_connection"]["port_id"], "Ethernet12")
        self.assertEqual(stored["physical_network"], "physnet1")
        self.assertEqual(h.request("POST", "/v1/continue", lldp_payload("arista-7050sx3-48yc12"))[0], 200)
        self.assertNotIn(("PATCH", "/v1/ports/" + port["uuid"]), h.fake.requests)
