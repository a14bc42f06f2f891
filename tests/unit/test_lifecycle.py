"""Leases of the transient states, instances that die or stop, data that comes early.

Two :class:`Introspection` instances share one store: ``a`` is the one that
dies (its Ironic calls hang, then it stops renewing its leases), ``b`` the
survivor whose lease scan takes the nodes over.
"""

import datetime

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord.api.status import status_for
from inspectord.introspection import Introspection
from inspectord.ironic.client import IronicClient, static_endpoint
from inspectord.testing import FakePXEFilter
from tests.unit.helpers import Harness
from tests.unit.test_discovery import ENROLL, machine
from tests.unit.test_introspection import ipa_data

LEASE = 15  # [lifecycle] defaults for starting, aborting, reapplying, enrolling
PROCESSING_LEASE = 30
MACS = ["52:54:00:00:10:{:02x}".format(n) for n in range(8)]


class Hanging:
    """An HTTP client whose requests ``hang`` selects never answer.

    With ``forward``, the request still reaches the fake Ironic (its effect
    happens) and only the answer is lost.
    """

    def __init__(self, inner, hang, forward=False):
        self.inner = inner
        self.hang = hang
        self.forward = forward
        self.hung = []

    def request(self, method, url, **kwargs):
        if self.hang(method, url):
            self.hung.append((method, url))
            if self.forward:
                self.inner.request(method, url, **kwargs)
            return defer.Deferred()
        return self.inner.request(method, url, **kwargs)


class LifecycleCase(SynchronousTestCase):
    overrides = {}

    def setUp(self):
        self.h = Harness(**self.overrides)
        self.fake = self.h.fake
        self.b = self.h.introspection
        self.b.owner = "survivor:1:b"

    def instance(self, hang=lambda method, url: False, forward=False, owner="doomed:1:a"):
        """Another instance on the same store whose selected Ironic calls hang."""
        self.http = Hanging(self.h.ironic_http, hang, forward)
        ironic = IronicClient(self.http, static_endpoint("http://ironic.test:6385"), self.h.clock,
                              timeout=10**9, max_retries=0)
        return Introspection(self.h.store, ironic, self.h.config, self.h.clock, pxe_filter=FakePXEFilter(), owner=owner)

    @staticmethod
    def kill(instance):
        """``kill -9``: the instance does nothing more, its leases are not renewed."""
        instance._stopping = True
        if instance._renewal is not None:
            instance._renewal.stop()
            instance._renewal = None
        instance._held.clear()

    def drive(self, coro):
        d = defer.Deferred.fromCoroutine(coro)
        self.h.flush()
        return d

    def record(self, uuid):
        return self.h.store.thd_get_node(uuid)

    def advance(self, seconds, step=1.0):
        while seconds > 0:
            self.h.clock.advance(min(step, seconds))
            self.h.flush()
            seconds -= step

    def scan(self, instance=None):
        return self.successResultOf(self.drive((instance or self.b).resume_abandoned()))

    def recover(self, uuid, leaving, instance=None, limit=120):
        """Seconds until a scan every 3 s ([lifecycle]lease_check_period) moves ``uuid`` out of ``leaving``."""
        for elapsed in range(3, limit, 3):
            self.advance(3)
            self.scan(instance)
            self.h.flush()
            if self.record(uuid).state != leaving:
                return elapsed
        self.fail("node {} still {} after {} s".format(uuid, leaving, limit))

    def post(self, instance, data):
        return self.drive(instance.process(data))


