"""The SQL node store: compare-and-set transitions, lookup, data, migrations.

The test cases here are the store's contract, run on SQLite in memory
through :class:`~inspectord.interfaces.IStore`'s methods only (the unit
tests of the components use this same store, not a fake);
``tests/integration/test_store_engines.py`` runs the same classes on real
MariaDB and PostgreSQL servers by overriding :meth:`StoreTestCase.make_engine`
and :meth:`MigrationTests.database_url`.
"""

import datetime
import io
import os
import sys

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from twisted.internet import defer, task
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface.verify import verifyObject

from inspectord import errors, tap
from inspectord.interfaces import IStore
from inspectord.api.status import status_for
from inspectord.store import schema, sql
from inspectord.store.adopt import DatabaseShape
from inspectord.store.pool import SynchronousPool
from inspectord.store.records import Match, NodeRecord
from inspectord.store.sql import SQLStore, make_engine, thd_upgrade
from inspectord.timeutil import utc

T0 = datetime.datetime(2027, 1, 15, 8, 0, 0)
A = "11111111-1111-1111-1111-111111111111"
B = "22222222-2222-2222-2222-222222222222"
C = "33333333-3333-3333-3333-333333333333"
MAC1, MAC2, MAC3 = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"


HEAD = ScriptDirectory(os.path.join(os.path.dirname(sql.__file__), "migrations")).get_current_head()


def migrate(engine, revision, version_table=None):
    """Run inspectord's migrations from the first one up to ``revision``."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", os.path.join(os.path.dirname(sql.__file__), "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        if version_table:
            cfg.attributes["version_table"] = version_table
        alembic_command.upgrade(cfg, revision)


def seconds(n):
    return datetime.timedelta(seconds=n)


class InterfaceOnly:
    """``provider`` seen through ``interface``: any other attribute is an AttributeError.

    The contract tests reach the store through this, so they test what the
    components may use and nothing of one implementation.
    """

    def __init__(self, interface, provider):
        self._names = frozenset(interface.names(all=True))
        self._interface = interface
        self._provider = provider

    def __getattr__(self, name):
        if name not in self._names:
            raise AttributeError("{} is not part of {}".format(name, self._interface.__name__))
        return getattr(self._provider, name)


class StoreTestCase(SynchronousTestCase):
    """The contract of :class:`~inspectord.interfaces.IStore`, through its methods only.

    ``self.sql`` is the :class:`SQLStore` under test; ``self.store`` lets
    through only what :class:`IStore` declares.
    """

    def make_engine(self):
        """A database for one test (migrated or not)."""
        return make_engine("sqlite://")

    def setUp(self):
        self.engine = self.make_engine()
        self.addCleanup(self.engine.dispose)
        self.sql = SQLStore(self.engine, SynchronousPool())
        self.store = InterfaceOnly(IStore, self.sql)
        self.successResultOf(self.store.upgrade())

    def call(self, method, *args, **kwargs):
        """The result of the store's ``method`` (the synchronous pool has it at once)."""
        return self.successResultOf(getattr(self.store, method)(*args, **kwargs))

    def refused(self, error, method, *args, **kwargs):
        """The ``error`` the store's ``method`` fails with."""
        return self.failureResultOf(getattr(self.store, method)(*args, **kwargs), error).value

    def starting(self, uuid, macs=(), bmcs=(), now=T0, manage_boot=True, node=None):
        attributes = [("mac", m) for m in macs] + [("bmc_address", b) for b in bmcs]
        return self.store.start(
            uuid, now, manage_boot, node or {"name": "node-" + uuid[:4]},
            {m: {"uuid": "port-" + m, "pxe_enabled": True} for m in macs}, attributes,
        )

    def start(self, *args, **kwargs):
        return self.successResultOf(self.starting(*args, **kwargs))

    def move(self, uuid, *events, now=T0, **kwargs):
        record = None
        for event in events:
            record = self.call("transition", uuid, event, now, **kwargs)
        return record

    def found_by(self, macs=(), bmcs=()):
        """The UUID the lookup finds by these attributes, or None."""
        match = self.call("lookup", list(macs), list(bmcs))
        return match and match.uuid


class InterfaceTests(StoreTestCase):
    def test_provides_istore(self):
        self.assertTrue(verifyObject(IStore, self.sql))

    def test_contract_sees_only_istore(self):
        self.assertRaises(AttributeError, getattr, self.store, "thd_get_node")
        self.assertRaises(AttributeError, getattr, self.store, "engine")


