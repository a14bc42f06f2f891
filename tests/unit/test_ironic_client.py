"""The treq Ironic client: requests, paging, retries, timeouts, concurrency."""

import datetime
import json

from hyperlink import DecodedURL
from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet import defer, error as net_error, task
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord.api.status import status_for
from inspectord.keystone_options import IronicAuthOptions
from inspectord import keystone
from inspectord.ironic.http import AgentHTTPClient, CachedEndpoints, url_bytes
from inspectord.ironic.client import API_VERSION_HEADER, IronicClient, _fault, static_endpoint
from inspectord.testing import FakeIronic
from inspectord.threads import SynchronousRunner

ENDPOINT = "http://ironic.test:6385"
NODE = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"
LOCKED = "Node {} is locked by host conductor-1, please retry after the current operation is completed.".format(NODE)


class FakeResponse:
    def __init__(self, code, body=b""):
        self.code = code
        self._body = body if isinstance(body, bytes) else json.dumps(body).encode()

    def content(self):
        return defer.succeed(self._body)


class ManualHTTP:
    """An HTTP client whose requests wait until the test answers them."""

    def __init__(self):
        self.pending = []
        self.made = []

    def request(self, method, url, **kwargs):
        d = defer.Deferred()
        self.made.append((method, url, kwargs))
        self.pending.append(d)
        return d

    def _next(self):
        # Requests that timed out were cancelled: nobody waits for them.
        while self.pending[0].called:
            self.pending.pop(0)
        return self.pending.pop(0)

    def answer(self, code=200, body=b"{}"):
        self._next().callback(FakeResponse(code, body))

    def fail(self, exception):
        self._next().errback(Failure(exception))


class RecordingHTTP:
    """Passes requests to another client and records them."""

    def __init__(self, inner):
        self.inner = inner
        self.made = []

    def request(self, method, url, **kwargs):
        self.made.append((method, url, dict(kwargs, params=dict(kwargs.get("params") or {}))))
        return self.inner.request(method, url, **kwargs)


class ClientTestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.fake = FakeIronic()
        self.stub = StubTreq(self.fake.app.resource())
        self.http = RecordingHTTP(self.stub)

    def client(self, http=None, endpoint=ENDPOINT, **kwargs):
        kwargs.setdefault("max_retries", 3)
        kwargs.setdefault("retry_interval", 2.0)
        return IronicClient(http or self.http, static_endpoint(endpoint), self.clock, **kwargs)

    def call(self, coroutine):
        d = defer.Deferred.fromCoroutine(coroutine)
        self.stub.flush()
        return d

    def advance(self, seconds):
        self.clock.advance(seconds)
        self.stub.flush()


