"""store_data=swift: the treq Swift client, the object names, and the flows using them."""

import json
import os
import tempfile

from treq.testing import StubTreq
from twisted.internet import defer, error as net_error, task
from twisted.trial.unittest import SynchronousTestCase

from inspectord import config as config_mod
from inspectord import errors
from inspectord.api.status import status_for
from inspectord.keystone_options import IronicAuthOptions
from inspectord import keystone
from inspectord.ironic.client import static_endpoint
from inspectord.store.swift import SwiftClient, SwiftDataStore, make_data_store, object_name
from inspectord.testing import FakeSwift
from inspectord.threads import SynchronousRunner
from tests.unit.helpers import SWIFT_ACCOUNT_URL, Harness
from tests.unit.test_introspection import ipa_data
from tests.unit.test_ironic_client import ManualHTTP

NODE = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"
ACCOUNT_PATH = "/v1/AUTH_inspector"
SWIFT = {"processing__store_data": "swift", "swift__auth_type": "none",
         "swift__endpoint_override": SWIFT_ACCOUNT_URL}


class ObjectNameTests(SynchronousTestCase):
    def test_names_of_ironic_inspector(self):
        self.assertEqual(object_name(NODE, True), "inspector_data-" + NODE)
        self.assertEqual(object_name(NODE, False), "inspector_data-" + NODE + "-UNPROCESSED")


class ClientTestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.fake = FakeSwift()
        self.stub = StubTreq(self.fake.app.resource())

    def client(self, http=None, endpoint=None, **kwargs):
        return SwiftClient(
            http or self.stub, endpoint or static_endpoint(SWIFT_ACCOUNT_URL), self.clock, **kwargs
        )

    def call(self, coro):
        d = defer.Deferred.fromCoroutine(coro)
        self.stub.flush()
        return d

    def advance(self, seconds):
        self.clock.advance(seconds)
        self.stub.flush()


