"""The node store on real MariaDB and PostgreSQL servers.

Every contract class of ``tests/unit/test_store.py`` (run there on SQLite
in memory), ``verifyObject(IStore, store)`` included, runs here again on each engine, against a server the test
process starts (:mod:`devenv.databases`); then what differs between
engines: character sets and collations, long text and long indexed
strings, timestamps, isolation, reconnects after a restart, a crash or
dropped idle connections, a database not reachable at start, concurrent
identical requests, and migrations run by three processes at once.
"""

import datetime
import os
import subprocess
import sys
import threading
import time

import sqlalchemy as sa
from twisted.internet import defer, reactor, threads
from twisted.logger import Logger, LogLevel
from twisted.trial import unittest

from devenv import databases
from inspectord import errors
from inspectord.store import schema, sql
from inspectord.store.pool import DatabasePool, SynchronousPool
from inspectord.store.sql import SQLStore, make_engine, thd_upgrade
from tests.integration import base
from tests.unit import test_store as contract

CONTRACT = (
    contract.InterfaceTests,
    contract.StartTests,
    contract.TransitionTests,
    contract.LookupTests,
    contract.DataTests,
    contract.PeriodicQueryTests,
    contract.MigrationTests,
    contract.SQLRaceTests,
)
PREFIXES = {"mariadb": "MariaDB", "postgresql": "PostgreSQL"}
T0 = contract.T0
_migrated = {}


def sql_head():
    return contract.HEAD


def migrated_url(engine_name):
    """A database of the engine's shared server, migrated once per test process."""
    if engine_name not in _migrated:
        _server, url = databases.fresh_database(engine_name)
        engine = make_engine(url)
        thd_upgrade(engine)
        engine.dispose()
        _migrated[engine_name] = url
    return _migrated[engine_name]


def emptied_engine(engine_name):
    engine = make_engine(migrated_url(engine_name))
    with engine.begin() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            conn.execute(table.delete())
    return engine


class OnEngine:
    """Runs a contract class on ``engine_name``'s server instead of SQLite."""

    engine_name = None

    def make_engine(self):
        return emptied_engine(self.engine_name)

    def database_url(self):
        return databases.fresh_database(self.engine_name)[1]


def _skip(engine_name):
    return base.SKIP or databases.unavailable(engine_name)


for _engine in databases.ENGINES:
    for _case in CONTRACT:
        _name = PREFIXES[_engine] + _case.__name__
        globals()[_name] = type(
            _name, (OnEngine, _case), {"engine_name": _engine, "skip": _skip(_engine), "__module__": __name__}
        )


def _together(count, f, *args):
    """Run ``f(*args)`` in ``count`` threads released at once; each outcome (result or exception)."""
    barrier = threading.Barrier(count)
    outcomes = [None] * count

    def run(i):
        barrier.wait()
        try:
            outcomes[i] = sql._retrying(f)(*args)
        except Exception as e:  # the outcome under test
            outcomes[i] = e

    workers = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return outcomes


