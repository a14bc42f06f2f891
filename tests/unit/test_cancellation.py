"""Cancellation means stop: a cancelled call is never retried, and no stop waits for what cannot end.

The three stops that used to hang: while Ironic is unreachable, while a
BMC credentials check retries against a BMC that does not answer, and
while a PXE filter (DHCP) sync is in flight.  Each must end within 2 s of
the clock, with ``[lifecycle]stop_grace`` at its default (20 s).
"""

from twisted.internet import defer, error as net_error, task
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from inspectord import keystone, outbound
from inspectord.api import auth
from inspectord.ipmi import CredentialsVerifier
from inspectord.ipmi.base import UNREACHABLE, AttemptResult
from inspectord.ironic.client import IronicClient, static_endpoint
from inspectord.pxe import service as pxe_service
from inspectord.store.swift import SwiftClient
from inspectord.threads import SynchronousRunner
from tests.unit.helpers import Harness, fixture
from tests.unit.test_auth_keystone import AUTH_URL
from tests.unit.test_ironic_client import FakeResponse
from tests.unit.test_pxe_service import FakeDriver, FakePorts, new_store

STOP_WITHIN = 2.0
MAC = "02:fc:00:00:00:01"


class AgentLikeHTTP:
    """Requests that wait for the test; cancelled as twisted.web's Agent does once connected."""

    def __init__(self):
        self.pending = []

    def request(self, method, url, **kwargs):
        d = defer.Deferred(lambda d: d.errback(ResponseNeverReceived([Failure(defer.CancelledError())])))
        self.pending.append(d)
        return d


class RefusingHTTP:
    """Ironic is down: every connection is refused."""

    def __init__(self):
        self.made = 0

    def request(self, method, url, **kwargs):
        self.made += 1
        return defer.fail(net_error.ConnectionRefusedError())


def stopped_within(test, clock, stopping, seconds=STOP_WITHIN, step=0.1):
    """Advance ``clock`` until ``stopping`` fires; fail if it takes longer than ``seconds``."""
    waited = 0.0
    while not stopping.called and waited < seconds:
        clock.advance(step)
        waited += step
    test.assertTrue(stopping.called, "the stop did not end within {} s".format(seconds))
    return test.successResultOf(stopping)


class CancellationShapesTests(SynchronousTestCase):
    def test_every_shape_is_a_cancellation(self):
        cancelled = Failure(defer.CancelledError())
        for exc in (
            defer.CancelledError(),
            net_error.ConnectingCancelledError(None),
            ResponseNeverReceived([cancelled]),
            ResponseFailed([cancelled]),
        ):
            self.assertTrue(outbound.cancellation(exc), exc)
            self.assertRaises(defer.CancelledError, outbound.raise_if_cancelled, exc)

    def test_connection_errors_are_not(self):
        for exc in (
            net_error.ConnectionRefusedError(),
            ResponseNeverReceived([Failure(net_error.ConnectionLost())]),
            defer.TimeoutError(),
        ):
            self.assertFalse(outbound.cancellation(exc), exc)
            self.assertIsNone(outbound.raise_if_cancelled(exc))

    def test_own_timeout_is_a_timeout_whatever_its_shape(self):
        clock = task.Clock()
        http = AgentLikeHTTP()
        d = outbound.with_timeout(http.request("GET", None), 5, clock)
        clock.advance(5)
        self.failureResultOf(d, defer.TimeoutError)


class IronicCancellationTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()

    def client(self, http, **kwargs):
        return IronicClient(http, static_endpoint("http://ironic.test:6385"), self.clock, max_retries=5,
                            retry_interval=2.0, timeout=10, **kwargs)

    def test_cancelled_call_is_not_retried(self):
        http = AgentLikeHTTP()
        d = defer.Deferred.fromCoroutine(self.client(http).get_node("n"))
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(len(http.pending), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_own_timeout_is_still_retried(self):
        http = AgentLikeHTTP()
        d = defer.Deferred.fromCoroutine(self.client(http).get_node("n"))
        self.clock.advance(10)  # timed out
        self.clock.advance(2)  # the retry
        self.assertEqual(len(http.pending), 2)
        http.pending[1].callback(FakeResponse(200, {"uuid": "n"}))
        self.assertEqual(self.successResultOf(d), {"uuid": "n"})

    def test_stop_retrying_ends_the_wait_for_an_unreachable_ironic_at_once(self):
        http = RefusingHTTP()
        client = self.client(http)
        d = defer.Deferred.fromCoroutine(client.get_node("n"))
        self.assertNoResult(d)
        client.stop_retrying()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # Later calls try once, then stop too.
        later = defer.Deferred.fromCoroutine(client.get_node("n"))
        self.failureResultOf(later, defer.CancelledError)
        self.assertEqual(http.made, 2)

    def test_stop_retrying_keeps_retries_of_answers(self):
        http = AgentLikeHTTP()
        client = self.client(http)
        d = defer.Deferred.fromCoroutine(client.get_node("n"))
        http.pending[0].callback(FakeResponse(503, {"error_message": "busy"}))
        client.stop_retrying()
        self.assertNoResult(d)
        self.clock.advance(2)
        http.pending[1].callback(FakeResponse(200, {"uuid": "n"}))
        self.assertEqual(self.successResultOf(d), {"uuid": "n"})


class SwiftCancellationTests(SynchronousTestCase):
    def test_cancelled_call_is_not_retried(self):
        clock = task.Clock()
        http = AgentLikeHTTP()
        swift = SwiftClient(http, static_endpoint("http://swift.test:8080/v1/AUTH_x"), clock)
        d = defer.Deferred.fromCoroutine(swift.get_object("o"))
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(len(http.pending), 1)
        self.assertEqual(clock.getDelayedCalls(), [])


class KeystoneCancellationTests(SynchronousTestCase):
    def test_cancelled_call_is_not_keystone_unavailable(self):
        clock = task.Clock()
        http = AgentLikeHTTP()
        d = defer.Deferred.fromCoroutine(
            auth._keystone_request(http, clock, 10, "GET", AUTH_URL + "/auth/tokens", "token validation")
        )
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(len(http.pending), 1)

    def test_own_timeout_is_unavailable(self):
        clock = task.Clock()
        d = defer.Deferred.fromCoroutine(
            auth._keystone_request(AgentLikeHTTP(), clock, 10, "GET", AUTH_URL + "/auth/tokens", "token validation")
        )
        clock.advance(10)
        self.assertIn("did not answer within 10 s", self.failureResultOf(d, auth.AuthUnavailable).value.message)

    def test_refused_is_still_unavailable(self):
        clock = task.Clock()
        from keystoneauth1 import exceptions

        class Refused:
            auth = session = property(lambda self: self)

            def get_auth_headers(self, auth):
                raise exceptions.ConnectFailure("Unable to establish connection to keystone.test:5000")

        refused = Refused()
        service = keystone.ServiceToken(refused, refused, clock, SynchronousRunner(), error=auth.AuthUnavailable)
        failure = self.failureResultOf(defer.Deferred.fromCoroutine(service.get()), auth.AuthUnavailable)
        self.assertIn("Keystone is unreachable: Unable to establish connection", failure.value.message)


class StopWithin2sTests(SynchronousTestCase):
    def test_stop_while_ironic_is_unreachable(self):
        h = Harness()
        uuid = h.fake.add_node(name="n", macs=[MAC], provision_state="manageable")
        started = h.http.request("POST", "http://inspectord.test:5050/v1/introspection/" + uuid)
        h.flush()
        self.assertEqual(h.store.thd_get_node(uuid).state, "waiting")
        refusing = RefusingHTTP()
        h.ironic._http = refusing  # Ironic goes down
        answer = h.http.request("POST", "http://inspectord.test:5050/v1/continue", data=_json(fixture("ipa-payload.json")))
        h.flush()
        self.assertGreater(refusing.made, 0)
        self.assertNoResult(answer)  # processing waits for Ironic, retrying
        stopping = defer.Deferred.fromCoroutine(h.introspection.stop())
        stopped_within(self, h.clock, stopping)
        record = h.store.thd_get_node(uuid)
        # Not failed: left in processing, its lease released for whoever runs next.
        self.assertEqual((record.state, record.lease_owner), ("processing", None))
        self.assertEqual(len(h.introspection._work), 0)
        self.successResultOf(started)

    def test_stop_while_a_bmc_check_retries_against_an_unanswering_bmc(self):
        h = Harness(processing__enable_setting_ipmi_credentials=True, processing__store_data="database")
        attempts = []

        def unanswering(*args):
            attempts.append(args)
            return AttemptResult(UNREACHABLE, "no answer")

        h.introspection.verifier = CredentialsVerifier(
            h.clock, SynchronousRunner(), window=600, attempt_timeout=5, open_session=unanswering
        )
        uuid = h.fake.add_node(name="n", macs=[MAC], provision_state="enroll",
                               driver_info={"ipmi_address": "192.0.2.9", "ipmi_username": "admin"})
        h.request("POST", "/v1/introspection/n?new_ipmi_password=abc123")
        h.flush()
        self.assertEqual(h.request("POST", "/v1/continue", fixture("ipa-payload.json"))[0], 200)
        for _ in range(30):
            h.clock.advance(1)
        self.assertGreater(len(attempts), 2)  # retrying
        stopping = defer.Deferred.fromCoroutine(h.introspection.stop())
        stopped_within(self, h.clock, stopping)
        record = h.store.thd_get_node(uuid)
        self.assertEqual((record.state, record.lease_owner), ("processing", None))
        tried = len(attempts)
        h.clock.advance(60)
        self.assertEqual(len(attempts), tried)  # no attempt after the stop

    def test_stop_while_a_pxe_filter_sync_is_in_flight(self):
        clock = task.Clock()
        driver = FakeDriver()
        driver.hold = defer.Deferred()  # e.g. dnsmasq's hostsdir on a hung NFS mount
        filt = pxe_service.PXEFilterService(driver, new_store(), FakePorts([MAC]), clock, sync_period=15)
        filt.startService()
        clock.advance(0)
        self.assertEqual(len(driver.applied), 1)
        stopping = filt.stopService()
        self.assertNoResult(stopping)
        stopped_within(self, clock, stopping)
        self.assertTrue(driver.stopped)
        self.assertEqual(filt.health()["state"], "stopped")
        self.assertEqual(clock.getDelayedCalls(), [])


def _json(body):
    import json

    return json.dumps(body).encode()
