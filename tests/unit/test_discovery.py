"""Discovery: node_not_found_hook=enroll against the fake Ironic, rate limits in the database."""

import copy
import os
import uuid as uuidlib

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from inspectord import bmc_address, errors
from inspectord.processing import pipeline as introspection_mod
from inspectord.api.status import status_for
from inspectord.introspection import Introspection
from inspectord.processing import data as ramdisk_data
from inspectord.processing import discovery as discovery_mod
from inspectord.store import SQLStore, make_engine
from inspectord.store.enrollment import Limits
from inspectord.store.pool import SynchronousPool
from inspectord.store.sql import thd_upgrade
from inspectord.timeutil import utc
from tests.unit.helpers import Harness, make_config
from tests.unit.test_hooks import all_collectors

ENROLL = {"processing__node_not_found_hook": "enroll"}


def machine(n, bmc="192.0.2.200", bmc_v6=None):
    """The real payload as machine ``n``: its own MAC and BMC address."""
    data = all_collectors()
    data["inventory"]["interfaces"][0]["mac_address"] = "52:54:00:d1:00:{:02x}".format(n)
    data["inventory"]["bmc_address"] = bmc if bmc is None or n == 0 else bmc.rsplit(".", 1)[0] + ".{}".format(n)
    data["inventory"]["bmc_v6address"] = bmc_v6
    return data


class CheckTests(SynchronousTestCase):
    def refused(self, **overrides):
        with self.assertRaises(errors.ConfigError) as caught:
            make_config(**overrides)
        return str(caught.exception)

    def test_enroll_accepted(self):
        self.assertEqual(make_config(**ENROLL).processing.node_not_found_hook, "enroll")

    def test_other_hooks_refused(self):
        message = self.refused(processing__node_not_found_hook="example")
        self.assertIn("[processing]node_not_found_hook=example", message)
        self.assertIn("available: enroll", message)

    def test_incompatible_with_deny_unknown_macs(self):
        message = self.refused(pxe_filter__deny_unknown_macs=True, **ENROLL)
        self.assertIn("[pxe_filter]deny_unknown_macs", message)
        make_config(pxe_filter__deny_unknown_macs=True)  # fine without discovery

    def test_bmc_address_versions(self):
        for versions in (["5"], ["4", "4"], []):
            self.assertIn("[discovery]enabled_bmc_address_version",
                          self.refused(discovery__enabled_bmc_address_version=versions, **ENROLL))
        make_config(discovery__enabled_bmc_address_version=["6", "4"], **ENROLL)

    def test_fields_inspectord_sets(self):
        message = self.refused(discovery__enroll_node_fields={"driver": "ipmi", "resource_class": "x"}, **ENROLL)
        self.assertIn("[discovery]enroll_node_fields may not set driver", message)


class BmcAddressTests(SynchronousTestCase):
    def test_versions(self):
        both = machine(0, bmc="192.0.2.200", bmc_v6="2001:db8::5")
        v6_only = machine(0, bmc=None, bmc_v6="2001:db8::5")
        unset = machine(0, bmc="0.0.0.0", bmc_v6="::/0")
        cases = [
            (both, ["4", "6"], "192.0.2.200"),
            (both, ["6", "4"], "2001:db8::5"),
            (both, ["6"], "2001:db8::5"),
            (v6_only, ["4", "6"], "2001:db8::5"),
            (v6_only, ["4"], None),
            (unset, ["4", "6"], None),
        ]
        for data, versions, expected in cases:
            self.assertEqual(bmc_address.preferred(data, versions), expected, (versions, data["inventory"]))

    def test_node_addresses(self):
        node = {"driver": "idrac", "driver_info": {
            "ipmi_address": " 10.0.0.1 ", "redfish_address": "https://[2001:DB8::7]:8000/redfish/v1",
            "idrac_address": "BMC-7.example.net", "ilo_address": ""}}
        self.assertEqual(bmc_address.node_hosts(node, ["redfish_address", "ilo_address"]),
                         {"10.0.0.1", "2001:db8::7", "bmc-7.example.net"})

    def test_machine_macs_skip_loopback(self):
        data = machine(1)
        data["inventory"]["interfaces"].append({"name": "lo", "mac_address": "00:00:00:00:00:00"})
        self.assertEqual(discovery_mod.machine_macs(data), ["52:54:00:d1:00:01"])


