"""store_data = swift against a real Swift (proxy, account, container and object servers)."""

import atexit
import json
import os
import shutil
import tempfile
import uuid as uuidlib

from devenv.keystone import REGION, KeystoneServer
from devenv.swift import SwiftServer
from tests.integration.base import IntegrationCase, ipa_payload, new_macs

CONTAINER = "inspectord-it"
DELETE_AFTER = 86400

_swift = None
_keystone = None
PASSWORD = "inspectord-swift-test-password"
SWIFT_SERVICE_USER = "swift"
STORE_USER = "inspectord-store"


def _cleanup(servers, workdir):
    """At exit, stop ``servers`` (a list filled as they start), last started first, and remove ``workdir``."""

    def shutdown():
        for server in reversed(servers):
            server.stop()
        if not os.environ.get("INSPECTORD_KEEP_WORKDIR"):
            shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(shutdown)


def keystone_and_swift():
    """A real Keystone and a Swift validating its tokens, started on first use."""
    global _keystone
    if _keystone is None:
        workdir = tempfile.mkdtemp(prefix="inspectord-swift-ks-")
        started = []
        _cleanup(started, workdir)
        keystone = KeystoneServer(os.path.join(workdir, "keystone"))
        started.append(keystone)
        keystone.start()
        keystone.create_user(SWIFT_SERVICE_USER, PASSWORD, project="service", project_roles=["admin"])
        keystone.create_user(STORE_USER, PASSWORD, project="service", project_roles=["member"])
        server = SwiftServer(
            os.path.join(workdir, "swift"),
            keystone={"auth_url": keystone.url, "username": SWIFT_SERVICE_USER, "password": PASSWORD,
                      "project_name": "service"},
        )
        started.append(server)
        server.start()
        keystone.register_endpoint("object-store", "swift", server.url + "/v1/AUTH_$(project_id)s")
        _keystone = (keystone, server)
    return _keystone


def swift():
    """One real Swift for this module, started on first use and stopped at exit."""
    global _swift
    if _swift is None:
        workdir = tempfile.mkdtemp(prefix="inspectord-swift-")
        server = SwiftServer(workdir)
        _cleanup([server], workdir)
        server.start()
        _swift = server
    return _swift


