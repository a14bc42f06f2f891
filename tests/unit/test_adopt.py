"""Adopting ironic-inspector's database (inspectord.store.adopt).

The ironic-inspector tables here are written from its 12.5.0 schema
(revision b55109d5063a, and older ones without the later columns); the
integration test tests.integration.test_adopt has the real ironic-inspector
fill them.
"""

import datetime
import io
import json
import os
import sys

import sqlalchemy as sa
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors, tap
from inspectord.api.app import API, make_site
from inspectord.api.auth import NoAuth
from inspectord.service import InspectordService
from inspectord.store import adopt, schema
from inspectord.store.sql import make_engine, thd_upgrade, thd_upgrade_and_adopt
from tests.unit.helpers import Harness, fixture, make_config

HEAD = "b55109d5063a"
T0 = datetime.datetime(2026, 3, 1, 10, 0, 0, 123456)
NOW = datetime.datetime(2026, 3, 2, 9, 0, 0)
FINISHED = "11111111-1111-1111-1111-111111111111"
FAILED = "22222222-2222-2222-2222-222222222222"
WAITING = "33333333-3333-3333-3333-333333333333"
PROCESSING = "44444444-4444-4444-4444-444444444444"
PROCESSING_NO_DATA = "55555555-5555-5555-5555-555555555555"
STARTING = "66666666-6666-6666-6666-666666666666"
ABORTING = "77777777-7777-7777-7777-777777777777"
RULE1 = "aaaaaaaa-0000-0000-0000-000000000001"
RULE2 = "aaaaaaaa-0000-0000-0000-000000000002"
MAC = "02:fc:00:00:00:01"


def minutes(n):
    return datetime.timedelta(minutes=n)


