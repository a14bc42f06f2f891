"""Real ironic-python-agent code as the ramdisk: this machine is the node."""

import os

from devenv import ipa
from tests.integration.base import IntegrationCase

GiB = 1024**3


class RealIPATests(IntegrationCase):
    if os.geteuid() != 0:
        skip = "ironic-python-agent's collector inspects the machine as root"

    def test_ipa_collector_introspects_this_machine(self):
        expected = ipa.expected_inventory_summary()
        macs = ipa.expected_macs()
        uuid, name = self.enroll(macs, name="ipa-node")
        self.addCleanup(self.client.node.delete, uuid)
        self.start_and_wait(name, uuid)

        result = ipa.run_collector(self.inspectord.url + "/v1/continue")
        self.assertEqual(result.returncode, 0, result.stdout[-3000:])
        status = self.inspectord.wait_finished(uuid)
        self.assertIsNone(status["error"], self.inspectord.log_tail())

        node = self.client.node.get(uuid)
        self.assertEqual(node.properties["cpus"], str(expected["cpu_count"]))
        self.assertEqual(node.properties["cpu_arch"], expected["cpu_arch"])
        self.assertEqual(node.properties["memory_mb"], str(expected["memory_mb"]))
        if expected["root_disk_size"]:
            self.assertEqual(node.properties["local_gb"], str(expected["root_disk_size"] // GiB - 1))
        self.wait_power_state(uuid, "power off")  # applied by Ironic asynchronously
        ports = [p.address for p in self.client.port.list(node=uuid)]
        self.assertEqual(sorted(ports), sorted(macs))
