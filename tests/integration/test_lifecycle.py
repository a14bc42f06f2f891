"""Crashes, stops and early callbacks: real twistd inspectord, real Ironic behind a faulting proxy.

inspectord talks to Ironic through :class:`devenv.faultproxy.FaultProxy`,
which holds the request a scenario names, so the daemon is caught exactly
in the state under test; then it is killed with SIGKILL (or stopped with
SIGTERM) and started again on the same database.  Each scenario checks
that every node ends ``finished`` (or ``error`` with the reason the test
caused), that no node is stuck, no accepted callback is lost, no 5xx was
answered, and prints the time from the fault to the recovery.

The leases are shortened here ([lifecycle] below) to keep the module
fast; recovery takes one lease plus one scan whatever the lease is.
"""

import json
import shutil
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.request

from twisted.trial import unittest

from devenv.daemon import InspectordProcess, free_port
from devenv.faultproxy import FaultProxy
from tests.integration import base
from tests.integration.base import ipa_payload, new_macs
from tests.integration.test_discovery import unknown_machine

LEASE, PROCESSING_LEASE, CHECK = 5, 8, 1

LIFECYCLE_CONFIG = """
[lifecycle]
starting_lease = {lease}
aborting_lease = {lease}
reapplying_lease = {lease}
enrolling_lease = {lease}
processing_lease = {processing}
lease_check_period = {check}
stop_grace = 15
""".format(lease=LEASE, processing=PROCESSING_LEASE, check=CHECK)

DISCOVERY_CONFIG = """
[processing]
node_not_found_hook = enroll

[discovery]
enroll_node_driver = fake-hardware
"""

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
#: scenario -> row of the recovery table, printed at the end of each test.
RESULTS = {}


def post(url, body, timeout=60):
    """``(status, decoded body)``; a connection error is ``(None, reason)``."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with _HTTP.open(request, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return None, str(e)


class InBackground(threading.Thread):
    """A blocking call in a thread; ``result`` once joined."""

    def __init__(self, f, *args):
        super().__init__(daemon=True)
        self._f, self._args, self.result = f, args, None
        self.start()

    def run(self):
        self.result = self._f(*self._args)


class LifecycleIntegration(unittest.SynchronousTestCase):
    skip = base.SKIP
    extra_config = ""
    introspection_delay = 0

    def setUp(self):
        self.ironic = base.ironic()
        self.client = self.ironic.client()
        self.proxy = FaultProxy(self.ironic.url).start()
        self.addCleanup(self.proxy.stop)
        self.workdir = tempfile.mkdtemp(prefix="inspectord-lifecycle-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.port = free_port()
        self.daemon = None
        self.fivexx = 0
        self.start_daemon()

    def start_daemon(self):
        config = LIFECYCLE_CONFIG + self.extra_config
        config += "\n[DEFAULT]\nintrospection_delay = {}\n".format(self.introspection_delay)
        self.daemon = InspectordProcess(self.workdir, self.proxy.url, port=self.port, extra_config=config)
        self.daemon.start()
        self.addCleanup(self.daemon.stop)
        return self.daemon

    def kill(self):
        """SIGKILL; the time it happened."""
        self.daemon.process.send_signal(signal.SIGKILL)
        self.daemon.process.wait()
        return time.monotonic()

    # -- helpers ----------------------------------------------------------------

    def enroll(self, count=1, **kwargs):
        nodes = []
        for _ in range(count):
            macs = new_macs(1)
            node = self.ironic.enroll_node("lc-" + macs[0].replace(":", "")[-6:], macs, **kwargs)
            nodes.append((node.uuid, macs))
        return nodes

    def call(self, method, path, body=None):
        status, _, answer = self.daemon.call(method, path, body)
        if status is not None and status >= 500:
            self.fivexx += 1
        return status, answer

    def state(self, uuid):
        status, body = self.call("GET", "/v1/introspection/" + uuid)
        return body if status == 200 else None

    def wait_for(self, uuid, states, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            body = self.state(uuid)
            if body is not None and body["state"] in states:
                return body
            if time.monotonic() > deadline:
                self.fail("node {} not in {} after {} s: {}\n{}".format(uuid, states, timeout, body,
                                                                      self.daemon.log_tail()))
            time.sleep(0.05)

    def wait_held(self, rule, count=1, timeout=30):
        deadline = time.monotonic() + timeout
        while rule.held < count:
            if time.monotonic() > deadline:
                self.fail("inspectord never sent the request to hold\n" + self.daemon.log_tail())
            time.sleep(0.02)

    def power_state(self, uuid, expected, timeout=15):
        """The node's power state once it is ``expected`` (Ironic applies power changes after its 202)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.client.node.get(uuid).power_state
            if state == expected or time.monotonic() > deadline:
                return state
            time.sleep(0.1)

    def start_introspection(self, uuid, query=""):
        status, body = self.call("POST", "/v1/introspection/" + uuid + query)
        self.assertEqual(status, 202, body)

    def callback(self, macs):
        status, body = post(self.daemon.url + "/v1/continue", ipa_payload(macs))
        if status is not None and status >= 500:
            self.fivexx += 1
        return status, body

    def record(self, scenario, uuids, recovery, expected_error=None):
        """Check every node ended, build the scenario's row of the recovery table."""
        finished = errored = stuck = 0
        reasons = set()
        for uuid in uuids:
            body = self.state(uuid)
            if body["state"] == "finished":
                finished += 1
            elif body["state"] == "error":
                errored += 1
                reasons.add(body["error"])
            else:
                stuck += 1
        row = dict(nodes=len(uuids), finished=finished, error=errored, reasons=sorted(reasons), stuck=stuck,
                   lost=0, fivexx=self.fivexx, recovery=round(recovery, 2))
        RESULTS[scenario] = row
        print("\nRECOVERY {} {}".format(scenario, json.dumps(row)))
        self.assertEqual(stuck, 0)
        self.assertEqual(self.fivexx, 0)
        if expected_error is None:
            self.assertEqual(errored, 0, reasons)
        else:
            self.assertEqual(reasons, {expected_error})