class RequestBuildingTests(ClientTestCase):
    def test_headers_and_url(self):
        manual = ManualHTTP()
        client = IronicClient(
            manual,
            static_endpoint(ENDPOINT, {"X-Auth-Token": "tok"}),
            self.clock,
            api_version="1.80",
        )
        d = self.call(client.request("PATCH", "/v1/nodes/" + NODE, [{"op": "add"}], params={"a": "b"}))
        method, url, kwargs = manual.made[0]
        self.assertEqual((method, url), ("PATCH", ENDPOINT + "/v1/nodes/" + NODE))
        self.assertEqual(
            kwargs["headers"], {"X-Auth-Token": "tok", API_VERSION_HEADER: "1.80", "Accept": "application/json"}
        )
        self.assertEqual(kwargs["params"], {"a": "b"})
        self.assertEqual(kwargs["json"], [{"op": "add"}])
        manual.answer(200, {"uuid": NODE})
        self.assertEqual(self.successResultOf(d), {"uuid": NODE})

    def test_default_microversion(self):
        self.successResultOf(self.call(self.client().get_node(self.fake.add_node())))
        self.assertEqual(self.http.made[0][2]["headers"][API_VERSION_HEADER], "1.46")
        self.assertNotIn("json", self.http.made[0][2])

    def test_endpoint_override_forms(self):
        """With or without a trailing slash or /v1, paths join the same way."""
        cases = {
            "http://ironic.test:6385": "http://ironic.test:6385/v1/nodes/n1",
            "http://ironic.test:6385/": "http://ironic.test:6385/v1/nodes/n1",
            "http://ironic.test:6385/v1": "http://ironic.test:6385/v1/nodes/n1",
            "http://ironic.test:6385/v1/": "http://ironic.test:6385/v1/nodes/n1",
            "https://cloud.test/baremetal": "https://cloud.test/baremetal/v1/nodes/n1",
            "https://cloud.test/baremetal/v1/": "https://cloud.test/baremetal/v1/nodes/n1",
        }
        for endpoint, expected in cases.items():
            manual = ManualHTTP()
            self.call(self.client(manual, endpoint=endpoint).get_node("n1"))
            self.assertEqual(manual.made[0][1], expected, endpoint)

    def test_request_bodies(self):
        uuid = self.fake.add_node()
        client = self.client()
        self.successResultOf(self.call(client.set_boot_device_pxe(uuid)))
        self.successResultOf(self.call(client.set_power_state(uuid, "rebooting")))
        cpus = [{"op": "add", "path": "/properties/cpus", "value": "2"}]
        self.successResultOf(self.call(client.patch_node(uuid, cpus)))
        self.assertEqual(
            [(m, u[len(ENDPOINT):], k.get("json")) for m, u, k in self.http.made],
            [
                ("PUT", "/v1/nodes/{}/management/boot_device".format(uuid),
                 {"boot_device": "pxe", "persistent": False}),
                ("PUT", "/v1/nodes/{}/states/power".format(uuid), {"target": "rebooting"}),
                ("PATCH", "/v1/nodes/" + uuid, cpus),
            ],
        )
        self.assertEqual(self.fake.nodes[uuid]["properties"], {"cpus": "2"})
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power on")
        self.assertEqual(client.calls, {"PUT": 2, "PATCH": 1})

    def test_get_node_by_name(self):
        uuid = self.fake.add_node(name="rack1-u12")
        self.assertEqual(self.successResultOf(self.call(self.client().get_node("rack1-u12")))["uuid"], uuid)

    def test_validate_power(self):
        good, bad = self.fake.add_node(), self.fake.add_node()
        self.fake.validate_power[bad] = "Missing IPMI credentials"
        client = self.client()
        self.assertEqual(self.successResultOf(self.call(client.validate_power(good))), (True, None))
        self.assertEqual(
            self.successResultOf(self.call(client.validate_power(bad))), (False, "Missing IPMI credentials")
        )

    def test_find_node_by_bmc(self):
        a = self.fake.add_node(driver_info={"ipmi_address": "192.0.2.1"})
        self.fake.add_node(driver_info={"ipmi_address": "192.0.2.2"})
        c = self.fake.add_node(driver_info={"redfish_address": "192.0.2.3"})
        found = self.successResultOf(
            self.call(self.client().find_node_by_bmc(["192.0.2.1", "192.0.2.3"], ["ipmi_address", "redfish_address"]))
        )
        self.assertEqual(sorted(found), sorted([a, c]))
        self.assertEqual(self.http.made[0][2]["params"], {"fields": "uuid,driver_info", "limit": "1000"})


class PagingTests(ClientTestCase):
    def test_list_ports_follows_marker(self):
        node, other = self.fake.add_node(), self.fake.add_node(macs=["52:54:00:ff:ff:ff"])
        for i in range(2100):
            self.fake.add_port(node, "52:54:00:{:02x}:{:02x}:{:02x}".format(i >> 16, (i >> 8) & 255, i & 255))
        ports = self.successResultOf(self.call(self.client().list_ports(node)))
        self.assertEqual(len(ports), 2100)
        self.assertEqual(len({p["uuid"] for p in ports}), 2100)
        self.assertNotIn("52:54:00:ff:ff:ff", {p["address"] for p in ports})
        params = [k["params"] for _, _, k in self.http.made]
        self.assertEqual(len(params), 3)
        self.assertNotIn("marker", params[0])
        self.assertEqual(params[1]["marker"], ports[999]["uuid"])
        self.assertEqual(params[2]["marker"], ports[1999]["uuid"])
        for p in params:
            self.assertEqual((p["node_uuid"], p["limit"], p["fields"]), (node, "1000", "uuid,address,pxe_enabled"))

    def test_exactly_one_page(self):
        node = self.fake.add_node()
        for i in range(1000):
            self.fake.add_port(node, "52:54:00:00:{:02x}:{:02x}".format(i >> 8, i & 255))
        self.assertEqual(len(self.successResultOf(self.call(self.client().list_ports(node)))), 1000)
        self.assertEqual(len(self.http.made), 1)

    def test_full_page_with_next_then_empty(self):
        """Ironic may give a ``next`` link after a full last page: stop at the empty one."""
        manual = ManualHTTP()
        d = self.call(self.client(manual).list_ports(NODE))
        page = [{"uuid": "p{:04d}".format(i), "address": "a", "pxe_enabled": True} for i in range(1000)]
        manual.answer(200, {"ports": page, "next": "http://ironic.test/v1/ports?marker=p0999"})
        manual.answer(200, {"ports": []})
        self.assertEqual(len(self.successResultOf(d)), 1000)
        self.assertEqual(manual.made[1][2]["params"]["marker"], "p0999")


