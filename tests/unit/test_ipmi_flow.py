"""Setting IPMI credentials in the introspection flow, with a fake verifier."""

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from inspectord.ipmi import CredentialsRejected
from inspectord.testing import FakeVerifier
from tests.unit.helpers import Harness, fixture

MAC = "02:fc:00:00:00:01"


class CredentialsFlowTests(SynchronousTestCase):
    def setUp(self):
        self.h = Harness(processing__enable_setting_ipmi_credentials=True, processing__store_data="database")
        self.verifier = FakeVerifier()
        self.h.introspection.verifier = self.verifier

    def enroll(self, **driver_info):
        info = {"ipmi_address": "192.0.2.50", "ipmi_username": "admin"}
        info.update(driver_info)
        return self.h.fake.add_node(name="bmc-node", macs=[MAC], provision_state="enroll", driver_info=info)

    def run_flow(self):
        code, _, body = self.h.request("POST", "/v1/introspection/bmc-node?new_ipmi_password=Secret123")
        self.assertEqual(code, 202, body)
        self.h.flush()
        code, _, body = self.h.request("POST", "/v1/continue", fixture("ipa-payload.json"))
        self.h.flush()
        return code, body

    def test_success_records_credentials_and_forgets_them(self):
        uuid = self.enroll(ipmi_port="6230")
        code, body = self.run_flow()
        self.assertEqual(
            (code, body),
            (200, {"uuid": uuid, "ipmi_setup_credentials": True, "ipmi_username": "admin", "ipmi_password": "Secret123"}),
        )
        self.assertEqual(self.verifier.calls, [("192.0.2.50", "admin", "Secret123", 6230)])
        info = self.h.fake.nodes[uuid]["driver_info"]
        self.assertEqual((info["ipmi_username"], info["ipmi_password"]), ("admin", "Secret123"))
        record = self.h.store.thd_get_node(uuid)
        self.assertEqual(record.state, "finished")
        # The password is not kept once the introspection ended.
        self.assertNotIn("ipmi_credentials", record.options)
        self.assertEqual(self.h.fake.nodes[uuid]["power_state"], "power off")

    def test_rejection_ends_in_error(self):
        uuid = self.enroll()
        self.verifier.fail_with = CredentialsRejected("192.0.2.50", 623, "admin", "Incorrect password", 3, 60.0)
        self.run_flow()
        record = self.h.store.thd_get_node(uuid)
        self.assertEqual(record.state, "error")
        self.assertIn("credentials rejected by the BMC", record.error)
        self.assertNotIn("ipmi_credentials", record.options)

    def test_invalid_port_ends_in_error_not_stuck(self):
        uuid = self.enroll(ipmi_port="ipmi")
        self.run_flow()
        record = self.h.store.thd_get_node(uuid)
        self.assertEqual(record.state, "error")
        self.assertIn("Invalid driver_info.ipmi_port 'ipmi'", record.error)
        self.assertEqual(self.verifier.calls, [])

    def test_reapply_does_not_verify_again(self):
        uuid = self.enroll()
        self.run_flow()
        self.assertEqual(len(self.verifier.calls), 1)
        patches = len(self.h.fake.patches)
        code, _, _ = self.h.request("POST", "/v1/introspection/{}/data/unprocessed".format(uuid))
        self.assertEqual(code, 202)
        self.h.flush()
        self.assertEqual(self.h.store.thd_get_node(uuid).state, "finished")
        self.assertEqual(len(self.verifier.calls), 1)
        self.assertFalse(any("/driver_info/ipmi_password" in str(p) for _, p in self.h.fake.patches[patches:]))


class StopTests(SynchronousTestCase):
    def test_stop_interrupts_slow_work_and_keeps_the_node_for_later(self):
        h = Harness(processing__enable_setting_ipmi_credentials=True)
        never = defer.Deferred()
        # A verifier that ignores the stop: its work is interrupted after the grace.
        h.introspection.verifier = type("Slow", (), {"verify": lambda self, *a, **k: never, "stop": lambda self: None})()
        uuid = h.fake.add_node(name="n", macs=[MAC], provision_state="enroll",
                               driver_info={"ipmi_address": "192.0.2.9", "ipmi_username": "admin"})
        h.request("POST", "/v1/introspection/n?new_ipmi_password=abc123")
        h.flush()
        self.assertEqual(h.request("POST", "/v1/continue", fixture("ipa-payload.json"))[0], 200)
        stopping = defer.Deferred.fromCoroutine(h.introspection.stop(grace=10))
        self.assertNoResult(stopping)
        h.clock.advance(10)
        self.successResultOf(stopping)
        record = h.store.thd_get_node(uuid)
        # Left in processing with its lease: resumed later, not failed.
        self.assertEqual(record.state, "processing")
        self.assertIsNotNone(record.lease_until)
        self.assertEqual(len(h.introspection._work), 0)
