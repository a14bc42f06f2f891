"""Hostile and careless input (issue 13): each defect reproduced, then its fix checked.

Requests go through the real :func:`inspectord.api.app.make_site` (the
Twisted HTTP channel, not only the Klein resource) where the defect lives
in the HTTP layer.
"""

import base64
import json
import os
import stat

import bcrypt
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from inspectord.api import auth, authz, versions
from inspectord.api.app import make_site
from inspectord.secrets import Sealer
from inspectord.store import make_engine
from tests.unit.helpers import Harness, fixture
from tests.unit.test_api import IPA_MAC, APITestCase, ipa_data

SECRET = "Zq7Hostile0Secret"


class SiteClient:
    """Raw bytes into make_site's channel; the raw response and access log lines out."""

    def __init__(self, harness=None, max_body=16 * 1024 * 1024):
        self.h = harness or Harness()
        self.site = make_site(self.h.api.app.resource(), max_body)
        self.log_lines = []
        self.site.log = lambda request: self.log_lines.append(self.site._logFormatter(self.site._logDateTime, request))

    def send(self, data):
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(data)
        self.h.flush()
        return transport.value()

    def request(self, method, path, headers=(), body=b""):
        head = b"%s %s HTTP/1.1\r\nHost: inspectord.test\r\n" % (method, path)
        for name, value in headers:
            head += name + b": " + value + b"\r\n"
        if body:
            head += b"Content-Length: %d\r\n" % len(body)
        return parse_response(self.send(head + b"\r\n" + body))


def parse_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1]) if lines and lines[0].startswith(b"HTTP/") else None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding") == b"chunked":
        chunks = []
        while body:
            size, _, rest = body.partition(b"\r\n")
            size = int(size, 16)
            if not size:
                break
            chunks.append(rest[:size])
            body = rest[size + 2:]
        body = b"".join(chunks)
    return status, headers, body


class HostileCase(SynchronousTestCase):
    def assertJSONError(self, response, code):
        status, headers, body = response
        self.assertEqual(status, code, body)
        self.assertEqual(headers.get(b"content-type"), b"application/json", (code, body))
        payload = json.loads(body)
        self.assertEqual(list(payload), ["error"])
        self.assertIsInstance(payload["error"]["message"], str)
        self.assertNotIn("Traceback", payload["error"]["message"])
        return payload["error"]["message"]


# -- 1: a password in the access log -----------------------------------------


class AccessLogTests(HostileCase):
    def test_percent_encoded_parameter_name_is_masked(self):
        client = SiteClient()
        for query in (
            b"new_ipmi_password=" + SECRET.encode(),
            b"new_ipmi_pass%77ord=" + SECRET.encode(),
            b"new%5Fipmi%5Fpassword=" + SECRET.encode(),
            b"x=1&NEW_IPMI_PASSWORD=" + SECRET.encode(),
            b"new_ipmi_password=%5A" + SECRET[1:].encode(),
        ):
            client.request(b"POST", b"/v1/introspection/no-such-node?" + query)
        self.assertEqual(len(client.log_lines), 5)
        for line in client.log_lines:
            self.assertNotIn(SECRET[1:], line)
            self.assertIn("/v1/introspection/no-such-node", line)

    def test_ordinary_query_logged(self):
        client = SiteClient()
        client.request(b"GET", b"/v1/introspection?limit=5")
        self.assertIn("/v1/introspection?limit=5", client.log_lines[0])


# -- 2: a password left on disk ----------------------------------------------


