"""End-to-end introspection flows in memory, checking what Ironic got."""

import copy
import datetime
import os

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord.api.status import status_for
from inspectord.introspection import Introspection
from inspectord.ironic.client import IronicClient, static_endpoint
from inspectord.threads import SynchronousRunner
from tests.unit.helpers import Harness, fixture

IPA_MAC = "02:fc:00:00:00:01"
LEGACY_PXE_MAC = "52:54:00:12:34:56"
PROCESSING_LEASE = datetime.timedelta(seconds=30)  # [lifecycle]processing_lease default
LOCKED = "Node {} is locked by host conductor-1, please retry after the current operation is completed."


def ipa_data(mac=IPA_MAC, extra_interfaces=(), **inventory):
    """The IPA fixture, with another MAC and extra interfaces if asked."""
    data = fixture("ipa-payload.json")
    data["inventory"]["interfaces"][0]["mac_address"] = mac
    data["inventory"]["interfaces"].extend(extra_interfaces)
    data["inventory"].update(inventory)
    return data


class HangingHTTP:
    """Passes requests on, except those ``hang`` selects: they never answer."""

    def __init__(self, inner, hang):
        self.inner = inner
        self.hang = hang
        self.hung = 0

    def request(self, method, url, **kwargs):
        if self.hang(method, url):
            self.hung += 1
            return defer.Deferred()
        return self.inner.request(method, url, **kwargs)


class FlowTestCase(SynchronousTestCase):
    """Helpers: enroll a node, start, post data, move the clock."""

    def setUp(self):
        self.harness()

    def harness(self, **overrides):
        self.h = Harness(**overrides)
        self.fake = self.h.fake
        self.introspection = self.h.introspection
        return self.h

    def enroll(self, macs=(IPA_MAC,), **kwargs):
        return self.fake.add_node(macs=macs, **kwargs)

    def start(self, node_id, manage_boot=None):
        d = defer.Deferred.fromCoroutine(self.introspection.start(node_id, manage_boot=manage_boot))
        self.h.flush()
        return self.successResultOf(d)

    def post(self, data):
        """Post ramdisk data; the Deferred of the answer."""
        d = defer.Deferred.fromCoroutine(self.introspection.process(data))
        self.h.flush()
        return d

    def continue_(self, data):
        result = self.successResultOf(self.post(data))
        self.h.flush()
        return result

    def introspect(self, data=None, **enroll):
        uuid = self.enroll(**enroll)
        self.start(uuid)
        self.assertEqual(self.record(uuid).state, "waiting")
        self.assertEqual(self.continue_(data or ipa_data()), {"uuid": uuid})
        return uuid

    def record(self, uuid):
        return self.h.store.thd_get_node(uuid)

    def advance(self, seconds, step=None):
        step = step or seconds
        while seconds > 0:
            self.h.clock.advance(min(step, seconds))
            self.h.flush()
            seconds -= step

    def mark(self):
        return len(self.fake.requests)

    def since(self, mark):
        return self.fake.requests[mark:]

    def node_calls(self, uuid, mark=0):
        """(method, path) of every request about ``uuid`` or ports after ``mark``."""
        return [(m, p) for m, p in self.since(mark) if uuid in p or p.startswith("/v1/ports")]

    def property_patch(self, uuid):
        patches = [patch for node, patch in self.fake.patches if node == uuid]
        self.assertEqual(len(patches), 1, "exactly one PATCH of node {}".format(uuid))
        return {op["path"]: op["value"] for op in patches[0]}


