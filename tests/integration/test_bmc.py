"""Setting and verifying BMC credentials against a simulated BMC on 127.0.0.1.

``ipmitool -I lanplus`` (Debian ``ipmitool``) plays the ramdisk's part on
the simulator (``devenv.bmc``, a real IPMI 2.0 RMCP+ endpoint in a
subprocess); :class:`CredentialsVerifier` checks the result with real pyghmi
in a real thread pool on the real reactor.  Skipped without ipmitool or
pyghmi, or with ``INSPECTORD_SKIP_INTEGRATION`` set.
"""

import os
import shutil
import socket
import time

from twisted.internet import defer, reactor, task
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from devenv.bmc import BMCProcess, ipmitool_env, set_credentials_argv
from inspectord.ipmi import BMCUnreachable, CredentialsRejected, CredentialsVerifier, pyghmi_available
from inspectord.threads import ThreadPoolService


def _skip_reason():
    if os.environ.get("INSPECTORD_SKIP_INTEGRATION"):
        return "INSPECTORD_SKIP_INTEGRATION set"
    if shutil.which("ipmitool") is None:
        return "ipmitool is not installed (Debian package ipmitool)"
    if not pyghmi_available():
        return "pyghmi is not installed"
    return None


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_ipmitool(argv, password):
    """One ipmitool command, without blocking the reactor: ``(output, exit code)``."""
    out, err, code = await getProcessOutputAndValue(argv[0], argv[1:], env=ipmitool_env(password))
    return (out + err).decode(errors="replace"), code


def pyghmi_power(address, port, username, password):
    """pyghmi's ``Command`` (blocking): log in, read the power state, log out."""
    from pyghmi.ipmi import command

    cmd = command.Command(bmc=address, userid=username, password=password, port=port, privlevel=4)
    try:
        return cmd.get_power()["powerstate"]
    finally:
        cmd.ipmi_session.logout()


class BMCCase(unittest.TestCase):
    skip = _skip_reason()
    timeout = 120

    async def bmc_log(self, bmc, text, count=1, lines=200, timeout=10):
        """The simulator's log once ``text`` is in it ``count`` times (or ``timeout`` passed).

        Its notes reach the log through a thread of this process that copies
        its standard output, a moment after the simulator wrote them.
        """
        deadline = time.monotonic() + timeout
        while bmc.log_tail(lines).count(text) < count and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.05, lambda: None)
        return bmc.log_tail(lines)

    def setUp(self):
        self.pool = ThreadPoolService(reactor, "test-pyghmi", 2)
        self.pool.startService()
        self.addCleanup(self.pool.stopService)

    def start_bmc(self, **kwargs):
        bmc = BMCProcess(**kwargs).start()
        self.addCleanup(bmc.cleanup)
        return bmc

    def verifier(self, **kwargs):
        kwargs.setdefault("retry_interval", 0.2)
        kwargs.setdefault("max_interval", 1.0)
        return CredentialsVerifier(reactor, self.pool, **kwargs)

    async def set_credentials(self, bmc, user_id, username, password, steps=None):
        argvs = set_credentials_argv(bmc.address, bmc.port, bmc.user, bmc.password, user_id, username, password)
        for argv in argvs[:steps]:
            output, code = await run_ipmitool(argv, bmc.password)
            self.assertEqual(code, 0, "{}: {}\n{}".format(argv[-5:], output, bmc.log_tail()))

    async def timed_failure(self, d, error_class):
        start = time.monotonic()
        try:
            await d
        except error_class as e:
            return e, time.monotonic() - start
        self.fail("no {}".format(error_class.__name__))