class LeaseTests(LifecycleCase):
    overrides = {"DEFAULT__introspection_delay": 100}

    def test_start_is_leased_and_renewed(self):
        first, second = (self.fake.add_node(macs=[m]) for m in MACS[:2])
        a = self.instance()
        for uuid in (first, second):
            self.successResultOf(self.drive(a.start(uuid)))
        record = self.record(second)
        self.assertEqual((record.state, record.lease_owner), ("starting", a.owner))
        self.assertEqual(record.lease_until, a.now() + datetime.timedelta(seconds=LEASE))
        self.advance(60)  # queued behind introspection_delay, far past one lease
        record = self.record(second)
        self.assertEqual((record.state, record.lease_owner), ("starting", a.owner))
        self.assertGreater(record.lease_until, a.now())
        self.assertEqual(self.scan(), [])

    def test_scan_leaves_waiting_and_final_nodes_alone(self):
        uuid = self.fake.add_node(macs=MACS[:1])
        self.successResultOf(self.drive(self.b.start(uuid)))
        self.assertEqual(self.record(uuid).state, "waiting")
        self.assertIsNone(self.record(uuid).lease_owner)
        self.advance(3600 - 1, step=600)
        self.assertEqual(self.scan(), [])

    def test_taken_over_lease_is_not_renewed_by_the_old_owner(self):
        uuid = self.fake.add_node(macs=MACS[:1])
        self.fake.add_node(macs=MACS[1:2])
        a = self.instance()
        self.successResultOf(self.drive(a.start(uuid)))
        self.h.store.thd_claim(self.record(uuid), a.now(), a.now(), owner="thief:1:c")
        self.advance(10)
        self.assertEqual(self.record(uuid).lease_owner, "thief:1:c")

    def test_renewal_is_one_statement_per_state(self):
        """A real clock moves between two readings: the leases of one state
        still end together, renewed by one UPDATE however many nodes."""
        uuids = [self.fake.add_node(macs=[m]) for m in MACS[:6]]
        a = self.instance()
        clock = a.clock

        class Ticking:
            """The test's clock, a microsecond later at every reading."""

            readings = 0

            def seconds(self):
                self.readings += 1
                return clock.seconds() + self.readings * 1e-6

            def __getattr__(self, name):
                return getattr(clock, name)

        a.clock = Ticking()
        for uuid in uuids:
            self.successResultOf(self.drive(a.start(uuid)))  # all queued behind introspection_delay: starting
        holds = [a.hold(uuid, "processing") for uuid in uuids[:2]]  # and two in another state
        renewals, renew = [], self.h.store.renew_leases

        def recording(owner, ends):
            renewals.append({end: sorted(us) for end, us in ends.items()})
            return renew(owner, ends)

        self.patch(self.h.store, "renew_leases", recording)
        self.successResultOf(a._renew())
        self.assertEqual(len(renewals), 1)
        self.assertEqual(sorted(renewals[0].values()), sorted([sorted(uuids[:2]), sorted(uuids[2:])]))
        starting_end = [end for end, us in renewals[0].items() if us == sorted(uuids[2:])][0]
        self.assertEqual([self.record(u).lease_until for u in uuids[2:]], [starting_end] * 4)
        for hold in holds:
            hold.stop()


