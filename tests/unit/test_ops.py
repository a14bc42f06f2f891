"""Operating inspectord: /metrics, /healthcheck, the /ui status page, node fields in logs."""

import io
import json
import os
import re

from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet import defer, task
from twisted.logger import Logger, jsonFileLogObserver
from twisted.test.proto_helpers import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord import metrics as metrics_mod
from inspectord.api import auth as api_auth
from inspectord.api.app import API, make_site
from inspectord.dhcp.sniffer import DHCPSeen
from inspectord.health import HealthCheck, check as check_healthcheck
from inspectord.introspection import Introspection
from inspectord.ironic.client import IronicClient, static_endpoint
from inspectord.logs import NodeLogger
from inspectord.pxe.service import PXEFilterService
from inspectord.store.pool import SynchronousPool
from tests.unit.helpers import Harness, fixture, make_config

MAC = "52:54:00:aa:bb:01"


def ipa_data(mac=MAC):
    data = fixture("ipa-payload.json")
    data["inventory"]["interfaces"][0]["mac_address"] = mac
    return data


class CountingPool(SynchronousPool):
    """The synchronous pool, with the statistics the real one reports."""

    def statistics(self):
        return {"queued": 0, "busy": 0, "max": 1}


class SeenFilter:
    """A PXE filter that records DHCP requests (what the sniffer would see)."""

    def __init__(self):
        self.seen = DHCPSeen()
        self.notified = 0

    def notify(self):
        self.notified += 1

    def dhcp_seen(self, mac):
        return self.seen.get(mac)

    def health(self):
        return {"driver": "fake", "state": "ok", "allowed": 2, "denied": 5, "consecutive_failures": 0,
                "last_success": 1_800_000_000.0}


class TokenAuth:
    """Allows requests carrying ``Authorization: Bearer good``; 401 with a challenge otherwise."""

    def __init__(self):
        self.rules = []

    async def check(self, request, rule):
        self.rules.append(rule)
        if rule is None:
            return None
        if request.getHeader("authorization") != "Bearer good":
            raise api_auth.Unauthorized("Authentication required", 'Basic realm="inspectord"')
        return None


class OpsHarness(Harness):
    """The unit harness with metrics, health and a DHCP-recording filter wired in."""

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self.metrics = metrics_mod.Metrics(self.clock)
        self.store._pool = self.db_pool = CountingPool()
        self.metrics.watch_store(self.store.engine, self.db_pool)
        self.ironic = IronicClient(
            self.ironic_http, static_endpoint("http://ironic.test:6385"), self.clock,
            max_retries=2, retry_interval=0.1, metrics=self.metrics,
        )
        self.filter = SeenFilter()
        self.metrics.watch_pxe_filter(self.filter)
        self.introspection = Introspection(
            self.store, self.ironic, self.config, self.clock, pxe_filter=self.filter, metrics=self.metrics
        )
        self.health = HealthCheck(
            self.config.healthcheck, self.clock, engine=self.store.engine, db_pool=self.db_pool,
            ironic=self.ironic, pxe_filter=self.filter,
        )
        self.auth = api_auth.NoAuth("127.0.0.1")
        self.api = API(self.introspection, self.store, self.ironic, self.config, self.auth,
                       metrics=self.metrics, health=self.health)
        self.http = StubTreq(self.api.app.resource())

    def use_auth(self, auth):
        self.api.auth = auth

    def scrape(self, path="/metrics", headers=None):
        code, response_headers, body = self.request("GET", path, headers=headers)
        if code != 200:
            raise AssertionError("{} answered {}: {}".format(path, code, body))
        families = {f.name: f for f in text_string_to_metric_families(body)}
        return families, response_headers

    def introspect(self, name="node-1", mac=MAC, **node):
        uuid = self.fake.add_node(name=name, macs=[mac], **node)
        code, _, body = self.request("POST", "/v1/introspection/" + uuid)
        assert code == 202, body
        return uuid


def value(families, name, **labels):
    """The sample ``name`` with ``labels`` (family name without _total/_count suffixes)."""
    for family in families.values():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