class StartTests(StoreTestCase):
    def test_insert(self):
        record = self.start(A, macs=[MAC1, MAC2], bmcs=["192.0.2.1"], manage_boot=False)
        self.assertIsInstance(record, NodeRecord)
        self.assertEqual(record.uuid, A)
        self.assertEqual(record.state, "starting")
        self.assertEqual(record.started_at, T0)
        self.assertIsNone(record.finished_at)
        self.assertIsNone(record.error)
        self.assertFalse(record.manage_boot)
        self.assertTrue(record.active)
        self.assertFalse(record.finished)
        self.assertEqual(record.name, "node-1111")
        self.assertEqual(record.ports[MAC1], {"uuid": "port-" + MAC1, "pxe_enabled": True})
        self.assertTrue(record.version_id)
        found = (self.found_by([MAC1]), self.found_by([MAC2]), self.found_by(bmcs=["192.0.2.1"]))
        self.assertEqual(found, (A, A, A))
        self.assertEqual(self.call("lookup", [MAC1, MAC2], ["192.0.2.1"]).score, 3)
        self.assertEqual(sorted(self.call("filter_macs")[0]), [MAC1, MAC2])
        self.assertEqual(self.call("get_node", A), record)

    def test_async_start(self):
        """The public methods hand the work to the pool and give records."""
        record = self.successResultOf(self.store.start(A, T0, True, {}, {}, [("mac", MAC1)]))
        self.assertEqual(record.state, "starting")
        self.assertEqual(self.successResultOf(self.store.get_node(A)).uuid, A)

    def test_restart_finished(self):
        """Restarting replaces times, error, version and lookup attributes."""
        first = self.start(A, macs=[MAC1])
        self.move(A, "wait", "process")
        self.move(A, "error", error="boom", now=T0 + seconds(10))
        self.assertEqual(self.call("get_node", A).error, "boom")
        later = T0 + seconds(100)
        record = self.start(A, macs=[MAC2], now=later)
        self.assertEqual(record.state, "starting")
        self.assertEqual(record.started_at, later)
        self.assertIsNone(record.finished_at)
        self.assertIsNone(record.error)
        self.assertNotEqual(record.version_id, first.version_id)
        self.assertEqual((self.found_by([MAC1]), self.found_by([MAC2])), (None, A))
        self.assertEqual(self.call("filter_macs"), ([MAC2], 1))

    def test_restart_waiting(self):
        self.start(A, macs=[MAC1])
        self.move(A, "wait")
        self.assertEqual(self.start(A, macs=[MAC1]).state, "starting")

    def test_refused_while_processing(self):
        self.start(A, macs=[MAC1])
        self.move(A, "wait", "process")
        self.failureResultOf(self.starting(A, macs=[MAC1]), errors.InvalidTransition)
        self.assertEqual(self.call("get_node", A).state, "processing")

    def test_refused_while_starting(self):
        self.start(A)
        failure = self.failureResultOf(self.store.start(A, T0, True, {}, {}, []), errors.InvalidTransition)
        self.assertEqual(status_for(failure.value), 409)

    def test_mac_conflict_with_active_node(self):
        """Two nodes under introspection cannot share a MAC or BMC address."""
        self.start(A, macs=[MAC1, MAC2])
        refusal = self.failureResultOf(self.starting(B, macs=[MAC3, MAC2]), errors.InvalidInput).value
        self.assertIn(MAC2, refusal.message)
        self.assertIn(A, refusal.message)
        self.assertNotIn(MAC3, refusal.message)
        self.refused(errors.NotFound, "get_node", B)

    def test_shared_bmc_address_allowed(self):
        """Nodes behind one BMC IP (virtualbmc ports, a Redfish manager) start together.

        ironic-inspector allows it; lookup tells them apart by MAC.
        """
        self.start(A, macs=[MAC1], bmcs=["192.0.2.1"])
        self.assertEqual(self.start(B, macs=[MAC2], bmcs=["192.0.2.1"]).state, "starting")
        self.assertEqual(self.call("lookup", [MAC2], ["192.0.2.1"]).uuid, B)
        self.refused(errors.NotFound, "lookup", [], ["192.0.2.1"])


    def test_no_conflict_with_finished_node(self):
        self.start(A, macs=[MAC1])
        self.move(A, "wait", "process", "finish")
        self.assertEqual(self.start(B, macs=[MAC1]).state, "starting")



class TransitionTests(StoreTestCase):
    def test_transition(self):
        started = self.start(A)
        record = self.call("transition", A, "wait", T0 + seconds(1))
        self.assertEqual(record.state, "waiting")
        self.assertNotEqual(record.version_id, started.version_id)
        self.assertIsNone(record.finished_at)

    def test_final_sets_finished_at_and_error(self):
        self.start(A)
        record = self.move(A, "wait", "error", now=T0 + seconds(5), error="Ramdisk reported error: x")
        self.assertEqual(record.state, "error")
        self.assertEqual(record.finished_at, T0 + seconds(5))
        self.assertEqual(record.error, "Ramdisk reported error: x")
        self.assertTrue(record.finished)
        self.assertFalse(record.active)

    def test_finish_clears_error_and_lease(self):
        self.start(A)
        self.move(A, "wait")
        record = self.call("transition", A, "process", T0, lease_until=T0 + seconds(300))
        self.assertEqual(record.lease_until, T0 + seconds(300))
        record = self.call("transition", A, "finish", T0 + seconds(9))
        self.assertEqual((record.state, record.error, record.lease_until), ("finished", None, None))
        self.assertEqual(record.finished_at, T0 + seconds(9))

    def test_invalid_transition(self):
        self.start(A)
        self.refused(errors.InvalidTransition, "transition", A, "finish", T0)
        self.assertEqual(self.call("get_node", A).state, "starting")

    def test_unknown_node(self):
        self.failureResultOf(self.store.transition(C, "wait", T0), errors.NotFound)

    def test_expected_state(self):
        """expected= refuses when the node is not where the caller thinks."""
        self.start(A)
        self.move(A, "wait")
        refusal = self.refused(errors.StateChanged, "transition", A, "error", T0, expected="starting")
        self.assertIn("waiting", refusal.message)
        self.assertEqual(self.call("get_node", A).state, "waiting")
        record = self.call("transition", A, "error", T0, expected=["starting", "waiting"], error="e")
        self.assertEqual(record.state, "error")

    def test_stale_record_claim(self):
        """Two instances claim one node with the same record: one wins."""
        self.start(A)
        self.move(A, "wait")
        self.call("transition", A, "process", T0, lease_until=T0 + seconds(1))
        stale = self.call("get_node", A)
        claimed = self.call("claim", stale, T0 + seconds(2), T0 + seconds(302))
        self.assertEqual(claimed.lease_until, T0 + seconds(302))
        self.assertNotEqual(claimed.version_id, stale.version_id)
        self.failureResultOf(self.store.claim(stale, T0 + seconds(2), T0 + seconds(302)), errors.StateChanged)

    def test_transition_after_claim_uses_fresh_row(self):
        self.start(A)
        self.move(A, "wait", "process")
        stale = self.call("get_node", A)
        self.call("claim", stale, T0, T0 + seconds(300))
        self.assertEqual(self.call("transition", A, "finish", T0, expected="processing").state, "finished")