class SecretsAtRestTests(SynchronousTestCase):
    def test_database_files_private(self):
        directory = os.path.join(self.mktemp(), "state")
        path = os.path.join(directory, "inspectord.sqlite")
        engine = make_engine("sqlite:///" + path)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x)")
        engine.dispose()
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        for name in os.listdir(directory):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode), 0o600, name)

    def test_existing_database_file_made_private(self):
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "inspectord.sqlite")
        with open(path, "wb"):
            pass
        os.chmod(path, 0o644)
        make_engine("sqlite:///" + path).dispose()
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_credentials_never_stored_in_clear(self):
        h = Harness(processing__enable_setting_ipmi_credentials=True)
        uuid = h.fake.add_node(macs=[IPA_MAC], provision_state="enroll", driver_info={"ipmi_username": "admin"})
        code, _, body = h.request("POST", "/v1/introspection/{}?new_ipmi_password={}".format(uuid, SECRET))
        self.assertEqual(code, 202, body)
        with h.store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT * FROM inspectord_nodes").all()
        self.assertTrue(rows)
        self.assertNotIn(SECRET, repr(rows))
        # The process that took the password gives it to the ramdisk.
        code, _, body = h.request("POST", "/v1/continue", ipa_data())
        self.assertEqual(body.get("ipmi_password"), SECRET, body)

    def test_credentials_lost_on_restart_fail_the_node(self):
        h = Harness(processing__enable_setting_ipmi_credentials=True)
        uuid = h.fake.add_node(macs=[IPA_MAC], provision_state="enroll", driver_info={"ipmi_username": "admin"})
        code, _, body = h.request("POST", "/v1/introspection/{}?new_ipmi_password={}".format(uuid, SECRET))
        self.assertEqual(code, 202, body)
        # A restarted process: same database, a new key.
        h.introspection.sealer = Sealer()
        code, _, body = h.request("POST", "/v1/continue", ipa_data())
        self.assertEqual(code, 400, body)
        self.assertNotIn(SECRET, json.dumps(body))
        self.assertIn("restart", body["error"]["message"])
        record = h.store.thd_get_node(uuid)
        self.assertEqual(record.state, "error")
        self.assertIn("restart", record.error)


# -- 3: login denial of service and a user-name oracle -----------------------


class _Request:
    def __init__(self, authorization, host="192.0.2.1"):
        self._authorization = authorization
        self._host = host

    def getHeader(self, name):
        return self._authorization if name.lower() == b"authorization" else None

    def getClientAddress(self):
        return IPv4Address("TCP", self._host, 40000)


class HeldPool:
    """A thread pool stand-in whose jobs finish when the test says."""

    def __init__(self):
        self.jobs = []

    def run(self, f, *args):
        d = defer.Deferred()
        self.jobs.append((f, args, d))
        return d

    def finish_all(self):
        while self.jobs:
            f, args, d = self.jobs.pop(0)
            d.callback(f(*args))


class SyncPool:
    def run(self, f, *args):
        return defer.execute(f, *args)


class LoginCostTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        path = os.path.join(self.mktemp())
        with open(path, "w") as f:
            f.write("alice:" + bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(5)).decode() + "\n")
        self.users = authz.WatchedFile(path, auth.load_htpasswd, SyncPool(), self.clock)
        self.users.load_now()
        self.pool = HeldPool()
        self.auth = auth.BasicAuth(self.users, self.pool, self.clock, authz.Enforcer(None, None, self.clock))

    def check(self, user, password, host="192.0.2.1"):
        header = b"Basic " + base64.b64encode("{}:{}".format(user, password).encode())
        return defer.Deferred.fromCoroutine(self.auth.check(_Request(header, host), "introspection:status"))

    def test_unknown_user_costs_what_a_real_one_does(self):
        self.check("eve", "whatever", host="192.0.2.1")
        self.check("alice", "wrong", host="192.0.2.2")
        self.assertEqual(len(self.pool.jobs), 2)
        costs = [args[1][:7] for _, args, _ in self.pool.jobs]
        self.assertEqual(costs[0], costs[1])
        self.assertEqual(costs[1], b"$2b$05$")

    def test_work_bounded_per_source(self):
        flood = [self.check("nobody{}".format(i), "x", host="192.0.2.66") for i in range(60)]
        in_flight = len(self.pool.jobs)
        self.assertLessEqual(in_flight, auth.BASIC_MAX_CHECKS_PER_SOURCE)
        # Past the per-source queue: refused at once, no bcrypt work.
        refused = [d for d in flood if d.called]
        self.assertGreaterEqual(len(refused), 60 - auth.BASIC_MAX_CHECKS_PER_SOURCE - auth.BASIC_MAX_QUEUED_PER_SOURCE)
        for d in refused:
            failure = self.failureResultOf(d, errors_mod.InspectordError)
            self.assertEqual(status_for(failure.value), 429)
        # Another address is not queued behind the flood.
        real = self.check("alice", "alice-pw", host="192.0.2.7")
        self.assertEqual(len(self.pool.jobs), in_flight + 1)
        self.assertEqual(self.pool.jobs[-1][1][0], "alice-pw")
        self.pool.finish_all()
        self.assertEqual(self.successResultOf(real).user_name, "alice")
        for d in flood:
            if d not in refused:
                self.assertEqual(status_for(self.failureResultOf(d, errors_mod.InspectordError).value), 401)


from inspectord import errors as errors_mod  # noqa: E402
from inspectord.api.status import status_for


