"""Setting IPMI credentials end to end, and Ironic's own ``ipmi`` hardware type, on a simulated BMC.

The real Ironic 39 of the integration suite, a real ``twistd inspectord``
per test, a BMC simulator (``devenv.bmc``, a real IPMI 2.0 RMCP+
endpoint on 127.0.0.1) per test, and Debian's ``ipmitool -I lanplus``
playing the ramdisk's part: what ironic-python-agent runs when the
``/v1/continue`` answer asks it to set credentials.  inspectord then
verifies them with pyghmi and records them in Ironic.

The last class runs its own Ironic with the ``ipmi`` hardware type enabled
(:class:`devenv.ironic.IronicServer` ``ipmi=True``) so that a
normal introspection powers the simulated node through Ironic's ipmitool
power interface.

Skipped without ``ipmitool`` or pyghmi, or with ``INSPECTORD_SKIP_INTEGRATION`` set.
"""

import atexit
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse

from twisted.trial import unittest

from devenv.bmc import BMCProcess, ipmitool_env, set_credentials_argv
from devenv.daemon import InspectordProcess
from devenv.ironic import IronicServer
from inspectord.ipmi import pyghmi_available
from tests.integration import base

NEW_USER = "ironic"
NEW_PASSWORD = "Zq7NewPassw0rd4Bmc"  # 18 characters, unlikely anywhere by chance
# The ramdisk (IPA) sets credentials in slot 2; the simulator's own admin lives in slot 5.
RAMDISK_SLOT = 2
BMC_ADMIN = ("root", "calvin", 5)


def _skip_reason():
    if base.SKIP:
        return base.SKIP
    if shutil.which("ipmitool") is None:
        return "ipmitool is not installed (Debian package ipmitool)"
    if not pyghmi_available():
        return "pyghmi is not installed"
    return None


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what, details=lambda: ""):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("{} not reached within {} s\n{}".format(what, timeout, details()))
        time.sleep(0.1)


def credentials_config(window):
    """inspectord options enabling the feature, with a short verification window."""
    return (
        "\n[processing]\nenable_setting_ipmi_credentials = true\n"
        "\n[ipmi_verification]\nwindow = {}\nattempt_timeout = 2\nthreads = 2\n".format(window)
    )


class _BMCMixin:
    def start_bmc(self):
        user, password, slot = BMC_ADMIN
        bmc = BMCProcess(user=user, password=password, user_id=slot).start()
        self.addCleanup(bmc.cleanup)
        return bmc

    def ramdisk_sets_credentials(self, bmc, username, password):
        """What IPA runs for ``ipmi_setup_credentials``, over LAN with ipmitool."""
        argvs = set_credentials_argv(bmc.address, bmc.port, bmc.user, bmc.password, RAMDISK_SLOT, username, password)
        for argv in argvs:
            result = subprocess.run(
                argv, env=ipmitool_env(bmc.password), stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=60,
            )
            self.assertEqual(result.returncode, 0, "{}: {}{}\n{}".format(
                argv[-5:], result.stdout, result.stderr, bmc.log_tail()))

    def ipmitool_logs_in(self, bmc, username, password):
        result = bmc.ipmitool("chassis", "power", "status", user=username, password=password)
        return result.returncode == 0, result.stdout + result.stderr