class LookupTests(StoreTestCase):
    def test_best_match(self):
        self.start(A, macs=[MAC1], bmcs=["192.0.2.1"])
        self.start(B, macs=[MAC2])
        match = self.call("lookup", [MAC1.upper(), MAC2], ["192.0.2.1"])
        self.assertIsInstance(match, Match)
        self.assertEqual((match.uuid, match.score), (A, 2))
        self.assertEqual(match.record.uuid, A)

    def test_tie_is_not_found(self):
        self.start(A, macs=[MAC1])
        self.start(B, macs=[MAC2])
        refusal = self.refused(errors.NotFound, "lookup", [MAC1, MAC2], [])
        self.assertEqual(status_for(refusal), 404)
        self.assertIn(A, refusal.message)
        self.assertIn(B, refusal.message)

    def test_bmc_only(self):
        self.start(A, bmcs=["192.0.2.200"])
        self.assertEqual(self.successResultOf(self.store.lookup(["52:54:00:99:99:99"], ["192.0.2.200"])).uuid, A)

    def test_finished_node_found(self):
        self.start(A, macs=[MAC1])
        self.move(A, "wait", "process", "finish")
        match = self.call("lookup", [MAC1], [])
        self.assertEqual((match.uuid, match.record.state), (A, "finished"))

    def test_active_preferred_over_finished(self):
        """A finished node matching more attributes does not shadow a live one."""
        self.start(A, macs=[MAC1, MAC2], bmcs=["192.0.2.1"])
        self.move(A, "wait", "process", "finish")
        self.start(B, macs=[MAC3])
        match = self.call("lookup", [MAC1, MAC2, MAC3], ["192.0.2.1"])
        self.assertEqual((match.uuid, match.score), (B, 1))

    def test_no_attributes(self):
        self.start(A, macs=[MAC1])
        self.assertIsNone(self.call("lookup", [], []))
        self.assertIsNone(self.call("lookup", [None, ""], [None]))

    def test_nothing_matches(self):
        self.start(A, macs=[MAC1])
        self.assertIsNone(self.call("lookup", [MAC3], ["192.0.2.9"]))


class DataTests(StoreTestCase):
    def setUp(self):
        super().setUp()
        self.start(A)

    def test_store_and_get(self):
        self.call("store_data", A, {"raw": 1}, False, T0)
        self.call("store_data", A, {"processed": 2}, True, T0)
        self.assertEqual(self.call("get_data", A, False), {"raw": 1})
        self.assertEqual(self.successResultOf(self.store.get_data(A, True)), {"processed": 2})

    def test_store_replaces(self):
        self.call("store_data", A, {"v": 1}, False, T0)
        self.successResultOf(self.store.store_data(A, {"v": 2}, False, T0 + seconds(1)))
        self.assertEqual(self.call("get_data", A, False), {"v": 2})

    def test_large_and_unicode_data(self):
        """Bigger than MySQL's TEXT (64 KiB), with characters outside the BMP."""
        data = {"inventory": {"hostname": "n\u0153ud-\U0001f5a5", "blob": "x" * 300_000}}
        self.call("store_data", A, data, False, T0)
        self.assertEqual(self.call("get_data", A, False), data)

    def test_missing(self):
        self.assertIn("unprocessed", self.refused(errors.NotFound, "get_data", A, False).message)
        self.assertIn("processed", str(self.failureResultOf(self.store.get_data(A, True), errors.NotFound).value))

    def test_delete(self):
        self.call("store_data", A, {"raw": 1}, False, T0)
        self.call("store_data", A, {"processed": 2}, True, T0)
        self.successResultOf(self.store.delete_data(A))
        self.refused(errors.NotFound, "get_data", A, False)
        self.refused(errors.NotFound, "get_data", A, True)


