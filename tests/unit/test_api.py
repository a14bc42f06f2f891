"""The HTTP API through Harness.request: routes, status codes, versions, errors."""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord.api import app as app_module, versions
from inspectord.api.app import LimitedRequest, make_site
from tests.unit.helpers import Harness, fixture

IPA_MAC = "02:fc:00:00:00:01"
UNKNOWN_UUID = "0d5cb9fd-b0a1-4bd2-9d7c-6f0a3c1c2a11"
INSPECTOR = versions.VERSION_HEADER
STANDARD = versions.STANDARD_HEADER


def ipa_data(mac=IPA_MAC, extra_interfaces=(), **inventory):
    data = fixture("ipa-payload.json")
    data["inventory"]["interfaces"][0]["mac_address"] = mac
    data["inventory"]["interfaces"].extend(extra_interfaces)
    data["inventory"].update(inventory)
    return data


def header(headers, name):
    values = headers.getRawHeaders(name)
    return values[-1] if values else None


class APITestCase(SynchronousTestCase):
    def setUp(self):
        self.harness()

    def harness(self, **overrides):
        self.h = Harness(**overrides)
        self.fake = self.h.fake
        return self.h

    def request(self, method, path, body=None, headers=None, raw=None):
        code, response_headers, parsed = self.h.request(method, path, body=body, headers=headers, raw=raw)
        # Every response, error or not, carries the supported range.
        self.assertEqual(header(response_headers, versions.MIN_HEADER), "1.0", (method, path, code))
        self.assertEqual(header(response_headers, versions.MAX_HEADER), "1.18", (method, path, code))
        self.h.flush()
        return code, response_headers, parsed

    def assertError(self, response, code, *fragments):
        status, headers, body = response
        self.assertEqual(status, code, body)
        self.assertEqual(header(headers, "Content-Type"), "application/json")
        self.assertEqual(list(body), ["error"])
        self.assertEqual(list(body["error"]), ["message"])
        message = body["error"]["message"]
        self.assertIsInstance(message, str)
        self.assertNotIn("Traceback", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def enroll(self, macs=(IPA_MAC,), **kwargs):
        return self.fake.add_node(macs=macs, **kwargs)

    def start(self, node_id, query=""):
        code, _, body = self.request("POST", "/v1/introspection/" + node_id + query)
        self.assertEqual(code, 202, body)
        return body

    def state(self, uuid):
        return self.h.store.thd_get_node(uuid).state


class RootTests(APITestCase):
    def test_versions(self):
        code, headers, body = self.request("GET", "/")
        self.assertEqual(code, 200)
        self.assertEqual(header(headers, "Content-Type"), "application/json")
        self.assertEqual(
            body,
            {
                "versions": [
                    {
                        "id": "1.18",
                        "status": "CURRENT",
                        "links": [{"rel": "self", "href": "http://inspectord.test:5050/v1"}],
                    }
                ]
            },
        )

    def test_v1(self):
        code, _, body = self.request("GET", "/v1")
        self.assertEqual(code, 200)
        resources = {r["name"]: r["links"][0]["href"] for r in body["resources"]}
        self.assertEqual(resources["introspection"], "http://inspectord.test:5050/v1/introspection")
        self.assertEqual(resources["continue"], "http://inspectord.test:5050/v1/continue")

    def test_unknown_path(self):
        self.assertError(self.request("GET", "/v2"), 404, "/v2")
        self.assertError(self.request("GET", "/v1/nothing/here"), 404)

    def test_unknown_method(self):
        self.assertError(self.request("DELETE", "/v1"), 405, "DELETE")
        self.assertError(self.request("GET", "/v1/continue"), 405)
        self.assertError(self.request("PUT", "/v1/introspection/" + UNKNOWN_UUID), 405)


class ProxyHeaderTests(APITestCase):
    """``[oslo_middleware]enable_proxy_headers_parsing`` (on by default): links as the client behind a proxy sees them."""

    PROXIED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "metal3.example:6385",
               "X-Forwarded-Prefix": "/inspector"}

    def links(self, headers):
        _, _, body = self.request("GET", "/", headers=headers)
        version = body["versions"][0]["links"][0]["href"]
        _, _, body = self.request("GET", "/v1", headers=headers)
        resources = {r["name"]: r["links"][0]["href"] for r in body["resources"]}
        return version, resources["introspection"]

    def test_ignored_when_disabled(self):
        self.harness(oslo_middleware__enable_proxy_headers_parsing=False)
        self.assertEqual(
            self.links(self.PROXIED),
            ("http://inspectord.test:5050/v1", "http://inspectord.test:5050/v1/introspection"),
        )

    def test_x_forwarded_by_default(self):
        """ironic-inspector 12.5.0 applied X-Forwarded-* always (werkzeug's ProxyFix): so does the default."""
        self.assertEqual(
            self.links(self.PROXIED),
            ("https://metal3.example:6385/inspector/v1", "https://metal3.example:6385/inspector/v1/introspection"),
        )
        # Without the headers: as before.
        self.assertEqual(self.links({})[0], "http://inspectord.test:5050/v1")

    def test_rfc7239_forwarded_first_proxy_wins_over_x_forwarded(self):
        self.harness(oslo_middleware__enable_proxy_headers_parsing=True)
        headers = {
            "Forwarded": 'for=192.0.2.60;proto=https;host="[2001:db8::5]:8443", for=198.51.100.1;proto=http;host=inner',
            "X-Forwarded-Proto": "http", "X-Forwarded-Host": "ignored.example", "X-Forwarded-Prefix": "/bm/",
        }
        self.assertEqual(self.links(headers)[0], "https://[2001:db8::5]:8443/bm/v1")

    def test_forwarded_without_proto_or_host_keeps_the_request_values(self):
        self.harness(oslo_middleware__enable_proxy_headers_parsing=True)
        self.assertEqual(self.links({"Forwarded": "for=192.0.2.60"})[0], "http://inspectord.test:5050/v1")

    def test_values_that_are_no_scheme_or_host_ignored(self):
        self.harness(oslo_middleware__enable_proxy_headers_parsing=True)
        headers = {"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "evil.example/path?x",
                   "X-Forwarded-Prefix": "/a b"}
        self.assertEqual(self.links(headers)[0], "http://inspectord.test:5050/v1")
        self.assertEqual(self.links({"X-Forwarded-Host": "a.example/x,b.example/y"})[0], "http://inspectord.test:5050/v1")
        self.assertEqual(self.links({"X-Forwarded-Port": "http"})[0], "http://inspectord.test:5050/v1")

    def test_last_value_of_each_list_and_the_port(self):
        """As ProxyFix(x_proto=1, x_host=1, x_port=1, x_prefix=1): the value the nearest proxy added."""
        headers = {"X-Forwarded-Proto": "http, https", "X-Forwarded-Host": "outer.example, inner.example:80",
                   "X-Forwarded-Port": "8443", "X-Forwarded-Prefix": "/a, /bm"}
        self.assertEqual(self.links(headers)[0], "https://inner.example:8443/bm/v1")
        self.assertEqual(self.links({"X-Forwarded-Port": "6443"})[0], "http://inspectord.test:6443/v1")
        self.assertEqual(self.links({"X-Forwarded-Host": "[2001:db8::7]", "X-Forwarded-Port": "443"})[0],
                         "http://[2001:db8::7]:443/v1")

    def test_status_links_read_the_headers_once_per_page(self):
        """Every status of a page links through the proxy; its headers are read once for the page."""
        uuids = [self.fake.add_node(name="n{}".format(i), macs=["52:54:00:00:10:0{}".format(i)]) for i in range(3)]
        for uuid in uuids:
            self.assertEqual(self.request("POST", "/v1/introspection/" + uuid)[0], 202)
        calls = []

        def external(*args):
            calls.append(args)
            return real(*args)

        real = app_module.proxy.external
        self.patch(app_module.proxy, "external", external)
        code, _, body = self.request("GET", "/v1/introspection", headers=self.PROXIED)
        self.assertEqual(code, 200, body)
        self.assertEqual(
            {s["uuid"]: s["links"] for s in body["introspection"]},
            {u: [{"rel": "self", "href": "https://metal3.example:6385/inspector/v1/introspection/" + u}] for u in uuids},
        )
        self.assertEqual(len(calls), 1)
        _, _, status = self.request("GET", "/v1/introspection/" + uuids[0], headers=self.PROXIED)
        self.assertEqual(status["links"][0]["href"], "https://metal3.example:6385/inspector/v1/introspection/" + uuids[0])

    def test_rule_links_get_the_prefix(self):
        rule = {"conditions": [], "actions": [{"action": "fail", "message": "x"}]}
        for enabled, expected in ((False, "/v1/rules/"), (True, "/inspector/v1/rules/")):
            self.harness(oslo_middleware__enable_proxy_headers_parsing=enabled)
            code, _, body = self.request("POST", "/v1/rules", rule, headers=self.PROXIED)
            self.assertEqual(code, 201, body)
            self.assertEqual(body["links"][0]["href"], expected + body["uuid"])