class ClientTests(ClientTestCase):
    def test_container_created_once_then_objects_stored_and_read(self):
        client = self.client(container="inspection")
        self.successResultOf(self.call(client.put_object("a", b'{"x": 1}')))
        self.successResultOf(self.call(client.put_object("b", b"{}")))
        self.assertEqual(
            self.fake.calls(),
            [("PUT", ACCOUNT_PATH + "/inspection"), ("PUT", ACCOUNT_PATH + "/inspection/a"),
             ("PUT", ACCOUNT_PATH + "/inspection/b")],
        )
        self.assertEqual(self.successResultOf(self.call(client.get_object("a"))), b'{"x": 1}')
        body, headers = self.fake.containers[("AUTH_inspector", "inspection")]["a"]
        self.assertEqual(headers["content-type"], "application/json")
        self.assertNotIn("x-delete-after", headers)

    def test_delete_after(self):
        client = self.client(delete_after=3600)
        self.successResultOf(self.call(client.put_object("a", b"{}")))
        _, headers = self.fake.containers[("AUTH_inspector", "ironic-inspector")]["a"]
        self.assertEqual(headers["x-delete-after"], "3600")

    def test_missing_object_is_not_found(self):
        client = self.client()
        failure = self.failureResultOf(self.call(client.get_object("nothing")), errors.NotFound)
        self.assertIn("nothing", str(failure.value))
        self.assertEqual(status_for(failure.value), 404)

    def test_container_deleted_under_us_is_created_again(self):
        client = self.client()
        self.successResultOf(self.call(client.put_object("a", b"{}")))
        del self.fake.containers[("AUTH_inspector", "ironic-inspector")]
        self.successResultOf(self.call(client.put_object("b", b"{}")))
        self.assertEqual([p for _, p in self.fake.calls()][-3:],
                         [ACCOUNT_PATH + "/ironic-inspector/b", ACCOUNT_PATH + "/ironic-inspector",
                          ACCOUNT_PATH + "/ironic-inspector/b"])
        self.assertIn("b", self.fake.containers[("AUTH_inspector", "ironic-inspector")])

    def test_5xx_retried_with_backoff(self):
        client = self.client(max_retries=2, retry_interval=1.0)
        self.fake.fail("PUT", ACCOUNT_PATH + "/ironic-inspector/a", 503, times=2)
        d = self.call(client.put_object("a", b"{}"))
        self.assertNoResult(d)
        self.advance(1)
        self.assertNoResult(d)
        self.advance(2)  # doubled
        self.successResultOf(d)
        self.assertEqual(len(self.fake.calls("PUT")), 4)  # container + 3 object attempts

    def test_gives_up_after_max_retries(self):
        client = self.client(max_retries=1, retry_interval=1.0)
        self.fake.fail("GET", ACCOUNT_PATH, 500, times=5)
        d = self.call(client.get_object("a"))
        self.advance(1)
        failure = self.failureResultOf(d, errors.SwiftError)
        self.assertIn("gave up after 2 attempts", str(failure.value))
        self.assertIn("Swift answered 500", str(failure.value))
        self.assertEqual(status_for(failure.value), 503)
        self.assertEqual(len(self.fake.calls("GET")), 2)

    def test_client_errors_are_final(self):
        client = self.client()
        self.fake.fail("PUT", ACCOUNT_PATH + "/ironic-inspector/a", 403)
        failure = self.failureResultOf(self.call(client.put_object("a", b"{}")), errors.SwiftError)
        self.assertIn("403", str(failure.value))
        self.assertEqual(len(self.fake.calls("PUT")), 2)

    def test_container_refused(self):
        client = self.client()
        self.fake.fail("PUT", ACCOUNT_PATH + "/ironic-inspector", 403)
        failure = self.failureResultOf(self.call(client.put_object("a", b"{}")), errors.SwiftError)
        self.assertIn("create container ironic-inspector", str(failure.value))

    def test_connection_errors_retried(self):
        http = ManualHTTP()
        client = self.client(http=http, max_retries=2, retry_interval=1.0)
        d = defer.Deferred.fromCoroutine(client.get_object("a"))
        http.fail(net_error.ConnectionRefusedError())
        self.clock.advance(1)
        http.answer(200, b"data")
        self.assertEqual(self.successResultOf(d), b"data")
        self.assertEqual(len(http.made), 2)

    def test_timeout_then_give_up(self):
        http = ManualHTTP()
        client = self.client(http=http, timeout=10, max_retries=1, retry_interval=1.0)
        d = defer.Deferred.fromCoroutine(client.get_object("a"))
        self.clock.advance(10)  # first attempt times out
        self.assertNoResult(d)
        self.clock.advance(1)  # backoff, second attempt
        self.assertEqual(len(http.made), 2)
        self.clock.advance(10)
        failure = self.failureResultOf(d, errors.SwiftError)
        self.assertIn("cannot reach Swift", str(failure.value))

    def test_auth_headers_sent(self):
        self.fake.token = "tok"
        client = self.client(endpoint=static_endpoint(SWIFT_ACCOUNT_URL, {"X-Auth-Token": "tok"}))
        self.successResultOf(self.call(client.put_object("a", b"{}")))
        self.assertEqual({h["x-auth-token"] for _, _, h in self.fake.requests}, {"tok"})


class ReauthenticatingEndpoint:
    def __init__(self, tokens):
        self.tokens = list(tokens)
        self.invalidated = 0

    async def __call__(self):
        base, _ = await static_endpoint(SWIFT_ACCOUNT_URL)()
        return base, {"X-Auth-Token": self.tokens[0]}

    def invalidate(self):
        self.invalidated += 1
        self.tokens.pop(0)