class StartTests(FlowTestCase):
    def test_start_boots_node(self):
        uuid = self.enroll()
        record = self.start(uuid)
        self.assertEqual(record.state, "starting")  # what start() returns: the recorded start
        self.assertEqual(self.record(uuid).state, "waiting")
        self.assertEqual(
            self.fake.requests,
            [
                ("GET", "/v1/nodes/" + uuid),
                ("GET", "/v1/nodes/{}/validate".format(uuid)),
                ("GET", "/v1/ports"),
                ("PUT", "/v1/nodes/{}/management/boot_device".format(uuid)),
                ("PUT", "/v1/nodes/{}/states/power".format(uuid)),
            ],
        )
        node = self.fake.nodes[uuid]
        self.assertEqual((node["boot_device"], node["power_state"]), ("pxe", "power on"))
        self.assertEqual(record.ports[IPA_MAC]["uuid"], self.fake.node_ports(uuid)[0]["uuid"])
        self.assertEqual(self.h.filter.notified, 1)

    def test_start_by_name(self):
        uuid = self.enroll(name="rack1-u12")
        self.assertEqual(self.start("rack1-u12").uuid, uuid)

    def test_snapshot_drops_secrets(self):
        uuid = self.enroll(
            driver_info={"ipmi_address": "192.0.2.1", "ipmi_username": "admin", "ipmi_password": "s3cret",
                         "redfish_auth_token": "t"},
            properties={"cpus": "2"},
        )
        record = self.start(uuid)
        self.assertEqual(record.node["driver_info"], {"ipmi_address": "192.0.2.1", "ipmi_username": "admin"})
        self.assertEqual(record.properties, {"cpus": "2"})

    def test_manage_boot_false(self):
        uuid = self.enroll()
        record = self.start(uuid, manage_boot=False)
        self.assertFalse(record.manage_boot)
        self.assertEqual(self.record(uuid).state, "waiting")
        self.assertEqual([m for m, _ in self.fake.requests], ["GET", "GET"])  # node, ports: no validate, no boot
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power off")

    def test_can_manage_boot_false_is_the_default(self):
        self.harness(DEFAULT__can_manage_boot=False)
        uuid = self.enroll()
        self.assertFalse(self.start(uuid).manage_boot)
        self.assertIsNone(self.fake.nodes[uuid]["boot_device"])
        d = defer.Deferred.fromCoroutine(self.introspection.start(uuid, manage_boot=True))
        self.assertIn("cannot manage boot", self.failureResultOf(d, errors.InvalidInput).value.message)

    def test_unknown_node(self):
        d = defer.Deferred.fromCoroutine(self.introspection.start("no-such-node"))
        self.h.flush()
        self.assertEqual(status_for(self.failureResultOf(d, errors.NotFound).value), 404)

    def test_bad_provision_state(self):
        uuid = self.enroll(provision_state="active")
        d = defer.Deferred.fromCoroutine(self.introspection.start(uuid))
        self.h.flush()
        message = self.failureResultOf(d, errors.InvalidInput).value.message
        self.assertIn('Invalid provision state for introspection: "active"', message)
        self.assertRaises(errors.NotFound, self.record, uuid)

    def test_valid_provision_states(self):
        for state in ("enroll", "manageable", "inspecting", "inspect wait", "inspect failed"):
            uuid = self.enroll(macs=(), provision_state=state)
            self.assertEqual(self.start(uuid).state, "starting", state)

    def test_permit_active_introspection(self):
        self.harness(processing__permit_active_introspection=True)
        uuid = self.introspect(provision_state="active")
        self.assertEqual(self.record(uuid).state, "finished")
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power on", "an active node is not powered off")

    def test_power_validation_fails(self):
        uuid = self.enroll()
        self.fake.validate_power[uuid] = "Missing the following IPMI credentials: ipmi_address"
        d = defer.Deferred.fromCoroutine(self.introspection.start(uuid))
        self.h.flush()
        message = self.failureResultOf(d, errors.InvalidInput).value.message
        self.assertIn("Failed validation of power interface", message)
        self.assertIn("ipmi_address", message)

    def test_boot_device_failure_is_not_fatal(self):
        uuid = self.enroll()
        self.fake.fail("PUT", "/v1/nodes/{}/management".format(uuid), 400, body="not supported")
        self.start(uuid)
        self.assertEqual(self.record(uuid).state, "waiting")
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power on")

    def test_reboot_failure_ends_in_error(self):
        uuid = self.enroll()
        self.fake.fail("PUT", "/v1/nodes/{}/states/power".format(uuid), 400, body="no BMC")
        self.start(uuid)
        record = self.record(uuid)
        self.assertEqual(record.state, "error")
        self.assertIn("Failed to power on the node", record.error)
        self.assertIn("no BMC", record.error)

    def test_introspection_delay(self):
        """Power-ons are spaced by [DEFAULT]introspection_delay on the clock."""
        self.harness(DEFAULT__introspection_delay=5)
        first, second = self.enroll(macs=["52:54:00:00:00:01"]), self.enroll(macs=["52:54:00:00:00:02"])
        self.start(first)
        self.start(second)
        self.assertEqual(self.record(first).state, "waiting")
        self.assertEqual(self.record(second).state, "starting")
        self.assertEqual(self.fake.nodes[second]["power_state"], "power off")
        self.advance(4.9)
        self.assertEqual(self.record(second).state, "starting")
        self.advance(0.1)
        self.assertEqual(self.record(second).state, "waiting")
        self.assertEqual(self.fake.nodes[second]["power_state"], "power on")

    def test_restart_finished_node(self):
        uuid = self.introspect()
        first = self.record(uuid)
        self.advance(60)
        mark = self.mark()
        self.start(uuid)
        record = self.record(uuid)
        self.assertEqual(record.state, "waiting")
        self.assertIsNone(record.finished_at)
        self.assertIsNone(record.error)
        self.assertEqual(record.started_at, first.started_at + datetime.timedelta(seconds=60))
        self.assertIn(("PUT", "/v1/nodes/{}/states/power".format(uuid)), self.since(mark))
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power on")
        self.assertEqual(self.continue_(ipa_data()), {"uuid": uuid})
        self.assertEqual(self.record(uuid).state, "finished")

    def test_restart_refused_while_processing(self):
        uuid = self.enroll()
        self.start(uuid)
        self.h.store.thd_transition(uuid, "process", self.introspection.now())
        d = defer.Deferred.fromCoroutine(self.introspection.start(uuid))
        self.h.flush()
        self.assertEqual(status_for(self.failureResultOf(d, errors.NodeBusy).value), 409)

    def test_mac_shared_with_node_under_introspection(self):
        first = self.enroll(macs=[IPA_MAC])
        self.start(first)
        second = self.fake.add_node()
        self.fake.add_port(second, IPA_MAC)  # the fake lets two nodes share a MAC
        d = defer.Deferred.fromCoroutine(self.introspection.start(second))
        self.h.flush()
        message = self.failureResultOf(d, errors.InvalidInput).value.message
        self.assertIn(first, message)
        self.assertIn(IPA_MAC, message)
        self.assertRaises(errors.NotFound, self.record, second)