class VersionTests(APITestCase):
    def version_of(self, headers):
        code, response_headers, body = self.request("GET", "/", headers=headers)
        self.assertEqual(code, 200, body)
        return header(response_headers, INSPECTOR)

    def test_default_is_latest(self):
        self.assertEqual(self.version_of({}), "1.18")

    def test_inspector_header(self):
        for asked, answered in (("1.0", "1.0"), ("1.18", "1.18"), ("latest", "1.18"), (" 1.5 ", "1.5")):
            self.assertEqual(self.version_of({INSPECTOR: asked}), answered, asked)

    def test_standard_header(self):
        self.assertEqual(self.version_of({STANDARD: "baremetal-introspection 1.5"}), "1.5")
        self.assertEqual(self.version_of({STANDARD: "compute 2.90, baremetal-introspection 1.7"}), "1.7")
        self.assertEqual(self.version_of({STANDARD: "baremetal-introspection latest"}), "1.18")
        self.assertEqual(self.version_of({STANDARD: "compute 2.90"}), "1.18")

    def test_inspector_header_wins(self):
        self.assertEqual(self.version_of({INSPECTOR: "1.3", STANDARD: "baremetal-introspection 1.9"}), "1.3")

    def test_unsupported(self):
        for asked in ("2.0", "1.99", "1.19", "0.9"):
            self.assertError(self.request("GET", "/", headers={INSPECTOR: asked}), 406, asked, "1.0 to 1.18")
        self.assertError(self.request("GET", "/", headers={STANDARD: "baremetal-introspection 2.0"}), 406)

    def test_malformed(self):
        for asked in ("abc", "1", "1.5.1", "v1.5", ""):
            self.assertError(self.request("GET", "/", headers={INSPECTOR: asked}), 400, "Malformed API version")
        self.assertError(self.request("GET", "/", headers={STANDARD: "baremetal-introspection abc"}), 400)

    def test_negotiated_on_every_route(self):
        uuid = self.enroll()
        self.assertError(self.request("POST", "/v1/introspection/" + uuid, headers={INSPECTOR: "9.9"}), 406)
        self.assertEqual(self.fake.requests, [], "refused before doing anything")
        self.assertError(self.request("POST", "/v1/continue", ipa_data(), headers={INSPECTOR: "x"}), 400)

    def test_parse_and_negotiate(self):
        self.assertEqual(versions.parse("1.7"), (1, 7))
        self.assertEqual(versions.negotiate(None, None), versions.CURRENT)
        self.assertEqual(versions.negotiate(None, "baremetal-introspection 1.2"), (1, 2))
        self.assertEqual(versions.fmt((1, 12)), "1.12")


