"""Unmodified real clients against a real inspectord and a real Ironic.

``openstack baremetal introspection ...`` (python-ironic-inspector-client with
python-openstackclient) at the client's default API version (1.0) and at
1.18, and openstacksdk's ``baremetal_introspection`` proxy.
"""

import json
import os
import textwrap

from devenv import clients
from tests.integration.base import IntegrationCase, ipa_payload, new_macs


class OpenStackCLITests(IntegrationCase):
    def cli(self, *args, version=None, ok=True):
        result = clients.openstack(list(args), self.inspectord.url, api_version=version)
        if ok:
            self.assertEqual(result.returncode, 0, "openstack {}:\n{}{}".format(" ".join(args), result.stdout, result.stderr))
        return result

    def introspect(self, version=None):
        macs = new_macs(2)
        uuid, name = self.enroll(macs[:1])
        self.cli("baremetal", "introspection", "start", name, version=version)
        self.wait_state(uuid, ["waiting"])
        status, _, body = self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))
        self.assertEqual(status, 200, body)
        self.inspectord.wait_finished(uuid)
        return uuid, name

    def test_start_status_list_data_at_default_version(self):
        self._walk(None)

    def test_start_status_list_data_at_1_18(self):
        self._walk("1.18")

    def _walk(self, version):
        uuid, name = self.introspect(version)
        status = json.loads(self.cli("baremetal", "introspection", "status", name, "-f", "json", version=version).stdout)
        self.assertTrue(status["finished"])
        self.assertIsNone(status["error"])
        listed = json.loads(self.cli("baremetal", "introspection", "list", "-f", "json", version=version).stdout)
        self.assertIn(uuid, [row["UUID"] for row in listed])
        saved = os.path.join(self.workdir, "data.json")
        self.cli("baremetal", "introspection", "data", "save", "--file", saved, uuid, version=version)
        with open(saved) as f:
            data = json.load(f)
        self.assertEqual(data["cpus"], 2)
        self.assertEqual(data["local_gb"], 255)
        self.cli("baremetal", "introspection", "reprocess", uuid, version=version)
        self.inspectord.wait_finished(uuid)

    def test_abort(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        self.cli("baremetal", "introspection", "start", name)
        self.wait_state(uuid, ["waiting"])
        self.cli("baremetal", "introspection", "abort", name)
        status = self.inspectord.wait_finished(uuid)
        self.assertEqual((status["state"], status["error"]), ("error", "Canceled by operator"))
        self.wait_power_state(uuid, "power off")  # applied by Ironic asynchronously
        # Aborting again cannot apply: a clear error, not a silent success.
        result = self.cli("baremetal", "introspection", "abort", name, ok=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("nothing to abort", result.stderr + result.stdout)

    def test_rules_import_list_show_delete_purge(self):
        rules_file = os.path.join(self.workdir, "rules.json")
        with open(rules_file, "w") as f:
            json.dump(
                [
                    {
                        "description": "big memory",
                        "conditions": [{"op": "ge", "field": "memory_mb", "value": 1024}],
                        "actions": [{"action": "set-capability", "name": "big", "value": "yes"}],
                    },
                    {
                        "uuid": None,
                        "description": "trait for everything",
                        "conditions": [],
                        "actions": [{"action": "add-trait", "name": "CUSTOM_INSPECTED"}],
                    },
                ],
                f,
            )
        imported = json.loads(self.cli("baremetal", "introspection", "rule", "import", rules_file, "-f", "json").stdout)
        self.assertEqual(len(imported), 2)
        listed = json.loads(self.cli("baremetal", "introspection", "rule", "list", "-f", "json").stdout)
        self.assertEqual(sorted(r["Description"] for r in listed), ["big memory", "trait for everything"])
        shown = json.loads(
            self.cli("baremetal", "introspection", "rule", "show", listed[0]["UUID"], "-f", "json").stdout
        )
        self.assertIn("conditions", shown)
        # The rules apply to the next introspection.
        uuid, _ = self.introspect()
        node = self.client.node.get(uuid)
        self.assertIn("big:yes", node.properties["capabilities"])
        self.assertIn("CUSTOM_INSPECTED", self.client.node.get_traits(uuid))
        self.cli("baremetal", "introspection", "rule", "delete", listed[0]["UUID"])
        self.assertEqual(len(json.loads(self.cli("baremetal", "introspection", "rule", "list", "-f", "json").stdout)), 1)
        self.cli("baremetal", "introspection", "rule", "purge")
        self.assertEqual(json.loads(self.cli("baremetal", "introspection", "rule", "list", "-f", "json").stdout), [])


class OpenStackSDKTests(IntegrationCase):
    def sdk(self, body):
        code = textwrap.dedent(
            """
            import json, openstack
            conn = openstack.connect(auth_type="none", baremetal_introspection_endpoint_override={url!r})
            bi = conn.baremetal_introspection
            """
        ).format(url=self.inspectord.url) + textwrap.dedent(body)
        result = clients.python(code)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return json.loads(result.stdout.strip().splitlines()[-1])

    def test_sdk_proxy(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        started = self.sdk(
            """
            i = bi.start_introspection({name!r})
            print(json.dumps({{"id": i.id}}))
            """.format(name=name)
        )
        self.assertIn(started["id"], (uuid, name))
        self.wait_state(uuid, ["waiting"])
        self.assertEqual(self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))[0], 200)
        result = self.sdk(
            """
            i = bi.wait_for_introspection({uuid!r}, timeout=60)
            listed = [x.id for x in bi.introspections(limit=1)]
            everything = [x.id for x in bi.introspections()]
            data = bi.get_introspection_data({uuid!r})
            raw = bi.get_introspection_data({uuid!r}, processed=False)
            rules = list(bi.introspection_rules())
            print(json.dumps({{"finished": i.is_finished, "error": i.error, "listed": listed,
                               "everything": everything, "cpus": data["cpus"],
                               "raw_keys": sorted(raw), "rules": len(rules)}}))
            """.format(uuid=uuid)
        )
        self.assertTrue(result["finished"])
        self.assertIsNone(result["error"])
        self.assertEqual(len(result["listed"]), 1)
        self.assertIn(uuid, result["everything"])
        self.assertEqual(result["cpus"], 2)
        self.assertIn("inventory", result["raw_keys"])
        self.assertEqual(result["rules"], 0)

    def test_sdk_abort(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        self.sdk(
            """
            bi.start_introspection({uuid!r})
            import time
            while bi.get_introspection({uuid!r}).state != "waiting":
                time.sleep(0.1)
            bi.abort_introspection({uuid!r})
            print(json.dumps({{}}))
            """.format(uuid=uuid)
        )
        status = self.inspectord.wait_finished(uuid)
        self.assertEqual(status["error"], "Canceled by operator")