# -- 4: malformed version headers ----------------------------------------------


class VersionHeaderTests(HostileCase):
    def test_malformed_versions_are_400_everywhere(self):
        client = SiteClient()
        bad = [b"1." + b"9" * 10000, b"9" * 5000 + b".1", b"1.\xff", b"\xff", b"\xd9\xa1.\xd9\xa2", b"1.1\x00"]
        for path in (b"/", b"/v1", b"/v1/introspection", b"/v1/rules"):
            for value in bad:
                for name, prefix in (
                    (versions.VERSION_HEADER.encode(), b""),
                    (versions.STANDARD_HEADER.encode(), b"baremetal-introspection "),
                ):
                    response = client.request(b"GET", path, [(name, prefix + value)])
                    self.assertJSONError(response, 400)
        self.assertJSONError(client.request(b"POST", b"/v1/continue", [(versions.VERSION_HEADER.encode(), bad[0])], b"{}"), 400)

    def test_parse(self):
        self.assertEqual(versions.parse("1.9"), (1, 9))
        for text in ("1." + "9" * 10000, "\u0661.\u0662", "1.\xff"):
            self.assertRaises(errors_mod.InvalidInput, versions.parse, text)


# -- 5: deep or odd JSON ---------------------------------------------------------


class JSONShapeTests(APITestCase):
    def test_deep_nesting_is_400(self):
        uuid = self.enroll()
        self.start(uuid)
        for deep in (b"[" * 10000 + b"]" * 10000, b'{"a":' * 10000 + b"1" + b"}" * 10000):
            for method, path in (
                ("POST", "/v1/continue"),
                ("POST", "/v1/rules"),
                ("POST", "/v1/introspection/{}/data/unprocessed".format(uuid)),
            ):
                self.assertError(self.request(method, path, raw=deep), 400, "nest")

    def test_deep_rule_value_is_400(self):
        value = 1
        for _ in range(900):
            value = [value]
        rule = {"description": "deep", "conditions": [{"op": "eq", "field": "data://x", "value": value}],
                "actions": [{"action": "fail", "message": "x"}]}
        self.assertError(self.request("POST", "/v1/rules", body=rule), 400, "nest")

    def test_lone_surrogate_is_400(self):
        raw = b'{"description": "\\ud800", "conditions": [], "actions": [{"action": "fail", "message": "x"}]}'
        self.assertError(self.request("POST", "/v1/rules", raw=raw), 400, "surrogate")
        self.assertEqual(self.request("GET", "/v1/rules")[0], 200)

    def test_nesting_limit_itself_accepted(self):
        from inspectord.api import bodies

        raw = b"[" * bodies.MAX_JSON_DEPTH + b"]" * bodies.MAX_JSON_DEPTH
        self.assertEqual(bodies.parse_json(raw), json.loads(raw))
        self.assertRaises(errors_mod.InvalidInput, bodies.parse_json, b"[" + raw + b"]")


# -- 6 and 7: ramdisk data that crashes a hook, garbage accepted -------------------


