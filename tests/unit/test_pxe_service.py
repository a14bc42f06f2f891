"""The PXE filter service: when it syncs, what it decides, retries, health, wiring."""

import datetime

from treq.testing import StubTreq
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord import pxe
from inspectord import state as st
from inspectord.introspection import Introspection
from inspectord.ironic.client import IronicClient, static_endpoint
from inspectord.pxe import service as pxe_service
from inspectord.pxe.nftables import NftablesDriver
from inspectord.pxe.decisions import FilterState
from inspectord.pxe.process import CommandFailed
from inspectord.store import SQLStore, make_engine
from inspectord.store.pool import SynchronousPool
from inspectord.testing import FakeIronic
from inspectord.threads import SynchronousRunner
from tests.unit.helpers import make_config

A, B, C = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"
UNKNOWN = "52:54:00:ff:ff:ff"
NOW = datetime.datetime(2027, 1, 1)


class FakeDriver:
    name = "fake"

    def __init__(self):
        self.applied = []
        self.fail = None
        self.hold = None
        self.stopped = False

    async def apply(self, state, previous=None):
        self.applied.append((state, previous))
        if self.fail is not None:
            raise self.fail
        if self.hold is not None:
            await self.hold

    async def stop(self):
        self.stopped = True

    @property
    def state(self):
        return self.applied[-1][0]


class FakePorts:
    """``list_all_port_macs`` answering at once, failing, or when the test says."""

    def __init__(self, macs=()):
        self.macs = list(macs)
        self.calls = 0
        self.fail = None
        self.pending = None

    async def list_all_port_macs(self):
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        if self.pending is not None:
            await self.pending
        return list(self.macs)


def new_store():
    store = SQLStore(make_engine("sqlite://"), SynchronousPool())
    store.upgrade()
    return store


def start_node(store, uuid, macs):
    store.start(uuid, NOW, True, {"uuid": uuid}, {}, [("mac", m) for m in macs])


def finish_node(store, uuid):
    store.transition(uuid, st.Event.error, NOW, error="test ended it")