class PortTests(ClientTestCase):
    def test_create_port(self):
        node = self.fake.add_node()
        port = self.successResultOf(
            self.call(self.client().create_port(node, "52:54:00:12:34:56", False, {"extra": {"client-id": "x"}}))
        )
        self.assertEqual((port["node_uuid"], port["address"], port["pxe_enabled"]), (node, "52:54:00:12:34:56", False))
        self.assertEqual(port["extra"], {"client-id": "x"})
        self.assertEqual(self.http.made[0][2]["json"]["node_uuid"], node)

    def test_create_port_conflict_same_node(self):
        """A retried POST whose first attempt went through: the port is returned."""
        node = self.fake.add_node()
        existing = self.fake.add_port(node, "52:54:00:12:34:56")
        port = self.successResultOf(self.call(self.client().create_port(node, "52:54:00:12:34:56")))
        self.assertEqual(port["uuid"], existing)
        self.assertEqual([m for m, _, _ in self.http.made], ["POST", "GET"])
        self.assertEqual(len(self.fake.ports), 1)

    def test_create_port_conflict_other_node(self):
        node, other = self.fake.add_node(), self.fake.add_node(macs=["52:54:00:12:34:56"])
        # Another node's MAC: skipped (None), that node left alone.
        self.assertIsNone(self.successResultOf(self.call(self.client().create_port(node, "52:54:00:12:34:56"))))
        self.assertEqual(self.fake.node_ports(node), [])
        self.assertEqual(self.fake.node_ports(other)[0]["address"], "52:54:00:12:34:56")

    def test_create_port_other_error(self):
        node = self.fake.add_node()
        self.fake.fail("POST", "/v1/ports", 400, body="Invalid MAC")
        failure = self.failureResultOf(self.call(self.client().create_port(node, "zz")), errors.IronicError)
        self.assertEqual(failure.value.status, 400)
        self.assertEqual([m for m, _, _ in self.http.made], ["POST"])

    def test_patch_and_delete_port(self):
        node = self.fake.add_node()
        port = self.fake.add_port(node, "52:54:00:12:34:56", pxe_enabled=False)
        client = self.client()
        patch = [{"op": "replace", "path": "/pxe_enabled", "value": True}]
        self.successResultOf(self.call(client.patch_port(port, patch)))
        self.assertTrue(self.fake.ports[port]["pxe_enabled"])
        self.successResultOf(self.call(client.delete_port(port)))
        self.assertNotIn(port, self.fake.ports)
        self.failureResultOf(self.call(client.delete_port(port)), errors.IronicNotFound)

    def test_find_port(self):
        node = self.fake.add_node(macs=["52:54:00:12:34:56"])
        client = self.client()
        found = self.successResultOf(self.call(client.find_port("52:54:00:12:34:56")))
        self.assertEqual(found["node_uuid"], node)
        self.assertIsNone(self.successResultOf(self.call(client.find_port("52:54:00:00:00:00"))))