class RamdiskGarbageTests(APITestCase):
    def post(self, data=None, raw=None):
        uuid = self.enroll()
        self.start(uuid)
        response = self.request("POST", "/v1/continue", body=data, raw=raw)
        return uuid, response

    def assertRefused(self, uuid, response, field):
        message = self.assertErrorMessage(response, 400)
        self.assertIn(field, message)
        self.assertNotIn("Error", message.replace("error", ""))
        record = self.h.store.thd_get_node(uuid)
        self.assertEqual(record.state, "error")
        self.assertIn(field, record.error)

    def assertErrorMessage(self, response, code):
        self.assertError(response, code)
        return response[2]["error"]["message"]

    def test_non_standard_json_constants_refused(self):
        for literal in (b"Infinity", b"-Infinity", b"NaN", b"1e400"):
            raw = json.dumps(ipa_data()).replace('"physical_mb": 24576', '"physical_mb": @@').encode().replace(b"@@", literal)
            self.assertIn(b'"physical_mb": ' + literal, raw)
            self.assertError(self.request("POST", "/v1/continue", raw=raw), 400, "JSON")

    def test_root_disk_string(self):
        data = ipa_data()
        data["root_disk"] = "sda"
        uuid, response = self.post(data)
        self.assertRefused(uuid, response, "root_disk")

    def test_huge_cpu_count(self):
        data = ipa_data()
        data["inventory"]["cpu"]["count"] = 1e20
        uuid, response = self.post(data)
        self.assertRefused(uuid, response, "cpu.count")
        self.assertNotIn("cpus", self.fake.nodes[uuid]["properties"])

    def test_huge_memory(self):
        data = ipa_data()
        data["inventory"]["memory"]["physical_mb"] = 1e30
        uuid, response = self.post(data)
        self.assertRefused(uuid, response, "memory.physical_mb")
        self.assertNotIn("memory_mb", self.fake.nodes[uuid]["properties"])

    def test_huge_disk(self):
        data = ipa_data()
        for disk in data["inventory"]["disks"]:
            disk["size"] = 10 ** 30
        data["root_disk"]["size"] = 10 ** 30
        uuid, response = self.post(data)
        self.assertRefused(uuid, response, "size")

    def test_interface_name_not_a_string(self):
        data = ipa_data()
        data["inventory"]["interfaces"].append(dict(data["inventory"]["interfaces"][0], name=["eth", 1]))
        uuid, response = self.post(data)
        self.assertEqual(response[0], 200, response[2])

    def test_unexpected_preprocessing_failure_names_no_exception_class(self):
        uuid = self.enroll()
        self.start(uuid)

        def broken(data):
            raise TypeError("unhashable type: 'list'")

        self.patch(self.h.introspection.hooks[0], "before_processing", broken)
        code, _, body = self.request("POST", "/v1/continue", body=ipa_data())
        self.assertEqual(code, 400, body)
        self.assertIn("could not use the ramdisk data", body["error"]["message"])
        self.assertNotIn("TypeError", json.dumps(body))
        self.assertNotIn("unhashable", json.dumps(body))
        self.assertEqual(self.state(uuid), "error")
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_stored_nan_rendered_as_standard_json(self):
        self.harness(processing__store_data="database")
        uuid = self.enroll()
        self.start(uuid)
        self.assertEqual(self.request("POST", "/v1/continue", body=ipa_data())[0], 200)
        self.h.store.thd_store_data(uuid, {"x": float("nan"), "inventory": {}}, False, self.h.introspection.now())
        code, _, body = self.request("GET", "/v1/introspection/{}/data/unprocessed".format(uuid))
        self.assertEqual(code, 200)
        self.assertEqual(body["x"], None)


# -- 9: smaller ones -------------------------------------------------------------


class HTTPLayerTests(HostileCase):
    def test_huge_host_header(self):
        client = SiteClient()
        response = parse_response(client.send(b"GET / HTTP/1.1\r\nHost: " + b"h" * 10000 + b"\r\n\r\n"))
        self.assertIn(response[0], (200, 400))
        self.assertEqual(response[1].get(b"content-type"), b"application/json")

    def test_undecodable_path(self):
        self.assertJSONError(SiteClient().request(b"GET", b"/v1/introspection/%ff%fe"), 400)

    def test_multipart_content_type(self):
        client = SiteClient()
        response = client.request(
            b"POST", b"/v1/continue", [(b"Content-Type", b"multipart/form-data; boundary=x")], b"--x\r\nbroken"
        )
        self.assertJSONError(response, 400)

    def test_double_slash_is_404_not_redirect(self):
        for path in (b"/v1/introspection//x", b"/v1/introspection/%2F0", b"/v1//rules"):
            self.assertJSONError(SiteClient().request(b"GET", path), 404)

    def test_405_has_allow(self):
        status, headers, _ = response = SiteClient().request(b"PUT", b"/v1/rules")
        self.assertJSONError(response, 405)
        self.assertEqual(sorted(headers[b"allow"].decode().replace(" ", "").split(",")), ["DELETE", "GET", "HEAD", "POST"])

    def test_long_request_line_is_414(self):
        raw = SiteClient().send(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertJSONError(parse_response(raw), 414)

    def test_long_header_is_431(self):
        raw = SiteClient().send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        self.assertJSONError(parse_response(raw), 431)

    def test_too_many_headers_is_431(self):
        raw = SiteClient().send(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(600)) + b"\r\n")
        self.assertJSONError(parse_response(raw), 431)

    def test_garbage_request_line_is_json_400(self):
        raw = SiteClient().send(b"\x16\x03\x01 garbage\r\n\r\n")
        self.assertJSONError(parse_response(raw), 400)


# -- 10: a payload that names another node's MAC ----------------------------------