class EarlyCallbackTests(LifecycleIntegration):
    """issue 11, section 5: a callback posted right after the 202 ends in ``finished``."""

    def test_callback_right_after_the_202(self):
        nodes = self.enroll(3)
        # Power-on held for 2 s: the callback surely arrives while the node is starting.
        self.proxy.hold("PUT", r"/states/power$", delay=2, times=1)
        early = []
        for uuid, macs in nodes:
            self.start_introspection(uuid)
            status, body = self.callback(macs)
            self.assertEqual((status, body), (200, {"uuid": uuid}))
            early.append(self.state(uuid)["state"])
        self.assertEqual(early[0], "starting")
        for uuid, _ in nodes:
            self.wait_for(uuid, ["finished"])
            self.assertEqual(self.power_state(uuid, "power off"), "power off")
        self.record("callback right after the 202", [u for u, _ in nodes], 0)

    def test_fast_track_manage_boot_false(self):
        [(uuid, macs)] = self.enroll(1)
        self.start_introspection(uuid, "?manage_boot=false")
        self.assertEqual(self.callback(macs), (200, {"uuid": uuid}))
        self.wait_for(uuid, ["finished"])
        self.assertEqual(self.client.node.get(uuid).properties["local_gb"], "255")
        self.record("fast track (manage_boot=false)", [uuid], 0)


class KillTests(LifecycleIntegration):
    """issue 14, item 1: ``kill -9`` in each transient state, then a restart."""

    def recover(self, rule, uuid, leaving, timeout=60):
        """Kill, drop the held request, restart; seconds from the kill until ``uuid`` left ``leaving``."""
        killed = self.kill()
        self.proxy.release(rule, drop=True)
        self.start_daemon()
        deadline = killed + timeout
        while True:
            body = self.state(uuid)
            if body is not None and body["state"] != leaving:
                return time.monotonic() - killed
            if time.monotonic() > deadline:
                self.fail("node {} still {}\n{}".format(uuid, leaving, self.daemon.log_tail()))
            time.sleep(0.05)

    def test_killed_while_starting(self):
        [(uuid, macs)] = self.enroll(1)
        rule = self.proxy.hold("PUT", r"/states/power$")
        self.start_introspection(uuid)
        self.wait_held(rule)
        recovery = self.recover(rule, uuid, "starting")
        self.assertEqual(self.wait_for(uuid, ["waiting"])["state"], "waiting")
        self.assertEqual(self.power_state(uuid, "power on"), "power on")
        self.assertEqual(self.callback(macs), (200, {"uuid": uuid}))
        self.wait_for(uuid, ["finished"])
        self.assertLess(recovery, LEASE + CHECK + 10)
        self.record("kill -9 in starting", [uuid], recovery)

    def test_killed_while_aborting(self):
        [(uuid, macs)] = self.enroll(1)
        self.start_introspection(uuid)
        self.wait_for(uuid, ["waiting"])
        rule = self.proxy.hold("PUT", r"/states/power$")
        self.assertEqual(self.call("POST", "/v1/introspection/{}/abort".format(uuid))[0], 202)
        self.wait_held(rule)
        recovery = self.recover(rule, uuid, "aborting")
        self.assertEqual(self.wait_for(uuid, ["error"])["error"], "Canceled by operator")
        self.assertEqual(self.power_state(uuid, "power off"), "power off")
        self.record("kill -9 in aborting", [uuid], recovery, expected_error="Canceled by operator")

    def test_killed_while_processing(self):
        [(uuid, macs)] = self.enroll(1)
        self.start_introspection(uuid)
        self.wait_for(uuid, ["waiting"])
        rule = self.proxy.hold("PATCH", r"/v1/nodes/" + uuid)
        answer = InBackground(self.callback, macs)
        self.wait_held(rule)
        recovery = self.recover(rule, uuid, "processing")
        answer.join()
        self.assertIsNone(answer.result[0], "the ramdisk saw the connection drop")
        self.wait_for(uuid, ["finished"])
        self.assertEqual(self.client.node.get(uuid).properties["local_gb"], "255")
        self.assertLess(recovery, PROCESSING_LEASE + CHECK + 10)
        self.record("kill -9 in processing", [uuid], recovery)

    def test_killed_while_reapplying(self):
        [(uuid, macs)] = self.enroll(1)
        self.start_introspection(uuid)
        self.wait_for(uuid, ["waiting"])
        self.assertEqual(self.callback(macs)[0], 200)
        self.wait_for(uuid, ["finished"])
        rule = self.proxy.hold("PATCH", r"/v1/nodes/" + uuid)
        self.assertEqual(self.call("POST", "/v1/introspection/{}/data/unprocessed".format(uuid))[0], 202)
        self.wait_held(rule)
        recovery = self.recover(rule, uuid, "reapplying")
        self.wait_for(uuid, ["finished"])
        self.assertLess(recovery, LEASE + CHECK + 10)
        self.record("kill -9 in reapplying", [uuid], recovery)