class ContinueTests(FlowTestCase):
    def test_ipa_flow(self):
        uuid = self.enroll()
        self.start(uuid)
        notified = self.h.filter.notified
        mark = self.mark()
        self.assertEqual(self.continue_(ipa_data()), {"uuid": uuid})
        self.assertEqual(
            self.since(mark),
            [("PATCH", "/v1/nodes/" + uuid), ("PUT", "/v1/nodes/{}/states/power".format(uuid))],
        )
        patch = self.property_patch(uuid)
        self.assertEqual(
            {k: patch[k] for k in ("/properties/cpus", "/properties/cpu_arch", "/properties/memory_mb",
                                   "/properties/local_gb")},
            {"/properties/cpus": "2", "/properties/cpu_arch": "x86_64", "/properties/memory_mb": "24576",
             "/properties/local_gb": "255"},
        )
        node = self.fake.nodes[uuid]
        self.assertEqual(node["properties"]["local_gb"], "255")
        self.assertEqual(node["power_state"], "power off")
        record = self.record(uuid)
        self.assertEqual((record.state, record.error), ("finished", None))
        self.assertIsNotNone(record.finished_at)
        self.assertIsNone(record.lease_until)
        self.assertEqual(self.h.filter.notified, notified + 1)
        self.assertRaises(errors.NotFound, self.h.store.thd_get_data, uuid, False)

    def test_store_data_database(self):
        self.harness(processing__store_data="database")
        uuid = self.introspect()
        self.assertEqual(self.h.store.thd_get_data(uuid, False), ipa_data())
        processed = self.h.store.thd_get_data(uuid, True)
        self.assertEqual((processed["local_gb"], processed["cpus"]), (255, 2))
        self.assertNotIn("logs", processed)

    def test_legacy_flow_bmc_lookup_only(self):
        """A node with no ports is found by its BMC address alone."""
        uuid = self.enroll(macs=(), driver_info={"ipmi_address": "192.0.2.200"})
        self.start(uuid)
        mark = self.mark()
        self.assertEqual(self.continue_(fixture("legacy-ramdisk.json")), {"uuid": uuid})
        self.assertEqual(
            self.since(mark),
            [("PATCH", "/v1/nodes/" + uuid), ("POST", "/v1/ports"), ("PUT", "/v1/nodes/{}/states/power".format(uuid))],
        )
        self.assertEqual([p["address"] for p in self.fake.node_ports(uuid)], [LEGACY_PXE_MAC])
        self.assertTrue(self.fake.node_ports(uuid)[0]["pxe_enabled"])
        patch = self.property_patch(uuid)
        self.assertEqual((patch["/properties/cpus"], patch["/properties/local_gb"]), ("8", "446"))

    def test_legacy_flow_by_mac(self):
        uuid = self.enroll(macs=["52:54:00:12:34:57"])
        self.start(uuid)
        self.assertEqual(self.continue_(fixture("legacy-ramdisk.json")), {"uuid": uuid})
        self.assertEqual(self.record(uuid).state, "finished")

    def test_bmc_from_redfish_url(self):
        uuid = self.enroll(macs=(), driver="redfish",
                           driver_info={"redfish_address": "https://[fd00::200]:8000/redfish/v1"})
        self.start(uuid)
        data = ipa_data(mac="52:54:00:00:00:77", bmc_address="0.0.0.0", bmc_v6address="fd00::200")
        self.assertEqual(self.continue_(data), {"uuid": uuid})

    def test_ipv6_only_bmc(self):
        uuid = self.enroll(macs=(), driver_info={"ipmi_address": "fd00::200"})
        self.start(uuid)
        data = ipa_data(mac="52:54:00:00:00:77", bmc_address=None, bmc_v6address="fd00::200")
        self.assertEqual(self.continue_(data), {"uuid": uuid})

    def test_ipv6_bmc_written_differently(self):
        """The same IPv6 BMC address in another spelling still finds the node."""
        uuid = self.enroll(macs=(), driver_info={"ipmi_address": "FD00:0:0::0200"})
        self.start(uuid)
        data = ipa_data(mac="52:54:00:00:00:77", bmc_address=None, bmc_v6address="fd00::200")
        d = self.post(data)
        self.assertEqual(self.successResultOf(d), {"uuid": uuid})


    def test_nodes_sharing_a_bmc_address(self):
        """virtualbmc and Redfish managers put several nodes behind one BMC IP."""
        first = self.enroll(macs=["52:54:00:00:00:01"], driver_info={"ipmi_address": "192.0.2.50", "ipmi_port": 6230})
        second = self.enroll(macs=["52:54:00:00:00:02"], driver_info={"ipmi_address": "192.0.2.50", "ipmi_port": 6231})
        self.start(first)
        self.start(second)
        self.assertEqual(self.record(second).state, "waiting")
        self.assertEqual(self.continue_(ipa_data(mac="52:54:00:00:00:02", bmc_address="192.0.2.50")), {"uuid": second})
        self.assertEqual(self.continue_(ipa_data(mac="52:54:00:00:00:01", bmc_address="192.0.2.50")), {"uuid": first})


    def test_only_new_ports_created(self):
        extra = [{"name": "eth1", "mac_address": "52:54:00:00:00:02", "ipv4_address": "192.0.2.3"},
                 {"name": "eth2", "mac_address": "52:54:00:00:00:03", "ipv4_address": "192.0.2.4"}]
        self.harness(processing__add_ports="active")
        uuid = self.enroll(macs=[IPA_MAC, "52:54:00:00:00:02"])
        self.start(uuid)
        mark = self.mark()
        self.continue_(ipa_data(extra_interfaces=extra))
        self.assertEqual([c for c in self.since(mark) if c[0] == "POST"], [("POST", "/v1/ports")])
        self.assertEqual(
            [p["address"] for p in self.fake.node_ports(uuid)], [IPA_MAC, "52:54:00:00:00:02", "52:54:00:00:00:03"]
        )

    def test_existing_port_no_post(self):
        uuid = self.introspect()
        self.assertNotIn("POST", [m for m, _ in self.fake.requests])
        self.assertEqual(len(self.fake.node_ports(uuid)), 1)

    def test_ironic_calls_per_node(self):
        """On the continue path: 1 PATCH + 1 power PUT + one POST per new port."""
        self.harness(processing__add_ports="active")
        nodes = {}
        for i in range(3):
            macs = ["52:54:00:00:0{}:01".format(i)]
            uuid = self.enroll(macs=macs)
            self.start(uuid)
            new = [{"name": "eth{}".format(n), "mac_address": "52:54:00:00:0{}:0{}".format(i, n + 1),
                    "ipv4_address": "192.0.2.{}".format(10 * i + n)} for n in range(1, i + 1)]
            nodes[uuid] = (macs[0], new)
        mark = self.mark()
        for uuid, (mac, new) in nodes.items():
            self.continue_(ipa_data(mac=mac, extra_interfaces=new))
        calls = self.since(mark)
        for uuid, (mac, new) in nodes.items():
            mine = [c for c in calls if uuid in c[1]]
            self.assertEqual(
                sorted(mine), [("PATCH", "/v1/nodes/" + uuid), ("PUT", "/v1/nodes/{}/states/power".format(uuid))]
            )
            self.assertEqual(len(self.fake.node_ports(uuid)), 1 + len(new))
        self.assertEqual(calls.count(("POST", "/v1/ports")), 0 + 1 + 2)
        self.assertEqual(len(calls), 3 * 2 + 3)

    def test_power_off_disabled(self):
        self.harness(processing__power_off=False)
        uuid = self.enroll()
        self.start(uuid)
        mark = self.mark()
        self.continue_(ipa_data())
        self.assertEqual(self.since(mark), [("PATCH", "/v1/nodes/" + uuid)])
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power on")
        self.assertEqual(self.record(uuid).state, "finished")

    def test_manage_boot_false_no_power_off(self):
        uuid = self.enroll()
        self.start(uuid, manage_boot=False)
        mark = self.mark()
        self.continue_(ipa_data())
        self.assertEqual(self.since(mark), [("PATCH", "/v1/nodes/" + uuid)])
        self.assertEqual(self.record(uuid).state, "finished")

    def test_power_off_failure(self):
        uuid = self.enroll()
        self.start(uuid)
        self.fake.fail("PUT", "/v1/nodes/{}/states/power".format(uuid), 400, body="BMC unreachable")
        self.assertEqual(self.continue_(ipa_data()), {"uuid": uuid})
        record = self.record(uuid)
        self.assertEqual(record.state, "error")
        self.assertIn("Failed to power off node", record.error)
        self.assertIn("BMC unreachable", record.error)

    def test_power_off_failure_ignored_in_enroll(self):
        uuid = self.enroll(provision_state="enroll")
        self.start(uuid)
        self.fake.fail("PUT", "/v1/nodes/{}/states/power".format(uuid), 400, body="no credentials yet")
        self.continue_(ipa_data())
        self.assertEqual(self.record(uuid).state, "finished")

    def test_ramdisk_error_ends_waiting_at_once(self):
        uuid = self.enroll()
        self.start(uuid)
        mark = self.mark()
        d = self.post(fixture("ipa-payload-collector-error.json"))
        failure = self.failureResultOf(d, errors.ProcessingError)
        self.assertIn("Ramdisk reported error", failure.value.message)
        record = self.record(uuid)
        self.assertEqual(record.state, "error")
        self.assertIn("failed to run dmidecode", record.error)
        self.assertIsNotNone(record.finished_at)
        self.assertEqual(self.since(mark), [], "nothing written to Ironic")
        self.assertEqual(self.h.store.thd_get_data(uuid, False), fixture("ipa-payload-collector-error.json"))

    def test_unknown_node(self):
        self.enroll()
        d = self.post(ipa_data(mac="52:54:00:99:99:99"))
        message = self.failureResultOf(d, errors.NotFound).value.message
        self.assertIn("52:54:00:99:99:99", message)

    def test_not_under_introspection(self):
        uuid = self.introspect()
        d = self.post(ipa_data())
        failure = self.failureResultOf(d, errors.NotUnderIntrospection)
        self.assertIn("not under introspection", failure.value.message)
        self.assertEqual(self.record(uuid).state, "finished")

    def test_ironic_400_during_patch(self):
        uuid = self.enroll()
        self.start(uuid)
        self.fake.fail("PATCH", "/v1/nodes", 400, body="Property cpus is read-only")
        mark = self.mark()
        failure = self.failureResultOf(self.post(ipa_data()), errors.IronicError)
        self.assertIn("Property cpus is read-only", failure.value.message)
        self.assertEqual(self.since(mark), [("PATCH", "/v1/nodes/" + uuid)], "not retried, no power off")
        record = self.record(uuid)
        self.assertEqual(record.state, "error")
        self.assertIn("Ironic answered 400 to PATCH", record.error)
        self.assertIn("Property cpus is read-only", record.error)

    def test_503_retried_on_the_clock(self):
        uuid = self.enroll()
        self.start(uuid)
        self.fake.fail("PATCH", "/v1/nodes", 503, times=2)
        d = self.post(ipa_data())
        self.assertNoResult(d)
        self.assertEqual(self.record(uuid).state, "processing")
        self.advance(2)
        self.assertNoResult(d)
        self.advance(4)
        self.assertEqual(self.successResultOf(d), {"uuid": uuid})
        self.h.flush()
        self.assertEqual(self.fake.calls("PATCH"), [("PATCH", "/v1/nodes/" + uuid)] * 3)
        self.assertEqual(len(self.fake.patches), 1)
        self.assertEqual(self.record(uuid).state, "finished")

    def test_locked_node_retried(self):
        uuid = self.enroll()
        self.start(uuid)
        self.fake.fail("PATCH", "/v1/nodes", 409, times=1, body=LOCKED.format(uuid))
        d = self.post(ipa_data())
        self.assertNoResult(d)
        self.advance(2)
        self.successResultOf(d)
        self.h.flush()
        self.assertEqual(self.record(uuid).state, "finished")

    def test_request_that_never_answers(self):
        """A hung PATCH times out on the clock, is retried, then fails the node."""
        self.harness(ironic__max_retries=1)
        hanging = HangingHTTP(self.h.ironic_http, lambda method, url: method == "PATCH")
        self.introspection.ironic = IronicClient(
            hanging, static_endpoint("http://ironic.test:6385"), self.h.clock, timeout=60, max_retries=1,
            retry_interval=2,
        )
        uuid = self.enroll()
        self.start(uuid)
        d = self.post(ipa_data())
        self.advance(60)
        self.assertEqual(hanging.hung, 1)
        self.assertNoResult(d)
        self.advance(2)
        self.assertEqual(hanging.hung, 2)
        self.advance(60)
        failure = self.failureResultOf(d, errors.IronicError)
        self.assertEqual(status_for(failure.value), 503)
        record = self.record(uuid)
        self.assertEqual(record.state, "error")
        self.assertIn("cannot reach Ironic: TimeoutError", record.error)
        self.assertEqual(self.h.clock.getDelayedCalls(), [])
        self.assertEqual(self.introspection.node_log_fields(uuid), {})

    def test_data_while_starting_is_processed_when_the_start_ends(self):
        uuid = self.enroll()
        self.fake.fail("PUT", "/v1/nodes/{}/management".format(uuid), 503)  # boot waits to retry
        self.start(uuid)
        self.assertEqual(self.record(uuid).state, "starting")
        self.assertEqual(self.successResultOf(self.post(ipa_data())), {"uuid": uuid})
        record = self.record(uuid)
        self.assertEqual((record.state, record.data_pending), ("starting", True))
        self.assertEqual(self.h.store.thd_get_data(uuid, False), ipa_data())
        self.assertEqual(self.fake.patches, [])
        self.advance(2)
        record = self.record(uuid)
        self.assertEqual((record.state, record.error, record.data_pending), ("finished", None, False))
        self.assertEqual(self.property_patch(uuid)["/properties/local_gb"], "255")
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power off")
        self.assertEqual(self.introspection._held, {})

    def test_log_fields_kept_while_the_introspection_runs_only(self):
        uuid = self.enroll()
        self.start(uuid)
        self.assertIn("mac", self.introspection.node_log_fields(uuid))
        self.successResultOf(self.post(ipa_data()))
        self.advance(2)
        self.assertEqual(self.record(uuid).state, "finished")
        self.assertEqual(self.introspection.node_log_fields(uuid), {})

    def test_conflict_while_processing(self):
        uuid = self.enroll()
        self.start(uuid)
        self.fake.fail("PATCH", "/v1/nodes", 503)
        first = self.post(ipa_data())
        self.assertNoResult(first)
        failure = self.failureResultOf(self.post(ipa_data()), errors.NodeBusy)
        self.assertIn("already being processed", failure.value.message)
        self.advance(2)
        self.successResultOf(first)

    def test_ramdisk_logs_stored_on_failure(self):
        logs_dir = self.mktemp()
        self.harness(processing__ramdisk_logs_dir=logs_dir)
        introspection = Introspection(
            self.h.store, self.h.ironic, self.h.config, self.h.clock, io_pool=SynchronousRunner(),
            pxe_filter=self.h.filter,
        )
        self.introspection = introspection
        uuid = self.enroll()
        self.start(uuid)
        self.failureResultOf(self.post(fixture("ipa-payload-collector-error.json")), errors.ProcessingError)
        names = os.listdir(logs_dir)
        self.assertEqual(len(names), 1)
        self.assertTrue(names[0].startswith(uuid + "_"), names)
        self.assertTrue(names[0].endswith(".tar.gz"))

    def test_unexpected_hook_exception(self):
        uuid = self.enroll()
        self.start(uuid)

        def broken(data, node):
            raise ZeroDivisionError("division by zero")

        self.patch(self.introspection.hooks[-1], "before_update", broken)
        failure = self.failureResultOf(self.post(ipa_data()), errors.InspectordError)
        self.assertEqual(status_for(failure.value), 400)
        hook = self.introspection.hooks[-1].name
        self.assertEqual(self.record(uuid).error, "Invalid ramdisk data: processing hook {} could not use it".format(hook))
        self.assertEqual(self.record(uuid).state, "error")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class TimeoutTests(FlowTestCase):
    def test_timeout(self):
        uuid = self.enroll()
        self.start(uuid)
        notified = self.h.filter.notified
        self.advance(3600)
        self.assertEqual(self.successResultOf(defer.Deferred.fromCoroutine(self.introspection.check_timeouts())), [])
        self.advance(1)
        self.assertEqual(
            self.successResultOf(defer.Deferred.fromCoroutine(self.introspection.check_timeouts())), [uuid]
        )
        record = self.record(uuid)
        self.assertEqual((record.state, record.error), ("error", "Introspection timeout"))
        self.assertEqual(self.h.filter.notified, notified + 1)
        failure = self.failureResultOf(self.post(ipa_data()), errors.NotUnderIntrospection)
        self.assertIn("Introspection timeout", failure.value.message)

    def test_finished_nodes_do_not_time_out(self):
        uuid = self.introspect()
        self.advance(7200)
        self.assertEqual(self.successResultOf(defer.Deferred.fromCoroutine(self.introspection.check_timeouts())), [])
        self.assertEqual(self.record(uuid).state, "finished")

    def test_timeout_zero_disables(self):
        self.harness(DEFAULT__timeout=0)
        uuid = self.enroll()
        self.start(uuid)
        self.advance(10 * 86400)
        self.assertEqual(self.successResultOf(defer.Deferred.fromCoroutine(self.introspection.check_timeouts())), [])
        self.assertEqual(self.record(uuid).state, "waiting")

    def test_periodic_never_raises(self):
        def broken(threshold):
            return defer.fail(RuntimeError("database went away"))

        self.patch(self.h.store, "timed_out", broken)
        d = defer.Deferred.fromCoroutine(self.introspection.periodic())
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_periodic_times_out_and_resumes(self):
        self.harness(DEFAULT__timeout=60)
        uuid = self.enroll()
        self.start(uuid)
        self.advance(61)
        self.successResultOf(defer.Deferred.fromCoroutine(self.introspection.periodic()))
        self.assertEqual(self.record(uuid).error, "Introspection timeout")


