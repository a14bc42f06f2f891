"""An unmodified Ironic that still calls ironic-inspector, talking to inspectord.

Ironic 32.1.0 (the last release with the ``inspector`` inspect interface,
see :mod:`devenv.ironic_legacy`) runs standalone with that
interface as the default and ``[inspector]endpoint_override`` pointing at a
real ``twistd inspectord``, which points back at it.  The operator only
talks to Ironic (``baremetal node inspect`` / ``abort``); Ironic starts,
polls, fetches the data from and aborts introspections in inspectord, and
the node's provision state follows.

One Ironic and one inspectord serve the whole module, each configured
with the other's port, chosen before either starts.  Both are started on first use and stopped when the test process
exits (their work directory is kept with ``INSPECTORD_KEEP_WORKDIR=1``).
"""

import atexit
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request

from twisted.trial import unittest

from devenv.daemon import InspectordProcess, free_port
from devenv.ironic_legacy import IRONIC_VERSION, LegacyIronicServer
from tests.integration.base import SKIP, ipa_payload

_env = None
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _Environment:
    def __init__(self):
        self.workdir = tempfile.mkdtemp(prefix="inspectord-legacy-it-")
        ironic_port = free_port()
        inspectord_port = free_port()
        while inspectord_port == ironic_port:
            inspectord_port = free_port()
        self.ironic = LegacyIronicServer(
            os.path.join(self.workdir, "ironic"),
            "http://127.0.0.1:{}".format(inspectord_port),
            port=ironic_port,
            status_check_period=1,
            boot_interfaces=["fake", "pxe"],
        )
        self.inspectord = InspectordProcess(
            os.path.join(self.workdir, "inspectord"), self.ironic.url, port=inspectord_port
        )

    def start(self):
        # inspectord first: it takes its port at once and needs Ironic only for requests.
        self.inspectord.start()
        self.ironic.start()

    def stop(self):
        self.inspectord.stop()
        self.ironic.stop()
        if not os.environ.get("INSPECTORD_KEEP_WORKDIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)


def environment():
    global _env
    if _env is None:
        env = _Environment()
        atexit.register(env.stop)
        env.start()
        _env = env
    return _env


_mac_counter = [0]


def new_macs(count):
    """MACs unique within this module (a prefix of their own: these nodes live in another Ironic)."""
    macs = []
    for _ in range(count):
        _mac_counter[0] += 1
        macs.append("52:54:00:e3:{:02x}:{:02x}".format(_mac_counter[0] >> 8, _mac_counter[0] & 0xFF))
    return macs


class IronicInspectorInterfaceTests(unittest.SynchronousTestCase):
    """``baremetal node inspect`` in Ironic {} with inspectord as its ironic-inspector.""".format(IRONIC_VERSION)

    skip = SKIP

    def setUp(self):
        env = environment()
        self.ironic = env.ironic
        self.inspectord = env.inspectord
        self.client = self.ironic.client()

    # -- helpers ------------------------------------------------------------

    def enroll(self, macs, boot_interface="fake"):
        driver_info = self.ironic.fake_deploy_images() if boot_interface == "pxe" else {}
        node = self.ironic.enroll_node("legacy-{}".format(macs[0].replace(":", "")[-4:]), macs, driver_info=driver_info)
        self.assertEqual(node.inspect_interface, "inspector")
        if boot_interface != node.boot_interface:
            self.client.node.update(node.uuid, [{"op": "replace", "path": "/boot_interface", "value": boot_interface}])
        return node.uuid

    def explain(self, uuid):
        return "\nIronic's calls to the inspector:\n{}\n--- inspectord ---\n{}\n--- Ironic ---\n{}".format(
            "\n".join(line[:300] for line in self.ironic.inspector_requests() if uuid in line),
            self.inspectord.log_tail(),
            self.ironic.log_tail(30),
        )

    def wait_ironic(self, uuid, states, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            node = self.client.node.get(uuid)
            if node.provision_state in states:
                return node
            if time.monotonic() > deadline:
                self.fail(
                    "node {} is {!r} in Ironic, not in {} after {} s (last_error {!r}){}".format(
                        uuid, node.provision_state, states, timeout, node.last_error, self.explain(uuid)
                    )
                )
            time.sleep(0.1)

    def wait_inspectord(self, uuid, states, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = self.inspectord.call("GET", "/v1/introspection/" + uuid)
            if status == 200 and body["state"] in states:
                return body
            if time.monotonic() > deadline:
                self.fail(
                    "inspectord: node {} not in {} after {} s: {} {}{}".format(
                        uuid, states, timeout, status, body, self.explain(uuid)
                    )
                )
            time.sleep(0.1)

    def wait_power(self, uuid, state, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            node = self.client.node.get(uuid)
            if node.power_state == state and node.target_power_state is None:
                return
            if time.monotonic() > deadline:
                self.fail(
                    "node {} is {!r}, not {!r}, after {} s{}".format(
                        uuid, node.power_state, state, timeout, self.explain(uuid)
                    )
                )
            time.sleep(0.1)

    def inspect(self, uuid):
        """``baremetal node inspect``; returns once Ironic waits and inspectord waits for the ramdisk."""
        self.client.node.set_provision_state(uuid, "inspect")
        self.wait_ironic(uuid, ["inspect wait"])
        return self.wait_inspectord(uuid, ["waiting"])

    def post_json(self, url, body):
        """POST as the ramdisk does (no API version header); ``(status, decoded body)``."""
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with _HTTP.open(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def assert_inspected(self, uuid, macs):
        node = self.wait_ironic(uuid, ["manageable", "inspect failed"])
        self.assertEqual(
            node.provision_state, "manageable", "last_error: {}{}".format(node.last_error, self.explain(uuid))
        )
        self.assertIsNone(node.last_error)
        # Written by inspectord's processing through Ironic's API.
        self.assertEqual(
            {k: node.properties.get(k) for k in ("cpus", "cpu_arch", "memory_mb", "local_gb")},
            {"cpus": "2", "cpu_arch": "x86_64", "memory_mb": "24576", "local_gb": "255"},
        )
        self.wait_power(uuid, "power off")
        # Fetched by Ironic from GET /v1/introspection/<uuid>/data and stored.
        stored = self.client.node.get_inventory(uuid)
        self.assertEqual(stored["inventory"]["cpu"]["count"], 2)
        self.assertEqual([i["mac_address"] for i in stored["inventory"]["interfaces"]], macs)
        self.assertEqual(stored["plugin_data"]["local_gb"], 255)
        status = self.wait_inspectord(uuid, ["finished"], timeout=5)
        self.assertIsNone(status["error"])
        return node

    # -- tests --------------------------------------------------------------

    def test_inspect_with_inspectord_booting_the_node(self):
        """Fake boot interface: Ironic cannot boot the ramdisk, so it asks inspectord to (no manage_boot)."""
        macs = new_macs(2)
        uuid = self.enroll(macs[:1])
        self.inspect(uuid)
        self.wait_power(uuid, "power on")  # rebooted by inspectord (Ironic acts on it asynchronously)

        status, body = self.post_json(self.inspectord.url + "/v1/continue", ipa_payload(macs))
        self.assertEqual((status, body), (200, {"uuid": uuid}))
        self.assert_inspected(uuid, macs)

        calls = self.ironic.inspector_calls(uuid)
        path = "/v1/introspection/" + uuid
        self.assertEqual(calls[0], ("POST", path))
        self.assertIn(("GET", path), calls)
        self.assertEqual(calls[-1], ("GET", path + "/data"))

    def test_inspect_with_ironic_booting_the_ramdisk(self):
        """pxe boot interface: Ironic boots the ramdisk itself and starts inspectord with manage_boot=False."""
        macs = new_macs(1)
        uuid = self.enroll(macs, boot_interface="pxe")
        self.inspect(uuid)
        self.assertEqual(self.client.node.get(uuid).driver_internal_info.get("inspector_manage_boot"), True)
        self.assertEqual(
            self.ironic.inspector_calls(uuid)[0], ("POST", "/v1/introspection/{}?manage_boot=False".format(uuid))
        )

        # The ramdisk posts to the callback URL Ironic wrote into its boot configuration.
        callback = self.ironic.ramdisk_kernel_params(uuid).get("ipa-inspection-callback-url")
        self.assertEqual(callback, self.ironic.callback_url + "/v1/continue")
        status, body = self.post_json(callback, ipa_payload(macs))
        self.assertEqual((status, body), (200, {"uuid": uuid}))
        self.assert_inspected(uuid, macs)  # powered off by Ironic this time
        self.assertEqual(self.ironic.ramdisk_kernel_params(uuid), {})  # boot configuration cleaned up

    def test_ramdisk_data_forwarded_by_ironic_continue_inspection(self):
        """A ramdisk that posts to Ironic's /v1/continue_inspection: Ironic forwards the data to inspectord."""
        macs = new_macs(1)
        uuid = self.enroll(macs)
        self.inspect(uuid)
        status, body = self.post_json(self.ironic.url + "/v1/continue_inspection", ipa_payload(macs))
        self.assertEqual((status, body), (202, {"uuid": uuid}))
        self.assert_inspected(uuid, macs)
        self.assertIn(("POST", "/v1/continue"), self.ironic.inspector_calls())

    def test_abort(self):
        macs = new_macs(1)
        uuid = self.enroll(macs)
        self.inspect(uuid)
        self.client.node.set_provision_state(uuid, "abort")
        node = self.wait_ironic(uuid, ["inspect failed"])
        self.assertIn(("POST", "/v1/introspection/{}/abort".format(uuid)), self.ironic.inspector_calls(uuid))
        status = self.wait_inspectord(uuid, ["error"], timeout=10)
        self.assertEqual(status["error"], "Canceled by operator")
        self.assertTrue(status["finished"])
        # Ironic records the abort in the node's history, not in last_error.
        events = [e["event"] for e in self.client.node.get_history_list(uuid, detail=True)]
        self.assertIn("Inspection was aborted by request.", events, (node.last_error, events))
        self.wait_power(uuid, "power off")  # inspectord powers off the node it had booted

    def test_inspectord_error_fails_the_inspection_in_ironic(self):
        macs = new_macs(1)
        uuid = self.enroll(macs)
        self.inspect(uuid)
        status, body = self.post_json(
            self.inspectord.url + "/v1/continue", ipa_payload(macs, "ipa-payload-collector-error.json")
        )
        self.assertEqual(status, 400, body)
        error = self.wait_inspectord(uuid, ["error"], timeout=10)["error"]
        self.assertIn("dmidecode", error)
        node = self.wait_ironic(uuid, ["inspect failed"])
        self.assertEqual(node.last_error, "ironic-inspector inspection failed: " + error)
        # No data is fetched for a failed introspection.
        self.assertNotIn(("GET", "/v1/introspection/{}/data".format(uuid)), self.ironic.inspector_calls(uuid))