class PeriodicQueryTests(StoreTestCase):
    def test_timed_out(self):
        """Active nodes started before the threshold, oldest first."""
        self.start(A, now=T0 + seconds(10))
        self.start(B, now=T0)
        self.start(C, now=T0 + seconds(5))
        self.move(C, "wait", "process", "finish")
        self.assertEqual(self.call("timed_out", T0 + seconds(11)), [B, A])
        self.assertEqual(self.successResultOf(self.store.timed_out(T0 + seconds(10))), [B])
        self.assertEqual(self.call("timed_out", T0), [])

    def test_expired_leases(self):
        self.start(A, macs=[MAC1])
        self.start(B, macs=[MAC2])
        self.start(C, macs=[MAC3])
        self.move(A, "wait")
        self.call("transition", A, "process", T0, lease_until=T0 + seconds(300))
        self.move(B, "wait")
        self.call("transition", B, "process", T0, lease_until=T0 + seconds(600))
        self.move(C, "wait")  # waiting: never "abandoned"
        self.assertEqual(self.call("expired_leases", T0 + seconds(299)), [])
        expired = self.successResultOf(self.store.expired_leases(T0 + seconds(300)))
        self.assertEqual([r.uuid for r in expired], [A])
        self.assertEqual(expired[0].state, "processing")

    def test_renew_and_release_leases_of_one_owner(self):
        for uuid, mac in ((A, MAC1), (B, MAC2), (C, MAC3)):
            self.start(uuid, macs=[mac])
            self.move(uuid, "wait")
        self.call("transition", A, "process", T0, lease_until=T0 + seconds(30), owner="one")
        self.call("transition", B, "process", T0, lease_until=T0 + seconds(30), owner="one")
        self.call("transition", C, "process", T0, lease_until=T0 + seconds(30), owner="two")
        versions = {u: self.call("get_node", u).version_id for u in (A, B, C)}
        # One owner renews what it holds; another's node is left alone.
        self.assertEqual(self.call("renew_leases", "one", {T0 + seconds(60): [A, B, C]}), 2)
        self.assertEqual([self.call("get_node", u).lease_until for u in (A, B, C)],
                         [T0 + seconds(60), T0 + seconds(60), T0 + seconds(30)])
        self.assertEqual({u: self.call("get_node", u).version_id for u in (A, B, C)}, versions)
        self.assertEqual(self.call("release_leases", "one", T0 + seconds(1)), 2)
        self.assertEqual(sorted(r.uuid for r in self.call("expired_leases", T0 + seconds(1))), sorted([A, B]))
        self.assertIsNone(self.call("get_node", A).lease_owner)
        self.assertEqual(self.call("get_node", C).lease_owner, "two")

    def test_list_newest_first_with_marker(self):
        uuids = ["{:08d}-0000-0000-0000-000000000000".format(i) for i in range(5)]
        for i, uuid in enumerate(uuids):
            self.start(uuid, now=T0 + seconds(i // 2))  # pairs share a start time
        everything = [r.uuid for r in self.call("list_nodes", 10)]
        self.assertEqual(everything, [uuids[4], uuids[3], uuids[2], uuids[1], uuids[0]])
        pages, marker = [], None
        while True:
            page = self.successResultOf(self.store.list_nodes(2, marker))
            if not page:
                break
            pages.append([r.uuid for r in page])
            marker = page[-1].uuid
        self.assertEqual(pages, [[uuids[4], uuids[3]], [uuids[2], uuids[1]], [uuids[0]]])

    def test_list_by_state(self):
        self.start(A)
        self.start(B)
        self.move(B, "wait")
        self.assertEqual([r.uuid for r in self.call("list_nodes", 10, states=["waiting"])], [B])
        self.assertEqual(self.call("list_nodes", 10, states=["finished"]), [])

    def test_brief_list_leaves_the_node_out(self):
        """What a status shows is there; the Ironic node and the options are not read."""
        self.start(A, macs=[MAC1])
        self.move(A, "wait")
        full, = self.call("list_nodes", 10)
        brief, = self.call("list_nodes", 10, brief=True, active_ports=True)
        self.assertEqual(full.name, "node-" + A[:4])
        self.assertEqual(brief.node, {})
        self.assertEqual(brief.options, {})
        for field in ("uuid", "state", "started_at", "finished_at", "error", "version_id", "ports", "lease_until"):
            self.assertEqual(getattr(brief, field), getattr(full, field), field)
        self.assertTrue(brief.active)

    def test_brief_records_carry_every_status_field(self):
        """Each field of a brief record is its own column's (leased, failed, and pending nodes)."""
        self.call("start", A, T0, False, {"name": "a"}, {MAC1: {"uuid": "p1", "pxe_enabled": True}}, [("mac", MAC1)],
                  owner="owner-a", lease_until=T0 + seconds(30))
        # The ramdisk's data arrives while A is still starting: pending.
        self.call("accept", [MAC1], [], {"inventory": {}}, T0 + seconds(1), T0 + seconds(30), owner="owner-a")
        self.start(B, macs=[MAC2], now=T0 + seconds(2))
        self.move(B, "wait", "error", error="boom", now=T0 + seconds(5))
        for active_ports in (False, True):
            full = self.call("list_nodes", 10)
            brief = self.call("list_nodes", 10, brief=True, active_ports=active_ports)
            self.assertEqual([r.uuid for r in brief], [B, A])
            for b, f in zip(brief, full):
                for field in ("uuid", "state", "started_at", "finished_at", "error", "manage_boot", "version_id",
                              "lease_until", "lease_owner", "data_pending"):
                    self.assertEqual(getattr(b, field), getattr(f, field), (b.uuid, field))
            self.assertEqual(brief[1].ports, {MAC1: {"uuid": "p1", "pxe_enabled": True}} if active_ports else {})
        self.assertEqual((brief[0].error, brief[0].finished_at), ("boom", T0 + seconds(5)))
        self.assertEqual((brief[1].manage_boot, brief[1].lease_owner, brief[1].data_pending), (False, "owner-a", True))

    def test_brief_list_reads_no_ports_unless_asked(self):
        """Without ``active_ports`` (nothing records DHCP) a page selects no ports, even of waiting nodes."""
        self.start(A, macs=[MAC1])
        self.move(A, "wait")
        statements = []
        sa.event.listen(self.engine, "before_cursor_execute",
                        lambda conn, cursor, statement, params, context, many: statements.append(statement))
        brief, = self.call("list_nodes", 10, brief=True)
        self.assertEqual((brief.uuid, brief.state, brief.ports, brief.node), (A, "waiting", {}, {}))
        self.assertTrue(brief.active)
        self.assertEqual(len(statements), 1)
        self.assertNotIn("ports", statements[-1])
        self.call("list_nodes", 10, A, brief=True)  # a page after a marker
        self.assertNotIn("ports", statements[-1])
        self.call("list_nodes", 10, brief=True, active_ports=True)
        self.assertIn("ports", statements[-1])

    def test_brief_list_of_a_finished_node_reads_no_ports(self):
        """Ports serve the DHCP diagnosis of a node under introspection only."""
        self.start(A, macs=[MAC1])
        self.move(A, "wait", "process", "finish")
        self.start(B, macs=[MAC2], now=T0 + seconds(1))
        self.move(B, "wait")
        b, a = self.call("list_nodes", 10, brief=True, active_ports=True)
        self.assertEqual((a.uuid, a.state, a.ports), (A, "finished", {}))
        self.assertEqual((b.uuid, b.ports), (B, {MAC2: {"uuid": "port-" + MAC2, "pxe_enabled": True}}))

    def test_list_page_reads_the_started_uuid_index(self):
        """A page from a marker is a range of one index, not a sort of the table."""
        if self.engine.dialect.name != "sqlite":
            raise SkipTest("query plans differ by engine; SQLite's is checked")
        self.start(A)
        captured = []
        sa.event.listen(self.engine, "before_cursor_execute",
                        lambda conn, cursor, statement, params, context, many: captured.append((statement, params)))
        for active_ports in (False, True):
            self.sql.thd_list(10, A, brief=True, active_ports=active_ports)  # the SQL the store runs, not the contract
            statement, params = captured[-1]
            with self.engine.connect() as conn:
                plan = " ".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params))
            self.assertIn("nodes_started_uuid_idx", plan)
            self.assertNotIn("TEMP B-TREE", plan)

    def test_list_unknown_marker(self):
        self.refused(errors.NotFound, "list_nodes", 10, C)