class DiscoveryTests(SynchronousTestCase):
    def setUp(self):
        self.h = Harness(discovery__enroll_node_fields={"resource_class": "baremetal"}, **ENROLL)

    def post(self, data):
        return self.h.request("POST", "/v1/continue", data)

    def discovered(self):
        return [n for n in self.h.fake.nodes.values() if (n.get("extra") or {}).get("auto_discovered")]

    def test_unknown_machine_is_enrolled_and_processed(self):
        events = []
        self.patch(discovery_mod.Discovery, "log", Logger(observer=events.append))
        code, _, body = self.post(machine(1))
        self.assertEqual(code, 200, body)
        uuid = body["uuid"]
        node = self.h.fake.nodes[uuid]
        self.assertEqual(node["driver"], "fake-hardware")
        self.assertEqual(node["driver_info"], {"ipmi_address": "192.0.2.1"})
        self.assertEqual(node["extra"], {"auto_discovered": True})
        self.assertEqual(node["resource_class"], "baremetal")
        self.assertEqual(node["properties"]["cpus"], "2")
        self.assertEqual(node["properties"]["memory_mb"], "24576")
        self.assertEqual([p["address"] for p in self.h.fake.node_ports(uuid)], ["52:54:00:d1:00:01"])
        self.assertEqual(node["power_state"], "power off")
        code, _, status = self.h.request("GET", "/v1/introspection/" + uuid)
        self.assertEqual((code, status["state"], status["error"]), (200, "finished", None))
        self.assertGreater(self.h.filter.notified, 0)
        ledger = self.successResultOf(self.h.store.discoveries())
        self.assertEqual([(r[0], r[1], r[3]) for r in ledger], [("127.0.0.1", uuid, "enrolled")])
        enrolled = [e for e in events if e["log_format"].startswith("Discovery: enrolled node")]
        self.assertEqual([(e["node"], e["source"], e["bmc"]) for e in enrolled], [(uuid, "127.0.0.1", "192.0.2.1")])

    def test_rule_fills_in_driver_info(self):
        rule = {
            "description": "discovered machines",
            "conditions": [{"op": "eq", "field": "data://auto_discovered", "value": True}],
            "actions": [
                {"action": "set-attribute", "path": "/driver_info/ipmi_username", "value": "admin"},
                {"action": "set-attribute", "path": "/driver_info/ipmi_password", "value": "s3cret"},
                {"action": "set-attribute", "path": "/driver_info/deploy_interface_hint",
                 "value": "{data[inventory][system_vendor][manufacturer]}"},
            ],
        }
        self.assertEqual(self.h.request("POST", "/v1/rules", rule)[0], 201)
        code, _, body = self.post(machine(2))
        self.assertEqual(code, 200, body)
        info = self.h.fake.nodes[body["uuid"]]["driver_info"]
        self.assertEqual((info["ipmi_address"], info["ipmi_username"], info["ipmi_password"]),
                         ("192.0.2.2", "admin", "s3cret"))
        # The rule's changes and the hooks' went in one PATCH.
        self.assertEqual(len([p for p in self.h.fake.patches if p[0] == body["uuid"]]), 1)

    def test_same_machine_again_is_not_enrolled_twice(self):
        uuid = self.post(machine(3))[2]["uuid"]
        code, _, body = self.post(machine(3))
        self.assertEqual(code, 403, body)
        self.assertIn(uuid, body["error"]["message"])
        self.assertEqual(len(self.discovered()), 1)

    def test_concurrent_posts_of_one_machine(self):
        gate = defer.Deferred()
        real_find_port = self.h.ironic.find_port

        async def find_port(mac):
            await gate  # the first enrollment is still asking Ironic
            return await real_find_port(mac)

        self.patch(self.h.ironic, "find_port", find_port)
        d1 = defer.Deferred.fromCoroutine(self.h.introspection.process(machine(4), source="10.0.0.4"))
        d2 = defer.Deferred.fromCoroutine(self.h.introspection.process(machine(4), source="10.0.0.4"))
        self.assertNoResult(d1)
        gate.callback(None)
        self.h.flush()
        self.assertIn("uuid", self.successResultOf(d1))
        failure = self.failureResultOf(d2, errors.NodeBusy)
        self.assertIn("already being processed", failure.getErrorMessage())
        self.assertEqual(len(self.discovered()), 1)

    def test_machine_with_a_known_mac_is_refused(self):
        owner = self.h.fake.add_node(name="known", macs=["52:54:00:d1:00:05"])
        code, _, body = self.post(machine(5))
        self.assertEqual(code, 400, body)
        self.assertIn("MAC 52:54:00:d1:00:05 already exists in Ironic (node {})".format(owner), body["error"]["message"])
        self.assertEqual(self.discovered(), [])
        self.assertEqual(self.successResultOf(self.h.store.list_nodes(10)), [])
        outcome = self.successResultOf(self.h.store.discoveries())[0][3]
        self.assertIn("already exists in Ironic", outcome)

    def test_machine_with_a_known_bmc_is_refused(self):
        owner = self.h.fake.add_node(name="known", driver="redfish",
                                     driver_info={"redfish_address": "https://192.0.2.6/redfish/v1"})
        code, _, body = self.post(machine(6))
        self.assertEqual(code, 400, body)
        self.assertIn("Ironic node {} already has BMC address 192.0.2.6".format(owner), body["error"]["message"])
        self.assertEqual(self.discovered(), [])

    def test_ipv6_only_bmc(self):
        code, _, body = self.post(machine(7, bmc=None, bmc_v6="2001:db8::7"))
        self.assertEqual(code, 200, body)
        self.assertEqual(self.h.fake.nodes[body["uuid"]]["driver_info"], {"ipmi_address": "2001:db8::7"})

    def test_no_bmc(self):
        data = machine(8)
        data["inventory"]["bmc_address"] = None
        code, _, body = self.post(data)
        self.assertEqual(code, 200, body)
        self.assertEqual(self.h.fake.nodes[body["uuid"]]["driver_info"], {})
        self.assertFalse(any(r == ("GET", "/v1/nodes") for r in self.h.fake.requests))  # no BMC to compare

    def test_infiniband_machine(self):
        data = machine(9)
        data["inventory"]["interfaces"][0].update(
            name="ib0", mac_address="00:02:c9:a1:b2:c3",
            client_id="ff:00:00:00:00:00:02:00:00:02:c9:00:00:02:c9:03:00:a1:b2:c3")
        code, _, body = self.post(data)
        self.assertEqual(code, 200, body)
        port = self.h.fake.node_ports(body["uuid"])[0]
        self.assertEqual((port["address"], port["extra"]["client-id"]),
                         ("00:02:c9:a1:b2:c3", "ff:00:00:00:00:00:02:00:00:02:c9:00:00:02:c9:03:00:a1:b2:c3"))

    def test_failing_ramdisk_is_not_enrolled(self):
        data = machine(10)
        data["error"] = "The following errors were encountered:\n* collector foo failed"
        code, _, body = self.post(data)
        self.assertEqual(code, 400, body)
        self.assertIn("Ramdisk reported error", body["error"]["message"])
        self.assertEqual(self.discovered(), [])
        self.assertEqual(self.successResultOf(self.h.store.discoveries()), [])

    def test_ironic_refusing_the_node(self):
        self.h.fake.fail("POST", "/v1/nodes", 400, body="Driver fake-hardware is not enabled")
        code, _, body = self.post(machine(11))
        self.assertEqual(code, 400, body)
        self.assertIn("Driver fake-hardware is not enabled", body["error"]["message"])
        self.assertEqual(self.successResultOf(self.h.store.list_nodes(10)), [])
        # The machine can try again.
        self.assertEqual(self.post(machine(11))[0], 200)

    def test_create_retried_after_a_lost_answer(self):
        fixed = uuidlib.UUID("c0ffee00-0000-4000-8000-000000000001")
        self.patch(introspection_mod, "uuidlib", type("U", (), {"uuid4": staticmethod(lambda: fixed)}))
        self.h.fake.add_node(uuid=str(fixed), provision_state="enroll")  # the first POST went through
        code, _, body = self.post(machine(12))
        self.assertEqual((code, body), (200, {"uuid": str(fixed)}))

    def test_without_the_hook_unknown_data_is_404(self):
        h = Harness()
        code, _, body = h.request("POST", "/v1/continue", machine(13))
        self.assertEqual(code, 404, body)
        self.assertEqual(h.fake.nodes, {})


