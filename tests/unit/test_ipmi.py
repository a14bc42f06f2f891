"""inspectord.ipmi: credential rules, the verifier's retries on a Clock, pyghmi's error texts."""

from twisted.internet import defer, task
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from inspectord import errors
from inspectord.ipmi import (
    AttemptResult,
    BMCSessionError,
    BMCUnreachable,
    BMCVerificationError,
    CredentialsRejected,
    CredentialsVerifier,
    validate_new_credentials,
)
from inspectord.ipmi import session as ipmi_session
from inspectord.ipmi.base import BMC_ERROR, OK, REJECTED, UNREACHABLE
from inspectord.threads import SynchronousRunner

PASSWORD = "Sekr1tPassw0rd"
OK_RESULT = AttemptResult(OK)
REJECTED_RESULT = AttemptResult(REJECTED, "Incorrect password provided")
UNREACHABLE_RESULT = AttemptResult(UNREACHABLE, "no answer")


class HeldPool:
    """A thread pool whose every call waits until the test finishes it: a thread still working."""

    def __init__(self):
        self.calls = []

    def run(self, f, *args):
        d = defer.Deferred()
        self.calls.append((d, f, args))
        return d

    def finish(self, index=0):
        d, f, args = self.calls.pop(index)
        d.callback(f(*args))


class ScriptedBMC:
    """An ``open_session`` stand-in: answers from a script, the last answer repeated."""

    def __init__(self, clock, *answers):
        self.clock = clock
        self.answers = list(answers)
        self.calls = []

    def __call__(self, address, port, username, password, privilege, timeout):
        self.calls.append((self.clock.seconds(), address, port, username, password, privilege))
        self.timeout = timeout
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def times(self):
        return [c[0] for c in self.calls]


class RamdiskBMC:
    """Accepts the new password once the "ramdisk" has set it at ``ready_at``."""

    def __init__(self, clock, ready_at, password):
        self.clock = clock
        self.ready_at = ready_at
        self.password = password
        self.calls = 0

    def __call__(self, address, port, username, password, privilege, timeout):
        self.calls += 1
        if self.clock.seconds() >= self.ready_at and password == self.password:
            return OK_RESULT
        return REJECTED_RESULT