class StartRouteTests(APITestCase):
    def test_start_by_uuid(self):
        uuid = self.enroll()
        code, headers, body = self.request("POST", "/v1/introspection/" + uuid)
        self.assertEqual((code, body), (202, None))
        self.assertEqual(self.state(uuid), "waiting")
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power on")

    def test_start_by_name(self):
        uuid = self.enroll(name="rack1-u12")
        self.start("rack1-u12")
        self.assertEqual(self.state(uuid), "waiting")

    def test_unknown_node(self):
        self.assertError(self.request("POST", "/v1/introspection/" + UNKNOWN_UUID), 404, UNKNOWN_UUID)
        self.assertError(self.request("POST", "/v1/introspection/no-such-name"), 404, "no-such-name")

    def test_bad_provision_state(self):
        uuid = self.enroll(provision_state="active")
        self.assertError(self.request("POST", "/v1/introspection/" + uuid), 400, "Invalid provision state", "active")

    def test_power_validation(self):
        uuid = self.enroll()
        self.fake.validate_power[uuid] = "Missing IPMI credentials"
        self.assertError(
            self.request("POST", "/v1/introspection/" + uuid), 400, "Failed validation of power interface",
            "Missing IPMI credentials",
        )

    def test_manage_boot_false(self):
        uuid = self.enroll()
        self.fake.validate_power[uuid] = "no power interface: not needed"
        self.start(uuid, "?manage_boot=false")
        self.assertEqual(self.state(uuid), "waiting")
        self.assertFalse(self.h.store.thd_get_node(uuid).manage_boot)
        self.assertIsNone(self.fake.nodes[uuid]["boot_device"])

    def test_manage_boot_when_installation_cannot(self):
        self.harness(DEFAULT__can_manage_boot=False)
        uuid = self.enroll()
        self.assertError(self.request("POST", "/v1/introspection/{}?manage_boot=true".format(uuid)), 400,
                         "cannot manage boot")
        self.start(uuid)
        self.assertFalse(self.h.store.thd_get_node(uuid).manage_boot)

    def test_invalid_manage_boot(self):
        uuid = self.enroll()
        self.assertError(self.request("POST", "/v1/introspection/{}?manage_boot=maybe".format(uuid)), 400,
                         "manage_boot", "maybe")
        self.assertEqual(self.fake.requests, [])

    def test_new_ipmi_credentials(self):
        uuid = self.enroll()
        for query in ("?new_ipmi_username=admin", "?new_ipmi_password=secret",
                      "?new_ipmi_username=admin&new_ipmi_password=secret"):
            message = self.assertError(self.request("POST", "/v1/introspection/" + uuid + query), 400,
                                       "enable_setting_ipmi_credentials")
            self.assertNotIn("secret", message)
        self.assertRaises(errors.NotFound, self.state, uuid)

    def test_conflict_while_processing(self):
        uuid = self.enroll()
        self.start(uuid)
        self.h.store.thd_transition(uuid, "process", self.h.introspection.now())
        self.assertError(self.request("POST", "/v1/introspection/" + uuid), 409, "processing")
        self.assertEqual(self.state(uuid), "processing")

    def test_restart(self):
        uuid = self.enroll()
        self.start(uuid)
        self.start(uuid)
        self.assertEqual(self.state(uuid), "waiting")