class SQLRaceTests(StoreTestCase):
    """What :class:`SQLStore` does when another writer acts between its read and its write.

    Not part of the interface: these reach into the SQL implementation to
    put a concurrent write at the worst moment.
    """

    def test_concurrent_first_start_loses(self):
        """Another request inserted the node between the read and the insert: 409, not an integrity error."""
        original = self.sql._thd_check_conflicts

        def racing(conn, uuid, attributes):
            original(conn, uuid, attributes)
            conn.execute(
                schema.nodes.insert().values(
                    uuid=uuid, state="starting", started_at=T0, manage_boot=True, version_id="other",
                    node={}, ports={}, options={},
                )
            )

        self.patch(self.sql, "_thd_check_conflicts", racing)
        failure = self.failureResultOf(self.store.start(A, T0, True, {}, {}, [("mac", MAC1)]), errors.StateChanged)
        self.assertEqual(status_for(failure.value), 409)
        self.assertIn("another request", failure.value.message)
        self.patch(self.sql, "_thd_check_conflicts", original)
        self.refused(errors.NotFound, "get_node", A)

    def test_concurrent_restart_loses(self):
        """A row changed between the read and the write: StateChanged."""
        self.start(A, macs=[MAC1])
        self.move(A, "wait")
        original = self.sql._thd_check_conflicts

        def racing(conn, uuid, attributes):
            original(conn, uuid, attributes)
            conn.execute(schema.nodes.update().where(schema.nodes.c.uuid == uuid).values(version_id="other"))

        self.patch(self.sql, "_thd_check_conflicts", racing)
        self.failureResultOf(self.starting(A, macs=[MAC1]), errors.StateChanged)

    def test_concurrent_update_between_read_and_write(self):
        """Compare-and-set: another writer between read and UPDATE wins."""
        self.start(A)
        self.move(A, "wait")
        original = self.sql._thd_get

        def racing(conn, uuid):
            row = original(conn, uuid)
            conn.execute(schema.nodes.update().where(schema.nodes.c.uuid == uuid).values(version_id="other"))
            return row

        self.patch(self.sql, "_thd_get", racing)
        self.refused(errors.StateChanged, "transition", A, "process", T0)
        self.patch(self.sql, "_thd_get", original)
        self.assertEqual(self.call("get_node", A).state, "waiting")

    def test_data_replaced_in_place(self):
        self.start(A)
        self.call("store_data", A, {"v": 1}, False, T0)
        self.call("store_data", A, {"v": 2}, False, T0 + seconds(1))
        with self.engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(schema.introspection_data)).scalar()
        self.assertEqual(count, 1)