class ServiceTestCase(SynchronousTestCase):
    sync_period = 15

    def setUp(self):
        self.clock = task.Clock()
        self.store = new_store()
        self.ironic = FakePorts([A, B, C])
        self.driver = FakeDriver()
        self.service = self.make()

    def make(self, **kwargs):
        kwargs.setdefault("sync_period", self.sync_period)
        return pxe_service.PXEFilterService(self.driver, self.store, self.ironic, self.clock, **kwargs)

    def start(self):
        self.service.startService()
        self.addCleanup(self.stop)
        self.clock.advance(0)

    def stop(self):
        if self.service.running:
            self.successResultOf(self.service.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SyncDecisionTests(ServiceTestCase):
    def test_start_syncs_in_full_with_ironic_ports(self):
        start_node(self.store, "n1", [A])
        self.start()
        self.assertEqual(self.ironic.calls, 1)
        state, previous = self.driver.applied[-1]
        self.assertIsNone(previous)
        self.assertEqual(state, FilterState(frozenset({A}), frozenset({B, C}), True))
        health = self.service.health()
        self.assertEqual((health["state"], health["allowed"], health["denied"]), ("ok", 1, 2))
        self.assertEqual(health["ironic"]["ports"], 3)

    def test_before_ironic_answers_only_introspected_macs_allowed(self):
        self.ironic.pending = defer.Deferred()
        start_node(self.store, "n1", [A])
        self.start()
        self.assertEqual(self.driver.state, FilterState(frozenset({A}), frozenset(), False))
        self.assertEqual(self.service.health()["ironic"]["state"], "not read yet")
        self.ironic.pending.callback(None)
        self.clock.advance(0)
        self.assertEqual(self.driver.state, FilterState(frozenset({A}), frozenset({B, C}), True))

    def test_nothing_under_introspection_closes(self):
        self.start()
        self.assertEqual(self.driver.state, FilterState(frozenset(), frozenset({A, B, C}), False))

    def test_deny_unknown_and_discovery_passed_through(self):
        self.service = self.make(deny_unknown_macs=True)
        start_node(self.store, "n1", [A])
        self.start()
        self.assertFalse(self.driver.state.allow_unknown)
        self.successResultOf(self.service.stopService())
        self.driver = FakeDriver()
        self.service = self.make(discovery=True)
        self.start()
        self.assertTrue(self.driver.state.allows(UNKNOWN))
        self.assertFalse(self.driver.state.allows(B))

    def test_finished_node_denied_before_next_ironic_read(self):
        self.ironic.macs = []  # A's port is not in the last read of Ironic
        start_node(self.store, "n1", [A])
        start_node(self.store, "n2", [B])
        self.start()
        finish_node(self.store, "n1")
        self.service.notify()
        self.clock.advance(pxe_service.SYNC_DELAY)
        self.assertEqual(self.driver.state, FilterState(frozenset({B}), frozenset({A}), True))
        self.assertEqual(self.ironic.calls, 1)

    def test_invalid_addresses_ignored(self):
        self.ironic.macs = [A, "not-a-mac", "52:54:00:00:00:0b\n-A INPUT -j ACCEPT"]
        self.start()
        self.assertEqual(self.driver.state.denied, {A})

    def test_periodic_sync_rereads_ironic(self):
        self.start()
        self.ironic.macs.append(UNKNOWN)
        self.clock.advance(self.sync_period)
        self.assertEqual(self.ironic.calls, 2)
        state, previous = self.driver.applied[-1]
        self.assertIsNone(previous)  # periodic syncs are full: they repair drift
        self.assertIn(UNKNOWN, state.denied)


class EventSyncTests(ServiceTestCase):
    def test_notify_applies_within_a_second_as_a_diff(self):
        self.start()
        before = len(self.driver.applied)
        start_node(self.store, "n1", [A])
        self.service.notify()
        self.assertLess(pxe_service.SYNC_DELAY, 1)
        self.clock.advance(pxe_service.SYNC_DELAY)
        self.assertEqual(len(self.driver.applied), before + 1)
        state, previous = self.driver.applied[-1]
        self.assertTrue(state.allows(A))
        self.assertEqual(previous, FilterState(frozenset(), frozenset({A, B, C}), False))

    def test_burst_coalesces(self):
        self.start()
        before = len(self.driver.applied)
        for uuid, mac in (("n1", A), ("n2", B), ("n3", C)):
            start_node(self.store, uuid, [mac])
            self.service.notify()
            self.clock.advance(pxe_service.SYNC_DELAY / 4)
        self.clock.advance(pxe_service.SYNC_DELAY)
        self.assertEqual(len(self.driver.applied), before + 1)
        self.assertEqual(self.driver.state.allowed, {A, B, C})

    def test_notify_during_a_sync_runs_another_after_it(self):
        self.start()
        self.driver.hold = defer.Deferred()
        start_node(self.store, "n1", [A])
        self.service.notify()
        self.clock.advance(pxe_service.SYNC_DELAY)
        start_node(self.store, "n2", [B])
        self.service.notify()
        self.service.notify()
        self.clock.advance(5)
        self.assertEqual(self.driver.state.allowed, {A})  # still applying the first
        hold, self.driver.hold = self.driver.hold, None
        hold.callback(None)
        self.clock.advance(0)
        self.assertEqual(self.driver.state.allowed, {A, B})
        self.assertEqual(self.driver.applied[-1][1].allowed, {A})

    def test_nothing_changed_nothing_applied(self):
        self.start()
        before = len(self.driver.applied)
        self.service.notify()
        self.clock.advance(1)
        self.assertEqual(len(self.driver.applied), before)
        self.assertEqual(self.service.health()["syncs"], 2)

    def test_sync_waiters_each_get_their_deferred(self):
        self.start()
        d1, d2 = self.service.sync(), self.service.sync()
        self.assertNoResult(d1)
        self.clock.advance(0)
        self.assertIs(self.successResultOf(d1), True)
        self.assertIs(self.successResultOf(d2), True)

    def test_notify_before_start_is_harmless(self):
        self.service.notify()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class InstancesTests(ServiceTestCase):
    """Two instances' filters on one database: a change reaches the other within a second."""

    def setUp(self):
        super().setUp()
        self.other_driver = FakeDriver()
        self.other = pxe_service.PXEFilterService(
            self.other_driver, self.store, FakePorts([A, B, C]), self.clock, sync_period=self.sync_period
        )
        self.start()
        self.other.startService()
        self.addCleanup(lambda: self.successResultOf(self.other.stopService()) if self.other.running else None)
        self.clock.advance(pxe_service.POLL_INTERVAL)

    def test_change_notified_on_one_reaches_the_other_within_a_second(self):
        start_node(self.store, "n1", [A])
        self.service.notify()
        self.clock.advance(pxe_service.SYNC_DELAY)
        self.assertTrue(self.service.allows(A))
        self.assertFalse(self.other.allows(A))
        self.clock.advance(pxe_service.POLL_INTERVAL)
        self.assertTrue(self.other.allows(A))
        self.assertLess(pxe_service.POLL_INTERVAL + pxe_service.SYNC_DELAY, 1.0)
        finish_node(self.store, "n1")
        self.other.notify()
        self.clock.advance(pxe_service.SYNC_DELAY)
        self.assertFalse(self.other.allows(A))
        self.clock.advance(pxe_service.POLL_INTERVAL)
        self.assertFalse(self.service.allows(A))

    def test_own_change_costs_no_second_sync(self):
        syncs = self.service.health()["syncs"]
        start_node(self.store, "n1", [A])
        self.service.notify()
        self.clock.advance(pxe_service.SYNC_DELAY)
        self.clock.advance(pxe_service.POLL_INTERVAL * 4)
        self.assertEqual(self.service.health()["syncs"], syncs + 1)

    def test_unreadable_counter_left_to_the_periodic_sync(self):
        self.store.generation = lambda name: defer.fail(errors.InspectordError("database is locked"))
        start_node(self.store, "n1", [A])
        self.clock.advance(pxe_service.POLL_INTERVAL * 3)
        self.assertFalse(self.other.allows(A))
        self.clock.advance(self.sync_period)
        self.assertTrue(self.other.allows(A))


class FailureTests(ServiceTestCase):
    def test_backoff_then_recovery_without_restart(self):
        self.driver.fail = CommandFailed(("nft", "-f", "-"), "cannot be started (No such file or directory)")
        self.start()
        attempts = [self.clock.seconds()]
        health = self.service.health()
        self.assertEqual(health["state"], "failing")
        self.assertEqual(health["consecutive_failures"], 1)
        self.assertIn("cannot be started", health["last_error"])
        self.assertEqual(health["next_retry"], self.clock.seconds() + 1)
        seen = len(self.driver.applied)
        for _ in range(8):
            self.clock.advance(0.5)
            while len(self.driver.applied) == seen:
                self.clock.advance(0.5)
            seen = len(self.driver.applied)
            attempts.append(self.clock.seconds())
        gaps = [b - a for a, b in zip(attempts, attempts[1:])]
        # Periodic syncs (every 15 s) wait for the retry; the retry doubles, capped.
        self.assertEqual(gaps, [1, 2, 4, 8, 16, 32, 60, 60])
        self.assertEqual(self.service.health()["consecutive_failures"], 9)
        self.flushLoggedErrors()
        self.driver.fail = None
        self.clock.advance(60)
        health = self.service.health()
        self.assertEqual((health["state"], health["consecutive_failures"], health["last_error"]), ("ok", 0, None))
        self.assertIsNone(self.driver.applied[-1][1])  # the first sync after failures is a full one

    def test_notify_does_not_shorten_backoff(self):
        self.driver.fail = RuntimeError("boom")
        self.start()
        self.clock.advance(1)  # second failure: next retry in 2 s
        count = len(self.driver.applied)
        self.service.notify()
        self.clock.advance(1)
        self.assertEqual(len(self.driver.applied), count)
        self.clock.advance(1)
        self.assertEqual(len(self.driver.applied), count + 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 3)

    def test_store_failure_is_a_failed_sync(self):
        self.store.filter_macs = lambda: defer.fail(errors.InspectordError("database is locked"))
        self.start()
        self.assertEqual(self.service.health()["state"], "failing")
        self.assertEqual(self.driver.applied, [])
        self.flushLoggedErrors(errors.InspectordError)

    def test_ironic_failure_keeps_last_ports_and_recovers(self):
        self.start()
        self.ironic.fail = errors.IronicError("cannot reach Ironic: ConnectError")
        self.clock.advance(self.sync_period)
        health = self.service.health()
        self.assertEqual(health["ironic"]["state"], "failing")
        self.assertIn("ConnectError", health["ironic"]["last_error"])
        self.assertEqual(health["state"], "ok")
        self.assertEqual(self.driver.state.denied, {A, B, C})
        self.ironic.fail = None
        self.ironic.macs = [A]
        self.clock.advance(self.sync_period)
        self.assertEqual(self.service.health()["ironic"]["state"], "ok")
        self.assertEqual(self.driver.state.denied, {A})

    def test_stop_while_ironic_hangs_and_retry_pending(self):
        self.ironic.pending = defer.Deferred()
        self.driver.fail = RuntimeError("boom")
        self.service.startService()
        self.clock.advance(0)
        self.assertTrue(self.clock.getDelayedCalls())
        self.successResultOf(self.service.stopService())
        self.assertTrue(self.driver.stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.service.health()["state"], "stopped")
        self.flushLoggedErrors(RuntimeError)

    def test_stop_waits_for_the_apply_in_progress(self):
        self.driver.hold = defer.Deferred()
        self.service.startService()
        self.clock.advance(0)
        d = self.service.stopService()
        self.assertNoResult(d)
        self.assertFalse(self.driver.stopped)
        self.driver.hold.callback(None)
        self.successResultOf(d)
        self.assertTrue(self.driver.stopped)
        self.assertEqual(self.service.health()["state"], "stopped")


class NoPeriodicSyncTests(ServiceTestCase):
    sync_period = 0

    def test_reads_ironic_once_then_only_events(self):
        self.start()
        self.assertEqual(self.ironic.calls, 1)
        self.clock.advance(3600)
        self.assertEqual(self.ironic.calls, 1)
        start_node(self.store, "n1", [A])
        self.service.notify()
        self.clock.advance(1)
        self.assertTrue(self.driver.state.allows(A))


class StoreAndIronicTests(SynchronousTestCase):
    def test_filter_macs_of_active_nodes(self):
        store = new_store()
        start_node(store, "n1", [A, B])
        start_node(store, "n2", [])
        start_node(store, "n3", [C])
        finish_node(store, "n3")
        macs, active = self.successResultOf(store.filter_macs())
        self.assertEqual((sorted(macs), active), ([A, B], 2))

    def test_list_all_port_macs_pages(self):
        fake = FakeIronic()
        node = fake.add_node()
        macs = {"52:54:00:00:{:02x}:{:02x}".format(i >> 8, i & 0xFF) for i in range(2500)}
        for mac in macs:
            fake.add_port(node, mac)
        http = StubTreq(fake.app.resource())
        client = IronicClient(http, static_endpoint("http://ironic.test:6385"), task.Clock())
        d = defer.ensureDeferred(client.list_all_port_macs())
        for _ in range(10):
            http.flush()
        self.assertEqual(set(self.successResultOf(d)), macs)
        self.assertEqual(len(fake.calls("GET")), 3)


class MakeFilterTests(SynchronousTestCase):
    def test_default_is_iptables_as_ironic_inspector(self):
        config = make_config()
        self.assertEqual(config.pxe_filter.driver, "iptables")

    def test_noop(self):
        filt = pxe.make_filter(make_config(pxe_filter__driver="noop"))
        self.assertIsInstance(filt, pxe.NoopFilter)
        filt.notify()
        self.assertEqual(filt.health(), {"driver": "noop", "state": "ok"})

    def test_nftables(self):
        config = make_config(pxe_filter__driver="nftables", nftables__table="pxe", iptables__dnsmasq_interface="br1")
        filt = pxe.make_filter(config, new_store(), FakePorts(), task.Clock())
        self.assertIsInstance(filt.driver, NftablesDriver)
        self.assertEqual((filt.driver.table, filt.driver.interface), ("pxe", "br1"))
        self.assertEqual(filt.health()["driver"], "nftables")

    def test_dnsmasq_and_iptables(self):
        for driver in ("dnsmasq", "iptables"):
            config = make_config(pxe_filter__driver=driver)
            filt = pxe.make_filter(config, new_store(), FakePorts(), task.Clock(), io_pool=SynchronousRunner())
            self.assertEqual(filt.driver.name, driver)

    def test_bad_table_name_fails_at_start_up(self):
        config = make_config(pxe_filter__driver="nftables", nftables__table="x; flush ruleset")
        self.assertRaises(errors.ConfigError, pxe.make_filter, config, new_store(), FakePorts(), task.Clock())


class IntrospectionWiringTests(SynchronousTestCase):
    """Introspection.start/abort drive the real filter service within a second."""

    def test_start_and_abort(self):
        clock = task.Clock()
        clock.advance(1_800_000_000)
        config = make_config()
        fake = FakeIronic()
        node = fake.add_node(macs=[A])
        fake.add_node(macs=[B])
        http = StubTreq(fake.app.resource())
        ironic = IronicClient(http, static_endpoint("http://ironic.test:6385"), clock)
        store = new_store()
        driver = FakeDriver()
        filt = pxe_service.PXEFilterService(driver, store, ironic, clock, sync_period=15)
        introspection = Introspection(store, ironic, config, clock, pxe_filter=filt)

        def flush():
            for _ in range(20):
                http.flush()
                clock.advance(0)

        filt.startService()
        flush()
        self.assertEqual(driver.state, FilterState(frozenset(), frozenset({A, B}), False))
        d = defer.ensureDeferred(introspection.start(node))
        flush()
        self.successResultOf(d)
        clock.advance(pxe_service.SYNC_DELAY)
        flush()
        self.assertEqual(driver.state, FilterState(frozenset({A}), frozenset({B}), True))
        d = defer.ensureDeferred(introspection.abort(node))
        flush()
        clock.advance(1)
        flush()
        self.assertEqual(driver.state, FilterState(frozenset(), frozenset({A, B}), False))
        self.successResultOf(filt.stopService())
        flush()
