"""The whole introspection flow: real twistd inspectord, real Ironic, real IPA payloads."""

import time

from tests.integration.base import IntegrationCase, fixture, ipa_payload, new_macs


class IntrospectionFlowTests(IntegrationCase):
    def test_ipa_payload_writes_properties_ports_and_powers_off(self):
        macs = new_macs(2)
        # Only the first MAC has a port in Ironic; the second is discovered.
        uuid, name = self.enroll(macs[:1])
        self.start_and_wait(name, uuid)
        self.wait_power_state(uuid, "power on")  # rebooted into the ramdisk

        status, _, body = self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))
        self.assertEqual((status, body), (200, {"uuid": uuid}))
        result = self.inspectord.wait_finished(uuid)
        self.assertIsNone(result["error"])
        self.assertEqual(result["state"], "finished")

        node = self.client.node.get(uuid)
        self.assertEqual(node.properties["cpus"], "2")
        self.assertEqual(node.properties["cpu_arch"], "x86_64")
        self.assertEqual(node.properties["memory_mb"], "24576")
        self.assertEqual(node.properties["local_gb"], "255")
        self.wait_power_state(uuid, "power off")  # applied by Ironic asynchronously
        ports = {p.address: p for p in self.client.port.list(node=uuid, detail=True)}
        # add_ports=pxe with a known boot interface: only the PXE MAC.
        self.assertEqual(sorted(ports), [macs[0]])

    def test_legacy_payload(self):
        data = fixture("legacy-ramdisk.json")
        pxe_mac = "52:54:00:12:34:56"
        uuid, name = self.enroll([pxe_mac], driver_info={"ipmi_address": data["ipmi_address"]})
        self.start_and_wait(uuid, uuid)
        status, _, body = self.inspectord.call("POST", "/v1/continue", data)
        self.assertEqual((status, body), (200, {"uuid": uuid}))
        self.assertIsNone(self.inspectord.wait_finished(uuid)["error"])
        node = self.client.node.get(uuid)
        self.assertEqual(
            {k: node.properties.get(k) for k in ("cpus", "cpu_arch", "memory_mb", "local_gb")},
            {"cpus": "8", "cpu_arch": "x86_64", "memory_mb": "16384", "local_gb": "446"},
        )
        self.wait_power_state(uuid, "power off")  # applied by Ironic asynchronously

    def test_ramdisk_error_ends_waiting_node_in_error(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        self.start_and_wait(name, uuid)
        payload = ipa_payload(macs, "ipa-payload-collector-error.json")
        status, _, body = self.inspectord.call("POST", "/v1/continue", payload)
        self.assertEqual(status, 400)
        self.assertIn("Ramdisk reported error", body["error"]["message"])
        result = self.inspectord.wait_finished(uuid, timeout=5)
        self.assertEqual(result["state"], "error")
        self.assertIn("dmidecode", result["error"])

    def test_error_only_payload_is_refused_clearly(self):
        status, _, body = self.inspectord.call("POST", "/v1/continue", fixture("ipa-payload-no-inventory-error.json"))
        self.assertEqual(status, 400)
        self.assertIn("Failed to load collector", body["error"]["message"])

    def test_status_codes_of_the_original_api(self):
        status, headers, body = self.inspectord.call("GET", "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["X-OpenStack-Ironic-Inspector-API-Maximum-Version"], "1.18")
        self.assertEqual(body["versions"][0]["id"], "1.18")
        status, _, body = self.inspectord.call("POST", "/v1/introspection/no-such-node")
        self.assertEqual(status, 404, body)
        status, headers, body = self.inspectord.call(
            "GET", "/", headers={"X-OpenStack-Ironic-Inspector-API-Version": "9.0"}
        )
        self.assertEqual(status, 406)
        self.assertEqual(headers["X-OpenStack-Ironic-Inspector-API-Minimum-Version"], "1.0")
        status, _, body = self.inspectord.call("POST", "/v1/continue", ipa_payload(new_macs(1)))
        self.assertEqual(status, 404, body)
        # An available node may not be introspected.
        uuid, _ = self.enroll(new_macs(1), provision_state="available")
        status, _, body = self.inspectord.call("POST", "/v1/introspection/" + uuid)
        self.assertEqual(status, 400)
        self.assertIn("Invalid provision state", body["error"]["message"])

    def test_finished_node_is_forbidden_until_restarted(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        self.start_and_wait(name, uuid)
        self.assertEqual(self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))[0], 200)
        self.inspectord.wait_finished(uuid)
        status, _, body = self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))
        self.assertEqual(status, 403, body)
        # Introspecting again works and overwrites.
        self.start_and_wait(uuid, uuid)
        self.assertEqual(self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))[0], 200)
        self.assertEqual(self.inspectord.wait_finished(uuid)["state"], "finished")

    def test_manage_boot_false_leaves_power_alone(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        status, _, _ = self.inspectord.call("POST", "/v1/introspection/{}?manage_boot=false".format(name))
        self.assertEqual(status, 202)
        self.wait_state(uuid, ["waiting"])
        self.assertNotEqual(self.client.node.get(uuid).power_state, "power on")
        self.assertEqual(self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))[0], 200)
        self.inspectord.wait_finished(uuid)
        self.assertNotEqual(self.client.node.get(uuid).power_state, "power on")


class RestartTests(IntegrationCase):
    def test_waiting_node_survives_restart(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        self.start_and_wait(name, uuid)
        self.inspectord.stop()
        self.inspectord.start()
        self.assertEqual(self.wait_state(uuid, ["waiting"])["state"], "waiting")
        self.assertEqual(self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))[0], 200)
        self.assertEqual(self.inspectord.wait_finished(uuid)["state"], "finished")
        self.assertEqual(self.client.node.get(uuid).properties["cpus"], "2")


class TimeoutTests(IntegrationCase):
    inspectord_options = {"timeout": 2, "clean_up_period": 1}

    def test_node_times_out(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        self.start_and_wait(name, uuid)
        started = time.monotonic()
        result = self.wait_state(uuid, ["error"], timeout=15)
        self.assertEqual(result["error"], "Introspection timeout")
        self.assertLess(time.monotonic() - started, 10)
        status, _, _ = self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))
        self.assertEqual(status, 403)