class RateLimitTests(SynchronousTestCase):
    def process(self, harness, data, source):
        d = defer.Deferred.fromCoroutine(harness.introspection.process(data, source=source))
        harness.flush()
        return d

    def test_per_source(self):
        h = Harness(discovery_limits__per_source=2, discovery_limits__period=60, **ENROLL)
        for n in (1, 2):
            self.assertIn("uuid", self.successResultOf(self.process(h, machine(n), "10.0.0.1")))
        failure = self.failureResultOf(self.process(h, machine(3), "10.0.0.1"), errors.InspectordError)
        self.assertEqual(status_for(failure.value), 503)  # the ramdisk retries 5xx answers
        self.assertIn("from 10.0.0.1", failure.getErrorMessage())
        self.assertIn("[discovery_limits]per_source=2", failure.getErrorMessage())
        self.assertIn("uuid", self.successResultOf(self.process(h, machine(4), "10.0.0.2")))
        h.clock.advance(61)
        self.assertIn("uuid", self.successResultOf(self.process(h, machine(3), "10.0.0.1")))

    def test_total(self):
        h = Harness(discovery_limits__total=2, discovery_limits__per_source=0, **ENROLL)
        for n in (1, 2):
            self.successResultOf(self.process(h, machine(n), "10.0.0.{}".format(n)))
        failure = self.failureResultOf(self.process(h, machine(3), "10.0.0.3"), errors.InspectordError)
        self.assertIn("[discovery_limits]total=2", failure.getErrorMessage())
        self.assertEqual(len([n for n in h.fake.nodes.values() if n["extra"].get("auto_discovered")]), 2)

    def test_refused_attempts_count_limited_ones_do_not(self):
        h = Harness(discovery_limits__per_source=2, **ENROLL)
        h.fake.add_node(macs=["52:54:00:d1:00:01"])
        self.failureResultOf(self.process(h, machine(1), "10.0.0.1"), errors.InvalidInput)  # asked Ironic: counts
        self.successResultOf(self.process(h, machine(2), "10.0.0.1"))
        for _ in range(3):
            self.failureResultOf(self.process(h, machine(3), "10.0.0.1"), errors.InspectordError)
        h.clock.advance(61)
        self.successResultOf(self.process(h, machine(3), "10.0.0.1"))

    def test_unlimited(self):
        h = Harness(discovery_limits__per_source=0, discovery_limits__total=0, **ENROLL)
        for n in range(1, 15):
            self.successResultOf(self.process(h, machine(n), "10.0.0.1"))

    def test_limits_hold_across_instances_sharing_the_database(self):
        path = os.path.abspath(os.path.join(self.mktemp(), "inspectord.sqlite"))
        os.makedirs(os.path.dirname(path))
        url = "sqlite:///" + path
        thd_upgrade(make_engine(url))
        h = Harness(discovery_limits__total=2, **ENROLL)
        second = copy.copy(h)
        engines = []
        for harness in (h, second):
            engine = make_engine(url)
            engines.append(engine)
            harness.store = SQLStore(engine, SynchronousPool())
            harness.introspection = Introspection(harness.store, harness.ironic, harness.config, harness.clock)
        self.addCleanup(lambda: [e.dispose() for e in engines])
        self.successResultOf(self.process(h, machine(1), "10.0.0.1"))
        self.successResultOf(self.process(second, machine(2), "10.0.0.2"))
        failure = self.failureResultOf(self.process(h, machine(3), "10.0.0.3"), errors.InspectordError)
        self.assertEqual(status_for(failure.value), 503)

    def test_old_attempts_pruned(self):
        h = Harness(discovery_limits__period=10, **ENROLL)
        self.successResultOf(self.process(h, machine(1), "10.0.0.1"))
        h.clock.advance(11)
        self.successResultOf(self.process(h, machine(2), "10.0.0.1"))
        ledger = self.successResultOf(h.store.discoveries())
        self.assertEqual(len(ledger), 1)
        self.assertEqual(ledger[0][2], utc(h.clock.seconds()))