class _CredentialsCase(_BMCMixin, base.IntegrationCase):
    skip = _skip_reason()
    window = 15

    @property
    def extra_config(self):
        return credentials_config(self.window)

    def enroll_bmc_node(self, bmc_port, **driver_info):
        macs = base.new_macs(1)
        driver_info.update(ipmi_address="127.0.0.1", ipmi_port=bmc_port)
        uuid, _ = self.enroll(macs, driver_info=driver_info, provision_state="enroll")
        return uuid, macs

    def start_setting(self, uuid, **params):
        return self.inspectord.call("POST", "/v1/introspection/{}?{}".format(uuid, urllib.parse.urlencode(params)))

    def callback(self, uuid, macs, username, password):
        status, _, body = self.inspectord.call("POST", "/v1/continue", base.ipa_payload(macs))
        self.assertEqual(status, 200, body)
        self.assertEqual(body, {
            "uuid": uuid, "ipmi_setup_credentials": True, "ipmi_username": username, "ipmi_password": password,
        })

    def ironic_driver_info(self, uuid):
        """driver_info as stored (the API masks passwords whatever the policy)."""
        with sqlite3.connect("file:{}?mode=ro".format(self.ironic.database_path), uri=True, timeout=10) as db:
            (info,) = db.execute("SELECT driver_info FROM nodes WHERE uuid = ?", (uuid,)).fetchone()
        return json.loads(info)

    def inspectord_logs(self):
        return "".join(
            path.read_text(errors="replace")
            for path in (self.inspectord.log_path, self.inspectord.workdir / "twistd.out") if path.exists()
        )

    def assert_no_password(self, password, uuid):
        logs = self.inspectord_logs()
        self.assertIn(uuid, logs)  # the log is the right one
        self.assertNotIn(password, logs)
        for path in ("", "/data", "/data/unprocessed"):
            status, _, body = self.inspectord.call("GET", "/v1/introspection/{}{}".format(uuid, path))
            if path == "/data":
                self.assertEqual(status, 200, body)
            self.assertNotIn(password, json.dumps(body), path)
        status, _, body = self.inspectord.call("GET", "/v1/introspection")
        self.assertNotIn(password, json.dumps(body))

    def ended(self, uuid, timeout=60):
        return self.wait_state(uuid, ["finished", "error"], timeout=timeout)


class SetCredentialsTests(_CredentialsCase):
    def check_flow(self, bmc, uuid, macs, params, username):
        start = time.monotonic()
        status, _, body = self.start_setting(uuid, **params)
        self.assertEqual(status, 202, body)
        self.wait_state(uuid, ["waiting"])
        self.callback(uuid, macs, username, NEW_PASSWORD)
        self.ramdisk_sets_credentials(bmc, username, NEW_PASSWORD)
        result = self.ended(uuid)
        self.assertEqual((result["state"], result["error"]), ("finished", None), self.inspectord.log_tail())
        self.assertLess(time.monotonic() - start, 20)

        info = self.ironic_driver_info(uuid)
        self.assertEqual(info["ipmi_username"], username)
        self.assertEqual(info["ipmi_password"], NEW_PASSWORD)
        self.assertEqual((info["ipmi_address"], info["ipmi_port"]), ("127.0.0.1", bmc.port))
        # the API shows the user, masks the password
        node = self.client.node.get(uuid)
        self.assertEqual(node.driver_info["ipmi_username"], username)
        self.assertNotEqual(node.driver_info["ipmi_password"], NEW_PASSWORD)

        # the new account really logs in, the old one too, a wrong password does not
        ok, output = self.ipmitool_logs_in(bmc, username, NEW_PASSWORD)
        self.assertTrue(ok, output)
        self.assertIn("Chassis Power is", output)
        self.assertTrue(self.ipmitool_logs_in(bmc, bmc.user, bmc.password)[0])
        self.assertFalse(self.ipmitool_logs_in(bmc, username, NEW_PASSWORD + "x")[0])
        user = bmc.state()["users"][str(RAMDISK_SLOT)]
        self.assertEqual((user["name"], user["enabled"], user["privilege"]), (username, True, 4))

        # inspectord logged in itself, with pyghmi (SHA-256, cipher suite 17)
        self.assertIn("session opened for b'{}' (cipher suite 17)".format(username), bmc.log_tail(400))
        self.assertIn("new IPMI credentials verified on 127.0.0.1", self.inspectord_logs())
        self.assert_no_password(NEW_PASSWORD, uuid)

    def test_set_credentials(self):
        bmc = self.start_bmc()
        uuid, macs = self.enroll_bmc_node(bmc.port)
        self.check_flow(bmc, uuid, macs, {"new_ipmi_username": NEW_USER, "new_ipmi_password": NEW_PASSWORD}, NEW_USER)

    def test_username_defaults_to_driver_info(self):
        bmc = self.start_bmc()
        uuid, macs = self.enroll_bmc_node(bmc.port, ipmi_username="operator1")
        self.check_flow(bmc, uuid, macs, {"new_ipmi_password": NEW_PASSWORD}, "operator1")

    def test_invalid_requests(self):
        uuid, _ = self.enroll_bmc_node(free_udp_port(), ipmi_username="operator1")
        for password, expected in (
            ("bad-pass!", "may only contain the letters A-Z and a-z and the digits 0-9"),
            ("pässword", "may only contain the letters A-Z and a-z and the digits 0-9"),
            ("A" * 21, "at most 20 characters"),
        ):
            status, _, body = self.start_setting(uuid, new_ipmi_username=NEW_USER, new_ipmi_password=password)
            self.assertEqual(status, 400, body)
            self.assertIn(expected, body["error"]["message"])
            self.assertNotIn(password, json.dumps(body))
        status, _, body = self.start_setting(uuid, new_ipmi_username="u" * 17, new_ipmi_password=NEW_PASSWORD)
        self.assertEqual(status, 400, body)
        self.assertIn("at most 16 characters", body["error"]["message"])
        # 20 characters is the maximum, accepted
        status, _, body = self.start_setting(uuid, new_ipmi_username=NEW_USER, new_ipmi_password="A1" * 10)
        self.assertEqual(status, 202, body)
        self.wait_state(uuid, ["waiting"])

        # no user name: neither given nor in driver_info
        uuid, _ = self.enroll_bmc_node(free_udp_port())
        status, _, body = self.start_setting(uuid, new_ipmi_password=NEW_PASSWORD)
        self.assertEqual(status, 400, body)
        self.assertIn("new_ipmi_username is required", body["error"]["message"])
        status, _, body = self.start_setting(uuid, new_ipmi_username=NEW_USER)
        self.assertEqual(status, 400, body)
        self.assertIn("new_ipmi_password is required", body["error"]["message"])

        # not in enroll
        macs = base.new_macs(1)
        uuid, _ = self.enroll(macs, driver_info={"ipmi_address": "127.0.0.1"}, provision_state="manageable")
        status, _, body = self.start_setting(uuid, new_ipmi_username=NEW_USER, new_ipmi_password=NEW_PASSWORD)
        self.assertEqual(status, 400, body)
        self.assertIn("provision state 'manageable'", body["error"]["message"])
        self.assertIn("enroll", body["error"]["message"])
        # nothing was started
        status, _, body = self.inspectord.call("GET", "/v1/introspection/" + uuid)
        self.assertEqual(status, 404, body)
        self.assertNotIn(NEW_PASSWORD, self.inspectord_logs())


