"""inspectord.threads: named pools whose stop never blocks the reactor nor waits past its grace."""

import queue
import threading

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from inspectord import threads


class ThreadedClock(Clock):
    """A Clock whose ``callFromThread`` queues the call; the test runs them in its own thread."""

    def __init__(self):
        super().__init__()
        self.from_threads = queue.Queue()

    def callFromThread(self, f, *args, **kwargs):
        self.from_threads.put((f, args, kwargs))

    def run_one_from_thread(self, timeout=10):
        f, args, kwargs = self.from_threads.get(timeout=timeout)
        f(*args, **kwargs)


class ThreadPoolServiceTests(SynchronousTestCase):
    def setUp(self):
        self.clock = ThreadedClock()
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def test_run_in_a_named_thread(self):
        pool = threads.ThreadPoolService(self.clock, "inspectord-test", 2)
        pool.startService()
        self.addCleanup(pool.pool.stop)
        d = pool.run(lambda: threading.current_thread().name)
        self.clock.run_one_from_thread()
        self.assertIn("inspectord-test", self.successResultOf(d))
        self.assertEqual(pool.statistics()["max"], 2)

    def test_threads_do_not_hold_the_process(self):
        pool = threads.ThreadPoolService(self.clock, "inspectord-test", 1)
        pool.startService()
        self.addCleanup(pool.pool.stop)
        d = pool.run(lambda: threading.current_thread().daemon)
        self.clock.run_one_from_thread()
        self.assertIs(self.successResultOf(d), True)

    def test_stop_joins_off_the_reactor_thread(self):
        pool = threads.ThreadPoolService(self.clock, "inspectord-test", 1)
        pool.startService()
        pool.run(lambda: None)
        self.clock.run_one_from_thread()  # the call's result
        joiner = []
        original_stop = pool.pool.stop

        def stop():
            joiner.append(threading.current_thread())
            original_stop()

        pool.pool.stop = stop
        stopped = pool.stopService()
        self.clock.run_one_from_thread()  # the join's end
        self.assertIsNone(self.successResultOf(stopped))
        self.assertIsNot(joiner[0], threading.main_thread())
        self.assertFalse(any(t.is_alive() for t in pool.pool.threads))

    def test_stop_waits_for_a_blocked_thread_only_the_grace(self):
        pool = threads.ThreadPoolService(self.clock, "inspectord-test", 1, grace=1.5)
        pool.startService()
        release = threading.Event()
        self.addCleanup(release.set)
        blocked = pool.run(release.wait)
        stopped = pool.stopService()
        self.assertNoResult(stopped)
        self.clock.advance(1.4)
        self.assertNoResult(stopped)
        self.clock.advance(0.1)
        self.assertIsNone(self.successResultOf(stopped))
        warnings = [e for e in self.events if e.get("pool") == "inspectord-test"]
        self.assertEqual([(e["busy"], e["grace"]) for e in warnings], [(1, 1.5)])
        # The blocked call ends later; its result and the join arrive harmlessly.
        release.set()
        self.clock.run_one_from_thread()
        self.clock.run_one_from_thread()
        self.assertIs(self.successResultOf(blocked), True)


class CallInOwnThreadTests(SynchronousTestCase):
    def test_result_and_failure(self):
        clock = ThreadedClock()
        ok = threads.call_in_own_thread(clock, lambda: 42)
        clock.run_one_from_thread()
        self.assertEqual(self.successResultOf(ok), 42)
        failed = threads.call_in_own_thread(clock, lambda: 1 / 0)
        clock.run_one_from_thread()
        self.failureResultOf(failed, ZeroDivisionError)

    def test_bounded(self):
        clock = Clock()
        late = []
        d = threads.bounded(defer.Deferred(), 2.0, clock, on_timeout=lambda: late.append(True))
        clock.advance(2.0)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(late, [True])
        on_time = threads.bounded(defer.succeed("done"), 2.0, clock)
        self.assertEqual(self.successResultOf(on_time), "done")
        self.assertEqual(clock.getDelayedCalls(), [])


class RunnerTests(SynchronousTestCase):
    def test_synchronous_runner(self):
        runner = threads.SynchronousRunner()
        self.assertEqual(self.successResultOf(runner.run(lambda a, b=0: a + b, 1, b=2)), 3)
        self.failureResultOf(runner.run(lambda: 1 / 0), ZeroDivisionError)