class MetricsTests(SynchronousTestCase):
    def test_introspection_counters_and_latencies_move(self):
        h = OpsHarness()
        families, headers = h.scrape()
        self.assertIn("text/plain", headers.getRawHeaders("content-type")[0])
        self.assertEqual(value(families, "inspectord_introspections_started_total"), 0)
        uuid = h.introspect()
        h.clock.advance(1)
        h.flush()
        code, _, body = h.request("POST", "/v1/continue", ipa_data())
        self.assertEqual((code, body), (200, {"uuid": uuid}))
        h.flush()
        families, _ = h.scrape()
        self.assertEqual(value(families, "inspectord_introspections_started_total"), 1)
        self.assertEqual(value(families, "inspectord_introspections_finished_total"), 1)
        self.assertEqual(value(families, "inspectord_introspections_failed_total", reason="timeout"), 0)
        self.assertEqual(value(families, "inspectord_callback_duration_seconds_count", result="2xx"), 1)
        self.assertEqual(value(families, "inspectord_nodes", state="finished"), 1)
        self.assertEqual(value(families, "inspectord_nodes", state="waiting"), 0)
        # Ironic calls by endpoint template, never by node UUID.
        self.assertEqual(
            value(families, "inspectord_ironic_requests_total", method="GET", endpoint="/v1/nodes/{node}", result="200"), 1
        )
        self.assertGreaterEqual(
            value(families, "inspectord_ironic_requests_total", method="PUT",
                  endpoint="/v1/nodes/{node}/states/power", result="202"), 1
        )
        self.assertEqual(value(families, "inspectord_ironic_request_duration_seconds_count",
                               method="GET", endpoint="/v1/nodes/{node}"), 1)
        self.assertNotIn(uuid, "\n".join(str(s.labels) for f in families.values() for s in f.samples))
        self.assertGreater(value(families, "inspectord_db_statement_duration_seconds_count", statement="SELECT"), 0)
        self.assertGreater(value(families, "inspectord_db_statement_duration_seconds_count", statement="UPDATE"), 0)
        self.assertEqual(value(families, "inspectord_db_pool_queue_depth"), 0)
        self.assertEqual(value(families, "inspectord_pxe_filter_macs", driver="fake", verdict="denied"), 5)
        self.assertEqual(value(families, "inspectord_pxe_filter_up", driver="fake"), 1)
        self.assertEqual(value(families, "inspectord_build_info", version="0.1.0"), 1)

    def test_failures_by_reason(self):
        h = OpsHarness(DEFAULT__timeout=60)
        timed_out = h.introspect("slow", "52:54:00:aa:bb:02")
        aborted = h.introspect("aborted", "52:54:00:aa:bb:03")
        broken = h.introspect("broken", "52:54:00:aa:bb:04")
        h.flush()
        code, _, _ = h.request("POST", "/v1/introspection/{}/abort".format(aborted))
        self.assertEqual(code, 202)
        data = ipa_data("52:54:00:aa:bb:04")
        data["error"] = "the ramdisk failed"
        code, _, _ = h.request("POST", "/v1/continue", data)
        self.assertEqual(code, 400)
        h.clock.advance(61)
        self.successResultOf(defer.Deferred.fromCoroutine(h.introspection.check_timeouts()))
        families, _ = h.scrape()
        for reason, count in (("timeout", 1), ("aborted", 1), ("ramdisk", 1), ("power", 0)):
            self.assertEqual(value(families, "inspectord_introspections_failed_total", reason=reason), count, reason)
        self.assertEqual(value(families, "inspectord_callback_duration_seconds_count", result="4xx"), 1)
        self.assertEqual(value(families, "inspectord_nodes", state="error"), 3)
        self.assertEqual(h.store.thd_get_node(broken).state, "error")
        self.assertEqual(h.store.thd_get_node(timed_out).state, "error")

    def test_ironic_retries_and_connection_errors(self):
        h = OpsHarness()
        uuid = h.fake.add_node(name="n", macs=[MAC])
        h.fake.fail("GET", "/v1/nodes/", 503, times=1)
        d = defer.ensureDeferred(h.ironic.get_node(uuid))
        h.clock.advance(1)
        h.flush()
        self.assertEqual(self.successResultOf(d)["uuid"], uuid)
        families, _ = h.scrape()
        self.assertEqual(value(families, "inspectord_ironic_retries_total", method="GET", endpoint="/v1/nodes/{node}"), 1)
        self.assertEqual(value(families, "inspectord_ironic_requests_total", method="GET",
                               endpoint="/v1/nodes/{node}", result="503"), 1)

    def test_endpoint_templates(self):
        self.assertEqual(metrics_mod.ironic_endpoint("/v1/nodes/node-7/states/power"), "/v1/nodes/{node}/states/power")
        self.assertEqual(metrics_mod.ironic_endpoint("/v1/nodes/x/traits/CUSTOM_A"), "/v1/nodes/{node}/traits/{trait}")
        self.assertEqual(metrics_mod.ironic_endpoint("/v1/ports"), "/v1/ports")
        self.assertEqual(metrics_mod.ironic_endpoint("/"), "/")

    def test_every_sample_parses_and_follows_conventions(self):
        h = OpsHarness()
        families, _ = h.scrape()
        for name, family in families.items():
            if not name.startswith("inspectord_"):
                continue
            if family.type == "counter":
                self.assertFalse(name.endswith("_total"), name)  # the parser strips it
                self.assertTrue(any(s.name == name + "_total" for s in family.samples) or not family.samples, name)
            if family.type == "histogram":
                self.assertTrue(name.endswith("_seconds"), name)

    def test_registry_is_per_instance(self):
        one, two = metrics_mod.Metrics(), metrics_mod.Metrics()
        one.introspection_started()
        self.assertEqual(one.registry.get_sample_value("inspectord_introspections_started_total"), 1)
        self.assertEqual(two.registry.get_sample_value("inspectord_introspections_started_total"), 0)

    def test_no_metrics_default_does_nothing(self):
        self.assertIsNone(metrics_mod.NO_METRICS.introspection_failed("timeout"))

    def test_node_count_failure_keeps_the_scrape_answering(self):
        h = OpsHarness()
        h.scrape()
        h.store.engine.dispose()

        class Broken(CountingPool):
            def run(self, f, *args, **kwargs):
                return defer.fail(RuntimeError("database gone"))

        h.metrics._sources.db_pool = Broken()
        families, _ = h.scrape()
        self.assertEqual(value(families, "inspectord_nodes", state="finished"), 0)  # the counts read before
        self.flushLoggedErrors()

    def test_metrics_can_be_disabled_moved_or_authenticated(self):
        h = OpsHarness(metrics__enabled=False)
        self.assertEqual(h.request("GET", "/metrics")[0], 404)
        h = OpsHarness(metrics__listen_port=9464)
        self.assertEqual(h.request("GET", "/metrics")[0], 404)
        h = OpsHarness(metrics__require_auth=True)
        h.use_auth(TokenAuth())
        code, headers, _ = h.request("GET", "/metrics")
        self.assertEqual(code, 401)
        self.assertTrue(headers.getRawHeaders("www-authenticate"))
        self.assertEqual(h.request("GET", "/metrics", headers={"Authorization": "Bearer good"})[0], 200)