class SwiftStoreTests(IntegrationCase):
    def setUp(self):
        self.swift = swift()
        self.extra_config = (
            "\n[processing]\nstore_data = swift\n"
            "[swift]\nauth_type = none\nendpoint_override = {}\ncontainer = {}\ndelete_after = {}\n".format(
                self.swift.account_url, CONTAINER, DELETE_AFTER
            )
        )
        super().setUp()

    def object(self, name):
        status, headers, body = self.swift.request("GET", "/v1/AUTH_inspector/{}/{}".format(CONTAINER, name))
        self.assertEqual(status, 200, body)
        return headers, json.loads(body)

    def get_data(self, node_id, suffix=""):
        status, _, body = self.inspectord.call("GET", "/v1/introspection/{}/data{}".format(node_id, suffix))
        self.assertEqual(status, 200, body)
        return body

    def test_introspection_data_stored_in_swift_and_read_back(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        self.start_and_wait(name, uuid)
        payload = ipa_payload(macs)
        status, _, body = self.inspectord.call("POST", "/v1/continue", payload)
        self.assertEqual((status, body), (200, {"uuid": uuid}))
        result = self.inspectord.wait_finished(uuid)
        self.assertIsNone(result["error"], self.inspectord.log_tail())

        # The objects, as ironic-inspector named them, in the configured container.
        headers, processed = self.object("inspector_data-" + uuid)
        self.assertEqual((processed["cpus"], processed["memory_mb"], processed["local_gb"]), (2, 24576, 255))
        self.assertIn("X-Delete-At", headers)
        _, unprocessed = self.object("inspector_data-{}-UNPROCESSED".format(uuid))
        payload.pop("logs", None)
        self.assertEqual(unprocessed, payload)

        # The API reads them back (the database copy is gone once finished).
        self.assertEqual(self.get_data(name), processed)
        self.assertEqual(self.get_data(uuid, "/unprocessed"), payload)

        # Reapply processes the data Swift holds.
        self.ironic.client().node.update(uuid, [{"op": "replace", "path": "/properties/cpus", "value": "1"}])
        status, _, body = self.inspectord.call("POST", "/v1/introspection/{}/data/unprocessed".format(uuid))
        self.assertEqual(status, 202, body)
        self.assertEqual(self.wait_state(uuid, ["finished", "error"])["error"], None)
        self.assertEqual(self.client.node.get(uuid).properties["cpus"], "2")

    def test_reads_data_ironic_inspector_stored(self):
        # What an ironic-inspector deployment left in Swift: json.dumps of the data.
        uuid, name = self.enroll(new_macs(1))
        processed = {"cpus": 8, "memory_mb": 16384, "local_gb": 446, "cpu_arch": "x86_64"}
        unprocessed = {"inventory": {"cpu": {"count": 8}}, "boot_interface": "01-52-54-00-12-34-56"}
        # The deployment's container (this test may run before any other made it).
        status, _, body = self.swift.request("PUT", "/v1/AUTH_inspector/{}".format(CONTAINER))
        self.assertIn(status, (201, 202), body)
        for object_name, data in (("inspector_data-" + uuid, processed),
                                  ("inspector_data-{}-UNPROCESSED".format(uuid), unprocessed)):
            status, _, body = self.swift.request(
                "PUT", "/v1/AUTH_inspector/{}/{}".format(CONTAINER, object_name), json.dumps(data).encode()
            )
            self.assertIn(status, (201, 202), body)
        self.assertEqual(self.get_data(uuid), processed)
        self.assertEqual(self.get_data(name, "/unprocessed"), unprocessed)
        # Nothing in the database nor in Swift.
        status, _, body = self.inspectord.call("GET", "/v1/introspection/{}/data".format(uuidlib.uuid4()))
        self.assertEqual(status, 404, body)
        self.assertIn("No processed introspection data", body["error"]["message"])


class SwiftKeystoneTests(IntegrationCase):
    """[swift] with keystoneauth options: the token and the catalog endpoint from a real Keystone,
    checked by Swift's authtoken and keystoneauth middleware."""

    def setUp(self):
        self.keystone, self.swift = keystone_and_swift()
        self.extra_config = """
[processing]
store_data = swift
[swift]
auth_type = password
auth_url = {}
username = {}
password = {}
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = {}
container = {}
""".format(self.keystone.url, STORE_USER, PASSWORD, REGION, CONTAINER)
        super().setUp()

    def test_introspection_data_stored_with_keystone_auth(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        self.start_and_wait(name, uuid)
        status, _, body = self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))
        self.assertEqual((status, body), (200, {"uuid": uuid}))
        result = self.inspectord.wait_finished(uuid)
        self.assertIsNone(result["error"], self.inspectord.log_tail())

        # In the service project's account, which only a valid token opens.
        account = "/v1/AUTH_{}".format(self.keystone.ensure_project("service")["id"])
        path = "{}/{}/inspector_data-{}".format(account, CONTAINER, uuid)
        self.assertEqual(self.swift.request("GET", path)[0], 401)
        token = self.keystone.issue_token(STORE_USER, PASSWORD, project="service")
        status, _, stored = self.swift.request("GET", path, token=token)
        self.assertEqual(status, 200, stored)
        processed = json.loads(stored)
        self.assertEqual(processed["local_gb"], 255)

        status, _, body = self.inspectord.call("GET", "/v1/introspection/{}/data".format(uuid))
        self.assertEqual((status, body), (200, processed))
        self.assertIn("Swift endpoint resolved to", self.inspectord.log_tail(400))