class MigrationTests(SynchronousTestCase):
    def database_url(self):
        """The URL of a new, empty database."""
        self.path = os.path.join(self.mktemp(), "sub", "inspectord.sqlite")
        return "sqlite:///" + self.path

    def setUp(self):
        self.url = self.database_url()
        self.engine = make_engine(self.url)
        self.addCleanup(self.engine.dispose)

    def test_upgrade_file_database(self):
        if self.engine.dialect.name != "sqlite":
            raise SkipTest("SQLite files only")
        thd_upgrade(self.engine)
        self.assertTrue(os.path.exists(self.path), "the directory is created")
        with self.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            version = conn.exec_driver_sql("SELECT version_num FROM inspectord_alembic_version").scalar()
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        self.assertEqual(tables, set(schema.metadata.tables) | {schema.VERSION_TABLE})
        self.assertTrue({"inspectord_nodes", "inspectord_attributes", "inspectord_introspection_data"} <= tables)
        self.assertEqual(version, HEAD)
        self.assertEqual(journal, "wal")

    def test_migrations_match_schema(self):
        """Every migration from the first, as an existing database runs them, gives what schema.py describes."""
        migrate(self.engine, "head")
        with self.engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_name": lambda name, kind, _: name != schema.VERSION_TABLE}
            )
            self.assertEqual(compare_metadata(context, schema.metadata), [])
            version = conn.exec_driver_sql("SELECT version_num FROM inspectord_alembic_version").scalar()
        self.assertEqual(version, HEAD)

    def test_new_database_matches_schema(self):
        thd_upgrade(self.engine)
        with self.engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_name": lambda name, kind, _: name != schema.VERSION_TABLE}
            )
            self.assertEqual(compare_metadata(context, schema.metadata), [])

    def test_database_of_inspectord_before_its_own_version_table(self):
        """Revision 0004 in alembic_version, tables named like ironic-inspector's: renamed, data kept."""
        migrate(self.engine, "0004", version_table="alembic_version")
        nodes = sa.table(
            "nodes", *[sa.column(c.name, c.type) for c in schema.nodes.columns]
        )
        attributes = sa.table("attributes", *[sa.column(c.name, c.type) for c in schema.attributes.columns])
        with self.engine.begin() as conn:
            conn.execute(nodes.insert().values(
                uuid=A, state="waiting", started_at=T0, manage_boot=True, version_id="v", node={}, ports={},
                options={},
            ))
            conn.execute(attributes.insert().values(node_uuid=A, name="mac", value=MAC1))
        shape = thd_upgrade(self.engine)
        self.assertEqual(shape.legacy_revision, "0004")
        self.assertIsNone(shape.upstream_revision)
        with self.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            version = conn.exec_driver_sql("SELECT version_num FROM inspectord_alembic_version").scalar()
        self.assertEqual(tables, set(schema.metadata.tables) | {schema.VERSION_TABLE})
        self.assertEqual(version, HEAD)
        store = SQLStore(self.engine, SynchronousPool())
        self.assertEqual(store.thd_get_node(A).state, "waiting")
        self.assertEqual(store.thd_lookup([MAC1], []).uuid, A)
        thd_upgrade(self.engine)  # a second start changes nothing
        self.assertEqual(store.thd_get_node(A).state, "waiting")

    def test_newer_inspectord_revision_is_refused_by_name(self):
        thd_upgrade(self.engine)
        with self.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE inspectord_alembic_version SET version_num = '0099'")
        e = self.assertRaises(errors.SchemaError, thd_upgrade, self.engine)
        self.assertIn("'0099'", str(e))
        self.assertIn("newer inspectord", str(e))

    def test_unknown_revision_in_alembic_version_is_refused_by_name(self):
        with self.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
            conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('abcdef123456')")
        e = self.assertRaises(errors.SchemaError, thd_upgrade, self.engine)
        self.assertIn("'abcdef123456'", str(e))
        with self.engine.connect() as conn:
            self.assertNotIn("inspectord_nodes", sa.inspect(conn).get_table_names())

    def test_head_revision_is_alembics(self):
        """The head a started database is checked against without Alembic is the migrations' own."""
        self.assertEqual(schema.HEAD_REVISION, sql.migration_scripts().get_current_head())
        self.assertEqual(schema.HEAD_REVISION, HEAD)

    def test_database_at_head_is_not_migrated(self):
        """A restart on a database at the head only reads its revision: no migration runs."""
        thd_upgrade(self.engine)
        migrated = []
        self.patch(sql, "_thd_migrate", lambda connection, shape: migrated.append(shape))
        shape = thd_upgrade(self.engine)
        self.assertEqual(shape.revision, HEAD)
        self.assertEqual(migrated, [])
        with self.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE inspectord_alembic_version SET version_num = '0006'")
        thd_upgrade(self.engine)
        self.assertEqual([s.revision for s in migrated], ["0006"])

    def test_upgrade_twice_keeps_data(self):
        store = SQLStore(self.engine, SynchronousPool())
        self.successResultOf(store.upgrade())
        store.thd_start(A, T0, True, {"name": "n"}, {}, [("mac", MAC1)])
        store.thd_store_data(A, {"raw": True}, False, T0)
        self.successResultOf(store.upgrade())
        self.assertEqual(store.thd_get_node(A).name, "n")
        self.assertEqual(store.thd_get_data(A, False), {"raw": True})
        self.assertEqual(store.thd_lookup([MAC1], []).uuid, A)

    def test_concurrent_writer_on_file_database(self):
        """Two connections to one file: the later compare-and-set loses."""
        store = SQLStore(self.engine, SynchronousPool())
        thd_upgrade(self.engine)
        store.thd_start(A, T0, True, {}, {}, [])
        other = make_engine(self.url)
        self.addCleanup(other.dispose)
        original = store._thd_get

        def racing(conn, uuid):
            row = original(conn, uuid)
            SQLStore(other, SynchronousPool()).thd_transition(uuid, "error", T0, error="other instance")
            return row

        self.patch(store, "_thd_get", racing)
        self.assertRaises(errors.StateChanged, store.thd_transition, A, "wait", T0)
        self.patch(store, "_thd_get", original)
        self.assertEqual(store.thd_get_node(A).error, "other instance")