class ForeignMACTests(APITestCase):
    def test_other_nodes_port_is_skipped(self):
        other_mac = "52:54:00:99:99:99"
        other = self.enroll(macs=[other_mac])
        before = json.dumps(self.fake.node_ports(other), sort_keys=True)
        uuid = self.enroll()
        self.start(uuid)
        extra = dict(fixture("ipa-payload.json")["inventory"]["interfaces"][0], name="eth9", mac_address=other_mac)
        data = ipa_data(extra_interfaces=[extra])
        code, _, body = self.request("POST", "/v1/continue", body=data)
        self.assertEqual(code, 200, body)
        self.assertEqual(self.state(uuid), "finished")
        self.assertEqual(json.dumps(self.fake.node_ports(other), sort_keys=True), before)
        self.assertEqual([p["address"] for p in self.fake.node_ports(uuid)], [IPA_MAC])


# -- 8: running out of file descriptors, slow clients --------------------------------


class ConnectionLimitTests(SynchronousTestCase):
    def connect(self, factory, host):
        protocol = factory.buildProtocol(IPv4Address("TCP", host, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        protocol.makeConnection(transport)
        return protocol, transport

    def test_caps_total_and_per_address(self):
        from inspectord.api import limits

        h = Harness()
        factory = limits.LimitedFactory(make_site(h.api.app.resource(), 1024, Clock()), max_connections=10, max_per_address=4)
        flood = [self.connect(factory, "192.0.2.66") for _ in range(6)]
        self.assertEqual([t.disconnecting or t.disconnected for _, t in flood], [False] * 4 + [True] * 2)
        flood[5][0].connectionLost(None)  # a refused connection going away changes nothing
        self.assertEqual((factory.admitted, factory.per_address["192.0.2.66"], factory.refused), (4, 4, 2))
        others = [self.connect(factory, "192.0.2.{}".format(i)) for i in range(1, 9)]
        open_ = [t for _, t in others if not (t.disconnecting or t.disconnected)]
        self.assertEqual(len(open_), 6)  # 4 + 6 = 10 in total
        # Closing connections frees their places.
        for protocol, _ in flood[:4]:
            protocol.connectionLost(None)
        self.assertEqual(factory.per_address.get("192.0.2.66"), None)
        _, transport = self.connect(factory, "192.0.2.66")
        self.assertFalse(transport.disconnecting)

    def test_speaks_for_the_site_in_tls_protocol_negotiation(self):
        # Without it, a TLS listener refuses every client offering ALPN (requests, IPA).
        from twisted.internet.interfaces import IProtocolNegotiationFactory

        from inspectord.api import limits

        h = Harness()
        factory = limits.LimitedFactory(make_site(h.api.app.resource(), 1024, Clock()))
        self.assertTrue(IProtocolNegotiationFactory.providedBy(factory))
        self.assertIn(b"http/1.1", factory.acceptableProtocols())

    def test_cap_below_file_limit(self):
        import resource

        from inspectord.api import limits

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.assertLessEqual(limits.connection_cap(10 ** 9), max(16, soft - limits.FD_RESERVE))


class DeadlineTests(HostileCase):
    def channel(self):
        self.clock = Clock()
        site = make_site(Harness().api.app.resource(), 1024, self.clock)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def test_trickled_headers_dropped(self):
        from inspectord.api import limits

        channel, transport = self.channel()
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ":
            self.clock.advance(0.5)
            channel.dataReceived(bytes([byte]))
            if transport.disconnected:
                break
        self.assertTrue(transport.disconnected)
        self.assertLessEqual(self.clock.seconds(), limits.HEADER_TIMEOUT + 0.5)
        self.assertJSONError(parse_response(transport.value()), 408)

    def test_idle_connection_dropped(self):
        from inspectord.api import limits

        channel, transport = self.channel()
        self.clock.advance(limits.HEADER_TIMEOUT)
        self.assertTrue(transport.disconnected)

    def test_trickled_body_dropped(self):
        from inspectord.api import limits

        channel, transport = self.channel()
        channel.dataReceived(b"POST /v1/continue HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            self.clock.advance(1)
            channel.dataReceived(b"x")
            if transport.disconnected:
                break
        self.assertTrue(transport.disconnected)
        self.assertLessEqual(self.clock.seconds(), limits.BODY_TIMEOUT + 1)

    def test_keep_alive_requests_each_get_their_deadline(self):
        from inspectord.api import limits

        channel, transport = self.channel()
        for _ in range(3):
            channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.clock.advance(limits.HEADER_TIMEOUT - 1)
        self.assertFalse(transport.disconnected)
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 3)
