"""Swap ironic-inspector 12.5.0 for inspectord on the same database, and back.

The real ironic-inspector (PyPI, its own venv) fills the database through
its own API against the real Ironic: rules, finished and failed
introspections with their data, a node left waiting for its ramdisk.
Then it stops, and inspectord starts with the same ``[database]connection``:
it serves the same history, data and rules, processes the waiting node's
callback and runs new introspections.  Then inspectord stops, and
ironic-inspector starts again on the database and still serves its data.
"""

import os
import subprocess
import sys
import tempfile
import time

from devenv import databases
from devenv.daemon import InspectordProcess
from devenv.ironic_inspector import IronicInspectorProcess
from tests.integration import base
from tests.integration.base import ipa_payload, new_macs

RULES = [
    {
        "description": "big memory",
        "scope": "rack-1",
        "conditions": [
            {"op": "ge", "field": "memory_mb", "value": 1024},
            {"op": "matches", "field": "data://inventory.interfaces[*].name", "value": "eth.*",
             "multiple": "all", "invert": False},
        ],
        "actions": [{"action": "set-attribute", "path": "/extra/memory_class", "value": "big"}],
    },
    {
        "description": "never",
        "conditions": [{"op": "eq", "field": "cpus", "value": 999, "invert": True}],
        "actions": [{"action": "extend-attribute", "path": "/extra/tags", "value": "seen", "unique": True}],
    },
]


def _without_links(value):
    """API answers without their links (each service names its own host and port)."""
    if isinstance(value, dict):
        return {k: _without_links(v) for k, v in value.items() if k != "links"}
    if isinstance(value, list):
        return [_without_links(v) for v in value]
    return value