class ReauthenticationTests(ClientTestCase):
    def test_401_gets_a_new_token_once(self):
        self.fake.token = "new"
        endpoint = ReauthenticatingEndpoint(["revoked", "new"])
        client = self.client(endpoint=endpoint)
        self.successResultOf(self.call(client.put_object("a", b"{}")))
        self.assertEqual(endpoint.invalidated, 1)

    def test_second_401_is_final(self):
        self.fake.token = "other"
        endpoint = ReauthenticatingEndpoint(["revoked", "also-wrong"])
        failure = self.failureResultOf(self.call(self.client(endpoint=endpoint).get_object("a")), errors.SwiftError)
        self.assertIn("401", str(failure.value))
        self.assertEqual(endpoint.invalidated, 1)


class FakeAccess:
    expires = None


class FakeAuth:
    def __init__(self):
        self.tokens = ["t1", "t2"]
        self.invalidated = 0

    def get_access(self, session):
        return FakeAccess()

    def invalidate(self):
        self.invalidated += 1
        self.tokens.pop(0)


class FakeSession:
    def __init__(self, auth):
        self.auth = auth
        self.endpoint_requests = []

    def get_auth_headers(self, auth):
        return {"X-Auth-Token": auth.tokens[0]}

    def get_endpoint(self, **kwargs):
        self.endpoint_requests.append(kwargs)
        return SWIFT_ACCOUNT_URL


class KeystoneEndpointTests(SynchronousTestCase):
    """The keystoneauth endpoint in a (synchronous) thread pool, as Swift uses it."""

    def endpoint(self):
        auth = FakeAuth()
        session = FakeSession(auth)
        options = IronicAuthOptions(
            auth_type="password", endpoint_override=None, service_type="object-store",
            interface=("internal", "public"), region_name="RegionOne", auth=auth, session=session,
        )
        clock = task.Clock()
        clock.callFromThread = lambda f, *a, **kw: f(*a, **kw)
        return keystone.endpoint_for(options, clock, SynchronousRunner(), service="Swift"), auth, session

    def test_catalog_endpoint_and_token(self):
        endpoint, _, session = self.endpoint()
        base, headers = self.successResultOf(defer.Deferred.fromCoroutine(endpoint()))
        self.assertEqual(base.to_text(), SWIFT_ACCOUNT_URL)  # the account path is kept
        self.assertEqual(headers, {"X-Auth-Token": "t1"})
        self.assertEqual(session.endpoint_requests[0]["service_type"], "object-store")
        self.assertEqual(session.endpoint_requests[0]["region_name"], "RegionOne")

    def test_invalidate_fetches_a_new_token(self):
        endpoint, auth, _ = self.endpoint()
        self.successResultOf(defer.Deferred.fromCoroutine(endpoint()))
        endpoint.invalidate()
        _, headers = self.successResultOf(defer.Deferred.fromCoroutine(endpoint()))
        self.assertEqual((headers, auth.invalidated), ({"X-Auth-Token": "t2"}, 1))


class DataStoreTests(ClientTestCase):
    def test_logs_are_not_stored_and_data_reads_back(self):
        store = SwiftDataStore(self.client())
        self.successResultOf(self.call(store.save(NODE, {"inventory": {"a": 1}, "logs": "abc"}, False)))
        stored, _ = self.fake.containers[("AUTH_inspector", "ironic-inspector")][object_name(NODE, False)]
        self.assertEqual(json.loads(stored), {"inventory": {"a": 1}})
        self.assertEqual(self.successResultOf(self.call(store.get(NODE, False))), {"inventory": {"a": 1}})
        failure = self.failureResultOf(self.call(store.get(NODE, True)), errors.NotFound)
        self.assertIn("No processed introspection data stored for node " + NODE, str(failure.value))

    def test_object_not_json(self):
        client = self.client()
        self.successResultOf(self.call(client.put_object(object_name(NODE, True), b"<html>")))
        failure = self.failureResultOf(self.call(SwiftDataStore(client).get(NODE, True)), errors.SwiftError)
        self.assertIn("not JSON", str(failure.value))

    def test_reads_what_ironic_inspector_wrote(self):
        # ironic-inspector stored json.dumps(data) under the same names.
        client = self.client()
        upstream = json.dumps({"cpus": 4, "local_gb": 99}).encode()
        self.successResultOf(self.call(client.put_object("inspector_data-" + NODE, upstream)))
        data = self.successResultOf(self.call(SwiftDataStore(client).get(NODE, True)))
        self.assertEqual(data, {"cpus": 4, "local_gb": 99})


