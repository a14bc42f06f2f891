"""Operating inspectord for real: /metrics, /healthcheck and the /ui status page in headless Chromium.

A real ``twistd inspectord`` against the real Ironic; the page is loaded by
Debian's chromium through chromium-driver (selenium) during a real
introspection.  Set ``INSPECTORD_SCREENSHOT_DIR`` to keep the screenshots
(relative to the checkout; the README's come from ``INSPECTORD_SCREENSHOT_DIR=doc/source/images``).
"""

import os
import shutil
import tempfile
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial import unittest

from devenv import browser
from tests.integration.base import IntegrationCase, fixture, ipa_payload, new_macs

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# The checkout this test file is in.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def scrape(url):
    with _HTTP.open(url + "/metrics", timeout=30) as r:
        assert r.status == 200, r.status
        content_type = r.headers["Content-Type"]
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, content_type, text


def sample(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def lldp_payload(macs):
    data = ipa_payload(macs)
    data["inventory"]["interfaces"][0]["lldp"] = fixture("lldp-switches.json")["switches"]["cisco-nexus-93180yc-fx"]["tlvs"]
    return data


class MetricsAndHealthTests(IntegrationCase):
    def setUp(self):
        self.disable_file = os.path.join(tempfile.mkdtemp(prefix="inspectord-hc-"), "disabled")
        self.addCleanup(shutil.rmtree, os.path.dirname(self.disable_file), True)
        self.extra_config = (
            "\n[healthcheck]\nenabled = true\nbackends = disable_by_file\ndisable_by_file_path = {}\n".format(
                self.disable_file
            )
        )
        super().setUp()

    def test_metrics_move_with_a_real_introspection(self):
        before, content_type, _ = scrape(self.inspectord.url)
        self.assertTrue(content_type.startswith("text/plain; version="), content_type)
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        self.start_and_wait(name, uuid)
        status, _, body = self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))
        self.assertEqual((status, body), (200, {"uuid": uuid}))
        self.assertEqual(self.inspectord.wait_finished(uuid)["state"], "finished")
        after, _, text = scrape(self.inspectord.url)

        def moved(name, **labels):
            return sample(after, name, **labels) - sample(before, name, **labels)

        self.assertEqual(moved("inspectord_introspections_started_total"), 1)
        self.assertEqual(moved("inspectord_introspections_finished_total"), 1)
        self.assertEqual(moved("inspectord_introspections_failed_total", reason="processing"), 0)
        self.assertEqual(moved("inspectord_callback_duration_seconds_count", result="2xx"), 1)
        self.assertGreater(moved("inspectord_callback_duration_seconds_sum", result="2xx"), 0)
        self.assertEqual(sample(after, "inspectord_nodes", state="finished"), 1)
        # By name, then by UUID while processing: both are the node endpoint.
        self.assertGreaterEqual(
            moved("inspectord_ironic_requests_total", method="GET", endpoint="/v1/nodes/{node}", result="200"), 1
        )
        self.assertGreaterEqual(
            moved("inspectord_ironic_requests_total", method="PATCH", endpoint="/v1/nodes/{node}", result="200"), 1
        )
        self.assertGreaterEqual(
            moved("inspectord_ironic_request_duration_seconds_count", method="PUT",
                  endpoint="/v1/nodes/{node}/states/power"), 2  # reboot, then power off
        )
        self.assertEqual(moved("inspectord_http_requests_total", method="POST", route="/v1/continue", code="200"), 1)
        self.assertEqual(
            moved("inspectord_http_requests_total", method="POST", route="/v1/introspection/<node_id>", code="202"), 1
        )
        self.assertGreater(moved("inspectord_db_statement_duration_seconds_count", statement="UPDATE"), 0)
        self.assertGreater(sample(after, "inspectord_db_pool_max_threads"), 0)
        self.assertGreater(sample(after, "process_resident_memory_bytes"), 0)
        self.assertNotIn(uuid, text)
        self.assertNotIn(name, text)

    def test_healthcheck_as_ironic_inspector_and_detailed(self):
        status, headers, body = self.inspectord.call("GET", "/healthcheck")
        self.assertEqual((status, body), (200, "OK"))
        with open(self.disable_file, "w"):
            pass
        status, _, body = self.inspectord.call("GET", "/healthcheck")
        self.assertEqual((status, body), (503, "DISABLED BY FILE"))
        os.unlink(self.disable_file)
        status, _, body = self.inspectord.call("GET", "/healthcheck?detail=1")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["status"], "ok", body)
        self.assertTrue(body["database"]["ok"])
        self.assertEqual(body["database"]["backend"], "sqlite")
        self.assertTrue(body["ironic"]["ok"], body)
        major, minor = body["ironic"]["api_version"].split(".")
        self.assertEqual(major, "1")
        self.assertGreaterEqual(int(minor), 46)  # inspectord's default; Ironic 39 is far past it
        self.assertEqual(body["pxe_filter"]["driver"], "noop")
        self.assertGreater(body["uptime_seconds"], 0)