class AdoptionTests(base.IntegrationCase):
    """One database, ironic-inspector then inspectord then ironic-inspector again."""

    #: None: a SQLite file in the work directory.
    database_url = None

    def setUp(self):
        # No inspectord yet: ironic-inspector owns the database first.
        self.ironic = base.ironic()
        self.client = self.ironic.client()
        self.workdir = tempfile.mkdtemp(prefix="inspectord-adopt-", dir=base._workdir)
        self.url = self.database_url or "sqlite:///{}/shared.sqlite".format(self.workdir)

    def upstream(self):
        service = IronicInspectorProcess(
            os.path.join(self.workdir, "ironic-inspector"), self.ironic.url, database_url=self.url
        )
        service.start()
        self.addCleanup(service.stop)
        return service

    def inspectord(self):
        service = InspectordProcess(
            os.path.join(self.workdir, "inspectord"), self.ironic.url,
            extra_config="[processing]\nstore_data = database\n[database]\nconnection = {}\n".format(self.url),
        )
        service.start()
        self.addCleanup(service.stop)
        return service

    def answers(self, call, uuids, rule_uuids):
        """What a service serves of the history, data and rules (links aside)."""
        result = {}
        for uuid in uuids:
            for path in ("", "/data", "/data/unprocessed"):
                status, body = call("GET", "/v1/introspection/" + uuid + path)
                result[uuid + path] = (status, _without_links(body) if status == 200 else None)
        status, body = call("GET", "/v1/introspection")
        result["list"] = [(s["uuid"], s["state"]) for s in body["introspection"] if s["uuid"] in uuids]
        status, body = call("GET", "/v1/rules")
        result["rules"] = _without_links(body)
        for uuid in rule_uuids:
            result["rule " + uuid] = _without_links(call("GET", "/v1/rules/" + uuid)[1])
        return result

    def fill_with_ironic_inspector(self, upstream):
        """Rules, a finished node, an aborted one, a waiting one: ``(uuids, rule uuids, waiting node and MACs)``."""
        rule_uuids = []
        for rule in RULES:
            status, body = upstream.call("POST", "/v1/rules", rule)
            self.assertIn(status, (200, 201), body)
            rule_uuids.append(body["uuid"])
        finished_macs, failed_macs, waiting_macs = new_macs(2), new_macs(1), new_macs(1)
        finished = self.ironic.enroll_node("adopt-finished-" + finished_macs[0][-5:].replace(":", ""),
                                           finished_macs[:1]).uuid
        failed = self.ironic.enroll_node("adopt-failed-" + failed_macs[0][-5:].replace(":", ""), failed_macs).uuid
        waiting = self.ironic.enroll_node("adopt-waiting-" + waiting_macs[0][-5:].replace(":", ""), waiting_macs).uuid
        for uuid in (finished, failed, waiting):
            status, body = upstream.call("POST", "/v1/introspection/" + uuid)
            self.assertEqual(status, 202, body)
            upstream.wait_state(uuid, ["waiting"])
        status, body = upstream.call("POST", "/v1/continue", ipa_payload(finished_macs))
        self.assertEqual(status, 200, (body, upstream.log_tail()))
        upstream.wait_state(finished, ["finished"])
        # (ironic-inspector leaves a node waiting when its ramdisk reports an error: an abort ends one in error.)
        status, body = upstream.call("POST", "/v1/introspection/{}/abort".format(failed))
        self.assertEqual(status, 202, body)
        upstream.wait_state(failed, ["error"])
        return [finished, failed, waiting], rule_uuids, (waiting, waiting_macs)

    def assert_same_answers(self, answers, expected):
        self.assertEqual(sorted(answers), sorted(expected))
        for key in expected:
            if isinstance(expected[key], tuple) and isinstance(expected[key][1], dict):
                for field in expected[key][1]:
                    self.assertEqual(answers[key][1].get(field), expected[key][1][field], (key, field))
            self.assertEqual(answers[key], expected[key], key)

    def wait_waiting(self, service, uuid, timeout=60):
        deadline = time.monotonic() + timeout
        while service.call("GET", "/v1/introspection/" + uuid)[2]["state"] != "waiting":
            self.assertLess(time.monotonic(), deadline, service.log_tail())
            time.sleep(0.1)

    @staticmethod
    def data_count(answers):
        return sum(1 for key, value in answers.items() if "/data" in key and value[0] == 200)

    def test_swap_and_way_back(self):
        upstream = self.upstream()
        uuids, rule_uuids, (waiting, waiting_macs) = self.fill_with_ironic_inspector(upstream)
        before = self.answers(upstream.call, uuids, rule_uuids)
        self.assertEqual(before[uuids[0]][1]["state"], "finished")
        self.assertEqual(before[uuids[0] + "/data"][0], 200)
        self.assertEqual(before[uuids[1]][1]["state"], "error")
        self.assertEqual(before[waiting][1]["state"], "waiting")
        upstream.stop()

        # The swap: same database URL, nothing else done.
        inspectord = self.inspectord()
        log = inspectord.log_path.read_text()
        self.assertIn("Adopted ironic-inspector's database (revision b55109d5063a): 2 rule(s), 3 node(s), "
                      "{} introspection data record(s); 1 node(s) waiting".format(self.data_count(before)), log)

        def call(method, path, body=None):
            status, _, parsed = inspectord.call(method, path, body)
            return status, parsed

        self.assert_same_answers(self.answers(call, uuids, rule_uuids), before)

        # The node ironic-inspector left waiting: its ramdisk's callback is served.
        status, _, body = inspectord.call("POST", "/v1/continue", ipa_payload(waiting_macs))
        self.assertEqual((status, body), (200, {"uuid": waiting}), inspectord.log_tail())
        result = inspectord.wait_finished(waiting)
        self.assertEqual((result["state"], result["error"]), ("finished", None))
        node = self.client.node.get(waiting)
        # The adopted rules applied: the unscoped one, not the one scoped to another rack.
        self.assertEqual(node.extra.get("tags"), ["seen"])
        self.assertNotIn("memory_class", node.extra)

        # A new introspection by inspectord of an adopted node.
        finished = uuids[0]
        status, _, body = inspectord.call("POST", "/v1/introspection/" + finished)
        self.assertEqual(status, 202, body)
        macs = [p.address for p in self.client.port.list(node=finished)]
        self.wait_waiting(inspectord, finished)
        status, _, body = inspectord.call("POST", "/v1/continue", ipa_payload(macs))
        self.assertEqual(status, 200, body)
        self.assertEqual(inspectord.wait_finished(finished)["state"], "finished")
        inspectord.stop()

        # The way back: ironic-inspector on the database again sees what it had.
        upstream = self.upstream()
        self.assert_same_answers(self.answers(upstream.call, uuids, rule_uuids), before)

    def test_explicit_adopt_command(self):
        upstream = self.upstream()
        uuids, rule_uuids, _ = self.fill_with_ironic_inspector(upstream)
        data = self.data_count(self.answers(upstream.call, uuids, rule_uuids))
        upstream.stop()
        config = os.path.join(self.workdir, "ironic-inspector.conf")
        with open(config, "w") as f:
            f.write(
                "[DEFAULT]\nauth_strategy = noauth\n[ironic]\nauth_type = none\nendpoint_override = {}\n"
                "[database]\nconnection = {}\n".format(self.ironic.url, self.url)
            )
        dbsync = os.path.join(os.path.dirname(sys.executable), "inspectord-dbsync")
        result = subprocess.run([dbsync, "--config-file", config, "adopt"], capture_output=True, text=True,
                                timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("2 rule(s), 3 node(s), {} introspection data record(s)".format(data), result.stdout)
        again = subprocess.run([dbsync, "--config-file", config, "adopt"], capture_output=True, text=True,
                               timeout=120)
        self.assertIn("0 rule(s), 0 node(s), 0 introspection data record(s)", again.stdout)


class MariaDBAdoptionTests(AdoptionTests):
    """The same on a real MariaDB, the database deployment tools give ironic-inspector."""

    skip = base.SKIP or databases.unavailable("mariadb")

    def setUp(self):
        super().setUp()
        _server, self.url = databases.fresh_database("mariadb")