class VerifierTests(unittest.SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def verifier(self, bmc, pool=None, **kwargs):
        return CredentialsVerifier(self.clock, pool or SynchronousRunner(), open_session=bmc, **kwargs)

    def verify(self, verifier, address="192.0.2.5", username="newuser", password=PASSWORD, port=623):
        return defer.Deferred.fromCoroutine(verifier.verify(address, username, password, port=port))

    def run_out(self, d, step=0.5, limit=600):
        """Advance the clock until ``d`` fires."""
        for _ in range(int(limit / step)):
            if d.called:
                return
            self.clock.advance(step)
        self.fail("still waiting after {} s".format(limit))

    def assertNoPassword(self):
        for event in self.events:
            text = formatEvent(event) + repr(event)
            if "log_failure" in event:
                text += event["log_failure"].getTraceback()
            self.assertNotIn(PASSWORD, text)

    def test_first_attempt_succeeds(self):
        bmc = ScriptedBMC(self.clock, OK_RESULT)
        d = self.verify(self.verifier(bmc), port=6230)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(bmc.calls, [(0, "192.0.2.5", 6230, "newuser", PASSWORD, 4)])
        self.assertEqual(bmc.timeout, 10.0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_success_after_rejections_with_backoff(self):
        bmc = ScriptedBMC(self.clock, REJECTED_RESULT, REJECTED_RESULT, REJECTED_RESULT, OK_RESULT)
        d = self.verify(self.verifier(bmc, retry_interval=2.0))
        self.run_out(d)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(bmc.times, [0, 2, 6, 14])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertNoPassword()

    def test_ramdisk_sets_credentials_late_in_the_window(self):
        bmc = RamdiskBMC(self.clock, ready_at=40, password=PASSWORD)
        d = self.verify(self.verifier(bmc, window=60))
        self.run_out(d)
        self.successResultOf(d)
        self.assertLessEqual(self.clock.seconds(), 60)

    def test_window_exhausted_rejected(self):
        bmc = ScriptedBMC(self.clock, REJECTED_RESULT)
        d = self.verify(self.verifier(bmc, window=60, retry_interval=2, max_interval=15))
        self.run_out(d)
        error = self.failureResultOf(d, CredentialsRejected).value
        # backoff 2, 4, 8, then capped at 15; the last attempt at the end of the window
        self.assertEqual(bmc.times, [0, 2, 6, 14, 29, 44, 59, 60])
        self.assertIsInstance(error, errors.InspectordError)
        self.assertTrue(str(error).startswith("credentials rejected by the BMC at 192.0.2.5 for user 'newuser'"))
        self.assertIn("Incorrect password provided", str(error))
        self.assertEqual((error.address, error.port, error.attempts), ("192.0.2.5", 623, 8))
        self.assertNotIn(PASSWORD, str(error))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertNoPassword()

    def test_unreachable(self):
        bmc = ScriptedBMC(self.clock, UNREACHABLE_RESULT)
        d = self.verify(self.verifier(bmc, window=10), port=6230)
        self.run_out(d)
        error = self.failureResultOf(d, BMCUnreachable).value
        self.assertTrue(str(error).startswith("BMC unreachable at 192.0.2.5:6230"), str(error))
        self.assertNotIn("rejected", str(error))
        self.assertEqual(bmc.times, [0, 2, 6, 10])

    def test_ipv6_address_in_message(self):
        bmc = ScriptedBMC(self.clock, UNREACHABLE_RESULT)
        d = self.verify(self.verifier(bmc, window=0), address="2001:db8::5", port=6230)
        self.assertIn("BMC unreachable at [2001:db8::5]:6230", str(self.failureResultOf(d, BMCUnreachable).value))

    def test_last_outcome_decides(self):
        bmc = ScriptedBMC(self.clock, UNREACHABLE_RESULT, UNREACHABLE_RESULT, REJECTED_RESULT)
        d = self.verify(self.verifier(bmc, window=10))
        self.run_out(d)
        self.failureResultOf(d, CredentialsRejected)

    def test_bmc_error(self):
        bmc = ScriptedBMC(self.clock, AttemptResult(BMC_ERROR, "Insufficient resources to create new session"))
        d = self.verify(self.verifier(bmc, window=0))
        error = self.failureResultOf(d, BMCSessionError).value
        self.assertIsInstance(error, BMCVerificationError)
        self.assertIn("BMC at 192.0.2.5 refused the IPMI session: Insufficient resources", str(error))

    def test_zero_window_is_one_attempt(self):
        bmc = ScriptedBMC(self.clock, REJECTED_RESULT)
        d = self.verify(self.verifier(bmc, window=0))
        self.failureResultOf(d, CredentialsRejected)
        self.assertEqual(len(bmc.calls), 1)

    def test_open_session_raising_is_retried_and_reported(self):
        bmc = ScriptedBMC(self.clock, RuntimeError("boom " + PASSWORD), OK_RESULT)
        d = self.verify(self.verifier(bmc))
        self.run_out(d)
        self.successResultOf(d)
        self.assertEqual(len(bmc.calls), 2)
        self.assertNoPassword()

    def test_password_never_logged(self):
        bmc = ScriptedBMC(self.clock, REJECTED_RESULT, UNREACHABLE_RESULT, OK_RESULT)
        d = self.verify(self.verifier(bmc))
        self.run_out(d)
        self.successResultOf(d)
        self.assertTrue(self.events)
        self.assertTrue(any("newuser" in formatEvent(e) for e in self.events))
        self.assertNoPassword()

    def test_attempt_timeout_counts_as_unreachable(self):
        pool = HeldPool()
        bmc = ScriptedBMC(self.clock, OK_RESULT)
        d = self.verify(self.verifier(bmc, pool=pool, window=30, attempt_timeout=10))
        self.assertEqual(len(pool.calls), 1)
        self.clock.advance(10)
        self.assertNoResult(d)
        # the retry waits for the abandoned thread: never two logins on one BMC
        self.clock.advance(2)
        self.assertEqual(len(pool.calls), 1)
        pool.finish()
        self.assertEqual(len(pool.calls), 1)
        pool.finish()
        self.successResultOf(d)
        self.assertEqual(bmc.times, [12, 12])  # the abandoned call ran late; its result was dropped

    def test_attempt_timeout_until_window_ends(self):
        pool = HeldPool()
        d = self.verify(self.verifier(ScriptedBMC(self.clock, OK_RESULT), pool=pool, window=5, attempt_timeout=10))
        self.clock.advance(10)
        error = self.failureResultOf(d, BMCUnreachable).value
        self.assertIn("no answer within 10 s", str(error))
        pool.finish()  # the thread ends later; nothing waits for it
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_one_attempt_at_a_time_per_bmc(self):
        pool = HeldPool()
        bmc = ScriptedBMC(self.clock, OK_RESULT)
        verifier = self.verifier(bmc, pool=pool)
        first = self.verify(verifier, port=6230)
        second = self.verify(verifier, port=6230)
        other = self.verify(verifier, port=6231)
        self.assertEqual([c[2][2] for c in pool.calls], [6230, 6231])
        pool.finish(0)
        self.successResultOf(first)
        self.assertNoResult(second)
        self.assertEqual([c[2][2] for c in pool.calls], [6231, 6230])
        pool.finish(0)
        pool.finish(0)
        self.successResultOf(other)
        self.successResultOf(second)

    def test_cancel_during_backoff(self):
        bmc = ScriptedBMC(self.clock, REJECTED_RESULT)
        d = self.verify(self.verifier(bmc))
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bad_parameters(self):
        for kwargs in ({"window": -1}, {"attempt_timeout": 0}, {"retry_interval": 0}):
            self.assertRaises(ValueError, CredentialsVerifier, self.clock, None, **kwargs)

    def test_privilege_passed(self):
        bmc = ScriptedBMC(self.clock, OK_RESULT)
        self.successResultOf(self.verify(self.verifier(bmc, privilege=3)))
        self.assertEqual(bmc.calls[0][-1], 3)


class ValidateCredentialsTests(unittest.SynchronousTestCase):
    def test_valid(self):
        for username, password in [
            ("a", "x"),
            ("admin", "Passw0rd"),
            ("u" * 16, "p" * 20),
            ("root@bmc_1.x-y", "ABCxyz0123456789"),
        ]:
            validate_new_credentials(username, password)

    def assertInvalid(self, username, password, text):
        with self.assertRaises(ValueError) as cm:
            validate_new_credentials(username, password)
        self.assertIn(text, str(cm.exception))
        if password:
            self.assertNotIn(str(password), str(cm.exception))
        return cm.exception

    def test_password_rules(self):
        self.assertInvalid("admin", "", "must not be empty")
        self.assertInvalid("admin", None, "must not be empty")
        self.assertInvalid("admin", "p" * 21, "at most 20 characters")
        for bad in ("pass word", "pass-word", "päss", "pass\n", "p;rm"):
            self.assertInvalid("admin", bad, "may only contain the letters A-Z and a-z and the digits 0-9")

    def test_username_rules(self):
        self.assertInvalid("", "pass", "user name must not be empty")
        self.assertInvalid(None, "pass", "user name must not be empty")
        self.assertInvalid("u" * 17, "pass", "at most 16 characters")
        for bad in ("ad min", "adm\tin", "admïn", "adm\x00", "adm\x7f"):
            self.assertInvalid(bad, "pass", "printable ASCII")


class ClassifyErrorTests(unittest.SynchronousTestCase):
    """pyghmi's own error texts (pyghmi 1.6), as ``thd_open_session`` sees them."""

    def test_rejected(self):
        for text in [
            "Incorrect password provided",
            "Unauthorized name in RAKP2",
            "Invalid role in RAKP2",
            "Unauthorized role or privilege level requested in RAKP2",
            "Invalid integrity check value reported in RAKP4",
            "Invalid RAKP4 integrity code (wrong Kg?)",
            "Insufficient privilege level or other error while requesting privelege level 4 for b'u'",
        ]:
            self.assertEqual(ipmi_session.classify_error(text).outcome, REJECTED, text)

    def test_unreachable(self):
        for text in [None, "None", "timeout", "Session no longer connected", "Unable to transmit to specified address"]:
            self.assertEqual(ipmi_session.classify_error(text).outcome, UNREACHABLE, text)
        self.assertEqual(ipmi_session.classify_error(None).reason, "no answer")

    def test_other(self):
        result = ipmi_session.classify_error("No Cipher suite match with proposed security algorithms")
        self.assertEqual(result.outcome, BMC_ERROR)


class OpenSessionTests(unittest.SynchronousTestCase):
    """``thd_open_session`` around pyghmi's ``Session``, with a stand-in class (no sockets)."""

    def setUp(self):
        try:
            from pyghmi import exceptions
            from pyghmi.ipmi.private import session as pyghmi_session
        except ImportError:
            raise unittest.SkipTest("pyghmi is not installed")
        self.exceptions = exceptions
        self.created = []
        test = self

        class FakeSession:
            """Answers like pyghmi's callback mode: ``onlogon`` gets ``{'success': True}`` or ``{'error': text}``."""

            initting_sessions = {}
            socketchecking = None
            behaviour = "ok"
            pumped = 0

            def __init__(self, bmc, userid, password, port, privlevel, keepalive, onlogon):
                test.created.append(self)
                self.kwargs = dict(bmc=bmc, userid=userid, port=port, privlevel=privlevel, keepalive=keepalive)
                self.logged = 0
                self.broken = False
                self.logged_out = self.marked_broken = False
                if isinstance(self.behaviour, Exception):
                    raise self.behaviour
                if self.behaviour == "ok":
                    self.logged = 1
                    onlogon({"success": True})
                elif self.behaviour == "stale":
                    onlogon({"success": True})
                elif self.behaviour != "silent":
                    self.broken = True
                    onlogon({"error": self.behaviour})

            @classmethod
            def wait_for_rsp(cls, timeout=None):
                cls.pumped += 1

            def logout(self):
                self.logged_out = True

            def _mark_broken(self, error=None):
                self.marked_broken = True

        self.FakeSession = FakeSession
        self.patch(pyghmi_session, "Session", FakeSession)

    def open(self, timeout=10.0):
        return ipmi_session.thd_open_session("192.0.2.5", 6230, "u", "p", 4, timeout)

    def test_success_logs_out(self):
        self.assertEqual(self.open(), AttemptResult(OK))
        (session,) = self.created
        self.assertTrue(session.logged_out)
        self.assertEqual(session.kwargs, dict(bmc="192.0.2.5", userid="u", port=6230, privlevel=4, keepalive=False))
        self.assertIsNotNone(self.FakeSession.socketchecking)

    def test_stale_shared_session_removed_and_not_trusted(self):
        key = ("192.0.2.5", "u", "p", 6230, None)
        self.FakeSession.initting_sessions[key] = object()
        self.FakeSession.behaviour = "stale"
        self.assertEqual(self.open().outcome, UNREACHABLE)
        self.assertNotIn(key, self.FakeSession.initting_sessions)

    def test_error_from_the_callback(self):
        self.FakeSession.behaviour = "Unauthorized name in RAKP2"
        self.assertEqual(self.open(), AttemptResult(REJECTED, "Unauthorized name in RAKP2"))
        self.assertFalse(self.created[0].logged_out)

    def test_no_answer_before_the_deadline(self):
        self.FakeSession.behaviour = "silent"
        self.assertEqual(self.open(timeout=0), AttemptResult(UNREACHABLE, "no answer within 0 s"))
        self.assertTrue(self.created[0].marked_broken)

    def test_exceptions(self):
        for error, outcome in [
            (self.exceptions.IpmiException("Username too long for IPMI, must not exceed 16"), REJECTED),
            (self.exceptions.IpmiException(None), UNREACHABLE),
            (OSError(-2, "Name or service not known"), UNREACHABLE),
            (TypeError("'<' not supported"), BMC_ERROR),
        ]:
            self.FakeSession.behaviour = error
            self.assertEqual(self.open().outcome, outcome, error)
