"""The API's version history, 1.0 through 1.18: each version's visible behaviour."""

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.helpers import Harness, fixture

HEADER = "X-OpenStack-Ironic-Inspector-API-Version"
RULE = {"conditions": [], "actions": [{"action": "set-capability", "name": "seen", "value": "yes"}]}


class VersionHistoryTests(SynchronousTestCase):
    def setUp(self):
        self.h = Harness(processing__store_data="database")
        self.uuid = self.h.fake.add_node(name="node-a", macs=["02:fc:00:00:00:01"])

    def call(self, method, path, version, body=None):
        return self.h.request(method, path, body=body, headers={HEADER: version})

    def test_every_version_is_served_and_echoed(self):
        for minor in range(0, 19):
            version = "1.{}".format(minor)
            code, headers, _ = self.call("GET", "/v1", version)
            self.assertEqual(code, 200, version)
            self.assertEqual(headers.getRawHeaders(HEADER), [version])

    def test_versions_outside_the_range_are_refused(self):
        for version in ("0.9", "1.19", "2.0"):
            code, _, body = self.call("GET", "/v1", version)
            self.assertEqual(code, 406, version)
            self.assertIn("supported range is 1.0 to 1.18", body["error"]["message"])

    def test_rule_creation_answers_200_before_1_6_and_201_from_it(self):
        for minor in range(0, 19):
            code, _, body = self.call("POST", "/v1/rules", "1.{}".format(minor), RULE)
            self.assertEqual(code, 200 if minor < 6 else 201, minor)
            self.assertEqual(body["links"][0]["href"], "/v1/rules/" + body["uuid"])

    def test_rule_scope_is_shown_and_applied(self):
        # 1.16 added scope: a scoped rule only applies to nodes of that scope.
        scoped = dict(RULE, scope="rack-9", actions=[{"action": "set-capability", "name": "rack9", "value": "1"}])
        code, _, body = self.call("POST", "/v1/rules", "1.16", scoped)
        self.assertEqual((code, body["scope"]), (201, "rack-9"))
        self.call("POST", "/v1/introspection/node-a", "1.16")
        self.h.flush()
        self.call("POST", "/v1/continue", "1.16", fixture("ipa-payload.json"))
        self.h.flush()
        self.assertNotIn("rack9", self.h.fake.nodes[self.uuid]["properties"].get("capabilities", ""))

    def test_node_names_are_accepted(self):
        # 1.5 added node names; older clients only send UUIDs, which still work.
        code, _, _ = self.call("POST", "/v1/introspection/node-a", "1.5")
        self.assertEqual(code, 202)
        self.h.flush()
        code, _, body = self.call("GET", "/v1/introspection/node-a", "1.5")
        self.assertEqual((code, body["uuid"]), (200, self.uuid))
        code, _, body = self.call("GET", "/v1/introspection/" + self.uuid, "1.0")
        self.assertEqual(code, 200)
        # 1.0 has finished and error; the rest has been there since 12.x.
        self.assertEqual(
            sorted(body), ["error", "finished", "finished_at", "links", "started_at", "state", "uuid"]
        )

    def test_list_data_and_reapply_from_their_versions(self):
        self.call("POST", "/v1/introspection/node-a", "1.18")
        self.h.flush()
        self.call("POST", "/v1/continue", "1.18", fixture("ipa-payload.json"))
        self.h.flush()
        code, _, body = self.call("GET", "/v1/introspection?limit=1", "1.8")  # 1.8: list
        self.assertEqual((code, [x["uuid"] for x in body["introspection"]]), (200, [self.uuid]))
        code, _, body = self.call("GET", "/v1/introspection?state=finished", "1.18")  # 1.18: state filter
        self.assertEqual([x["state"] for x in body["introspection"]], ["finished"])
        code, _, body = self.call("GET", "/v1/introspection/node-a/data", "1.1")  # 1.1: data
        self.assertEqual((code, body["cpus"]), (200, 2))
        code, _, body = self.call("GET", "/v1/introspection/node-a/data/unprocessed", "1.17")
        self.assertEqual(code, 200)
        self.assertIn("inventory", body)
        code, _, _ = self.call("POST", "/v1/introspection/node-a/data/unprocessed", "1.15")  # reapply
        self.assertEqual(code, 202)
        self.h.flush()
        code, _, body = self.call("GET", "/v1/introspection/node-a", "1.18")
        self.assertEqual(body["state"], "finished")