class UtcTests(SynchronousTestCase):
    def test_utc(self):
        self.assertEqual(utc(1_800_000_000), datetime.datetime(2027, 1, 15, 8, 0, 0))
        self.assertIsNone(utc(0).tzinfo)


class _DriverError(Exception):
    """Stands in for a DB-API driver's exception (its args / pgcode)."""

    def __init__(self, *args, pgcode=None):
        super().__init__(*args)
        self.pgcode = pgcode


def _dbapi_error(cls, orig, invalidated=False):
    return cls("SELECT 1", {}, orig, connection_invalidated=invalidated)


class TransientErrorTests(SynchronousTestCase):
    def test_classification(self):
        transient = [
            _dbapi_error(sa.exc.OperationalError, _DriverError(1213, "Deadlock found")),
            _dbapi_error(sa.exc.OperationalError, _DriverError(1205, "Lock wait timeout exceeded")),
            _dbapi_error(sa.exc.OperationalError, _DriverError("deadlock detected", pgcode="40P01")),
            _dbapi_error(sa.exc.OperationalError, _DriverError("could not serialize", pgcode="40001")),
            _dbapi_error(sa.exc.OperationalError, _DriverError(2013, "Lost connection"), invalidated=True),
        ]
        permanent = [
            _dbapi_error(sa.exc.IntegrityError, _DriverError(1062, "Duplicate entry")),
            _dbapi_error(sa.exc.ProgrammingError, _DriverError("syntax", pgcode="42601")),
            _dbapi_error(sa.exc.OperationalError, _DriverError("1213")),
            ValueError("not a database error"),
        ]
        self.assertEqual([sql.transient(e) for e in transient], [True] * len(transient))
        self.assertEqual([sql.transient(e) for e in permanent], [False] * len(permanent))

    def test_rolled_back_transaction_runs_again(self):
        """A deadlock victim or a broken connection: the whole call runs again, at most 3 times."""
        calls = []

        def deadlocked_twice():
            calls.append(1)
            if len(calls) < 3:
                raise _dbapi_error(sa.exc.OperationalError, _DriverError(1213, "Deadlock found"))
            return "done"

        self.assertEqual(self.successResultOf(SQLStore(None, SynchronousPool())._run(deadlocked_twice)), "done")
        self.assertEqual(len(calls), 3)

    def test_gives_up_after_three_attempts(self):
        calls = []

        def always():
            calls.append(1)
            raise _dbapi_error(sa.exc.OperationalError, _DriverError("gone"), invalidated=True)

        self.failureResultOf(SQLStore(None, SynchronousPool())._run(always), sa.exc.OperationalError)
        self.assertEqual(len(calls), sql.TRANSIENT_ATTEMPTS)

    def test_other_errors_not_repeated(self):
        calls = []

        def duplicate():
            calls.append(1)
            raise _dbapi_error(sa.exc.IntegrityError, _DriverError(1062, "Duplicate entry"))

        self.failureResultOf(SQLStore(None, SynchronousPool())._run(duplicate), sa.exc.IntegrityError)
        self.assertEqual(len(calls), 1)


def _raise(error):
    raise error