class DeadOwnerTests(LifecycleCase):
    """An instance killed in each transient state: the survivor ends the node within one lease."""

    def test_killed_while_starting(self):
        uuid = self.fake.add_node(macs=MACS[:1])
        a = self.instance(hang=lambda method, url: method == "PUT" and url.endswith("/states/power"))
        self.successResultOf(self.drive(a.start(uuid)))
        self.assertEqual(self.record(uuid).state, "starting")
        self.kill(a)
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power off")
        elapsed = self.recover(uuid, "starting")
        self.assertLessEqual(elapsed, LEASE + 3)
        self.assertEqual(self.record(uuid).state, "waiting")
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power on")  # the survivor booted it
        self.assertEqual(self.successResultOf(self.post(self.b, ipa_data(mac=MACS[0]))), {"uuid": uuid})
        self.assertEqual(self.record(uuid).state, "finished")

    def test_killed_while_aborting(self):
        uuid = self.fake.add_node(macs=MACS[:1])
        self.successResultOf(self.drive(self.b.start(uuid)))
        a = self.instance(hang=lambda method, url: method == "PUT" and url.endswith("/states/power"))
        self.successResultOf(self.drive(a.abort(uuid)))
        self.assertEqual(self.record(uuid).state, "aborting")
        self.kill(a)
        elapsed = self.recover(uuid, "aborting")
        self.assertLessEqual(elapsed, LEASE + 3)
        record = self.record(uuid)
        self.assertEqual((record.state, record.error), ("error", "Canceled by operator"))
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power off")

    def test_killed_while_processing(self):
        uuid = self.fake.add_node(macs=MACS[:1])
        self.successResultOf(self.drive(self.b.start(uuid)))
        a = self.instance(hang=lambda method, url: method == "PATCH")
        answer = self.post(a, ipa_data(mac=MACS[0]))
        self.assertNoResult(answer)
        self.kill(a)
        elapsed = self.recover(uuid, "processing")
        self.assertLessEqual(elapsed, PROCESSING_LEASE + 3)
        self.assertEqual(self.record(uuid).state, "finished")
        self.assertEqual(self.fake.nodes[uuid]["properties"]["local_gb"], "255")

    def test_killed_while_reapplying(self):
        self.h = Harness(processing__store_data="database")
        self.fake, self.b = self.h.fake, self.h.introspection
        uuid = self.fake.add_node(macs=MACS[:1])
        self.successResultOf(self.drive(self.b.start(uuid)))
        self.successResultOf(self.post(self.b, ipa_data(mac=MACS[0])))
        self.assertEqual(self.record(uuid).state, "finished")
        patches = len(self.fake.patches)
        a = self.instance(hang=lambda method, url: method == "PATCH")
        self.successResultOf(self.drive(a.reapply(uuid)))
        self.assertEqual(self.record(uuid).state, "reapplying")
        self.kill(a)
        elapsed = self.recover(uuid, "reapplying")
        self.assertLessEqual(elapsed, LEASE + 3)
        self.assertEqual(self.record(uuid).state, "finished")
        self.assertEqual(len(self.fake.patches), patches + 1)

    def test_data_while_starting_then_owner_killed(self):
        """The data is stored: the survivor processes it without booting the node again."""
        uuid = self.fake.add_node(macs=MACS[:1])
        a = self.instance(hang=lambda method, url: method == "PUT")
        self.successResultOf(self.drive(a.start(uuid)))
        self.assertEqual(self.successResultOf(self.post(self.b, ipa_data(mac=MACS[0]))), {"uuid": uuid})
        self.kill(a)
        powers = [c for c in self.fake.requests if c[0] == "PUT"]
        elapsed = self.recover(uuid, "starting")
        self.assertLessEqual(elapsed, LEASE + 3)
        self.assertEqual(self.record(uuid).state, "finished")
        after = [c for c in self.fake.requests if c[0] == "PUT"]
        self.assertEqual(after[len(powers):], [("PUT", "/v1/nodes/{}/states/power".format(uuid))])  # power off only
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power off")

    def test_node_from_before_leases_is_resumed(self):
        uuid = self.fake.add_node(macs=MACS[:1])
        self.h.store.thd_start(uuid, self.b.now(), True, {}, {}, [("mac", MACS[0])])  # no owner, no lease
        self.assertEqual(self.scan(), [uuid])
        self.assertEqual(self.record(uuid).state, "waiting")


