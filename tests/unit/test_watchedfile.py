"""inspectord.watchedfile: a small file parsed again when it changes, read in a thread pool."""

import os

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from inspectord.threads import SynchronousRunner
from inspectord.watchedfile import WatchedFile


class HeldPool:
    """``run`` returns a Deferred the test fires."""

    def __init__(self):
        self.pending = []

    def run(self, f, *args):
        d = defer.Deferred()
        self.pending.append((d, f, args))
        return d

    def finish(self):
        d, f, args = self.pending.pop(0)
        d.callback(f(*args))


def parse(text):
    if text.startswith("bad"):
        raise ValueError("bad content")
    return text.strip()


class WatchedFileTests(SynchronousTestCase):
    def setUp(self):
        self.path = self.mktemp()
        self.clock = Clock()
        self.loaded = []

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)
        # A different size or mtime makes a new signature.
        os.utime(self.path, ns=(0, len(self.loaded) * 1000 + len(text)))

    def watched(self, pool, **kwargs):
        return WatchedFile(self.path, parse, pool, self.clock, on_load=self.loaded.append, **kwargs)

    def get(self, watched):
        return defer.Deferred.fromCoroutine(watched.get())

    def test_load_now_then_reload_on_change_at_most_every_interval(self):
        self.write("one")
        watched = self.watched(SynchronousRunner())
        self.assertEqual(watched.load_now(), "one")
        self.write("second")
        self.assertEqual(self.successResultOf(self.get(watched)), "one")
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.get(watched)), "second")
        self.assertEqual(self.loaded, ["one", "second"])

    def test_bad_change_keeps_previous_value(self):
        self.write("one")
        watched = self.watched(SynchronousRunner())
        watched.load_now()
        self.write("bad!")
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.get(watched)), "one")

    def test_missing_file(self):
        watched = self.watched(SynchronousRunner(), missing="defaults")
        self.assertEqual(watched.load_now(), "defaults")
        required = self.watched(SynchronousRunner())
        self.assertRaises(ValueError, required.load_now)

    def test_concurrent_gets_share_one_read_and_a_cancelled_one_does_not_stop_it(self):
        self.write("one")
        pool = HeldPool()
        watched = self.watched(pool)
        watched.load_now()
        self.write("two")
        self.clock.advance(1)
        first, second, third = (self.get(watched) for _ in range(3))
        self.assertEqual(len(pool.pending), 1)
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)
        pool.finish()
        self.assertEqual([self.successResultOf(second), self.successResultOf(third)], ["two", "two"])
        self.assertEqual(self.loaded, ["one", "two"])