class _UnreachablePool:
    """Fails ``failures`` calls as a refused connection does, then runs them."""

    def __init__(self, failures):
        self.failures = failures
        self.calls = 0

    def run(self, f, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            orig = _DriverError(2003, "Can't connect to MySQL server on '127.0.0.1' ([Errno 111] Connection refused)")
            return defer.fail(_dbapi_error(sa.exc.OperationalError, orig))
        return defer.execute(f, *args, **kwargs)


class UnreachableAtStartTests(SynchronousTestCase):
    """A database not reachable yet at start is retried with backoff, and logged."""

    def setUp(self):
        self.clock = task.Clock()
        self.engine = make_engine("mysql+pymysql://inspectord:s3cret@db.example:3306/inspectord")
        self.events = []
        self.patch(SQLStore, "log", Logger(observer=self.events.append))

    def store(self, pool, retries, interval=10):
        return SQLStore(self.engine, pool, clock=self.clock, connect_retries=retries, connect_retry_interval=interval)

    def test_retried_with_backoff_until_reachable(self):
        pool = _UnreachablePool(failures=6)
        upgraded = []
        self.patch(sql, "thd_upgrade", lambda engine: upgraded.append(engine) or DatabaseShape())
        d = self.store(pool, retries=10, interval=5).upgrade()
        delays = []
        while not d.called:
            delays.append(self.clock.getDelayedCalls()[0].getTime() - self.clock.seconds())
            self.clock.advance(delays[-1])
        self.successResultOf(d)
        self.assertEqual(delays, [0.5, 1, 2, 4, 5, 5])
        self.assertEqual(upgraded, [self.engine])
        warnings = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertEqual([e["attempt"] for e in warnings], [1, 2, 3, 4, 5, 6])
        text = formatEvent(warnings[0])
        self.assertIn("Connection refused", text)
        self.assertIn("db.example", text)
        self.assertNotIn("s3cret", text)

    def test_gives_up_after_max_retries(self):
        d = self.store(_UnreachablePool(failures=100), retries=3).upgrade()
        self.clock.pump([10] * 5)
        failure = self.failureResultOf(d, sql.DatabaseUnreachable)
        self.assertIn("after 3 attempts", str(failure.value))
        self.assertIn("Connection refused", str(failure.value))
        self.assertNotIn("s3cret", str(failure.value))

    def test_forever(self):
        pool = _UnreachablePool(failures=50)
        self.patch(sql, "thd_upgrade", lambda engine: DatabaseShape())
        d = self.store(pool, retries=-1, interval=1).upgrade()
        self.clock.pump([1] * 60)
        self.successResultOf(d)
        self.assertEqual(pool.calls, 51)

    def test_other_errors_are_not_retried(self):
        """A refused migration is not a database starting up."""
        pool = _UnreachablePool(failures=0)
        orig = _DriverError(1833, "Cannot change column 'uuid': used in a foreign key constraint")
        self.patch(sql, "thd_upgrade", lambda engine: _raise(_dbapi_error(sa.exc.OperationalError, orig)))
        self.failureResultOf(self.store(pool, retries=10).upgrade(), sa.exc.OperationalError)
        self.assertEqual(pool.calls, 1)

    def test_unreachable_classification(self):
        self.assertTrue(sql.unreachable(_dbapi_error(sa.exc.OperationalError, _DriverError(2003, "refused"))))
        self.assertTrue(sql.unreachable(_dbapi_error(sa.exc.OperationalError, _DriverError(1047, "WSREP"))))
        self.assertTrue(
            sql.unreachable(_dbapi_error(sa.exc.OperationalError, _DriverError("starting up", pgcode="57P03")))
        )
        self.assertFalse(sql.unreachable(_dbapi_error(sa.exc.OperationalError, _DriverError(1045, "denied"))))
        self.assertFalse(sql.unreachable(ValueError("x")))

    def test_without_retries_fails_at_once(self):
        d = SQLStore(self.engine, _UnreachablePool(failures=1)).upgrade()
        self.failureResultOf(d, sa.exc.OperationalError)


def hide_module(case, name):
    """Make ``import name`` fail for the rest of ``case``, as for a driver not installed."""
    saved = sys.modules.get(name)
    sys.modules[name] = None

    def restore():
        if saved is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved

    case.addCleanup(restore)


class MakeEngineTests(SynchronousTestCase):
    def test_mysql_defaults(self):
        engine = make_engine("mysql+pymysql://u:p@127.0.0.1/db")
        self.assertEqual(engine.url.query["charset"], "utf8mb4")
        self.assertEqual(engine.dialect._on_connect_isolation_level, "READ COMMITTED")
        self.assertTrue(engine.pool._pre_ping)
        self.assertEqual(make_engine("mysql+pymysql://u:p@h/db?charset=utf8").url.query["charset"], "utf8")

    def test_postgresql_pre_ping(self):
        engine = make_engine("postgresql://u@127.0.0.1/db")
        self.assertEqual(engine.dialect.driver, "psycopg2")
        self.assertTrue(engine.pool._pre_ping)

    def test_missing_driver_names_the_extra(self):
        for module, url, extra in (
            ("pymysql", "mysql+pymysql://u:secret@h/db", "inspectord[mysql]"),
            ("psycopg2", "postgresql://u:secret@h/db", "inspectord[postgresql]"),
            ("psycopg2", "postgresql+psycopg2://u:secret@h/db", "inspectord[postgresql]"),
        ):
            hide_module(self, module)
            with self.assertRaises(errors.ConfigError) as caught:
                make_engine(url)
            message = str(caught.exception)
            self.assertIn(extra, message)
            self.assertIn("[database]connection", message)
            self.assertNotIn("secret", message)

    def test_urls_without_driver_use_the_extras(self):
        """``mysql://`` and ``postgresql://`` mean the drivers of inspectord's extras."""
        self.assertEqual(make_engine("mysql://u:p@h/db").dialect.driver, "pymysql")
        self.assertEqual(make_engine("postgresql://u@h/db").dialect.driver, "psycopg2")

    def test_unshipped_mysql_driver_suggests_pymysql(self):
        hide_module(self, "MySQLdb")
        with self.assertRaises(errors.ConfigError) as caught:
            make_engine("mysql+mysqldb://u:p@h/db")
        self.assertIn("mysql+pymysql://", str(caught.exception))
        self.assertIn("inspectord[mysql]", str(caught.exception))

    def test_invalid_url(self):
        self.assertRaises(errors.ConfigError, make_engine, "not a url")
        with self.assertRaises(errors.ConfigError) as caught:
            make_engine("nosuchdb://h/x")
        self.assertIn("nosuchdb", str(caught.exception))


class DbsyncTests(SynchronousTestCase):
    def write(self, url):
        path = os.path.join(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write(
                "[DEFAULT]\nauth_strategy = noauth\n[ironic]\nauth_type = none\nendpoint_override = http://127.0.0.1:6385\n"
                "[database]\nconnection = {}\n".format(url)
            )
        return path

    def test_missing_driver_is_a_message(self):
        hide_module(self, "pymysql")
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        self.assertEqual(tap.main_dbsync(["--config-file", self.write("mysql+pymysql://u:p@h/db"), "upgrade"]), 2)
        self.assertIn("install inspectord[mysql]", stderr.getvalue())
        self.assertNotIn("Traceback", stderr.getvalue())

    def test_missing_driver_stops_twistd_with_a_message(self):
        hide_module(self, "psycopg2")
        options = tap.Options()
        options.parseOptions(["--config-file", self.write("postgresql://u@h/db")])
        with self.assertRaises(SystemExit) as caught:
            tap.makeService(options)
        self.assertIn("install inspectord[postgresql]", str(caught.exception))