class StatusRouteTests(APITestCase):
    def test_waiting(self):
        uuid = self.enroll()
        self.start(uuid)
        code, _, body = self.request("GET", "/v1/introspection/" + uuid)
        self.assertEqual(code, 200)
        self.assertEqual(
            body,
            {
                "uuid": uuid,
                "finished": False,
                "state": "waiting",
                "started_at": "2027-01-15T08:00:00",
                "finished_at": None,
                "error": None,
                "links": [{"rel": "self", "href": "http://inspectord.test:5050/v1/introspection/" + uuid}],
            },
        )

    def test_finished(self):
        uuid = self.enroll()
        self.start(uuid)
        self.h.clock.advance(42)
        self.assertEqual(self.request("POST", "/v1/continue", ipa_data())[0], 200)
        code, _, body = self.request("GET", "/v1/introspection/" + uuid)
        self.assertEqual((body["finished"], body["state"], body["error"]), (True, "finished", None))
        self.assertEqual(body["finished_at"], "2027-01-15T08:00:42")

    def test_error(self):
        uuid = self.enroll()
        self.start(uuid)
        self.request("POST", "/v1/continue", fixture("ipa-payload-collector-error.json"))
        _, _, body = self.request("GET", "/v1/introspection/" + uuid)
        self.assertEqual((body["finished"], body["state"]), (True, "error"))
        self.assertIn("Ramdisk reported error", body["error"])

    def test_by_name_and_upper_case_uuid(self):
        uuid = self.enroll(name="rack1-u12")
        self.start(uuid)
        self.assertEqual(self.request("GET", "/v1/introspection/rack1-u12")[2]["uuid"], uuid)
        self.assertEqual(self.request("GET", "/v1/introspection/" + uuid.upper())[2]["uuid"], uuid)

    def test_never_introspected(self):
        uuid = self.enroll(name="idle")
        self.assertError(self.request("GET", "/v1/introspection/" + uuid), 404, "never introspected")
        self.assertError(self.request("GET", "/v1/introspection/idle"), 404, "never introspected")
        self.assertError(self.request("GET", "/v1/introspection/" + UNKNOWN_UUID), 404)
        self.assertError(self.request("GET", "/v1/introspection/no-such-name"), 404, "not found in Ironic")


