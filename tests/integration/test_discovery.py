"""Discovery end to end: real twistd inspectord with node_not_found_hook=enroll, real Ironic.

An unknown machine posts real IPA data; a node appears in Ironic with its
ports (local_link_connection from LLDP), and an introspection rule fills in
its driver_info.  Machines Ironic knows are refused; the per-source limit
holds.
"""

import itertools

from tests.integration.base import IntegrationCase, ipa_payload, new_macs
from tests.unit.helpers import fixture as unit_fixture

_bmc = itertools.count(10)
LLDP = unit_fixture("lldp-switches.json")["switches"]

DISCOVERY_CONFIG = """
[processing]
node_not_found_hook = enroll
processing_hooks = $default_processing_hooks,extra_hardware,lldp_basic,local_link_connection

[discovery]
enroll_node_fields = resource_class:discovered

[discovery_limits]
per_source = {per_source}
"""

RULE = {
    "description": "credentials of discovered machines",
    "conditions": [{"op": "eq", "field": "data://auto_discovered", "value": True}],
    "actions": [
        {"action": "set-attribute", "path": "/driver_info/ipmi_username", "value": "admin"},
        {"action": "set-attribute", "path": "/driver_info/ipmi_password", "value": "s3cret"},
        {"action": "set-attribute", "path": "/extra/vendor",
         "value": "{data[inventory][system_vendor][manufacturer]}"},
    ],
}


def unknown_machine(macs, bmc=None, lldp="arista-7050sx3-48yc12"):
    """Real IPA data (all collectors) of a machine nobody enrolled; a unique BMC address."""
    data = ipa_payload(macs, "ipa-payload-all-collectors.json")
    data["inventory"]["bmc_address"] = bmc or "203.0.113.{}".format(next(_bmc))
    data["inventory"]["interfaces"][0]["lldp"] = LLDP[lldp]["tlvs"]
    return data


class DiscoveryTests(IntegrationCase):
    extra_config = DISCOVERY_CONFIG.format(per_source=10)

    def nodes_with(self, mac):
        return [p.node_uuid for p in self.client.port.list(address=mac, detail=True)]

    def test_unknown_machine_enrolled_with_ports_and_rule_applied(self):
        status, _, rule = self.inspectord.call("POST", "/v1/rules", RULE)
        self.assertEqual(status, 201, rule)
        macs = new_macs(2)
        data = unknown_machine(macs)
        status, _, body = self.inspectord.call("POST", "/v1/continue", data)
        self.assertEqual(status, 200, body)
        uuid = body["uuid"]
        result = self.inspectord.wait_finished(uuid)
        self.assertIsNone(result["error"], self.inspectord.log_tail())

        # Powered off once processed, as any node (Ironic applies it asynchronously).
        node = self.wait_power_state(uuid, "power off")
        self.assertEqual(node.driver, "fake-hardware")
        self.assertEqual(node.provision_state, "enroll")
        self.assertEqual(node.resource_class, "discovered")
        self.assertEqual(node.extra["auto_discovered"], True)
        self.assertEqual(node.extra["vendor"], data["inventory"]["system_vendor"]["manufacturer"])
        self.assertEqual(node.driver_info["ipmi_address"], data["inventory"]["bmc_address"])
        self.assertEqual(node.driver_info["ipmi_username"], "admin")
        self.assertEqual(node.driver_info["ipmi_password"], "******")  # set; Ironic hides it
        self.assertEqual((node.properties["cpus"], node.properties["memory_mb"]), ("2", "24576"))
        ports = {p.address: p for p in self.client.port.list(node=uuid, detail=True)}
        self.assertEqual(sorted(ports), [macs[0]])  # add_ports=pxe: the boot interface
        self.assertEqual(ports[macs[0]].local_link_connection, {
            "switch_id": "44:4c:a8:e1:02:3f", "port_id": "Ethernet12", "switch_info": "tor-r12-b.dc1.example.net"})
        # Known now: the same machine is not enrolled again.
        status, _, body = self.inspectord.call("POST", "/v1/continue", data)
        self.assertEqual(status, 403, body)
        self.assertEqual(self.nodes_with(macs[0]), [uuid])

    def test_machine_whose_mac_ironic_knows_is_refused(self):
        macs = new_macs(1)
        uuid, _ = self.enroll(macs)
        status, _, body = self.inspectord.call("POST", "/v1/continue", unknown_machine(macs))
        self.assertEqual(status, 400, body)
        self.assertIn("already exists in Ironic (node {})".format(uuid), body["error"]["message"])
        self.assertEqual(self.nodes_with(macs[0]), [uuid])

    def test_machine_whose_bmc_ironic_knows_is_refused(self):
        bmc = "203.0.113.{}".format(next(_bmc))
        uuid, _ = self.enroll(new_macs(1), driver_info={"ipmi_address": bmc})
        macs = new_macs(1)
        status, _, body = self.inspectord.call("POST", "/v1/continue", unknown_machine(macs, bmc=bmc))
        self.assertEqual(status, 400, body)
        self.assertIn("Ironic node {} already has BMC address {}".format(uuid, bmc), body["error"]["message"])
        self.assertEqual(self.nodes_with(macs[0]), [])


class DiscoveryLimitTests(IntegrationCase):
    extra_config = DISCOVERY_CONFIG.format(per_source=2)

    def test_per_source_limit(self):
        enrolled = []
        for _ in range(2):
            status, _, body = self.inspectord.call("POST", "/v1/continue", unknown_machine(new_macs(1)))
            self.assertEqual(status, 200, body)
            enrolled.append(body["uuid"])
        macs = new_macs(1)
        status, _, body = self.inspectord.call("POST", "/v1/continue", unknown_machine(macs))
        self.assertEqual(status, 503, body)  # ironic-python-agent retries 5xx
        self.assertIn("[discovery_limits]per_source=2", body["error"]["message"])
        self.assertEqual([p.address for p in self.client.port.list(address=macs[0])], [])
        for uuid in enrolled:
            self.assertIsNone(self.inspectord.wait_finished(uuid)["error"])
        self.assertIn("Discovery: enrolled node " + enrolled[0], self.inspectord.log_tail(200))