class ResumeTests(FlowTestCase):
    def abandon(self, uuid, data, lease_seconds):
        """What an instance that stopped while processing leaves behind."""
        store, now = self.h.store, self.introspection.now()
        store.thd_store_data(uuid, data, False, now)
        store.thd_transition(uuid, "process", now, lease_until=now + datetime.timedelta(seconds=lease_seconds),
                             owner="dead:1:0")

    def resume(self):
        d = defer.Deferred.fromCoroutine(self.introspection.resume_abandoned())
        self.h.flush()
        return self.successResultOf(d)

    def test_resume_expired_lease(self):
        uuid = self.enroll()
        self.start(uuid)
        self.abandon(uuid, ipa_data(), lease_seconds=300)
        self.assertEqual(self.resume(), [])
        self.advance(301)
        mark = self.mark()
        self.assertEqual(self.resume(), [uuid])
        self.h.flush()
        self.assertEqual(
            self.since(mark),
            [("PATCH", "/v1/nodes/" + uuid), ("PUT", "/v1/nodes/{}/states/power".format(uuid))],
        )
        self.assertEqual(self.property_patch(uuid)["/properties/local_gb"], "255")
        record = self.record(uuid)
        self.assertEqual(record.state, "finished")
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power off")
        self.assertEqual(self.resume(), [])

    def test_resume_without_data(self):
        uuid = self.enroll()
        self.start(uuid)
        self.abandon(uuid, ipa_data(), lease_seconds=1)
        self.h.store.thd_delete_data(uuid)
        self.advance(2)
        self.assertEqual(self.resume(), [uuid])
        record = self.record(uuid)
        self.assertEqual(record.state, "error")
        self.assertIn("no ramdisk data is stored", record.error)

    def test_resume_bad_data_fails_node(self):
        uuid = self.enroll()
        self.start(uuid)
        self.abandon(uuid, fixture("ipa-payload-collector-error.json"), lease_seconds=1)
        self.advance(2)
        self.assertEqual(self.resume(), [uuid])
        self.assertIn("Ramdisk reported error", self.record(uuid).error)

    def test_slow_processing_is_not_taken_over(self):
        """A node this instance is still processing is not resumed twice."""
        uuid = self.enroll()
        self.start(uuid)
        self.fake.fail("PATCH", "/v1/nodes", 409, times=100, body=LOCKED.format(uuid))
        d = self.post(ipa_data())
        self.advance(PROCESSING_LEASE.total_seconds() + 30, step=1)
        self.assertNoResult(d)
        self.assertEqual(self.resume(), [])
        self.assertEqual(self.record(uuid).lease_owner, self.introspection.owner)


class AbandonedDataTests(FlowTestCase):
    def test_raw_data_stored_before_processing(self):
        """Nothing accepted is lost: raw data is in the store while processing."""
        uuid = self.enroll()
        self.start(uuid)
        self.fake.fail("PATCH", "/v1/nodes", 503)
        data = ipa_data()
        d = self.post(copy.deepcopy(data))
        self.assertEqual(self.h.store.thd_get_data(uuid, False)["inventory"]["interfaces"],
                         data["inventory"]["interfaces"])
        self.assertEqual(self.record(uuid).lease_until, self.introspection.now() + PROCESSING_LEASE)
        self.advance(2)
        self.successResultOf(d)