class VerificationFailureTests(_CredentialsCase):
    window = 3

    def test_ramdisk_sets_another_password(self):
        bmc = self.start_bmc()
        uuid, macs = self.enroll_bmc_node(bmc.port)
        status, _, body = self.start_setting(uuid, new_ipmi_username=NEW_USER, new_ipmi_password=NEW_PASSWORD)
        self.assertEqual(status, 202, body)
        self.wait_state(uuid, ["waiting"])
        start = time.monotonic()
        self.callback(uuid, macs, NEW_USER, NEW_PASSWORD)
        self.ramdisk_sets_credentials(bmc, NEW_USER, "Different123")
        result = self.ended(uuid)
        elapsed = time.monotonic() - start
        self.assertEqual(result["state"], "error")
        self.assertIn(
            "credentials rejected by the BMC at 127.0.0.1:{} for user '{}'".format(bmc.port, NEW_USER), result["error"]
        )
        self.assertIn("Incorrect password provided", result["error"])
        self.assertGreaterEqual(elapsed, self.window)
        self.assertLess(elapsed, self.window + 5)
        # Ironic keeps what it had
        info = self.ironic_driver_info(uuid)
        self.assertNotIn("ipmi_password", info)
        self.assertNotIn("ipmi_username", info)
        self.assertNotIn("Different123", result["error"])
        self.assert_no_password(NEW_PASSWORD, uuid)

    def test_bmc_down(self):
        bmc = self.start_bmc()
        uuid, macs = self.enroll_bmc_node(bmc.port)
        status, _, body = self.start_setting(uuid, new_ipmi_username=NEW_USER, new_ipmi_password=NEW_PASSWORD)
        self.assertEqual(status, 202, body)
        self.wait_state(uuid, ["waiting"])
        bmc.stop()
        self.callback(uuid, macs, NEW_USER, NEW_PASSWORD)
        result = self.ended(uuid)
        self.assertEqual(result["state"], "error")
        self.assertTrue(
            result["error"].startswith("BMC unreachable at 127.0.0.1:{}".format(bmc.port)), result["error"]
        )
        self.assertNotIn("ipmi_password", self.ironic_driver_info(uuid))
        self.assert_no_password(NEW_PASSWORD, uuid)