class EnrollDirectTests(SynchronousTestCase):
    """Discovery.enroll on its own: what it records and sends."""

    def test_store_states_and_body(self):
        h = Harness(**ENROLL)
        seen = []
        real_create = h.ironic.create_node

        async def create_node(body):
            record = await h.store.get_node(body["uuid"])
            seen.append((record.state, copy.deepcopy(body)))
            return await real_create(body)

        self.patch(h.ironic, "create_node", create_node)
        discovery = discovery_mod.Discovery(
            h.store, h.ironic, h.config.discovery, h.config.discovery_limits, h.config.default, task.Clock(),
            lambda node: dict(node),
        )
        data = ramdisk_data.normalize(machine(1))
        for hook in h.introspection.hooks:
            hook.before_processing(data)
        d = defer.Deferred.fromCoroutine(discovery.enroll(data, "10.1.1.1"))
        h.flush()
        record = self.successResultOf(d)
        self.assertEqual(record.state, "enrolling")
        self.assertEqual(record.node["driver"], "fake-hardware")
        self.assertEqual(record.options, {"discovered_from": "10.1.1.1"})
        self.assertTrue(data["auto_discovered"])
        state, body = seen[0]
        self.assertEqual(state, "enrolling")  # recorded before Ironic was asked to create it
        self.assertEqual(body, {"uuid": record.uuid, "driver": "fake-hardware",
                                "driver_info": {"ipmi_address": "192.0.2.1"}, "extra": {"auto_discovered": True}})
        self.assertEqual(self.successResultOf(h.store.lookup(["52:54:00:d1:00:01"], [])).uuid, record.uuid)
        self.assertEqual(self.successResultOf(h.store.lookup([], ["192.0.2.1"])).uuid, record.uuid)

    def test_nothing_to_know_the_machine_by(self):
        h = Harness(**ENROLL)
        discovery = discovery_mod.Discovery(
            h.store, h.ironic, h.config.discovery, h.config.discovery_limits, h.config.default, task.Clock(), dict
        )
        data = {"inventory": {"interfaces": [{"name": "lo", "mac_address": "00:00:00:00:00:00"}]}}
        failure = self.failureResultOf(defer.Deferred.fromCoroutine(discovery.enroll(data)), errors.InvalidInput)
        self.assertIn("neither a MAC nor a BMC address", failure.getErrorMessage())
        self.assertEqual(h.fake.requests, [])