class FlowTests(SynchronousTestCase):
    """store_data=swift through the API: introspect, read back, reapply, Swift failing."""

    def setUp(self):
        self.h = Harness(**SWIFT)
        self.fake = self.h.fake

    def objects(self):
        return self.h.fake_swift.containers.get(("AUTH_inspector", "ironic-inspector"), {})

    def introspect(self, name="n1"):
        uuid = self.fake.add_node(name=name, macs=["02:fc:00:00:00:01"])
        self.assertEqual(self.h.request("POST", "/v1/introspection/" + uuid)[0], 202)
        self.h.flush()
        code, _, body = self.h.request("POST", "/v1/continue", ipa_data())
        self.assertEqual(code, 200, body)
        self.h.flush()
        return uuid

    def status(self, uuid):
        return self.h.request("GET", "/v1/introspection/" + uuid)[2]

    def test_finished_introspection_stored_in_swift_and_read_back(self):
        uuid = self.introspect()
        self.assertEqual(self.status(uuid)["state"], "finished")
        self.assertEqual(
            sorted(self.objects()), ["inspector_data-" + uuid, "inspector_data-" + uuid + "-UNPROCESSED"]
        )
        # The database copy is gone: what the API serves comes from Swift.
        self.assertRaises(errors.NotFound, self.h.store.thd_get_data, uuid, False)
        self.assertRaises(errors.NotFound, self.h.store.thd_get_data, uuid, True)
        gets = len(self.h.fake_swift.calls("GET"))
        code, _, processed = self.h.request("GET", "/v1/introspection/n1/data")
        self.assertEqual((code, processed["local_gb"], processed["cpus"]), (200, 255, 2))
        self.assertNotIn("logs", processed)
        code, _, raw = self.h.request("GET", "/v1/introspection/{}/data/unprocessed".format(uuid))
        expected = ipa_data()
        expected.pop("logs", None)
        self.assertEqual((code, raw), (200, expected))
        self.assertEqual(len(self.h.fake_swift.calls("GET")), gets + 2)

    def test_swift_failing_at_finish_fails_the_node_and_keeps_the_data(self):
        self.h.fake_swift.fail("PUT", ACCOUNT_PATH + "/ironic-inspector", 503, times=100)
        uuid = self.introspect()
        for _ in range(3):  # the client's backoff: 1 s, 2 s
            self.h.clock.advance(2)
            self.h.flush()
        status = self.status(uuid)
        self.assertEqual(status["state"], "error")
        self.assertIn("Swift answered 503", status["error"])
        self.assertEqual(self.objects(), {})
        # Nothing is lost: the raw data stays in the database and is served from there.
        code, _, raw = self.h.request("GET", "/v1/introspection/{}/data/unprocessed".format(uuid))
        self.assertEqual((code, raw), (200, ipa_data()))

    def test_swift_down_on_read_is_503(self):
        uuid = self.introspect()
        self.h.fake_swift.fail("GET", ACCOUNT_PATH, 500, times=100)
        d = self.h.http.request("GET", "http://inspectord.test:5050/v1/introspection/{}/data".format(uuid))
        for _ in range(3):
            self.h.clock.advance(2)
            self.h.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 503)
        body = json.loads(self.successResultOf(response.content()))
        self.assertIn("Swift answered 500", body["error"]["message"])

    def test_never_introspected_is_404(self):
        uuid = self.fake.add_node(name="other")
        code, _, body = self.h.request("GET", "/v1/introspection/{}/data".format(uuid))
        self.assertEqual(code, 404, body)

    def test_reapply_reads_swift_and_stores_again(self):
        uuid = self.introspect()
        self.fake.nodes[uuid]["properties"]["local_gb"] = "1"
        self.objects()["inspector_data-" + uuid] = (b"{}", {})
        code, _, body = self.h.request("POST", "/v1/introspection/{}/data/unprocessed".format(uuid))
        self.assertEqual((code, body), (202, None))
        self.h.flush()
        self.assertEqual(self.status(uuid)["state"], "finished")
        self.assertEqual(self.fake.nodes[uuid]["properties"]["local_gb"], "255")
        processed = json.loads(self.objects()["inspector_data-" + uuid][0])
        self.assertEqual(processed["local_gb"], 255)