class StatusPageBrowserTests(IntegrationCase):
    """The page in real headless Chromium, during real introspections."""

    def setUp(self):
        if browser.find_chromium() is None:
            raise unittest.SkipTest("chromium and chromium-driver are not installed (tools/bootstrap installs them)")
        super().setUp()
        # A relative directory is taken from the checkout (trial runs the tests in _trial_temp).
        self.shots = os.path.join(_CHECKOUT, os.environ["INSPECTORD_SCREENSHOT_DIR"]) if os.environ.get(
            "INSPECTORD_SCREENSHOT_DIR") else os.path.join(self.workdir, "screenshots")
        os.makedirs(self.shots, exist_ok=True)

    def open_browser(self, width, height):
        driver = browser.start_chromium(max(width, 800), height)
        self.addCleanup(driver.quit)
        driver.set_page_load_timeout(60)
        if width < 800:
            # Headless windows have a minimum width: a phone's viewport is emulated.
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
            )
        return driver

    def wait_for(self, predicate, timeout=30, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.2)
        self.fail("{} not met within {} s".format(what, timeout))

    def check_layout(self, driver, path, width):
        """The screenshot is the window's size, not blank, and nothing overflows or overlaps."""
        driver.save_screenshot(path)
        with open(path, "rb") as f:
            png_width, png_height, rows = browser.decode_png(f.read())
        self.assertEqual(png_width, driver.execute_script("return window.innerWidth"))
        self.assertEqual(png_height, driver.execute_script("return window.innerHeight"))
        colours = {pixel for row in rows[::4] for pixel in row[::4]}
        self.assertGreater(len(colours), 8, "screenshot looks blank")
        white = sum(1 for row in rows[::4] for pixel in row[::4] if pixel == (255, 255, 255))
        total = sum(1 for row in rows[::4] for _ in row[::4])
        self.assertLess(white / total, 0.97, "screenshot is almost all background")
        self.assertLessEqual(driver.execute_script("return document.documentElement.scrollWidth"), width,
                             "the page scrolls sideways")
        overlaps = driver.execute_script(
            """
            function boxes(selector){return Array.from(document.querySelectorAll(selector)).map(function(e){
              var r=e.getBoundingClientRect();return {e:e,l:r.left,t:r.top,r:r.right,b:r.bottom};});}
            function hit(a,b){return a.l<b.r-0.5&&b.l<a.r-0.5&&a.t<b.b-0.5&&b.t<a.b-0.5;}
            var found=[];
            var blocks=boxes('header, main > *, #live > *');
            for(var i=0;i<blocks.length;i++)for(var j=i+1;j<blocks.length;j++)
              if(!blocks[i].e.contains(blocks[j].e)&&!blocks[j].e.contains(blocks[i].e)&&hit(blocks[i],blocks[j]))
                found.push(blocks[i].e.tagName+'#'+blocks[i].e.id+' / '+blocks[j].e.tagName+'#'+blocks[j].e.id);
            document.querySelectorAll('tr').forEach(function(tr){
              var mine=Array.from(tr.children).map(function(c){var r=c.getBoundingClientRect();
                return {e:c,l:r.left,t:r.top,r:r.right,b:r.bottom};});
              for(var i=0;i<mine.length;i++)for(var j=i+1;j<mine.length;j++)
                if(hit(mine[i],mine[j]))found.push('cells of a row in #'+tr.closest('table').id);
            });
            return found;
            """
        )
        self.assertEqual(overlaps, [])
        return rows

    def test_status_page_during_real_introspections(self):
        from selenium.webdriver.common.by import By

        url = self.inspectord.url
        # One finished (with LLDP data), one failed by the ramdisk, two waiting.
        done_macs = new_macs(2)
        done, done_name = self.enroll(done_macs[:1], name="rack1-u07")
        self.start_and_wait(done_name, done)
        self.assertEqual(self.inspectord.call("POST", "/v1/continue", lldp_payload(done_macs))[0], 200)
        self.inspectord.wait_finished(done)
        failed_macs = new_macs(1)
        failed, failed_name = self.enroll(failed_macs, name="rack1-u09")
        self.start_and_wait(failed_name, failed)
        self.inspectord.call("POST", "/v1/continue", ipa_payload(failed_macs, "ipa-payload-collector-error.json"))
        self.inspectord.wait_finished(failed)
        waiting = {}
        for name in ("rack1-u11", "rack1-u12"):
            macs = new_macs(1)
            uuid, _ = self.enroll(macs, name=name)
            self.start_and_wait(name, uuid)
            waiting[name] = (uuid, macs)

        driver = self.open_browser(1280, 1000)
        driver.get(url + "/ui")
        self.assertEqual(driver.title, "Introspection status · inspectord")
        active = driver.find_element(By.ID, "active-nodes")
        active_rows = active.find_elements(By.CSS_SELECTOR, "tbody tr")
        self.assertEqual(len(active_rows), 2)
        headers = [th.text for th in active.find_elements(By.CSS_SELECTOR, "thead th")]
        self.assertEqual(headers, ["Node", "State", "Started", "Elapsed", "DHCP", "Last error"])
        text = active.text
        self.assertIn("rack1-u11", text)
        self.assertIn("waiting", text)
        self.assertIn("not recorded", text)  # the noop filter records no DHCP requests
        recent = driver.find_element(By.ID, "recent-nodes").text
        self.assertIn("rack1-u07", recent)
        self.assertIn("finished", recent)
        self.assertIn("rack1-u09", recent)
        self.assertIn("dmidecode", recent)  # the ramdisk's error
        self.check_layout(driver, os.path.join(self.shots, "ui-status.png"), 1280)

        # The page refreshes itself: a node that finishes moves to "Recently finished".
        uuid, macs = waiting["rack1-u12"]
        self.assertEqual(self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))[0], 200)
        self.inspectord.wait_finished(uuid)
        self.wait_for(
            lambda: "rack1-u12" in driver.find_element(By.ID, "recent-nodes").text,
            timeout=20, what="the finished node shown without a reload",
        )
        self.assertIn("Updated", driver.find_element(By.ID, "refresh-status").text)

        # A node's page: status and the stored data summarised.
        driver.find_element(By.LINK_TEXT, "rack1-u07").click()
        self.wait_for(lambda: driver.title.startswith("Node rack1-u07"), what="the node page")
        facts = driver.find_element(By.ID, "hardware-facts").text
        self.assertIn("2 × Intel(R) Xeon(R) Processor (x86_64)", facts)
        self.assertIn("24576 MiB", facts)
        self.assertIn("/dev/vda", driver.find_element(By.ID, "disk-table").text)
        nics = driver.find_element(By.ID, "nic-table").text
        self.assertIn(done_macs[0], nics)
        self.assertIn("leaf-r12-a port Ethernet1/17", nics)
        self.assertIn(done, driver.find_element(By.ID, "node-status").text)
        self.check_layout(driver, os.path.join(self.shots, "ui-node.png"), 1280)

        # On a phone: rows become cards, nothing scrolls sideways.
        phone = self.open_browser(390, 844)
        phone.get(url + "/ui")
        cell = phone.find_element(By.CSS_SELECTOR, "#recent-nodes tbody td")
        self.assertEqual(phone.execute_script("return getComputedStyle(arguments[0]).display", cell), "block")
        self.check_layout(phone, os.path.join(self.shots, "ui-status-phone.png"), 390)