class EnrollmentStoreTests(SynchronousTestCase):
    """The store's side: what two enrollments racing past lookup meet."""

    def setUp(self):
        self.h = Harness(**ENROLL)
        self.now = utc(self.h.clock.seconds())
        self.limits = Limits(period=60, per_source=0, total=0)

    def enroll(self, uuid, attributes):
        return self.h.store.enroll(uuid, self.now, True, {"driver": "fake-hardware"}, attributes, "10.0.0.1",
                                   self.limits)

    def test_second_enrollment_of_a_mac_refused(self):
        self.successResultOf(self.enroll("u1", [("mac", "52:54:00:d1:00:01"), ("bmc_address", "192.0.2.9")]))
        failure = self.failureResultOf(self.enroll("u2", [("mac", "52:54:00:d1:00:01")]), errors.NodeBusy)
        self.assertIn("MAC 52:54:00:d1:00:01 of node u1", failure.getErrorMessage())
        # A BMC address may be shared (virtual BMCs): not a conflict.
        self.assertEqual(self.successResultOf(self.enroll("u3", [("mac", "52:54:00:d1:00:03"),
                                                                 ("bmc_address", "192.0.2.9")])).state, "enrolling")
        # Only u1 and u3 were recorded, and their attempts.
        self.assertEqual(sorted(r.uuid for r in self.successResultOf(self.h.store.list_nodes(10))), ["u1", "u3"])
        self.assertEqual([r[1] for r in self.successResultOf(self.h.store.discoveries())], ["u1", "u3"])

    def test_forgotten_enrollment(self):
        self.successResultOf(self.enroll("u1", [("mac", "52:54:00:d1:00:01")]))
        self.successResultOf(self.h.store.forget_enrollment("u1", "refused: because"))
        self.assertEqual(self.successResultOf(self.h.store.list_nodes(10)), [])
        self.assertIsNone(self.successResultOf(self.h.store.lookup(["52:54:00:d1:00:01"], [])))
        self.assertEqual(self.successResultOf(self.h.store.discoveries())[0][3], "refused: because")
        # The MAC is free again.
        self.successResultOf(self.enroll("u2", [("mac", "52:54:00:d1:00:01")]))

    def test_enrolled_only_from_enrolling(self):
        self.successResultOf(self.enroll("u1", [("mac", "52:54:00:d1:00:01")]))
        record = self.successResultOf(self.h.store.enrolled("u1", {"driver": "fake-hardware", "name": "x"}))
        self.assertEqual(record.node["name"], "x")
        self.successResultOf(self.h.store.transition("u1", "process", self.now, expected="enrolling"))
        self.failureResultOf(self.h.store.enrolled("u1", {}), errors.StateChanged)
