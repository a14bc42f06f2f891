"""inspectord.singleflight: one call in flight per key, every waiter its own Deferred."""

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from inspectord.singleflight import SingleFlight


class SingleFlightTests(SynchronousTestCase):
    def setUp(self):
        self.flight = SingleFlight()
        self.calls = []

    async def fetch(self, key):
        d = defer.Deferred()
        self.calls.append((key, d))
        return await d

    def test_concurrent_calls_share_one(self):
        a = self.flight.call("k", self.fetch, "k")
        b = self.flight.call("k", self.fetch, "k")
        self.assertIsNot(a, b)
        self.assertEqual(len(self.calls), 1)
        self.assertIn("k", self.flight)
        self.calls[0][1].callback("value")
        self.assertEqual((self.successResultOf(a), self.successResultOf(b)), ("value", "value"))
        self.assertEqual(len(self.flight), 0)

    def test_keys_are_separate_and_a_later_call_calls_again(self):
        self.flight.call("a", self.fetch, "a")
        self.flight.call("b", self.fetch, "b")
        self.assertEqual([k for k, _ in self.calls], ["a", "b"])
        self.calls[0][1].callback(1)
        self.flight.call("a", self.fetch, "a")
        self.assertEqual([k for k, _ in self.calls], ["a", "b", "a"])

    def test_failure_reaches_every_waiter(self):
        a = self.flight.call("k", self.fetch, "k")
        b = self.flight.call("k", self.fetch, "k")
        self.calls[0][1].errback(RuntimeError("down"))
        self.failureResultOf(a, RuntimeError)
        self.failureResultOf(b, RuntimeError)

    def test_cancelling_one_waiter_leaves_the_call_and_the_others(self):
        a = self.flight.call("k", self.fetch, "k")
        b = self.flight.call("k", self.fetch, "k")
        a.cancel()
        self.failureResultOf(a, defer.CancelledError)
        shared = self.calls[0][1]
        self.assertFalse(shared.called)
        shared.callback("value")
        self.assertEqual(self.successResultOf(b), "value")

    def test_a_waiter_cannot_change_what_others_get(self):
        a = self.flight.call("k", self.fetch, "k")
        b = self.flight.call("k", self.fetch, "k")
        a.addCallback(lambda value: value.append("mine") or "changed")
        self.calls[0][1].callback([])
        self.assertEqual(self.successResultOf(a), "changed")
        self.assertEqual(self.successResultOf(b), ["mine"])  # same object, but the chain is b's own

    def test_plain_functions_too(self):
        self.assertEqual(self.successResultOf(self.flight.call("k", lambda: 5)), 5)
        self.failureResultOf(self.flight.call("k", lambda: 1 / 0), ZeroDivisionError)