class SiteMetricsTests(SynchronousTestCase):
    """HTTP requests counted by route template, through a real Site and HTTP channel (in memory)."""

    def serve(self, site, raw):
        channel = site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(raw)
        channel.connectionLost(None)
        return transport.value()

    def test_routes_and_codes(self):
        h = OpsHarness()
        site = make_site(h.api.app.resource(), 1024, metrics=h.metrics, clock=h.clock)
        uuid = h.fake.add_node(name="n", macs=[MAC])
        out = self.serve(site, "GET /v1/introspection/{} HTTP/1.1\r\nHost: x\r\n\r\n".format(uuid).encode())
        self.assertIn(b"404", out.split(b"\r\n")[0])
        self.serve(site, b"GET /v1 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.serve(site, b"GET /no/such/thing HTTP/1.1\r\nHost: x\r\n\r\n")
        families, _ = h.scrape()
        self.assertEqual(value(families, "inspectord_http_requests_total", method="GET",
                               route="/v1/introspection/<node_id>", code="404"), 1)
        self.assertEqual(value(families, "inspectord_http_requests_total", method="GET", route="/v1", code="200"), 1)
        self.assertEqual(value(families, "inspectord_http_requests_total", method="GET", route="other", code="404"), 1)
        self.assertEqual(value(families, "inspectord_http_request_duration_seconds_count", method="GET", route="/v1"), 1)

    def test_a_routed_request_is_not_matched_again(self):
        h = OpsHarness()
        site = make_site(h.api.app.resource(), 1024, metrics=h.metrics, clock=h.clock)
        matched = []
        routes = site._routes

        class Counting:
            def match(self, *args, **kwargs):
                matched.append(args)
                return routes.match(*args, **kwargs)

        site._routes = Counting()
        self.serve(site, b"GET /v1 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(matched, [])
        self.serve(site, b"GET /no/such/thing HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(len(matched), 1)  # no handler ran: matched to tell "other"
        families, _ = h.scrape()
        self.assertEqual(value(families, "inspectord_http_requests_total", method="GET", route="/v1", code="200"), 1)
        self.assertEqual(value(families, "inspectord_http_requests_total", method="GET", route="other", code="404"), 1)


class PXEMetricsTests(SynchronousTestCase):
    def test_syncs_and_dhcp_verdicts(self):
        clock = task.Clock()
        m = metrics_mod.Metrics(clock)

        class Driver:
            name = "fake"
            fail = None

            async def apply(self, state, previous=None):
                if self.fail:
                    raise RuntimeError("no permission")

            async def stop(self):
                pass

        class Store:
            def filter_macs(self):
                return defer.succeed(([MAC], 1))

        class Ports:
            async def list_all_port_macs(self):
                return [MAC, "52:54:00:aa:bb:09"]

        driver = Driver()
        service = PXEFilterService(driver, Store(), Ports(), clock, sync_period=0, metrics=m)
        m.watch_pxe_filter(service)
        service.startService()
        self.addCleanup(service.stopService)
        clock.advance(1)
        driver.fail = True
        service.notify()
        service.sync()
        clock.advance(1)
        families = {f.name: f for f in text_string_to_metric_families(self.successResultOf(
            defer.Deferred.fromCoroutine(m.render())).decode())}
        self.assertGreaterEqual(value(families, "inspectord_pxe_filter_syncs_total", driver="fake", result="success"), 1)
        self.assertEqual(value(families, "inspectord_pxe_filter_syncs_total", driver="fake", result="failure"), 1)
        self.assertEqual(value(families, "inspectord_pxe_filter_up", driver="fake"), 0)
        self.assertGreaterEqual(value(families, "inspectord_pxe_filter_sync_duration_seconds_count", driver="fake"), 2)
        self.flushLoggedErrors(RuntimeError)

        seen = DHCPSeen(observe=lambda allowed: m.dhcp_request("dnsmasq", allowed))
        seen.record(MAC, "discover", True, 1.0)
        seen.record("52:54:00:aa:bb:09", "discover", False, 2.0)
        seen.record("52:54:00:aa:bb:09", "request", False, 3.0)
        self.assertEqual(m.registry.get_sample_value(
            "inspectord_dhcp_requests_total", {"driver": "dnsmasq", "verdict": "blocked"}), 2)
        self.assertEqual(m.registry.get_sample_value(
            "inspectord_dhcp_requests_total", {"driver": "dnsmasq", "verdict": "allowed"}), 1)


class HealthcheckTests(SynchronousTestCase):
    def test_off_by_default_as_ironic_inspector(self):
        h = OpsHarness()
        self.assertEqual(h.request("GET", "/healthcheck")[0], 404)

    def test_ok_and_head(self):
        h = OpsHarness(healthcheck__enabled=True)
        code, headers, body = h.request("GET", "/healthcheck")
        self.assertEqual((code, body), (200, "OK"))
        self.assertTrue(headers.getRawHeaders("content-type")[0].startswith("text/plain"))
        self.assertEqual(h.request("HEAD", "/healthcheck")[0], 204)

    def test_disabled_by_file(self):
        path = os.path.abspath(self.mktemp())
        h = OpsHarness(healthcheck__enabled=True, healthcheck__backends=["disable_by_file"],
                       healthcheck__disable_by_file_path=path)
        self.assertEqual(h.request("GET", "/healthcheck")[:3:2], (200, "OK"))
        open(path, "w").close()
        self.assertEqual(h.request("GET", "/healthcheck")[:3:2], (503, "DISABLED BY FILE"))
        self.assertEqual(h.request("HEAD", "/healthcheck")[0], 503)
        code, _, body = h.request("GET", "/healthcheck", headers={"Accept": "application/json"})
        self.assertEqual(code, 503)
        self.assertEqual(body["reasons"], ["DISABLED BY FILE"])
        os.unlink(path)
        self.assertEqual(h.request("GET", "/healthcheck")[0], 200)

    def test_disable_by_file_path_alone_applies(self):
        path = os.path.abspath(self.mktemp())
        open(path, "w").close()
        h = OpsHarness(healthcheck__enabled=True, healthcheck__disable_by_file_path=path)
        self.assertEqual(h.request("GET", "/healthcheck")[:3:2], (503, "DISABLED BY FILE"))

    def test_enable_by_files_and_ports(self):
        path = os.path.abspath(self.mktemp())
        h = OpsHarness(healthcheck__enabled=True, healthcheck__backends=["enable_by_files"],
                       healthcheck__enable_by_file_paths=[path])
        self.assertEqual(h.request("GET", "/healthcheck")[:3:2], (503, "FILE PATH MISSING"))
        open(path, "w").close()
        self.assertEqual(h.request("GET", "/healthcheck")[0], 200)
        verdict = HealthCheck(make_config(healthcheck__backends=["disable_by_files_ports"],
                                          healthcheck__disable_by_file_paths=["5050:" + path]).healthcheck,
                              task.Clock()).verdict
        self.assertFalse(verdict(5050).healthy)
        self.assertTrue(verdict(5051).healthy)

    def test_source_ranges_and_proxies(self):
        h = OpsHarness(healthcheck__enabled=True, healthcheck__allowed_source_ranges=["10.0.0.0/8"])
        self.assertEqual(h.request("GET", "/healthcheck")[0], 404)  # StubTreq's client is 127.0.0.1
        h = OpsHarness(healthcheck__enabled=True, healthcheck__ignore_proxied_requests=True)
        self.assertEqual(h.request("GET", "/healthcheck", headers={"X-Forwarded-For": "192.0.2.1"})[0], 404)
        self.assertEqual(h.request("GET", "/healthcheck")[0], 200)

    def test_detail_names_every_dependency(self):
        h = OpsHarness(healthcheck__enabled=True)
        h.clock.advance(42)
        code, headers, body = h.request("GET", "/healthcheck?detail=1")
        self.assertEqual(code, 200, body)
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["reasons"], ["OK"])
        self.assertEqual(body["version"], "0.1.0")
        self.assertEqual(body["uptime_seconds"], 42)
        self.assertEqual(body["database"]["backend"], "sqlite")
        self.assertTrue(body["database"]["ok"])
        self.assertEqual(body["ironic"]["api_version"], "1.96")
        self.assertTrue(body["pxe_filter"]["ok"])
        self.assertEqual(body["pxe_filter"]["last_success"], "2027-01-15T08:00:00+00:00")
        self.assertEqual(body["bmc_verifier"], {"enabled": False})

    def test_detail_reports_a_failing_ironic(self):
        h = OpsHarness(healthcheck__enabled=True)
        h.fake.fail("GET", "/", 503, times=1)
        code, _, body = h.request("GET", "/healthcheck?detail=1")
        self.assertEqual(code, 200)  # still in service: only the backends take it out
        self.assertEqual(body["status"], "degraded")
        self.assertFalse(body["ironic"]["ok"])
        self.assertIn("503", body["ironic"]["error"])

    def test_detail_is_authenticated(self):
        h = OpsHarness(healthcheck__enabled=True)
        h.use_auth(TokenAuth())
        code, headers, body = h.request("GET", "/healthcheck?detail=1")
        self.assertEqual(code, 401)
        self.assertTrue(headers.getRawHeaders("www-authenticate"))
        self.assertIn("message", body["error"])
        # JSON without credentials: oslo.middleware's short answer.
        code, _, body = h.request("GET", "/healthcheck", headers={"Accept": "application/json"})
        self.assertEqual((code, body), (200, {"reasons": ["OK"], "detailed": False}))
        code, _, body = h.request("GET", "/healthcheck",
                                  headers={"Accept": "application/json", "Authorization": "Bearer good"})
        self.assertEqual(code, 200)
        self.assertTrue(body["detailed"])
        self.assertIn("database", body)
        # The plain check stays public.
        self.assertEqual(h.request("GET", "/healthcheck")[:3:2], (200, "OK"))

    def test_config_checks(self):
        with self.assertRaises(errors.ConfigError) as e:
            make_config(healthcheck__backends=["nosuch"])
        self.assertIn("nosuch", str(e.exception))
        with self.assertRaises(errors.ConfigError):
            make_config(healthcheck__disable_by_file_paths=["nonsense"])
        with self.assertRaises(errors.ConfigError):
            make_config(healthcheck__allowed_source_ranges=["not-a-network"])
        check_healthcheck(make_config(healthcheck__backends=["disable_by_file"]).healthcheck)

    def test_upstream_path_option_is_accepted(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[DEFAULT]\nauth_strategy = noauth\n[healthcheck]\nenabled = true\npath = /healthcheck\ndisable_by_file_path = /tmp/x\n"
                    "[ironic]\nauth_type = none\nendpoint_override = http://127.0.0.1:6385\n")
        from inspectord import config as config_mod

        config = config_mod.load(path)
        self.assertIn("[healthcheck]path", config.ignored_options)
        self.assertEqual(config.healthcheck.disable_by_file_path, "/tmp/x")


class StatusPageTests(SynchronousTestCase):
    def page(self, h, path, **headers):
        """What a browser gets (it asks for HTML)."""
        headers.setdefault("Accept", "text/html,application/xhtml+xml")
        code, response_headers, body = h.request("GET", path, headers=headers)
        return code, response_headers, body

    def test_errors_are_json_for_other_clients(self):
        h = OpsHarness()
        code, _, body = h.request("GET", "/ui/nodes/00000000-0000-0000-0000-000000000000")
        self.assertEqual(code, 404)
        self.assertIn("was not found", body["error"]["message"])

    def test_overview_lists_active_and_finished_with_dhcp_diagnosis(self):
        h = OpsHarness()
        done = h.introspect("done", MAC)
        h.flush()
        self.assertEqual(h.request("POST", "/v1/continue", ipa_data())[0], 200)
        h.flush()
        never = h.introspect("never-booted", "52:54:00:aa:bb:05")
        blocked = h.introspect("blocked", "52:54:00:aa:bb:06")
        answered = h.introspect("answered", "52:54:00:aa:bb:07")
        h.flush()
        h.filter.seen.record("52:54:00:aa:bb:06", "discover", False, h.clock.seconds())
        h.filter.seen.record("52:54:00:aa:bb:07", "request", True, h.clock.seconds())
        h.clock.advance(125)
        code, headers, body = self.page(h, "/ui")
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("content-type"), ["text/html; charset=utf-8"])
        csp = headers.getRawHeaders("content-security-policy")[0]
        nonce = re.search(r"script-src 'nonce-([^']+)'", csp).group(1)
        self.assertIn('<script nonce="{}">'.format(nonce), body)
        active = body.split('id="active-nodes"')[1].split("</table>")[0]
        recent = body.split('id="recent-nodes"')[1].split("</table>")[0]
        self.assertIn("never-booted", active)
        self.assertNotIn(">done<", active)
        self.assertIn(">done<", recent)
        self.assertIn('href="/ui/nodes/{}"'.format(done), recent)
        rows = {name: row for row in active.split("<tr>")[2:] for name in ("never-booted", "blocked", "answered")
                if ">{}<".format(name) in row}
        self.assertIn("never seen", rows["never-booted"])
        self.assertIn("blocked", rows["blocked"])
        self.assertIn("52:54:00:aa:bb:06", rows["blocked"])
        self.assertIn("answered", rows["answered"])
        self.assertIn("2m 05s", rows["answered"])  # elapsed
        self.assertIn('<th scope="col">DHCP</th>', active)
        self.assertIn('lang="en"', body)
        self.assertIn('name="viewport"', body)
        for uuid in (never, blocked, answered):
            self.assertIn(uuid, active)

    def test_errors_are_escaped(self):
        h = OpsHarness()
        uuid = h.introspect("x<script>", MAC)
        h.flush()
        data = ipa_data()
        data["error"] = "<img src=x onerror=alert(1)>"
        h.request("POST", "/v1/continue", data)
        h.flush()
        _, _, body = self.page(h, "/ui")
        self.assertNotIn("<img src=x", body)
        self.assertIn("&lt;img src=x onerror=alert(1)&gt;", body)
        self.assertNotIn("x<script>", body)
        _, _, detail = self.page(h, "/ui/nodes/" + uuid)
        self.assertNotIn("<img src=x", detail)

    def test_node_page_summarises_the_stored_data(self):
        h = OpsHarness(processing__store_data="database")
        uuid = h.introspect("rack1-u7", MAC)
        h.flush()
        data = ipa_data()
        switch = fixture("lldp-switches.json")["switches"]["cisco-nexus-93180yc-fx"]
        data["inventory"]["interfaces"][0]["lldp"] = switch["tlvs"]
        self.assertEqual(h.request("POST", "/v1/continue", data)[0], 200)
        h.flush()
        code, _, body = self.page(h, "/ui/nodes/rack1-u7")
        self.assertEqual(code, 200, body)
        self.assertIn("<h1>Node rack1-u7</h1>", body)
        self.assertIn(uuid, body)
        self.assertIn("2 × Intel(R) Xeon(R) Processor (x86_64)", body)
        self.assertIn("24576 MiB", body)
        disks = body.split('id="disk-table"')[1].split("</table>")[0]
        self.assertIn("/dev/vda", disks)
        self.assertIn("256 GiB", disks)
        nics = body.split('id="nic-table"')[1].split("</table>")[0]
        self.assertIn(MAC, nics)
        # The neighbour the TLVs name: system name leaf-r12-a, port Ethernet1/17, VLAN 100.
        self.assertIn("leaf-r12-a port Ethernet1/17", nics)
        self.assertIn("VLAN 100", nics)

    def test_node_page_unknown_node(self):
        h = OpsHarness()
        code, _, body = self.page(h, "/ui/nodes/00000000-0000-0000-0000-000000000000")
        self.assertEqual(code, 404)
        self.assertIn('role="alert"', body)

    def test_behind_the_api_authentication(self):
        h = OpsHarness()
        auth = TokenAuth()
        h.use_auth(auth)
        code, headers, body = self.page(h, "/ui")
        self.assertEqual(code, 401)
        self.assertEqual(headers.getRawHeaders("www-authenticate"), ['Basic realm="inspectord"'])
        self.assertIn("Authentication required", body)
        self.assertEqual(auth.rules, ["introspection:status"])
        code, _, _ = self.page(h, "/ui", Authorization="Bearer good")
        self.assertEqual(code, 200)


class NodeLogFieldsTests(SynchronousTestCase):
    def test_node_lines_carry_mac_and_bmc_address(self):
        h = OpsHarness()
        out = io.StringIO()
        observer = jsonFileLogObserver(out)
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        uuid = h.introspect("n1", MAC, driver_info={"ipmi_address": "192.0.2.20"})
        h.flush()
        events = [json.loads(line) for line in out.getvalue().split("\x1e") if line.strip()]
        mine = [e for e in events if e.get("node") == uuid]
        self.assertGreaterEqual(len(mine), 2)  # started, waiting
        for event in mine:
            self.assertEqual(event["mac"], MAC)
            self.assertEqual(event["bmc_address"], "192.0.2.20")

    def test_explicit_fields_win_and_other_sources_are_left_alone(self):
        events = []

        class Source:
            log = NodeLogger(observer=events.append)

            def node_log_fields(self, uuid):
                return {"mac": "aa", "bmc_address": "b"}

        Source().log.info("x {node}", node="u", mac="explicit")
        self.assertEqual((events[0]["mac"], events[0]["bmc_address"]), ("explicit", "b"))
        Logger(observer=events.append).info("y {node}", node="u")
        self.assertNotIn("mac", events[1])