class ErrorTests(ClientTestCase):
    def test_not_found(self):
        failure = self.failureResultOf(self.call(self.client().get_node("missing")), errors.IronicNotFound)
        self.assertEqual(status_for(failure.value), 404)
        self.assertEqual(
            failure.value.message, "Ironic answered 404 to GET /v1/nodes/missing: Node missing could not be found."
        )
        self.assertEqual(len(self.http.made), 1)

    def test_bad_request_not_retried(self):
        uuid = self.fake.add_node()
        patch = [{"op": "remove", "path": "/properties/nothing"}]
        failure = self.failureResultOf(self.call(self.client().patch_node(uuid, patch)), errors.IronicError)
        self.assertEqual(
            failure.value.message,
            "Ironic answered 400 to PATCH /v1/nodes/{}: cannot apply {{'op': 'remove', 'path': "
            "'/properties/nothing'}}: can't remove a non-existent object 'nothing'".format(uuid),
        )
        self.assertEqual((failure.value.status, status_for(failure.value), failure.value.retriable), (400, 400, False))
        self.assertEqual(len(self.http.made), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_conflict_not_locked_not_retried(self):
        uuid = self.fake.add_node()
        self.fake.fail("PATCH", "/v1/nodes", 409, body="Node is in maintenance")
        self.failureResultOf(self.call(self.client().patch_node(uuid, [])), errors.IronicError)
        self.assertEqual(len(self.http.made), 1)

    def test_fault_text(self):
        nested = {"error_message": json.dumps({"faultstring": "Boom", "debuginfo": None})}
        self.assertEqual(_fault(nested), "Boom")
        self.assertEqual(_fault({"error_message": {"faultstring": "Direct"}}), "Direct")
        self.assertEqual(_fault({"error_message": "plain words"}), "plain words")
        self.assertEqual(_fault("<html>Service Unavailable</html>"), "<html>Service Unavailable</html>")
        self.assertEqual(json.loads(_fault({"error_message": {"code": 1}})), {"code": 1})
        self.assertEqual(_fault(None), "None")

    def test_non_json_error_body(self):
        manual = ManualHTTP()
        d = self.call(self.client(manual).patch_node("n", []))
        manual.answer(500, b"<html>Internal Server Error</html>")
        failure = self.failureResultOf(d, errors.IronicError)
        self.assertEqual(
            failure.value.message, "Ironic answered 500 to PATCH /v1/nodes/n: <html>Internal Server Error</html>"
        )


class RetryTests(ClientTestCase):
    def test_503_retried_with_backoff(self):
        uuid = self.fake.add_node()
        self.fake.fail("PATCH", "/v1/nodes", 503, times=2)
        d = self.call(self.client().patch_node(uuid, [{"op": "add", "path": "/properties/cpus", "value": "4"}]))
        self.assertNoResult(d)
        self.assertEqual(len(self.http.made), 1)
        self.advance(1.9)
        self.assertEqual(len(self.http.made), 1)
        self.advance(0.1)  # first retry after retry_interval
        self.assertEqual(len(self.http.made), 2)
        self.assertNoResult(d)
        self.advance(3.9)
        self.assertEqual(len(self.http.made), 2)
        self.advance(0.1)  # then twice as long
        self.successResultOf(d)
        self.assertEqual(len(self.http.made), 3)
        self.assertEqual(self.fake.nodes[uuid]["properties"]["cpus"], "4")

    def test_backoff_is_capped(self):
        manual = ManualHTTP()
        d = self.call(self.client(manual, max_retries=10, retry_interval=8.0).get_node("n"))
        times = []
        for _ in range(5):
            times.append(self.clock.seconds())
            manual.answer(503, b"")
            self.clock.advance(max(c.getTime() for c in self.clock.getDelayedCalls()) - self.clock.seconds())
        gaps = [b - a for a, b in zip(times, times[1:])]
        self.assertEqual(gaps, [8.0, 16.0, 30.0, 30.0])
        manual.answer(200, {"uuid": "n"})
        self.assertEqual(self.successResultOf(d), {"uuid": "n"})

    def test_500_retried_for_idempotent_requests_only(self):
        uuid = self.fake.add_node(power_state="power on")
        self.fake.fail("PUT", "/v1/nodes/{}/states/power".format(uuid), 500, times=1)
        self.fake.fail("PUT", "/v1/nodes/{}/management".format(uuid), 502, times=1)
        self.fake.fail("GET", "/v1/nodes", 504, times=1)
        client = self.client()
        for call in (lambda: client.set_power_state(uuid, "power off"), lambda: client.set_boot_device_pxe(uuid),
                     lambda: client.get_node(uuid)):
            d = self.call(call())
            self.assertNoResult(d)
            self.advance(2)  # retried after retry_interval, like a 503
            self.successResultOf(d)
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power off")
        self.assertEqual([m for m, _, _ in self.http.made], ["PUT", "PUT", "PUT", "PUT", "GET", "GET"])
        # A PATCH or a reboot is not retried after a 500: it may have been applied.
        self.fake.fail("PATCH", "/v1/nodes", 500, times=1)
        self.failureResultOf(self.call(client.patch_node(uuid, [])), errors.IronicError)
        self.fake.fail("PUT", "/v1/nodes/{}/states/power".format(uuid), 500, times=1)
        failure = self.failureResultOf(self.call(client.set_power_state(uuid, "rebooting")), errors.IronicError)
        self.assertEqual(failure.value.status, 500)
        self.assertEqual(len(self.http.made), 8)

    def test_500_gives_up_after_the_retries(self):
        uuid = self.fake.add_node()
        self.fake.fail("PUT", "/v1/nodes/{}/states/power".format(uuid), 500, times=100)
        d = self.call(self.client(max_retries=2).set_power_state(uuid, "power on"))
        self.advance(2)
        self.advance(4)
        failure = self.failureResultOf(d, errors.IronicError)
        self.assertEqual(failure.value.status, 500)
        self.assertIn("(gave up after 3 attempts)", failure.value.message)
        self.assertEqual(len(self.http.made), 3)

    def test_locked_retried(self):
        uuid = self.fake.add_node()
        self.fake.fail("PATCH", "/v1/nodes", 409, times=1, body=LOCKED)
        d = self.call(self.client().patch_node(uuid, []))
        self.assertNoResult(d)
        self.advance(2)
        self.successResultOf(d)
        self.assertEqual([m for m, _, _ in self.http.made], ["PATCH", "PATCH"])

    def test_gives_up(self):
        self.fake.fail("GET", "/v1/nodes", 503, times=100, body="Ironic is down")
        d = self.call(self.client(max_retries=2).get_node("n"))
        self.advance(2)
        self.advance(4)
        failure = self.failureResultOf(d, errors.IronicError)
        self.assertEqual(
            failure.value.message, "Ironic answered 503 to GET /v1/nodes/n: Ironic is down (gave up after 3 attempts)"
        )
        self.assertEqual(failure.value.status, 503)
        self.assertEqual(len(self.http.made), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_retries(self):
        self.fake.fail("GET", "/v1/nodes", 503)
        self.failureResultOf(self.call(self.client(max_retries=0).get_node("n")), errors.IronicError)
        self.assertEqual(len(self.http.made), 1)

    def test_connection_refused_retried(self):
        manual = ManualHTTP()
        d = self.call(self.client(manual).get_node("n"))
        manual.fail(net_error.ConnectionRefusedError())
        self.assertNoResult(d)
        self.clock.advance(2)
        manual.answer(200, {"uuid": "n"})
        self.assertEqual(self.successResultOf(d), {"uuid": "n"})
        self.assertEqual(len(manual.made), 2)

    def test_connection_errors_give_up_with_503(self):
        manual = ManualHTTP()
        d = self.call(self.client(manual, max_retries=1).get_node("n"))
        manual.fail(net_error.ConnectionLost())
        self.clock.advance(2)
        manual.fail(net_error.ConnectionLost())
        failure = self.failureResultOf(d, errors.IronicError)
        self.assertEqual(failure.value.message, "cannot reach Ironic: ConnectionLost (gave up after 2 attempts)")
        self.assertIsNone(failure.value.status)
        self.assertEqual(status_for(failure.value), 503)


class TimeoutTests(ClientTestCase):
    def test_request_that_never_answers_times_out(self):
        manual = ManualHTTP()
        d = self.call(self.client(manual, timeout=60, max_retries=2, retry_interval=1).get_node("n"))
        self.clock.advance(59.9)
        self.assertEqual(len(manual.made), 1)
        self.clock.advance(0.1)  # timed out; retry 1 s later
        self.clock.advance(1)
        self.assertEqual(len(manual.made), 2)
        self.clock.advance(60)
        self.clock.advance(2)
        self.assertEqual(len(manual.made), 3)
        self.assertNoResult(d)
        self.clock.advance(60)
        failure = self.failureResultOf(d, errors.IronicError)
        self.assertEqual(failure.value.message, "cannot reach Ironic: TimeoutError (gave up after 3 attempts)")
        self.assertEqual(status_for(failure.value), 503)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timed_out_request_then_answer(self):
        manual = ManualHTTP()
        d = self.call(self.client(manual, timeout=10).get_node("n"))
        self.clock.advance(10)
        self.clock.advance(2)
        manual.answer(200, {"uuid": "n"})
        self.assertEqual(self.successResultOf(d), {"uuid": "n"})

    def test_body_that_never_arrives_times_out(self):
        """Headers came, the body never does: the request must still time out."""

        class Stalled:
            code = 200

            def content(self):
                return defer.Deferred()

        manual = ManualHTTP()
        d = self.call(self.client(manual, timeout=10, max_retries=0).get_node("n"))
        manual._next().callback(Stalled())
        self.clock.advance(3600)
        self.failureResultOf(d, errors.IronicError)


class ConcurrencyTests(ClientTestCase):
    def test_max_in_flight(self):
        manual = ManualHTTP()
        client = self.client(manual, max_in_flight=2)
        results = [self.call(client.get_node("n{}".format(i))) for i in range(5)]
        self.assertEqual(len(manual.made), 2)
        highest = len(manual.pending)
        for i in range(5):
            manual.answer(200, {"i": i})
            highest = max(highest, len(manual.pending))
        self.assertEqual(highest, 2)
        self.assertEqual([self.successResultOf(r) for r in results], [{"i": i} for i in range(5)])
        self.assertEqual([u.rsplit("/", 1)[1] for _, u, _ in manual.made], ["n0", "n1", "n2", "n3", "n4"])

    def test_retry_backoff_releases_slot(self):
        """A request waiting to retry does not hold one of the slots."""
        manual = ManualHTTP()
        client = self.client(manual, max_in_flight=1)
        first = self.call(client.get_node("a"))
        second = self.call(client.get_node("b"))
        manual.answer(503, b"")  # "a" now waits 2 s before retrying
        self.assertEqual(manual.made[-1][1], ENDPOINT + "/v1/nodes/b")
        manual.answer(200, {"n": "b"})
        self.assertEqual(self.successResultOf(second), {"n": "b"})
        self.clock.advance(2)
        manual.answer(200, {"n": "a"})
        self.assertEqual(self.successResultOf(first), {"n": "a"})

    def test_waited_on_requests_go_before_power_changes(self):
        """A queued PATCH (a ramdisk waits on it) takes the free slot before a queued power-off."""
        manual = ManualHTTP()
        client = self.client(manual, max_in_flight=1)
        first = self.call(client.get_node("a"))
        off = self.call(client.set_power_state("b", "power off"))
        patch = self.call(client.patch_node("c", []))
        manual.answer(200, {"n": "a"})
        self.assertEqual(manual.made[-1][:2], ("PATCH", ENDPOINT + "/v1/nodes/c"))
        manual.answer(200, {"n": "c"})
        self.assertEqual(manual.made[-1][:2], ("PUT", ENDPOINT + "/v1/nodes/b/states/power"))
        manual.answer(202, b"")
        self.assertEqual(self.successResultOf(first), {"n": "a"})
        self.assertEqual(self.successResultOf(patch), {"n": "c"})
        self.successResultOf(off)
        self.assertEqual(len(manual.made), 3)

    def test_power_changes_are_not_starved(self):
        """Passed over ``max_in_flight`` times in a row, a queued power change goes next."""
        manual = ManualHTTP()
        client = self.client(manual, max_in_flight=2)
        for i in range(2):
            self.call(client.get_node("busy{}".format(i)))
        off = self.call(client.set_power_state("b", "power off"))
        for i in range(5):
            self.call(client.get_node("n{}".format(i)))
        for _ in range(3):
            manual.answer(200, {})
        made = [u.rsplit("/v1/nodes/", 1)[1] for _, u, _ in manual.made]
        self.assertEqual(made, ["busy0", "busy1", "n0", "n1", "b/states/power"])
        manual.answer(200, {})  # n1
        manual.answer(202, b"")
        self.successResultOf(off)

    def test_cancelled_wait_frees_nothing(self):
        """A request cancelled while it waits for a slot leaves the queue; the slot count stays right."""
        manual = ManualHTTP()
        client = self.client(manual, max_in_flight=1)
        first = self.call(client.get_node("a"))
        waiting = self.call(client.set_power_state("b", "power off"))
        waiting.cancel()
        self.failureResultOf(waiting, defer.CancelledError)
        third = self.call(client.get_node("c"))
        manual.answer(200, {"n": "a"})
        manual.answer(200, {"n": "c"})
        self.assertEqual([u.rsplit("/", 1)[1] for _, u, _ in manual.made], ["a", "c"])
        self.successResultOf(first)
        self.successResultOf(third)


class KeystoneEndpointTests(SynchronousTestCase):
    def options(self, session, endpoint_override=None):
        return IronicAuthOptions(
            auth_type="password",
            endpoint_override=endpoint_override,
            service_type="baremetal",
            interface=("internal", "public"),
            region_name="RegionTwo",
            auth=session.auth,
            session=session,
        )

    def make_session(self, expires):
        test = self

        class Access:
            pass

        class Auth:
            def get_access(self, session):
                access = Access()
                access.expires = expires
                return access

        class Session:
            auth = Auth()
            resolved = 0

            def get_auth_headers(self, auth):
                return {"X-Auth-Token": "token-{}".format(self.resolved)}

            def get_endpoint(self, auth, service_type, interface, region_name):
                test.assertEqual(
                    (service_type, interface, region_name), ("baremetal", ["internal", "public"], "RegionTwo")
                )
                self.resolved += 1
                return "http://ironic.internal:6385/v1/"

        return Session()

    def test_static_without_auth(self):
        options = IronicAuthOptions("none", "http://ironic.test:6385/v1", "baremetal", ("public",), None)
        endpoint = keystone.endpoint_for(options, None, None)
        base, headers = self.successResultOf(defer.Deferred.fromCoroutine(endpoint()))
        self.assertEqual((base.to_text(), headers), ("http://ironic.test:6385", {}))

    def test_resolved_once_until_close_to_expiry(self):
        clock = task.Clock()
        clock.advance(1_800_000_000)
        expires = datetime.datetime.fromtimestamp(1_800_000_000 + 3600, datetime.timezone.utc)
        session = self.make_session(expires)
        endpoint = keystone.endpoint_for(self.options(session), clock, SynchronousRunner())
        base, headers = self.successResultOf(defer.Deferred.fromCoroutine(endpoint()))
        self.assertEqual(base.to_text(), "http://ironic.internal:6385")
        self.assertEqual(headers, {"X-Auth-Token": "token-0"})
        clock.advance(3600 - 121)
        self.successResultOf(defer.Deferred.fromCoroutine(endpoint()))
        self.assertEqual(session.resolved, 1)
        clock.advance(2)  # within two minutes of expiry: ask again
        self.successResultOf(defer.Deferred.fromCoroutine(endpoint()))
        self.assertEqual(session.resolved, 2)

    def test_auth_without_token_http_basic(self):
        # A plugin without get_access (no token expiry): its headers are asked again hourly.
        clock = task.Clock()
        clock.advance(1_800_000_000)
        session = self.make_session(None)
        del type(session.auth).get_access
        endpoint = keystone.endpoint_for(self.options(session, "http://ironic.test:6385"), clock, SynchronousRunner())
        base, headers = self.successResultOf(defer.Deferred.fromCoroutine(endpoint()))
        self.assertEqual((base.to_text(), headers), ("http://ironic.test:6385", {"X-Auth-Token": "token-0"}))

    def test_keystone_refusal_is_a_clear_503(self):
        from keystoneauth1 import exceptions as ks_exceptions

        clock = task.Clock()
        session = self.make_session(None)

        def refuse(auth):
            raise ks_exceptions.Unauthorized("The request you have made requires authentication.")

        session.get_auth_headers = refuse
        endpoint = keystone.endpoint_for(self.options(session), clock, SynchronousRunner())
        failure = self.failureResultOf(defer.Deferred.fromCoroutine(endpoint()), errors.IronicError)
        self.assertEqual(status_for(failure.value), 503)
        self.assertIn("cannot authenticate to Ironic through Keystone", str(failure.value))
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_endpoint_override_wins_over_catalog(self):
        clock = task.Clock()
        session = self.make_session(None)
        endpoint = keystone.endpoint_for(self.options(session, "http://override.test/v1"), clock, SynchronousRunner())
        base, _ = self.successResultOf(defer.Deferred.fromCoroutine(endpoint()))
        self.assertEqual(base.to_text(), "http://override.test")
        self.assertEqual(session.resolved, 0)


class AgentHTTPClientTests(SynchronousTestCase):
    """The Ironic client on :class:`AgentHTTPClient` (production's) makes the requests it makes on treq."""

    def setUp(self):
        self.clock = Clock()
        self.fake = FakeIronic()
        self.agent = RequestTraversalAgent(self.fake.app.resource())
        self.client = IronicClient(AgentHTTPClient(self.agent), static_endpoint(ENDPOINT), self.clock)

    def call(self, coroutine):
        d = defer.Deferred.fromCoroutine(coroutine)
        for _ in range(5):
            self.agent.flush()
        return d

    def test_same_calls_as_on_treq(self):
        uuid = self.fake.add_node(name="node-1", power_state="power on")
        self.fake.add_port(uuid, "52:54:00:00:00:01")
        self.assertEqual(self.successResultOf(self.call(self.client.get_node("node-1")))["uuid"], uuid)
        self.successResultOf(self.call(self.client.set_power_state(uuid, "power off")))
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power off")
        self.successResultOf(self.call(self.client.patch_node(uuid, [{"op": "add", "path": "/properties/cpus", "value": "4"}])))
        self.assertEqual(self.fake.nodes[uuid]["properties"]["cpus"], "4")
        ports = self.successResultOf(self.call(self.client.list_ports(uuid)))
        self.assertEqual([p["address"] for p in ports], ["52:54:00:00:00:01"])
        self.assertEqual(
            [m for m, _ in self.fake.requests], ["GET", "PUT", "PATCH", "GET"]
        )

    def test_errors_and_query(self):
        self.failureResultOf(self.call(self.client.get_node("missing")), errors.IronicNotFound)
        self.assertEqual(url_bytes(DecodedURL.from_text(ENDPOINT).child("v1", "nodes", "a b"), {"limit": "2"}),
                         ENDPOINT.encode() + b"/v1/nodes/a%20b?limit=2")
        self.assertEqual(url_bytes(ENDPOINT + "/v1?x=1", {"marker": "m"}), ENDPOINT.encode() + b"/v1?x=1&marker=m")

    def test_request_urls_encode_path_segments_as_hyperlink_does(self):
        client = IronicClient(None, static_endpoint(ENDPOINT), task.Clock())
        for base in (ENDPOINT, ENDPOINT + "/baremetal/", "http://[fd00::1]:6385"):
            decoded = DecodedURL.from_text(base.rstrip("/"))
            for name in ("a b", "50%", "n\u00f6de", "a:b@c", "q?#", "ok-name_1.~", "(x)!$&'*+,;="):
                expected = url_bytes(decoded.child("v1", "nodes", name, "states"))
                self.assertEqual(url_bytes(client._url(decoded, "/v1/nodes/{}/states".format(name))), expected,
                                 (base, name))

    def test_endpoints_built_once_per_host(self):
        from twisted.internet.endpoints import HostnameEndpoint
        from twisted.internet.testing import MemoryReactor
        from twisted.web.client import URI, BrowserLikePolicyForHTTPS, SchemeNotSupported

        endpoints = CachedEndpoints(MemoryReactor(), BrowserLikePolicyForHTTPS())
        first = endpoints.endpointForURI(URI.fromBytes(b"http://ironic.test:6385/v1/nodes"))
        self.assertIs(endpoints.endpointForURI(URI.fromBytes(b"http://ironic.test:6385/v1/ports")), first)
        tls = endpoints.endpointForURI(URI.fromBytes(b"https://ironic.test:6385/v1"))
        self.assertIsNot(tls, first)
        self.assertIsInstance(first, HostnameEndpoint)
        self.assertNotIsInstance(tls, HostnameEndpoint)  # wrapped in TLS
        self.assertIs(endpoints.endpointForURI(URI.fromBytes(b"https://ironic.test:6385/v1/nodes")), tls)
        self.assertRaises(SchemeNotSupported, endpoints.endpointForURI, URI.fromBytes(b"ftp://ironic.test/"))