class DiscoveryKillTests(LifecycleIntegration):
    extra_config = DISCOVERY_CONFIG

    def nodes_with_bmc(self, bmc):
        return [n.uuid for n in self.client.node.list(fields=["uuid", "driver_info"])
                if (n.driver_info or {}).get("ipmi_address") == bmc]

    def test_killed_while_ironic_creates_the_node(self):
        """The orphan: Ironic created the node, inspectord died before it heard so."""
        macs = new_macs(1)
        data = unknown_machine(macs)
        rule = self.proxy.hold("POST", r"^/v1/nodes$", when="after")
        answer = InBackground(post, self.daemon.url + "/v1/continue", data)
        self.wait_held(rule)
        bmc = data["inventory"]["bmc_address"]
        [orphan] = self.nodes_with_bmc(bmc)
        killed = self.kill()
        self.proxy.release(rule, drop=True)
        answer.join()
        self.assertIsNone(answer.result[0])
        self.start_daemon()
        deadline = killed + 60
        while True:
            status, body = post(self.daemon.url + "/v1/continue", data)
            if status == 200:
                break
            self.assertIn(status, (409,), body)  # being enrolled until the lease ends: IPA retries 409
            if time.monotonic() > deadline:
                self.fail("machine not discoverable again\n" + self.daemon.log_tail())
            time.sleep(1)
        recovery = time.monotonic() - killed
        uuid = body["uuid"]
        self.wait_for(uuid, ["finished"])
        self.assertEqual(self.nodes_with_bmc(bmc), [uuid])  # the orphan was deleted
        ports = self.client.port.list(address=macs[0], detail=True)
        self.assertEqual([p.node_uuid for p in ports], [uuid])
        self.assertLess(recovery, LEASE + CHECK + 10)
        self.record("kill -9 in enrolling (POST /v1/nodes in flight)", [uuid], recovery)


class StopTests(LifecycleIntegration):
    """issue 14, items 2-3: SIGTERM with starts queued and callbacks in flight."""

    introspection_delay = 2

    def test_sigterm_with_queued_starts_and_callbacks_in_flight(self):
        busy, queued = self.enroll(2), self.enroll(5)
        for uuid, _ in busy:
            self.start_introspection(uuid)
        for uuid, _ in busy:
            self.wait_for(uuid, ["waiting"])
        # Ironic answers each PATCH 3 s late: the callbacks are in flight at the stop.
        self.proxy.hold("PATCH", r"/v1/nodes/", delay=3)
        answers = [InBackground(self.callback, macs) for _, macs in busy]
        for uuid, _ in queued:
            self.start_introspection(uuid)
        time.sleep(0.3)
        self.assertEqual([self.state(u)["state"] for u, _ in busy], ["processing"] * 2)
        self.assertEqual([self.state(u)["state"] for u, _ in queued[1:]], ["starting"] * 4)
        stopped_at = time.monotonic()
        self.daemon.process.send_signal(signal.SIGTERM)
        self.daemon.process.wait(30)
        stop_time = time.monotonic() - stopped_at
        for answer in answers:
            answer.join()
        self.assertEqual([a.result for a in answers], [(200, {"uuid": u}) for u, _ in busy])
        self.start_daemon()
        # Released at the stop: resumed at the first scan, not after a lease.
        for uuid, _ in queued:
            self.wait_for(uuid, ["waiting"], timeout=30)
        recovery = time.monotonic() - stopped_at
        for uuid, macs in queued:
            self.assertEqual(self.callback(macs), (200, {"uuid": uuid}))
        for uuid, _ in busy + queued:
            self.wait_for(uuid, ["finished"])
        print("\nSIGTERM: stopped in {:.2f} s".format(stop_time))
        self.assertLess(stop_time, 10)
        self.record("SIGTERM, 5 starts queued, 2 callbacks in flight", [u for u, _ in busy + queued], recovery)
