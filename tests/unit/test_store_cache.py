"""Status reads served from what this instance last read or wrote."""

import datetime

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from inspectord.store import SQLStore
from inspectord.store.pool import SynchronousPool
from tests.unit.helpers import migrated_engine

NOW = datetime.datetime(2026, 11, 27, 12, 0, 0)


class RecentRecordTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        engine = migrated_engine()
        self.store = SQLStore(engine, SynchronousPool(), clock=self.clock, status_cache_time=1.0)
        # A second store on the same database: another instance.
        self.other = SQLStore(engine, SynchronousPool())
        self.successResultOf(self.store.start("u1", NOW, True, {}, {}, [("mac", "aa:bb:cc:dd:ee:ff")]))

    def recent(self):
        return self.successResultOf(self.store.get_node_recent("u1"))

    def test_own_changes_show_at_once(self):
        self.assertEqual(self.recent().state, "starting")
        self.successResultOf(self.store.transition("u1", "wait", NOW))
        self.assertEqual(self.recent().state, "waiting")

    def test_other_instances_changes_show_within_the_cache_time(self):
        self.successResultOf(self.other.transition("u1", "wait", NOW))
        self.assertEqual(self.recent().state, "starting")  # served from memory
        self.clock.advance(1.5)
        self.assertEqual(self.recent().state, "waiting")

    def test_disabled_reads_the_database_every_time(self):
        store = SQLStore(self.store.engine, SynchronousPool(), clock=self.clock, status_cache_time=0)
        self.assertEqual(self.successResultOf(store.get_node_recent("u1")).state, "starting")
        self.successResultOf(self.other.transition("u1", "wait", NOW))
        self.assertEqual(self.successResultOf(store.get_node_recent("u1")).state, "waiting")

    def test_unknown_node_is_not_found(self):
        from inspectord import errors

        self.failureResultOf(self.store.get_node_recent("nope"), errors.NotFound)

    def test_expired_records_are_swept_as_the_cache_grows(self):
        from inspectord.store import sql

        for i in range(sql._RECENT_SWEEP - 1):
            self.successResultOf(self.store.start("n{}".format(i), NOW, True, {"name": "n"}, {}, []))
        self.assertEqual(len(self.store._recent), sql._RECENT_SWEEP)
        self.clock.advance(1.5)
        self.successResultOf(self.store.start("last", NOW, True, {}, {}, []))
        # Only the record within the cache time is left.
        self.assertEqual(list(self.store._recent), ["last"])
        self.assertEqual(self.store._recent_sweep_at, sql._RECENT_SWEEP)
        self.clock.advance(0.5)
        self.assertEqual(self.successResultOf(self.store.get_node_recent("last")).uuid, "last")