class DiscoveryOrphanTests(LifecycleCase):
    overrides = ENROLL

    def orphan(self, forward):
        a = self.instance(hang=lambda method, url: method == "POST" and url.endswith("/v1/nodes"), forward=forward)
        answer = self.post(a, machine(1))
        self.assertNoResult(answer)
        self.assertEqual(len(self.http.hung), 1)
        self.kill(a)
        [(_, uuid, _, outcome)] = self.successResultOf(self.h.store.discoveries())
        self.assertIsNone(outcome)
        self.assertEqual(self.record(uuid).state, "enrolling")
        # Until the lease ends, the machine is being enrolled: its retry is a conflict.
        self.assertEqual(status_for(self.failureResultOf(self.post(self.b, machine(1))).value), 409)
        return uuid

    def recover_orphan(self, uuid):
        for elapsed in range(3, 60, 3):
            self.advance(3)
            self.scan()
            try:
                self.record(uuid)
            except errors.NotFound:
                return elapsed
        self.fail("orphan {} not recovered".format(uuid))

    def test_killed_after_ironic_created_the_node(self):
        uuid = self.orphan(forward=True)
        self.assertIn(uuid, self.fake.nodes)
        self.assertLessEqual(self.recover_orphan(uuid), LEASE + 3)
        self.assertNotIn(uuid, self.fake.nodes)
        self.assertIn("node it created in Ironic was deleted", self.successResultOf(self.h.store.discoveries())[0][3])
        self.assertDiscoverableAgain()

    def test_killed_before_ironic_created_the_node(self):
        uuid = self.orphan(forward=False)
        self.assertNotIn(uuid, self.fake.nodes)
        self.assertLessEqual(self.recover_orphan(uuid), LEASE + 3)
        self.assertIn("before Ironic created the node", self.successResultOf(self.h.store.discoveries())[0][3])
        self.assertDiscoverableAgain()

    def assertDiscoverableAgain(self):
        answer = self.successResultOf(self.post(self.b, machine(1)))
        self.assertEqual(self.record(answer["uuid"]).state, "finished")
        self.assertEqual(list(self.fake.nodes), [answer["uuid"]])


class EarlyDataTests(LifecycleCase):
    """Ramdisk data that arrives before the start ended."""

    def gate_started(self, instance):
        """Hold the end of ``instance``'s starts until the returned Deferred fires."""
        gate = defer.Deferred()
        original = instance.store.started

        def started(*args):
            return gate.addCallback(lambda _: original(*args))

        self.patch(instance.store, "started", started)
        return gate

    def test_fast_track_right_after_the_start(self):
        """manage_boot=false: the ramdisk is already up and posts at once."""
        uuid = self.fake.add_node(macs=MACS[:1])
        gate = self.gate_started(self.b)
        self.successResultOf(self.drive(self.b.start(uuid, manage_boot=False)))
        self.assertEqual(self.record(uuid).state, "starting")
        self.assertEqual(self.successResultOf(self.post(self.b, ipa_data(mac=MACS[0]))), {"uuid": uuid})
        gate.callback(None)
        self.h.flush()
        record = self.record(uuid)
        self.assertEqual((record.state, record.error), ("finished", None))
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power off")  # never powered on by us either
        self.assertEqual([m for m, p in self.fake.requests if "states/power" in p], [])

    def test_posted_to_another_instance(self):
        uuid = self.fake.add_node(macs=MACS[:1])
        a = self.instance(owner="starter:1:a")
        gate = self.gate_started(a)
        self.successResultOf(self.drive(a.start(uuid)))
        self.assertEqual(self.successResultOf(self.post(self.b, ipa_data(mac=MACS[0]))), {"uuid": uuid})
        self.assertEqual(self.record(uuid).state, "starting")
        gate.callback(None)
        self.h.flush()
        self.assertEqual(self.record(uuid).state, "finished")
        self.assertEqual(self.fake.nodes[uuid]["properties"]["local_gb"], "255")

    def test_posted_while_queued_skips_the_power_on(self):
        self.h = Harness(DEFAULT__introspection_delay=10)
        self.fake, self.b = self.h.fake, self.h.introspection
        first, second = (self.fake.add_node(macs=[m]) for m in MACS[:2])
        for uuid in (first, second):
            self.successResultOf(self.drive(self.b.start(uuid)))
        self.assertEqual(self.successResultOf(self.post(self.b, ipa_data(mac=MACS[1]))), {"uuid": second})
        self.advance(10)
        self.assertEqual(self.record(second).state, "finished")
        self.assertNotIn(("PUT", "/v1/nodes/{}/management/boot_device".format(second)), self.fake.requests)

    def test_power_on_failure_after_the_data_came_is_not_fatal(self):
        uuid = self.fake.add_node(macs=MACS[:1])
        self.fake.fail("PUT", "/v1/nodes/{}/states/power".format(uuid), 503)  # retried in 2 s...
        self.fake.fail("PUT", "/v1/nodes/{}/states/power".format(uuid), 400, body="no BMC")  # ...and refused
        self.successResultOf(self.drive(self.b.start(uuid)))
        self.successResultOf(self.post(self.b, ipa_data(mac=MACS[0])))
        self.advance(2)
        record = self.record(uuid)
        self.assertEqual((record.state, record.error), ("finished", None))