class EngineDifferences:
    """What the engines do differently, and the store's answer to it."""

    engine_name = None

    def setUp(self):
        self.engine = emptied_engine(self.engine_name)
        self.addCleanup(self.engine.dispose)
        self.store = SQLStore(self.engine, SynchronousPool())
        self.server = databases.shared_server(self.engine_name)

    def start(self, uuid, macs=(), bmcs=(), now=T0):
        attributes = [("mac", m) for m in macs] + [("bmc_address", b) for b in bmcs]
        return self.store.thd_start(uuid, now, True, {"name": "n"}, {}, attributes)

    # -- schema ---------------------------------------------------------------

    def test_exact_comparisons(self):
        """Lookups compare exactly (MySQL's default collations ignore case and trailing spaces)."""
        self.start(contract.A, bmcs=["BMC.example"])
        self.assertEqual(self.store.thd_lookup([], ["BMC.example"]).uuid, contract.A)
        self.assertIsNone(self.store.thd_lookup([], ["bmc.example"]))
        self.assertIsNone(self.store.thd_lookup([], ["BMC.example "]))

    def test_long_unicode_attribute_indexed(self):
        """255 four-byte characters in the indexed lookup value (1 KiB in utf8mb4)."""
        value = "\U0001f5a5" * 255
        self.start(contract.A, bmcs=[value])
        self.assertEqual(self.store.thd_lookup([], [value]).uuid, contract.A)

    def test_unicode_in_json_columns(self):
        node = {"name": "n\u0153ud-\U0001f5a5", "properties": {"k": "\u00e9t\u00e9"}}
        self.store.thd_start(contract.A, T0, True, node, {}, [])
        self.assertEqual(self.store.thd_get_node(contract.A).node, node)

    def test_microseconds_kept(self):
        now = T0 + datetime.timedelta(microseconds=123456)
        self.start(contract.A, now=now)
        self.assertEqual(self.store.thd_get_node(contract.A).started_at, now)
        self.assertEqual(self.store.thd_timed_out(now), [])
        self.assertEqual(self.store.thd_timed_out(now + datetime.timedelta(microseconds=1)), [contract.A])

    def test_long_error(self):
        """An error longer than MySQL's TEXT (64 KiB) is kept whole."""
        self.start(contract.A)
        error = "e" * 100_000
        self.assertEqual(self.store.thd_transition(contract.A, "error", T0, error=error).error, error)
        self.assertEqual(self.store.thd_get_node(contract.A).error, error)

    def test_read_committed(self):
        """Each statement sees what other sessions committed (MariaDB defaults to REPEATABLE READ)."""
        self.start(contract.A)
        with self.engine.connect() as conn:
            self.assertEqual(conn.execute(sa.select(schema.nodes.c.state)).scalar(), "starting")
            self.store.thd_transition(contract.A, "wait", T0)  # another connection commits
            self.assertEqual(conn.execute(sa.select(schema.nodes.c.state)).scalar(), "waiting")

    # -- connections ------------------------------------------------------------

    def test_reconnect_after_dropped_connections(self):
        """A server dropping idle connections (wait_timeout, a proxy) costs a reconnect."""
        self.start(contract.A)
        self.assertGreaterEqual(self.server.drop_connections(), 1)
        self.assertEqual(self.store.thd_transition(contract.A, "wait", T0).state, "waiting")

    def test_reconnect_after_restart_and_crash(self):
        self.start(contract.A)
        self.server.restart()
        self.assertEqual(self.store.thd_get_node(contract.A).state, "starting")
        self.server.kill()
        self.server.start()
        self.assertEqual(self.store.thd_transition(contract.A, "wait", T0).state, "waiting")

    def test_connection_broken_inside_a_call_is_run_again(self):
        """The connection dies between two statements of one call: the call runs again on a new one."""
        self.start(contract.A)
        self.store.thd_get_node(contract.A)  # a pooled connection
        original = self.store._thd_get
        broken = []

        def dropped_first_time(conn, uuid):
            if not broken:
                broken.append(self.server.drop_connections())
            return original(conn, uuid)

        self.patch(self.store, "_thd_get", dropped_first_time)
        record = self.successResultOf(self.store.transition(contract.A, "wait", T0))
        self.assertEqual(record.state, "waiting")
        self.assertEqual(len(broken), 1)

    # -- concurrent identical requests ----------------------------------------

    def test_concurrent_callbacks_one_wins_the_other_409(self):
        """Two instances take the same ramdisk callback at once: one processes it, the other gets 409."""
        for i in range(8):
            uuid = "00000000-0000-0000-0000-{:012d}".format(i)
            mac = "52:54:00:10:00:{:02x}".format(i)
            self.start(uuid, macs=[mac])
            self.store.thd_transition(uuid, "wait", T0)
            outcomes = _together(2, self.store.thd_accept, [mac], [], {"raw": i}, T0, T0)
            unexpected = [o for o in outcomes if isinstance(o, Exception) and not isinstance(o, errors.StateChanged)]
            self.assertEqual(unexpected, [])
            moved = [o for o in outcomes if not isinstance(o, Exception) and o[1] is not None]
            self.assertEqual(len(moved), 1, outcomes)
            self.assertEqual(self.store.thd_get_node(uuid).state, "processing")
            self.assertEqual(self.store.thd_get_data(uuid, False), {"raw": i})

    def test_concurrent_first_starts_one_wins_the_other_409(self):
        for i in range(8):
            uuid = "00000000-0000-0000-0001-{:012d}".format(i)
            outcomes = _together(2, self.store.thd_start, uuid, T0, True, {}, {}, [])
            failures = [o for o in outcomes if isinstance(o, Exception)]
            self.assertEqual(len(failures), 1, outcomes)
            self.assertIsInstance(failures[0], errors.NodeBusy)
            from inspectord.api.status import status_for

            self.assertEqual(status_for(failures[0]), 409)  # what the API answers

    def test_concurrent_data_writes_both_succeed(self):
        self.start(contract.A)
        for i in range(8):
            outcomes = _together(3, self.store.thd_store_data, contract.A, {"v": i}, bool(i % 2), T0)
            self.assertEqual(outcomes, [None, None, None])

    def test_concurrent_rule_creation_one_wins_the_other_409(self):
        for i in range(5):
            rule = {"uuid": "00000000-0000-0000-0002-{:012d}".format(i), "conditions": [], "actions": []}
            outcomes = _together(2, self.store.thd_create_rule, rule, T0)
            failures = [o for o in outcomes if isinstance(o, Exception)]
            self.assertEqual(len(failures), 1, outcomes)
            self.assertIsInstance(failures[0], errors.NodeBusy)

    def test_concurrent_dhcp_leases(self):
        until = T0 + datetime.timedelta(hours=1)
        for i in range(5):
            outcomes = _together(2, self.store.thd_put_dhcp_lease, "52:54:00:20:00:{:02x}".format(i), "192.0.2.50", until)
            self.assertEqual(outcomes, [None, None])
        self.assertEqual(len(self.store.thd_dhcp_leases()), 1)

    def test_concurrent_change_counts_none_lost(self):
        """Instances counting PXE filter changes at once (the row missing at first): every change counted."""
        for _ in range(5):
            outcomes = _together(2, self.store.thd_bump, "pxe_filter")
            self.assertEqual(sorted(outcomes)[1] - sorted(outcomes)[0], 1, outcomes)
        self.assertEqual(self.store.thd_generation("pxe_filter"), 10)

    def test_dhcp_seen_newer_request_wins(self):
        mac = "52:54:00:30:00:01"
        later = T0 + datetime.timedelta(microseconds=1500)
        self.store.thd_put_dhcp_seen([(mac, later, "request", True)])
        self.store.thd_put_dhcp_seen([(mac, T0, "discover", False), ("52:54:00:30:00:02", T0, "discover", False)])
        rows = dict((r[0], r[1:]) for r in self.store.thd_dhcp_seen_since(None))
        self.assertEqual(rows[mac], (later, "request", True))
        self.assertEqual(len(rows), 2)
        self.assertEqual(self.store.thd_dhcp_seen_since(later), [(mac, later, "request", True)])

    # -- migrations ---------------------------------------------------------

    def test_three_instances_migrate_an_empty_database_at_once(self):
        _server, url = databases.fresh_database(self.engine_name)
        config = os.path.join(self.mktemp())
        with open(config, "w", encoding="utf-8") as f:
            f.write(
                "[DEFAULT]\nauth_strategy = noauth\n[ironic]\nauth_type = none\n"
                "endpoint_override = http://127.0.0.1:6385\n[database]\nconnection = {}\n".format(url)
            )
        dbsync = os.path.join(os.path.dirname(sys.executable), "inspectord-dbsync")
        runs = [
            subprocess.Popen([dbsync, "--config-file", config, "upgrade"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
            for _ in range(3)
        ]
        outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
        self.assertEqual([run.returncode for run in runs], [0, 0, 0], outputs)
        engine = make_engine(url)
        self.addCleanup(engine.dispose)
        with engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM inspectord_alembic_version").scalars().all()
        self.assertEqual(versions, [sql_head()])


class EngineStartTests:
    """A database not reachable at start, with the real reactor and thread pool."""

    engine_name = None

    @defer.inlineCallbacks
    def test_unreachable_at_start_is_retried_until_up(self):
        server, url = databases.fresh_database(self.engine_name)
        pool = DatabasePool(reactor, size=2)
        pool.startService()
        self.addCleanup(pool.stopService)
        engine = make_engine(url)
        self.addCleanup(engine.dispose)
        events = []
        self.patch(SQLStore, "log", Logger(observer=events.append))
        store = SQLStore(engine, pool, clock=reactor, connect_retries=20, connect_retry_interval=1)
        server.stop()
        self.addCleanup(lambda: server.pid or server.start())
        began = time.monotonic()
        upgraded = store.upgrade()
        yield threads.deferToThread(time.sleep, 1.5)
        self.assertFalse(upgraded.called)
        yield threads.deferToThread(server.start)
        yield upgraded
        self.assertLess(time.monotonic() - began, 15)
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertGreaterEqual(len(warnings), 2)
        self.assertNotIn("Traceback", str(warnings))
        self.assertIn("inspectord_nodes", sa.inspect(engine).get_table_names())


for _engine in databases.ENGINES:
    for _case in (EngineDifferences, EngineStartTests):
        _base = unittest.SynchronousTestCase if _case is EngineDifferences else unittest.TestCase
        _name = PREFIXES[_engine] + _case.__name__
        globals()[_name] = type(
            _name, (_case, _base), {"engine_name": _engine, "skip": _skip(_engine), "__module__": __name__}
        )