class DisabledTests(_BMCMixin, base.IntegrationCase):
    skip = _skip_reason()

    def test_disabled_by_default(self):
        macs = base.new_macs(1)
        uuid, _ = self.enroll(macs, driver_info={"ipmi_address": "127.0.0.1"}, provision_state="enroll")
        for params in ({"new_ipmi_username": NEW_USER, "new_ipmi_password": NEW_PASSWORD},
                       {"new_ipmi_password": NEW_PASSWORD}):
            status, _, body = self.inspectord.call(
                "POST", "/v1/introspection/{}?{}".format(uuid, urllib.parse.urlencode(params))
            )
            self.assertEqual(status, 400, body)
            self.assertIn("[processing]enable_setting_ipmi_credentials", body["error"]["message"])
        status, _, _ = self.inspectord.call("GET", "/v1/introspection/" + uuid)
        self.assertEqual(status, 404)


# -- Ironic's ipmi hardware type -----------------------------------------------------

_ipmi_ironic = None


def ipmi_ironic():
    """A second Ironic with the ``ipmi`` hardware type enabled, started on first use."""
    global _ipmi_ironic
    if _ipmi_ironic is None:
        workdir = tempfile.mkdtemp(prefix="inspectord-it-ipmi-")
        server = IronicServer(os.path.join(workdir, "ironic"), ipmi=True)

        def shutdown():
            server.stop()
            if not os.environ.get("INSPECTORD_KEEP_WORKDIR"):
                shutil.rmtree(workdir, ignore_errors=True)

        try:
            server.start()
        except BaseException:
            shutdown()
            raise
        atexit.register(shutdown)
        _ipmi_ironic = server
    return _ipmi_ironic