class StopTests(LifecycleCase):
    overrides = {"DEFAULT__introspection_delay": 5}

    def stop(self, instance, grace=None):
        return self.drive(instance.stop(grace))

    def test_queued_starts_released_at_once(self):
        uuids = [self.fake.add_node(macs=[m]) for m in MACS[:4]]
        a = self.instance()
        for uuid in uuids:
            self.successResultOf(self.drive(a.start(uuid)))
        self.assertEqual([self.record(u).state for u in uuids], ["waiting"] + ["starting"] * 3)
        self.successResultOf(self.stop(a))  # no clock movement: nothing waits for the delay
        for uuid in uuids[1:]:
            record = self.record(uuid)
            self.assertEqual((record.state, record.lease_owner), ("starting", None))
            self.assertLessEqual(record.lease_until, a.now())
            self.assertEqual(self.fake.nodes[uuid]["power_state"], "power off")
        self.assertEqual(sorted(self.scan()), sorted(uuids[1:]))
        self.advance(10)
        self.assertEqual([self.record(u).state for u in uuids], ["waiting"] * 4)
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_callback_in_flight_is_drained(self):
        uuid = self.fake.add_node(macs=MACS[:1])
        self.successResultOf(self.drive(self.b.start(uuid)))
        self.fake.fail("PATCH", "/v1/nodes", 503)  # Ironic retried in 2 s
        answer = self.post(self.b, ipa_data(mac=MACS[0]))
        stopping = self.stop(self.b, grace=20)
        self.assertNoResult(answer)
        self.assertNoResult(stopping)
        # Stopping: new work is refused with 503, which the ramdisk retries.
        refused = self.failureResultOf(self.post(self.b, ipa_data(mac=MACS[0])), errors.Stopping)
        self.assertEqual(status_for(refused.value), 503)
        self.failureResultOf(self.drive(self.b.start(uuid)), errors.Stopping)
        self.advance(2)
        self.assertEqual(self.successResultOf(answer), {"uuid": uuid})
        self.successResultOf(stopping)
        self.assertEqual(self.record(uuid).state, "finished")

    def test_work_past_the_grace_is_released(self):
        uuid = self.fake.add_node(macs=MACS[:1])
        self.successResultOf(self.drive(self.b.start(uuid)))
        a = self.instance(hang=lambda method, url: method == "PATCH")
        answer = self.post(a, ipa_data(mac=MACS[0]))
        stopping = self.stop(a, grace=20)
        self.advance(19)
        self.assertNoResult(stopping)
        self.advance(1)
        self.successResultOf(stopping)
        self.assertEqual(status_for(self.failureResultOf(answer, errors.Stopping).value), 503)
        record = self.record(uuid)
        self.assertEqual((record.state, record.lease_owner), ("processing", None))
        self.assertEqual(self.scan(), [uuid])  # at once, not after the lease
        self.assertEqual(self.record(uuid).state, "finished")