def upstream_metadata(revision=HEAD):
    """ironic-inspector's tables at ``revision`` (882b2d84cb1b or later)."""
    order = adopt.UPSTREAM_REVISIONS
    at_least = lambda r: order.index(revision) >= order.index(r)  # noqa: E731
    m = sa.MetaData()
    nodes = [
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("error", sa.Text),
        sa.Column("version_id", sa.String(36), server_default=""),
        sa.Column("state", sa.String(10), nullable=False, server_default="finished"),
    ]
    if at_least("2970d2d44edc"):
        nodes.append(sa.Column("manage_boot", sa.Boolean))
    sa.Table("nodes", m, *nodes)
    sa.Table(
        "attributes", m,
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("node_uuid", sa.String(36), sa.ForeignKey("nodes.uuid")),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255)),
    )
    sa.Table(
        "options", m,
        sa.Column("uuid", sa.String(36), sa.ForeignKey("nodes.uuid"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text),
    )
    rules = [
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("disabled", sa.Boolean),
    ]
    if at_least("b55109d5063a"):
        rules.append(sa.Column("scope", sa.String(255)))
    sa.Table("rules", m, *rules)
    sa.Table(
        "rule_conditions", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rule", sa.String(36), sa.ForeignKey("rules.uuid")),
        sa.Column("op", sa.String(255), nullable=False),
        sa.Column("multiple", sa.String(255), nullable=False),
        sa.Column("field", sa.Text),
        sa.Column("params", sa.Text),
        sa.Column("invert", sa.Boolean),
    )
    sa.Table(
        "rule_actions", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rule", sa.String(36), sa.ForeignKey("rules.uuid")),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("params", sa.Text),
    )
    if at_least("bf8dec16023c"):
        sa.Table(
            "introspection_data", m,
            sa.Column("uuid", sa.String(36), sa.ForeignKey("nodes.uuid"), primary_key=True),
            sa.Column("processed", sa.Boolean, primary_key=True),
            sa.Column("data", sa.Text),
        )
    sa.Table("alembic_version", m, sa.Column("version_num", sa.String(32), primary_key=True))
    return m


def fill_upstream(engine, revision=HEAD):
    """ironic-inspector's tables with two rules and a node in each interesting state."""
    m = upstream_metadata(revision)
    t = m.tables
    m.create_all(engine)
    raw = fixture("ipa-payload.json")
    processed = {k: v for k, v in raw.items() if k != "logs"}
    processed["all_interfaces"] = {"eth0": {"mac": MAC, "ip": "192.0.2.10"}}
    with engine.begin() as conn:
        conn.execute(t["alembic_version"].insert().values(version_num=revision))
        nodes = [
            (FINISHED, "finished", T0, T0 + minutes(5), None),
            (FAILED, "error", T0 + minutes(1), T0 + minutes(9), "Introspection timeout"),
            (WAITING, "waiting", NOW - minutes(3), None, None),
            (PROCESSING, "processing", NOW - minutes(8), None, None),
            (PROCESSING_NO_DATA, "processing", NOW - minutes(7), None, None),
            (STARTING, "starting", NOW - minutes(1), None, None),
            (ABORTING, "aborting", NOW - minutes(2), None, None),
        ]
        for uuid, state, started, finished, error in nodes:
            values = dict(uuid=uuid, state=state, started_at=started, finished_at=finished, error=error, version_id="")
            if "manage_boot" in t["nodes"].c:
                values["manage_boot"] = uuid != FAILED
            conn.execute(t["nodes"].insert().values(**values))
        conn.execute(t["attributes"].insert(), [
            {"uuid": "at-1", "node_uuid": WAITING, "name": "mac", "value": MAC.upper()},
            {"uuid": "at-2", "node_uuid": WAITING, "name": "bmc_address", "value": "192.0.2.1"},
            {"uuid": "at-3", "node_uuid": PROCESSING, "name": "mac", "value": "02:fc:00:00:00:02"},
        ])
        if "introspection_data" in t:
            conn.execute(t["introspection_data"].insert(), [
                {"uuid": FINISHED, "processed": True, "data": json.dumps(processed)},
                {"uuid": FINISHED, "processed": False, "data": json.dumps(raw)},
                {"uuid": PROCESSING, "processed": False, "data": json.dumps(raw)},
            ])
        rule2 = dict(uuid=RULE2, created_at=T0 + minutes(1), description="second", disabled=False)
        rule1 = dict(uuid=RULE1, created_at=T0, description="memory", disabled=False)
        if "scope" in t["rules"].c:
            rule1["scope"], rule2["scope"] = "rack-1", None
        # Inserted out of order: rules apply in creation order.
        conn.execute(t["rules"].insert(), [rule2, rule1])
        conn.execute(t["rule_conditions"].insert(), [
            {"id": 1, "rule": RULE1, "op": "ge", "multiple": "any", "field": "memory_mb",
             "params": json.dumps({"value": 1024}), "invert": False},
            {"id": 2, "rule": RULE1, "op": "matches", "multiple": "all", "field": "data://inventory.interfaces[*].name",
             "params": json.dumps({"value": "eth.*"}), "invert": None},
            {"id": 3, "rule": RULE2, "op": "is-empty", "multiple": "any", "field": "node://extra.x",
             "params": json.dumps({}), "invert": True},
        ])
        conn.execute(t["rule_actions"].insert(), [
            {"id": 1, "rule": RULE1, "action": "set-attribute",
             "params": json.dumps({"path": "/extra/big", "value": True})},
            {"id": 2, "rule": RULE2, "action": "fail", "params": json.dumps({"message": "no"})},
        ])
    return raw, processed


def dump_upstream(engine, revision=HEAD):
    with engine.connect() as conn:
        return {
            name: sorted(map(tuple, conn.execute(sa.select(table)).all()), key=repr)
            for name, table in upstream_metadata(revision).tables.items()
        }


class AdoptionTests(SynchronousTestCase):
    def setUp(self):
        self.h = Harness(processing__store_data="database")
        self.engine = self.h.store.engine
        self.raw, self.processed = fill_upstream(self.engine)

    def adopt(self, **kwargs):
        return adopt.thd_adopt(self.engine, NOW, **kwargs)

    def test_report_counts(self):
        report = self.adopt()
        self.assertEqual((report.upstream_revision, report.rules, report.nodes, report.data), (HEAD, 2, 7, 3))
        self.assertEqual(report.waiting, (WAITING,))
        self.assertEqual(report.resumed, (PROCESSING,))
        self.assertEqual(set(report.failed), {PROCESSING_NO_DATA, STARTING, ABORTING})
        self.assertIn("2 rule(s), 7 node(s), 3 introspection data record(s)", report.summary())

    def test_rules_served_as_ironic_inspector_served_them(self):
        self.adopt()
        code, _, body = self.h.request("GET", "/v1/rules")
        self.assertEqual(code, 200)
        self.assertEqual([r["uuid"] for r in body["rules"]], [RULE1, RULE2])
        code, _, rule = self.h.request("GET", "/v1/rules/" + RULE1)
        self.assertEqual(code, 200)
        self.assertEqual(rule["description"], "memory")
        self.assertEqual(rule["scope"], "rack-1")
        self.assertEqual(rule["conditions"], [
            {"op": "ge", "field": "memory_mb", "multiple": "any", "invert": False, "value": 1024},
            {"op": "matches", "field": "data://inventory.interfaces[*].name", "multiple": "all", "invert": False,
             "value": "eth.*"},
        ])
        self.assertEqual(rule["actions"], [{"action": "set-attribute", "path": "/extra/big", "value": True}])
        rule2 = self.h.request("GET", "/v1/rules/" + RULE2)[2]
        self.assertEqual(rule2["conditions"][0]["invert"], True)
        self.assertIsNone(rule2["scope"])

    def test_rules_created_within_one_second_keep_their_order(self):
        """MySQL keeps whole seconds: the ids of their conditions tell the creation order."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE rules SET created_at = '2026-03-01 10:00:00.000000'")
            conn.exec_driver_sql("UPDATE rule_conditions SET id = id + 10 WHERE rule = '{}'".format(RULE1))
        self.adopt()
        self.assertEqual([r["uuid"] for r in self.h.store.thd_list_rules()], [RULE2, RULE1])

    def test_history_and_data_served(self):
        self.adopt()
        code, _, status = self.h.request("GET", "/v1/introspection/" + FINISHED)
        self.assertEqual(code, 200)
        self.assertEqual(
            (status["state"], status["finished"], status["error"], status["started_at"], status["finished_at"]),
            ("finished", True, None, T0.isoformat(), (T0 + minutes(5)).isoformat()),
        )
        status = self.h.request("GET", "/v1/introspection/" + FAILED)[2]
        self.assertEqual((status["state"], status["error"]), ("error", "Introspection timeout"))
        self.assertEqual(self.h.request("GET", "/v1/introspection/{}/data".format(FINISHED))[2], self.processed)
        self.assertEqual(self.h.request("GET", "/v1/introspection/{}/data/unprocessed".format(FINISHED))[2], self.raw)
        listed = self.h.request("GET", "/v1/introspection?limit=3")[2]["introspection"]
        self.assertEqual([s["uuid"] for s in listed], [STARTING, ABORTING, WAITING])

    def test_nodes_in_flight(self):
        self.adopt()
        get = self.h.store.thd_get_node
        self.assertEqual(get(WAITING).state, "waiting")
        self.assertIsNone(get(WAITING).error)
        self.assertEqual(self.h.store.thd_lookup([MAC], []).uuid, WAITING)
        self.assertEqual(self.h.store.thd_lookup([], ["192.0.2.1"]).uuid, WAITING)
        resumed = get(PROCESSING)
        self.assertEqual((resumed.state, resumed.lease_until), ("processing", NOW))
        self.assertEqual([r.uuid for r in self.h.store.thd_expired_leases(NOW + minutes(1))], [PROCESSING])
        for uuid, words in ((STARTING, "still starting"), (PROCESSING_NO_DATA, "no unprocessed data")):
            record = get(uuid)
            self.assertEqual((record.state, record.finished_at), ("error", NOW))
            self.assertIn(words, record.error)
            self.assertIn("ironic-inspector", record.error)
        self.assertEqual((get(ABORTING).state, get(ABORTING).error), ("error", "Canceled by operator"))
        self.assertFalse(get(FAILED).manage_boot)
        self.assertTrue(get(FINISHED).manage_boot)

    def test_waiting_node_callback_is_processed(self):
        self.h.fake.add_node(uuid=WAITING, name="adopted", macs=[MAC], provision_state="inspect wait")
        self.adopt()
        data = fixture("ipa-payload.json")
        code, _, body = self.h.request("POST", "/v1/continue", data)
        self.assertEqual((code, body), (200, {"uuid": WAITING}))
        record = self.h.store.thd_get_node(WAITING)
        self.assertEqual(record.state, "finished", record.error)
        self.assertIn(("GET", "/v1/nodes/" + WAITING), [(m, p.split("?")[0]) for m, p in self.h.fake.requests])
        self.assertEqual(self.h.store.thd_get_data(WAITING, False), data)

    def test_processing_node_is_processed_again(self):
        self.h.fake.add_node(uuid=PROCESSING, macs=["02:fc:00:00:00:02"], provision_state="inspect wait")
        self.adopt()
        self.h.clock.advance(1)
        self.patch(self.h.introspection, "now", lambda: NOW + minutes(1))
        resumed = self.successResultOf(defer.Deferred.fromCoroutine(self.h.introspection.resume_abandoned()))
        self.h.flush()
        self.assertEqual(resumed, [PROCESSING])
        self.assertEqual(self.h.store.thd_get_node(PROCESSING).state, "finished")

    def test_ironic_inspector_tables_untouched(self):
        before = dump_upstream(self.engine)
        self.adopt()
        self.adopt()
        self.assertEqual(dump_upstream(self.engine), before)

    def test_idempotent(self):
        self.adopt()
        again = self.adopt()
        self.assertEqual((again.rules, again.nodes, again.data), (0, 0, 0))
        self.assertIsNone(self.adopt(first_only=True))
        self.assertEqual(len(self.h.store.thd_list_rules()), 2)
        with self.engine.connect() as conn:
            self.assertEqual(conn.execute(sa.select(sa.func.count()).select_from(schema.adoptions)).scalar(), 2)

    def test_inspectord_changes_survive_a_second_adoption(self):
        self.adopt()
        self.h.store.thd_start(FINISHED, NOW + minutes(5), True, {"name": "again"}, {}, [])
        self.adopt()
        self.assertEqual(self.h.store.thd_get_node(FINISHED).state, "starting")

    def test_newer_ironic_inspector_record_replaces(self):
        """After a way back, ironic-inspector introspected a node again: its record wins."""
        self.adopt()
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE nodes SET started_at = '2026-03-03 10:00:00.000000', finished_at = "
                "'2026-03-03 10:05:00.000000', state = 'error', error = 'later' WHERE uuid = '{}'".format(FINISHED)
            )
        report = self.adopt()
        self.assertEqual((report.nodes, report.data), (1, 2))
        record = self.h.store.thd_get_node(FINISHED)
        self.assertEqual((record.state, record.error), ("error", "later"))
        self.assertEqual(self.h.store.thd_get_data(FINISHED, True), self.processed)


class RevisionTests(SynchronousTestCase):
    def setUp(self):
        self.engine = make_engine("sqlite://")
        self.addCleanup(self.engine.dispose)

    def test_oldest_adoptable_revision(self):
        fill_upstream(self.engine, adopt.OLDEST_ADOPTABLE)
        report = thd_upgrade_and_adopt(self.engine, NOW)
        self.assertEqual((report.upstream_revision, report.rules, report.nodes, report.data),
                         (adopt.OLDEST_ADOPTABLE, 2, 7, 0))
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(schema.rules.c.scope)).scalars().all()
            boot = conn.execute(sa.select(schema.nodes.c.manage_boot)).scalars().all()
        self.assertEqual(rows, [None, None])
        self.assertEqual(set(boot), {True})

    def test_every_adoptable_revision(self):
        for revision in adopt.ADOPTABLE_REVISIONS:
            engine = make_engine("sqlite://")
            self.addCleanup(engine.dispose)
            fill_upstream(engine, revision)
            self.assertEqual(thd_upgrade_and_adopt(engine, NOW).nodes, 7, revision)

    def test_older_revision_names_it(self):
        upstream_metadata().tables["alembic_version"].create(self.engine)
        with self.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('d2e48801c8ef')")
        e = self.assertRaises(errors.SchemaError, thd_upgrade, self.engine)
        self.assertIn("'d2e48801c8ef'", str(e))
        self.assertIn("ironic-inspector-dbsync upgrade", str(e))

    def test_first_start_adopts_once(self):
        fill_upstream(self.engine)
        self.assertEqual(thd_upgrade_and_adopt(self.engine, NOW).nodes, 7)
        self.assertIsNone(thd_upgrade_and_adopt(self.engine, NOW))

    def test_no_ironic_inspector_schema(self):
        self.assertIsNone(thd_upgrade_and_adopt(self.engine, NOW))
        self.assertIsNone(adopt.thd_adopt(self.engine, NOW))


class SchemaErrorStore:
    def upgrade(self):
        return defer.fail(errors.SchemaError("The database's alembic_version holds revision 'abc'"))


class StartTests(SynchronousTestCase):
    def test_unknown_revision_stops_the_start_without_traceback(self):
        reactor = MemoryReactorClock()
        reactor.running = True
        config = make_config()
        store = SchemaErrorStore()
        api = API(None, store, None, config, NoAuth("127.0.0.1"))
        site = make_site(api.app.resource(), 1024)
        main = InspectordService(reactor, store, None, "tcp:5056:interface=127.0.0.1", site, 0)
        events = []
        self.patch(InspectordService, "log", Logger(observer=events.append))
        main.startService()
        self.successResultOf(main.ready)
        self.assertTrue(reactor.hasStopped)
        self.assertEqual(reactor.tcpServers, [])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(len(events), 1)
        self.assertNotIn("log_failure", events[0])
        self.assertIn("'abc'", events[0]["reason"])


class DbsyncTests(SynchronousTestCase):
    def setUp(self):
        directory = self.mktemp()
        os.makedirs(directory)
        self.url = "sqlite:///" + os.path.join(directory, "inspector.sqlite")
        self.config = os.path.join(directory, "ironic-inspector.conf")
        with open(self.config, "w") as f:
            f.write(
                "[DEFAULT]\nauth_strategy = noauth\n[ironic]\nauth_type = none\n"
                "endpoint_override = http://127.0.0.1:6385\n[database]\nconnection = {}\n".format(self.url)
            )
        engine = make_engine(self.url)
        self.addCleanup(engine.dispose)
        fill_upstream(engine)
        self.engine = engine

    def run_dbsync(self, command):
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        return tap.main_dbsync(["--config-file", self.config, command]), out.getvalue(), err.getvalue()

    def test_adopt_prints_counts(self):
        code, out, err = self.run_dbsync("adopt")
        self.assertEqual(code, 0, err)
        self.assertIn("2 rule(s), 7 node(s), 3 introspection data record(s)", out)
        self.assertIn("node {}: interrupted".format(STARTING), out)
        code, out, _ = self.run_dbsync("adopt")
        self.assertIn("0 rule(s), 0 node(s), 0 introspection data record(s)", out)

    def test_upgrade_adopts_the_first_time(self):
        self.assertIn("7 node(s)", self.run_dbsync("upgrade")[1])
        code, out, _ = self.run_dbsync("upgrade")
        self.assertEqual((code, out), (0, "database schema is up to date\n"))

    def test_unknown_revision_message(self):
        with self.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff00001111'")
        code, out, err = self.run_dbsync("upgrade")
        self.assertEqual(code, 1)
        self.assertIn("'ffff00001111'", err)
        self.assertNotIn("Traceback", err)
