"""inspectord.background: fire-and-forget work whose failures are logged and which a stop can wait for."""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from inspectord.background import Background


class Collect:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)


class BackgroundTests(SynchronousTestCase):
    def setUp(self):
        self.collect = Collect()
        self.work = Background(Logger(observer=self.collect))

    async def wait(self, d):
        return await d

    def test_failure_is_logged_with_its_fields(self):
        async def broken():
            raise RuntimeError("boom")

        d = self.work.start(broken(), "doing things", node="n1")
        self.assertIsNone(self.successResultOf(d))
        [event] = self.collect.events
        self.assertEqual((event["what"], event["node"]), ("doing things", "n1"))
        self.assertTrue(event["log_failure"].check(RuntimeError))

    def test_interruption_is_one_line_without_traceback(self):
        held = defer.Deferred()
        d = self.work.start(self.wait(held), "waiting")
        d.cancel()
        self.assertIsNone(self.successResultOf(d))
        [event] = self.collect.events
        self.assertNotIn("log_failure", event)
        self.assertEqual(event["log_format"], "Interrupted while {what}")

    def test_counted_until_done_and_idle(self):
        held = defer.Deferred()
        self.work.start(self.wait(held), "waiting")
        tracked = self.work.track(self.wait(defer.Deferred()))
        self.assertEqual(len(self.work), 2)
        idle = self.work.idle()
        held.callback(None)
        self.assertEqual(len(self.work), 1)
        self.assertNoResult(idle)
        tracked.cancel()
        self.failureResultOf(tracked, defer.CancelledError)  # track leaves failures to its caller
        self.assertFalse(self.work)
        self.successResultOf(idle)

    def test_cancel_all(self):
        ds = [self.work.start(self.wait(defer.Deferred()), "waiting") for _ in range(3)]
        self.work.cancel_all()
        self.assertEqual([self.successResultOf(d) for d in ds], [None] * 3)
        self.assertEqual(len(self.work), 0)

    def test_a_cancelled_wait_leaves_the_work(self):
        held = defer.Deferred()
        self.work.start(self.wait(held), "waiting")
        idle = self.work.idle()
        idle.cancel()
        self.failureResultOf(idle, defer.CancelledError)
        self.assertEqual(len(self.work), 1)
        held.callback(None)
        self.assertEqual(len(self.work), 0)