class SimulatorTests(BMCCase):
    async def test_ipmitool_sets_credentials_of_user_3(self):
        bmc = self.start_bmc()
        for command in (
            "user set name 3 newuser",
            "user set password 3 newpass",
            "user enable 3",
            "channel setaccess 1 3 ipmi=on privilege=4",
        ):
            output, code = await run_ipmitool(bmc.ipmitool_argv(*command.split()), bmc.password)
            self.assertEqual(code, 0, output)
        user = bmc.state()["users"]["3"]
        self.assertEqual(
            {k: user[k] for k in ("name", "password", "enabled", "privilege", "ipmi")},
            {"name": "newuser", "password": "newpass", "enabled": True, "privilege": 4, "ipmi": True},
        )
        # the new account logs in, with both cipher suites
        for suite in (3, 17):
            output, code = await run_ipmitool(
                ["ipmitool", "-I", "lanplus", "-H", bmc.address, "-p", str(bmc.port), "-U", "newuser", "-E",
                 "-C", str(suite), "chassis", "power", "status"],
                "newpass",
            )
            self.assertEqual((code, output.strip()), (0, "Chassis Power is off"))
        # and with pyghmi's Command (SHA-256, cipher suite 17)
        power = await self.pool.run(pyghmi_power, bmc.address, bmc.port, "newuser", "newpass")
        self.assertEqual(power, "off")
        self.assertIn("session opened for b'newuser' (cipher suite 17)",
                      await self.bmc_log(bmc, "session opened for b'newuser' (cipher suite 17)", lines=100))
        # the admin account is untouched
        output, code = await run_ipmitool(bmc.ipmitool_argv("user", "list", "1"), bmc.password)
        self.assertRegex(output, r"2\s+admin\s+true\s+true\s+true\s+ADMINISTRATOR")
        self.assertRegex(output, r"3\s+newuser\s+true\s+false\s+true\s+ADMINISTRATOR")

    async def test_each_step_is_needed(self):
        bmc = self.start_bmc()
        verifier = self.verifier(window=0)
        for steps in (1, 2, 3):  # name; + password; + enable; (no channel access yet)
            await self.set_credentials(bmc, 3, "newuser", "newpass", steps=steps)
            error, _ = await self.timed_failure(verifier.verify(bmc.address, "newuser", "newpass", bmc.port),
                                                CredentialsRejected)
            self.assertIn("Unauthorized name", str(error))
        await self.set_credentials(bmc, 3, "newuser", "newpass")
        await verifier.verify(bmc.address, "newuser", "newpass", bmc.port)

    async def test_ironic_python_agent_sequence_on_slot_2(self):
        # IPA's commands (slot 2, channel 1, link/ipmi/callin on, privilege 4),
        # with the simulator's own admin in slot 5 so the session survives them.
        bmc = self.start_bmc(user="root", password="calvin", user_id=5)
        await self.set_credentials(bmc, 2, "ironic", "S3cretPassw0rdOf20ch")
        await self.verifier(window=0).verify(bmc.address, "ironic", "S3cretPassw0rdOf20ch", bmc.port)

    async def test_power_state(self):
        bmc = self.start_bmc()
        for action, expected in (("on", "Up/On"), ("status", "is on"), ("off", "Down/Off"), ("status", "is off")):
            output, code = await run_ipmitool(bmc.ipmitool_argv("chassis", "power", action), bmc.password)
            self.assertEqual(code, 0, output)
            self.assertIn(expected, output)
        self.assertEqual(bmc.state()["power"], "off")
        output, code = await run_ipmitool(bmc.ipmitool_argv("chassis", "bootdev", "pxe"), bmc.password)
        self.assertEqual(code, 0, output)
        self.assertEqual(bmc.state()["boot_device"], "network")

    async def test_state_file_survives_a_restart(self):
        bmc = self.start_bmc()
        await self.set_credentials(bmc, 3, "newuser", "newpass")
        bmc.stop()
        bmc.start()
        await self.verifier(window=0).verify(bmc.address, "newuser", "newpass", bmc.port)