class ContinueRouteTests(APITestCase):
    def continue_(self, body=None, raw=None):
        return self.request("POST", "/v1/continue", body=body, raw=raw)

    def test_ipa_payload(self):
        uuid = self.enroll()
        self.start(uuid)
        code, headers, body = self.continue_(ipa_data())
        self.assertEqual((code, body), (200, {"uuid": uuid}))
        self.assertEqual(header(headers, "Content-Type"), "application/json")
        self.assertEqual(self.state(uuid), "finished")
        self.assertEqual(self.fake.nodes[uuid]["properties"]["local_gb"], "255")

    def test_legacy_payload(self):
        uuid = self.enroll(macs=["52:54:00:12:34:56", "52:54:00:12:34:57"])
        self.start(uuid)
        self.assertEqual(self.continue_(fixture("legacy-ramdisk.json"))[:3:2], (200, {"uuid": uuid}))
        self.assertEqual(self.fake.nodes[uuid]["properties"]["memory_mb"], "16384")

    def test_legacy_payload_bmc_only(self):
        uuid = self.enroll(macs=(), driver_info={"ipmi_address": "192.0.2.200"})
        self.start(uuid)
        self.assertEqual(self.continue_(fixture("legacy-ramdisk.json"))[:3:2], (200, {"uuid": uuid}))
        self.assertEqual([p["address"] for p in self.fake.node_ports(uuid)], ["52:54:00:12:34:56"])

    def test_not_json(self):
        for raw in (b"not json", b"\xff\xfe\x00garbage", b"", b"{\"inventory\": "):
            self.assertError(self.continue_(raw=raw), 400, "Invalid JSON")

    def test_not_an_object(self):
        for body in ([1, 2], "text", 42, None):
            self.assertError(self.continue_(raw=json.dumps(body).encode()), 400, "expected a JSON object")

    def test_malformed_inventory(self):
        self.assertError(self.continue_({"inventory": {"interfaces": "eth0"}}), 400, "'interfaces' must be a list")
        self.assertError(self.continue_({"inventory": {"interfaces": [7]}}), 400, "must be an object")
        self.assertError(self.continue_({"hello": "world"}), 400, "neither an 'inventory'")

    def test_collector_error(self):
        uuid = self.enroll()
        self.start(uuid)
        payload = fixture("ipa-payload-collector-error.json")
        message = self.assertError(self.continue_(payload), 400, "Ramdisk reported error")
        self.assertIn(payload["error"], message)
        self.assertEqual(self.state(uuid), "error")

    def test_no_inventory_error(self):
        self.enroll()
        message = self.assertError(
            self.continue_(fixture("ipa-payload-no-inventory-error.json")), 400,
            "no-such-collector", "Look up error",
        )
        self.assertIn("Hardware inventory is empty or missing", message)

    def test_unknown_macs(self):
        self.enroll()
        self.assertError(self.continue_(ipa_data(mac="52:54:00:99:99:99")), 404, "52:54:00:99:99:99")

    def test_two_nodes_tie(self):
        first, second = self.enroll(macs=["52:54:00:00:00:01"]), self.enroll(macs=["52:54:00:00:00:02"])
        self.start(first)
        self.start(second)
        data = ipa_data(mac="52:54:00:00:00:01",
                        extra_interfaces=[{"name": "eth1", "mac_address": "52:54:00:00:00:02",
                                           "ipv4_address": "192.0.2.3"}])
        message = self.assertError(self.continue_(data), 404, "Multiple nodes")
        self.assertIn(first, message)
        self.assertIn(second, message)
        self.assertEqual((self.state(first), self.state(second)), ("waiting", "waiting"))

    def test_finished_node(self):
        uuid = self.enroll()
        self.start(uuid)
        self.assertEqual(self.continue_(ipa_data())[0], 200)
        self.assertError(self.continue_(ipa_data()), 403, uuid, "not under introspection")

    def test_while_starting(self):
        """Data posted before the start ended is taken; it is processed once the start ends."""
        uuid = self.enroll()
        self.fake.fail("PUT", "/v1/nodes/{}/management".format(uuid), 503)
        self.start(uuid)
        self.assertEqual(self.state(uuid), "starting")
        code, _, body = self.continue_(ipa_data())
        self.assertEqual((code, body), (200, {"uuid": uuid}))
        self.assertEqual(self.state(uuid), "starting")
        self.h.clock.advance(2)
        self.h.flush()
        self.assertEqual(self.state(uuid), "finished")

    def test_ironic_failure(self):
        uuid = self.enroll()
        self.start(uuid)
        self.fake.fail("PATCH", "/v1/nodes", 400, body="Invalid property")
        self.assertError(self.continue_(ipa_data()), 400, "Invalid property")
        self.assertEqual(self.state(uuid), "error")

    def test_unexpected_error_hides_details(self):
        def broken(data, source=None):
            raise RuntimeError("secret internals at 0xdeadbeef")

        self.patch(self.h.introspection, "process", broken)
        message = self.assertError(self.continue_(ipa_data()), 500, "Internal error")
        self.assertNotIn("deadbeef", message)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_unexpected_hook_error(self):
        uuid = self.enroll()
        self.start(uuid)

        def broken(data, node):
            raise KeyError("cpu")

        self.patch(self.h.introspection.hooks[0], "before_update", broken)
        hook = self.h.introspection.hooks[0].name
        response = self.continue_(ipa_data())
        self.assertError(response, 400, "Invalid ramdisk data: processing hook {} could not use it".format(hook))
        self.assertNotIn("KeyError", response[2]["error"]["message"])
        self.assertEqual(self.state(uuid), "error")
        self.flushLoggedErrors(KeyError)