class IPMIHardwareTypeTests(_BMCMixin, unittest.SynchronousTestCase):
    """A normal (manage_boot) introspection powers the node through Ironic's ipmitool driver."""

    skip = _skip_reason()
    # tests run with [processing]enable_setting_ipmi_credentials
    setting = ("test_set_credentials_then_ironic_powers_off",)

    def setUp(self):
        self.ironic = ipmi_ironic()
        self.client = self.ironic.client()
        self.workdir = tempfile.mkdtemp(prefix="inspectord-", dir=os.path.dirname(self.ironic.workdir))
        self.inspectord = InspectordProcess(
            self.workdir, self.ironic.url,
            extra_config=credentials_config(15) if self._testMethodName in self.setting else "",
        )
        self.inspectord.start()
        self.addCleanup(self.inspectord.stop)

    def test_power_through_ironic_ipmitool(self):
        bmc = self.start_bmc()
        self.assertEqual(bmc.state()["power"], "off")
        macs = base.new_macs(1)
        # manage runs Ironic's verify step: ipmitool power status on the simulator
        node = self.ironic.enroll_node(
            "ipmi-" + macs[0].replace(":", "")[-6:], macs, driver="ipmi", provision_state="manageable",
            driver_info={
                "ipmi_address": bmc.address, "ipmi_port": bmc.port,
                "ipmi_username": bmc.user, "ipmi_password": bmc.password,
            },
        )
        uuid = node.uuid
        self.assertEqual((node.driver, node.power_interface, node.management_interface),
                         ("ipmi", "ipmitool", "ipmitool"))
        self.assertEqual(node.power_state, "power off")
        start = time.monotonic()

        status, _, body = self.inspectord.call("POST", "/v1/introspection/" + uuid)
        self.assertEqual(status, 202, body)

        def details():
            return "{}\n{}\n{}".format(bmc.log_tail(), self.inspectord.log_tail(), self.ironic._log_tail())

        wait_for(lambda: bmc.state()["power"] == "on", 60, "simulator powered on", details)
        status = self.wait_state(uuid)
        self.assertEqual(status["state"], "waiting")
        self.assertEqual(bmc.state()["boot_device"], "network")
        wait_for(lambda: self.client.node.get(uuid).power_state == "power on", 30, "Ironic sees power on", details)

        status, _, body = self.inspectord.call("POST", "/v1/continue", base.ipa_payload(macs))
        self.assertEqual(status, 200, body)
        self.assertEqual(body, {"uuid": uuid})  # no credentials to set
        result = self.inspectord.wait_finished(uuid, timeout=60)
        self.assertIsNone(result["error"], details())
        wait_for(lambda: bmc.state()["power"] == "off", 30, "simulator powered off", details)
        # Ironic records the new state once its ipmitool power status confirms it
        wait_for(lambda: self.client.node.get(uuid).power_state == "power off", 30, "Ironic sees power off", details)
        node = self.client.node.get(uuid)
        self.assertEqual((node.power_state, node.provision_state), ("power off", "manageable"))
        self.assertEqual(node.properties.get("cpu_arch"), "x86_64")
        self.assertLess(time.monotonic() - start, 40)
        # the fake-hardware nodes of this Ironic keep the fake interfaces
        fake = self.ironic.enroll_node("fake-" + macs[0].replace(":", "")[-6:], [], provision_state="enroll")
        self.assertEqual((fake.boot_interface, fake.deploy_interface, fake.power_interface, fake.storage_interface),
                         ("fake", "fake", "fake", "noop"))

        # every power action came through Ironic's ipmitool over lanplus as the configured admin
        log = bmc.log_tail(400)
        self.assertIn("chassis control", log)
        self.assertIn("session opened for b'{}'".format(bmc.user), log)

    def test_set_credentials_then_ironic_powers_off(self):
        # enroll with the BMC address only: Ironic has no credentials for it yet
        bmc = self.start_bmc()
        macs = base.new_macs(1)
        node = self.ironic.enroll_node(
            "ipmi-" + macs[0].replace(":", "")[-6:], macs, driver="ipmi", provision_state="enroll",
            driver_info={"ipmi_address": bmc.address, "ipmi_port": bmc.port},
        )
        uuid = node.uuid
        query = urllib.parse.urlencode({"new_ipmi_username": NEW_USER, "new_ipmi_password": NEW_PASSWORD})
        status, _, body = self.inspectord.call("POST", "/v1/introspection/{}?{}".format(uuid, query))
        self.assertEqual(status, 202, body)
        self.wait_state(uuid)
        # the operator powers the node on (inspectord cannot: no credentials yet)
        self.assertEqual(bmc.ipmitool("chassis", "power", "on").returncode, 0)
        self.assertEqual(bmc.state()["power"], "on")

        status, _, body = self.inspectord.call("POST", "/v1/continue", base.ipa_payload(macs))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["ipmi_password"], NEW_PASSWORD)
        self.ramdisk_sets_credentials(bmc, NEW_USER, NEW_PASSWORD)
        result = self.inspectord.wait_finished(uuid, timeout=60)
        self.assertIsNone(result["error"], self.inspectord.log_tail())

        def details():
            return "{}\n{}\n{}".format(bmc.log_tail(), self.inspectord.log_tail(), self.ironic._log_tail())

        # Ironic powers the node off through ipmitool with the credentials inspectord recorded
        wait_for(lambda: bmc.state()["power"] == "off", 30, "simulator powered off", details)
        wait_for(lambda: self.client.node.get(uuid).power_state == "power off", 30, "Ironic sees power off", details)
        node = self.client.node.get(uuid)
        self.assertEqual((node.provision_state, node.driver_info["ipmi_username"]), ("enroll", NEW_USER))
        log = bmc.log_tail(400)
        before_off = log[: log.rindex("chassis control 0: power off")]
        self.assertTrue(before_off.rsplit("session opened for ", 1)[1].startswith("b'{}'".format(NEW_USER)), log)
        # and the node can now be managed by Ironic with them (verify: ipmitool power status)
        self.client.node.set_provision_state(uuid, "manage")
        self.client.node.wait_for_provision_state(uuid, "manageable", timeout=60, poll_interval=0.2)

    def wait_state(self, uuid, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = self.inspectord.call("GET", "/v1/introspection/" + uuid)
            if status == 200 and body["state"] != "starting":
                return body
            if time.monotonic() > deadline:
                self.fail("node {} still starting: {}".format(uuid, body))
            time.sleep(0.1)