class ConfigTests(SynchronousTestCase):
    def write(self, text):
        fd, path = tempfile.mkstemp(suffix=".conf")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return path

    BASE = "[DEFAULT]\nauth_strategy = noauth\n[ironic]\nendpoint_override = http://i:6385\n"

    def test_swift_section_of_ironic_inspector(self):
        conf = config_mod.load(self.write(self.BASE + """
[processing]
store_data = swift
[swift]
auth_type = password
auth_url = http://keystone.example.com:5000/v3
username = ironic-inspector
password = s3cr3t-value
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = RegionTwo
container = introspection
delete_after = 86400
max_retries = 5
timeout = 20
"""))
        self.assertEqual((conf.swift.container, conf.swift.delete_after, conf.swift.max_retries),
                         ("introspection", 86400, 5))
        self.assertEqual(conf.swift_auth.auth_type, "password")
        self.assertEqual(conf.swift_auth.service_type, "object-store")
        self.assertEqual(conf.swift_auth.region_name, "RegionTwo")
        self.assertEqual(conf.swift_auth.timeout, 20)
        self.assertIsNotNone(conf.swift_auth.auth)
        self.assertNotIn("s3cr3t-value", repr(conf))
        self.assertEqual(conf.ignored_options, ())
        store = make_data_store(
            conf.processing, conf.swift, conf.swift_auth, StubTreq(FakeSwift().app.resource()), task.Clock(),
            SynchronousRunner(),
        )
        self.assertEqual(store.client.container, "introspection")

    def test_defaults_and_no_auth(self):
        conf = config_mod.load(self.write(self.BASE + """
[processing]
store_data = swift
[swift]
auth_type = none
endpoint_override = http://127.0.0.1:8080/v1/AUTH_test
"""))
        self.assertEqual((conf.swift.container, conf.swift.delete_after), ("ironic-inspector", 0))
        self.assertIsNone(conf.swift_auth.auth)

    def test_swift_section_unused_without_store_data_swift(self):
        conf = config_mod.load(self.write(self.BASE + "[swift]\ncontainer = x\n"))
        self.assertIsNone(conf.swift_auth)
        self.assertIsNone(make_data_store(conf.processing, conf.swift, conf.swift_auth, None, task.Clock(), None))

    def test_password_auth_needs_auth_url(self):
        # ironic-inspector's default auth_type in [swift] is password.
        path = self.write(self.BASE + "[processing]\nstore_data = swift\n[swift]\nusername = u\n")
        e = self.assertRaises(errors.ConfigError, config_mod.load, path)
        self.assertIn("[swift]", str(e))
        self.assertIn("auth_url", str(e))

    def test_no_auth_needs_endpoint_override(self):
        path = self.write(self.BASE + "[processing]\nstore_data = swift\n[swift]\nauth_type = none\n")
        e = self.assertRaises(errors.ConfigError, config_mod.load, path)
        self.assertIn("[swift]endpoint_override is required", str(e))

    def test_unknown_swift_option_is_named_not_refused(self):
        path = self.write(self.BASE + "[swift]\ncontainr = x\n")
        self.assertIn("[swift]containr", config_mod.load(path).unknown_options)

    def test_sample_documents_swift(self):
        sample = config_mod.sample()
        self.assertIn("[swift]\n", sample)
        self.assertIn("#container = ironic-inspector", sample)
        self.assertIn("#endpoint_override = http://127.0.0.1:8080/v1/AUTH_inspector", sample)
