"""Shared set-up of integration tests: a real Ironic and real inspectord processes.

One standalone Ironic (``ironic==39.0.0``, noauth, SQLite, fake-hardware)
serves every integration test module; it is started on first use and
stopped when the test process exits.  Each test class starts its own
``twistd inspectord``.  Set ``INSPECTORD_SKIP_INTEGRATION=1`` to skip them.
"""

import atexit
import copy
import json
import os
import shutil
import tempfile
import time

from twisted.trial import unittest

from devenv.daemon import InspectordProcess
from devenv.ironic import IronicServer

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
SKIP = "INSPECTORD_SKIP_INTEGRATION set" if os.environ.get("INSPECTORD_SKIP_INTEGRATION") else None

_ironic = None
_workdir = None


def ironic():
    """The shared real Ironic, started on first use."""
    global _ironic, _workdir
    if _ironic is None:
        _workdir = tempfile.mkdtemp(prefix="inspectord-it-")
        server = IronicServer(os.path.join(_workdir, "ironic"))
        server.start()
        _ironic = server
        atexit.register(_shutdown)
    return _ironic


def _shutdown():
    if _ironic is not None:
        _ironic.stop()
    if _workdir and not os.environ.get("INSPECTORD_KEEP_WORKDIR"):
        shutil.rmtree(_workdir, ignore_errors=True)


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return json.load(f)


_mac_counter = [0x100]


def new_macs(count):
    """MACs unique within this test run (locally administered)."""
    macs = []
    for _ in range(count):
        _mac_counter[0] += 1
        n = _mac_counter[0]
        macs.append("52:54:00:{:02x}:{:02x}:{:02x}".format((n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF))
    return macs


def ipa_payload(macs, name="ipa-payload.json"):
    """A real IPA body with its interfaces replaced by ``macs`` (first one PXE)."""
    data = copy.deepcopy(fixture(name))
    template = data["inventory"]["interfaces"][0]
    interfaces = []
    for i, mac in enumerate(macs):
        iface = dict(template, name="eth{}".format(i), mac_address=mac)
        iface["ipv4_address"] = "192.0.2.{}".format(10 + i)
        iface["ipv6_address"] = None
        interfaces.append(iface)
    data["inventory"]["interfaces"] = interfaces
    data["boot_interface"] = "01-" + macs[0].replace(":", "-")
    return data


class IntegrationCase(unittest.SynchronousTestCase):
    """Each test gets its own inspectord process (and database) against the shared Ironic."""

    skip = SKIP
    inspectord_options = {}
    extra_config = ""

    def setUp(self):
        self.ironic = ironic()
        self.client = self.ironic.client()
        self.workdir = tempfile.mkdtemp(prefix="inspectord-", dir=_workdir)
        self.inspectord = InspectordProcess(
            self.workdir, self.ironic.url, extra_config=self.extra_config, **self.inspectord_options
        )
        self.inspectord.start()
        self.addCleanup(self.inspectord.stop)

    def enroll(self, macs, **kwargs):
        name = kwargs.pop("name", None) or "node-{}".format(macs[0].replace(":", "")[-6:])
        node = self.ironic.enroll_node(name, macs, **kwargs)
        return node.uuid, name

    def wait_state(self, uuid, states, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = self.inspectord.call("GET", "/v1/introspection/" + uuid)
            if status == 200 and body["state"] in states:
                return body
            if time.monotonic() > deadline:
                self.fail("node {} not in {} after {} s: {}\n{}".format(uuid, states, timeout, body, self.inspectord.log_tail()))
            time.sleep(0.1)

    def wait_power_state(self, uuid, power_state, timeout=30):
        """Ironic's node once it reports ``power_state`` (Ironic applies power changes asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            node = self.client.node.get(uuid)
            if node.power_state == power_state:
                return node
            if time.monotonic() > deadline:
                self.fail("node {} still {!r} after {} s, not {!r}".format(uuid, node.power_state, timeout, power_state))
            time.sleep(0.1)

    def start_and_wait(self, node_id, uuid):
        status, _, body = self.inspectord.call("POST", "/v1/introspection/" + node_id)
        self.assertEqual(status, 202, body)
        return self.wait_state(uuid, ["waiting"])