class BodyLimitTests(SynchronousTestCase):
    """LimitedRequest through a real HTTP channel (StubTreq builds its own Site)."""

    def post(self, body, limit=100, chunked=False):
        h = Harness()
        site = make_site(h.api.app.resource(), limit)
        self.assertTrue(issubclass(site.requestFactory, LimitedRequest))
        self.assertFalse(site.displayTracebacks)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        head = b"POST /v1/continue HTTP/1.1\r\nHost: inspectord.test\r\nContent-Type: application/json\r\n"
        if chunked:
            payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 32]), body[i:i + 32]) for i in range(0, len(body), 32))
            channel.dataReceived(head + b"Transfer-Encoding: chunked\r\n\r\n" + payload + b"0\r\n\r\n")
        else:
            channel.dataReceived(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        h.flush()
        response = transport.value()
        status = int(response.split(b" ", 2)[1])
        return status, response

    def test_content_length_over_limit(self):
        status, response = self.post(b"[" + b"1," * 100 + b"1]")
        self.assertEqual(status, 413)
        self.assertIn(b'{"error": {"message": "Request body is larger than the limit of 100 bytes"}}', response)
        self.assertIn(b"x-openstack-ironic-inspector-api-maximum-version: 1.18", response.lower())

    def test_chunked_over_limit(self):
        status, response = self.post(b"[" + b"1," * 100 + b"1]", chunked=True)
        self.assertEqual(status, 413)
        self.assertIn(b"larger than the limit of 100 bytes", response)

    def test_under_limit_reaches_the_route(self):
        status, response = self.post(b"[1, 2]")
        self.assertEqual(status, 400)
        self.assertIn(b"expected a JSON object, got list", response)
        status, response = self.post(b"[1, 2]", chunked=True)
        self.assertEqual(status, 400)

    def test_exactly_at_limit(self):
        body = b"[" + b" " * 97 + b"1]"
        self.assertEqual(len(body), 100)
        status, response = self.post(body)
        self.assertEqual(status, 400)
        self.assertIn(b"got list", response)


class ListRouteTests(APITestCase):
    def setUp(self):
        super().setUp()
        self.uuids = []
        for i in range(3):
            uuid = self.enroll(macs=["52:54:00:00:00:0{}".format(i)])
            self.start(uuid)
            self.h.clock.advance(10)
            self.uuids.append(uuid)

    def listed(self, query=""):
        code, _, body = self.request("GET", "/v1/introspection" + query)
        self.assertEqual(code, 200, body)
        return [s["uuid"] for s in body["introspection"]]

    def test_newest_first(self):
        self.assertEqual(self.listed(), self.uuids[::-1])

    def test_paging_terminates(self):
        """openstacksdk pages with the last UUID until a page is empty."""
        pages, marker = [], None
        for _ in range(5):
            page = self.listed("?limit=2" + ("&marker=" + marker if marker else ""))
            if not page:
                break
            pages.append(page)
            marker = page[-1]
        self.assertEqual(pages, [self.uuids[:0:-1], self.uuids[:1]])

    def test_state_filter(self):
        self.h.store.thd_transition(self.uuids[1], "error", self.h.introspection.now(), error="x")
        self.assertEqual(self.listed("?state=error"), [self.uuids[1]])
        self.assertEqual(self.listed("?state=error,waiting"), self.uuids[::-1])
        self.assertEqual(self.listed("?state=finished"), [])

    def test_status_fields(self):
        _, _, body = self.request("GET", "/v1/introspection?limit=1")
        self.assertEqual(set(body["introspection"][0]),
                         {"uuid", "finished", "state", "started_at", "finished_at", "error", "links"})

    def test_bad_parameters(self):
        self.assertError(self.request("GET", "/v1/introspection?limit=abc"), 400, "limit")
        self.assertError(self.request("GET", "/v1/introspection?limit=-1"), 400, "limit")
        self.assertError(self.request("GET", "/v1/introspection?limit=1001"), 400, "1000")
        self.assertError(self.request("GET", "/v1/introspection?marker=nope"), 400, "marker")
        self.assertError(self.request("GET", "/v1/introspection?marker=" + UNKNOWN_UUID), 400, UNKNOWN_UUID)
        self.assertError(self.request("GET", "/v1/introspection?state=sleeping"), 400, "sleeping")


class AbortRouteTests(APITestCase):
    def test_abort_waiting(self):
        uuid = self.enroll()
        self.start(uuid)
        code, _, body = self.request("POST", "/v1/introspection/{}/abort".format(uuid))
        self.assertEqual((code, body), (202, None))
        record = self.h.store.thd_get_node(uuid)
        self.assertEqual((record.state, record.error), ("error", "Canceled by operator"))
        self.assertEqual(self.fake.nodes[uuid]["power_state"], "power off")
        self.assertError(self.request("POST", "/v1/continue", ipa_data()), 403, "Canceled by operator")

    def test_abort_finished_is_an_error(self):
        uuid = self.enroll()
        self.start(uuid)
        self.request("POST", "/v1/continue", ipa_data())
        self.assertError(self.request("POST", "/v1/introspection/{}/abort".format(uuid)), 400, "already ended")

    def test_abort_while_starting(self):
        uuid = self.enroll()
        self.fake.fail("PUT", "/v1/nodes/{}/management".format(uuid), 503)
        self.start(uuid)
        self.assertError(self.request("POST", "/v1/introspection/{}/abort".format(uuid)), 409, "starting")

    def test_abort_never_introspected(self):
        self.assertError(self.request("POST", "/v1/introspection/{}/abort".format(UNKNOWN_UUID)), 404)


class DataRouteTests(APITestCase):
    def introspect(self):
        uuid = self.enroll(name="n1")
        self.start(uuid)
        self.assertEqual(self.request("POST", "/v1/continue", ipa_data())[0], 200)
        return uuid

    def test_not_stored(self):
        uuid = self.introspect()
        self.assertError(self.request("GET", "/v1/introspection/{}/data".format(uuid)), 404, "store_data")
        self.assertError(self.request("GET", "/v1/introspection/{}/data/unprocessed".format(uuid)), 404, "store_data")

    def test_stored(self):
        self.harness(processing__store_data="database")
        uuid = self.introspect()
        code, _, processed = self.request("GET", "/v1/introspection/n1/data")
        self.assertEqual((code, processed["local_gb"], processed["cpus"]), (200, 255, 2))
        code, _, raw = self.request("GET", "/v1/introspection/{}/data/unprocessed".format(uuid))
        self.assertEqual((code, raw), (200, ipa_data()))

    def test_reapply(self):
        self.harness(processing__store_data="database")
        uuid = self.introspect()
        self.fake.nodes[uuid]["properties"]["local_gb"] = "1"
        calls = len(self.fake.requests)
        code, _, body = self.request("POST", "/v1/introspection/{}/data/unprocessed".format(uuid))
        self.assertEqual((code, body), (202, None))
        self.assertEqual(self.state(uuid), "finished")
        self.assertEqual(self.fake.nodes[uuid]["properties"]["local_gb"], "255")
        self.assertNotIn("PUT", [m for m, _ in self.fake.requests[calls:]], "no power action on reapply")

    def test_reapply_refused(self):
        uuid = self.enroll()
        self.start(uuid)
        self.assertError(self.request("POST", "/v1/introspection/{}/data/unprocessed".format(uuid)), 409, "waiting")
        self.assertError(self.request("POST", "/v1/introspection/{}/data/unprocessed".format(uuid), raw=b"[1]"),
                         400, "JSON object")


class RuleRouteTests(APITestCase):
    RULE = {
        "uuid": None,
        "description": "big machines",
        "conditions": [{"op": "ge", "field": "memory_mb", "value": 16384}],
        "actions": [{"action": "set-capability", "name": "size", "value": "big"}],
    }

    def test_crud(self):
        code, _, rule = self.request("POST", "/v1/rules", self.RULE)
        self.assertEqual(code, 201)
        uuid = rule["uuid"]
        self.assertEqual(rule["links"], [{"href": "/v1/rules/" + uuid, "rel": "self"}])
        self.assertEqual(rule["description"], "big machines")
        self.assertEqual(self.request("GET", "/v1/rules/" + uuid)[2]["actions"], self.RULE["actions"])
        self.assertEqual([r["uuid"] for r in self.request("GET", "/v1/rules")[2]["rules"]], [uuid])
        self.assertEqual(self.request("DELETE", "/v1/rules/" + uuid)[:3:2], (204, None))
        self.assertError(self.request("GET", "/v1/rules/" + uuid), 404)
        self.assertError(self.request("DELETE", "/v1/rules/" + uuid), 404)

    def test_old_versions_answer_200(self):
        code, _, _ = self.request("POST", "/v1/rules", self.RULE, headers={INSPECTOR: "1.5"})
        self.assertEqual(code, 200)

    def test_delete_all(self):
        self.request("POST", "/v1/rules", self.RULE)
        self.request("POST", "/v1/rules", self.RULE)
        self.assertEqual(len(self.request("GET", "/v1/rules")[2]["rules"]), 2)
        self.assertEqual(self.request("DELETE", "/v1/rules")[0], 204)
        self.assertEqual(self.request("GET", "/v1/rules")[2], {"rules": []})

    def test_invalid_rule(self):
        self.assertError(self.request("POST", "/v1/rules", {"conditions": [], "actions": []}), 400)
        self.assertError(self.request("POST", "/v1/rules", raw=b"{"), 400, "Invalid JSON")

    def test_rule_applied_on_continue(self):
        self.request("POST", "/v1/rules", self.RULE)
        uuid = self.enroll()
        self.start(uuid)
        self.request("POST", "/v1/continue", ipa_data())
        self.assertIn("size:big", self.fake.nodes[uuid]["properties"]["capabilities"])
        self.assertEqual(len([p for n, p in self.fake.patches if n == uuid]), 1, "still one PATCH")