class VerifierTests(BMCCase):
    async def test_verifies_credentials_set_by_ipmitool(self):
        bmc = self.start_bmc()
        await self.set_credentials(bmc, 3, "newuser", "newpass")
        start = time.monotonic()
        await self.verifier(window=0).verify(bmc.address, "newuser", "newpass", port=bmc.port)
        self.assertLess(time.monotonic() - start, 5)
        # again: pyghmi shares sessions by credentials, a second check must log in anew
        await self.verifier(window=0).verify(bmc.address, "newuser", "newpass", port=bmc.port)
        log = await self.bmc_log(bmc, "session opened for b'newuser'", count=2, lines=100)
        self.assertEqual(log.count("session opened for b'newuser'"), 2)

    async def test_verification_waits_for_the_ramdisk(self):
        bmc = self.start_bmc()
        verifying = defer.Deferred.fromCoroutine(
            self.verifier(window=30).verify(bmc.address, "newuser", "newpass", port=bmc.port)
        )
        await task.deferLater(reactor, 1.0, lambda: None)
        self.assertFalse(verifying.called)
        await self.set_credentials(bmc, 3, "newuser", "newpass")
        await verifying
        self.assertIn("login refused: unknown or disabled user b'newuser'",
                      await self.bmc_log(bmc, "login refused: unknown or disabled user b'newuser'"))

    async def test_wrong_password_rejected_fast(self):
        bmc = self.start_bmc()
        await self.set_credentials(bmc, 3, "newuser", "newpass")
        error, elapsed = await self.timed_failure(
            self.verifier(window=0).verify(bmc.address, "newuser", "otherpass", port=bmc.port), CredentialsRejected
        )
        self.assertLess(elapsed, 5)
        self.assertTrue(str(error).startswith("credentials rejected by the BMC at 127.0.0.1:{}".format(bmc.port)))
        self.assertIn("Incorrect password provided", str(error))
        self.assertNotIn("otherpass", str(error))

    async def test_unknown_user_rejected_fast(self):
        bmc = self.start_bmc()
        error, elapsed = await self.timed_failure(
            self.verifier(window=0).verify(bmc.address, "nobody", "newpass", port=bmc.port), CredentialsRejected
        )
        self.assertLess(elapsed, 5)
        self.assertIn("Unauthorized name", str(error))

    async def test_rejections_retried_until_the_window_ends(self):
        bmc = self.start_bmc()
        error, elapsed = await self.timed_failure(
            self.verifier(window=3).verify(bmc.address, "admin", "wrong", port=bmc.port), CredentialsRejected
        )
        self.assertGreaterEqual(elapsed, 3)
        self.assertLess(elapsed, 6)
        self.assertGreater(error.attempts, 3)

    async def test_closed_port_is_unreachable(self):
        port = free_udp_port()
        error, elapsed = await self.timed_failure(
            self.verifier(window=0).verify("127.0.0.1", "admin", "password", port=port), BMCUnreachable
        )
        self.assertTrue(str(error).startswith("BMC unreachable at 127.0.0.1:{}".format(port)), str(error))
        self.assertLess(elapsed, 10)

    async def test_two_simulators(self):
        one = self.start_bmc(password="password1")
        two = self.start_bmc(password="password2")
        self.assertNotEqual(one.port, two.port)
        await defer.gatherResults([
            defer.Deferred.fromCoroutine(self.set_credentials(one, 3, "user1", "pass1")),
            defer.Deferred.fromCoroutine(self.set_credentials(two, 3, "user2", "pass2")),
        ])
        verifier = self.verifier(window=0)
        await defer.gatherResults([
            defer.Deferred.fromCoroutine(verifier.verify(one.address, "user1", "pass1", port=one.port)),
            defer.Deferred.fromCoroutine(verifier.verify(two.address, "user2", "pass2", port=two.port)),
        ])
        await self.timed_failure(verifier.verify(two.address, "user1", "pass1", port=two.port), CredentialsRejected)
        self.assertEqual(one.state()["users"]["3"]["name"], "user1")
        self.assertEqual(two.state()["users"]["3"]["name"], "user2")
