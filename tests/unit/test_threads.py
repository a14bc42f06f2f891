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


class PoolServiceTests:
    """What every thread-pool service does: daemon threads, a join off the reactor thread, a bounded stop."""

    service = None  # the ThreadPoolService class under test

    def setUp(self):
        self.clock = ThreadedClock()
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def started(self, size=1, grace=1.0, stop_at_cleanup=True):
        pool = self.service(self.clock, "inspectord-test", size, grace=grace)
        pool.startService()
        if stop_at_cleanup:
            self.addCleanup(pool.pool.stop)
        return pool

    def test_threads_do_not_hold_the_process(self):
        pool = self.started()
        d = pool.run(lambda: threading.current_thread().daemon)
        self.clock.run_one_from_thread()
        self.assertIs(self.successResultOf(d), True)

    def test_stop_joins_off_the_reactor_thread(self):
        pool = self.started(stop_at_cleanup=False)
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
        pool = self.started(grace=1.5, stop_at_cleanup=False)
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


class ThreadPoolServiceTests(PoolServiceTests, SynchronousTestCase):
    service = threads.ThreadPoolService

    def test_run_in_a_named_thread(self):
        pool = self.started(size=2)
        d = pool.run(lambda: threading.current_thread().name)
        self.clock.run_one_from_thread()
        self.assertIn("inspectord-test", self.successResultOf(d))
        self.assertEqual(pool.statistics()["max"], 2)


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


class WorkerThreadsServiceTests(PoolServiceTests, SynchronousTestCase):
    service = threads.WorkerThreadsService

    def test_result_failure_and_thread(self):
        pool = self.started()
        named = pool.run(lambda: (threading.current_thread().name, threading.current_thread().daemon))
        self.clock.run_one_from_thread()
        self.assertEqual(self.successResultOf(named), ("inspectord-test-0", True))
        failed = pool.run(lambda: 1 / 0)
        self.clock.run_one_from_thread()
        self.failureResultOf(failed, ZeroDivisionError)
        summed = pool.run(lambda a, b=0: a + b, 1, b=2)
        self.clock.run_one_from_thread()
        self.assertEqual(self.successResultOf(summed), 3)

    def test_results_share_one_wake_up(self):
        pool = self.started()
        release = threading.Event()
        self.addCleanup(release.set)
        first = pool.run(release.wait)
        second = pool.run(lambda: "second")
        release.set()
        self.clock.run_one_from_thread()
        # Both results came with the first wake-up, unless the second
        # finished after the first delivery began.
        if not second.called:
            self.clock.run_one_from_thread()
        self.assertIs(self.successResultOf(first), True)
        self.assertEqual(self.successResultOf(second), "second")
        self.assertEqual(pool.statistics(), {"queued": 0, "busy": 0, "max": 1})

    def test_one_thread_for_sqlite_more_as_calls_queue_up(self):
        pool = self.started(size=2)
        release = threading.Event()
        self.addCleanup(release.set)
        calls = [pool.run(release.wait) for _ in range(3)]
        self.assertEqual(len(pool.pool.threads), 2)
        self.assertEqual(pool.statistics()["busy"], 2)
        release.set()
        while not all(d.called for d in calls):
            self.clock.run_one_from_thread()
        self.assertEqual([self.successResultOf(d) for d in calls], [True] * 3)
        self.assertEqual(pool.statistics()["busy"], 0)

    def test_call_before_start_runs_once_started(self):
        pool = threads.WorkerThreadsService(self.clock, "inspectord-test", 1)
        self.addCleanup(pool.pool.stop)
        d = pool.run(lambda: "early")
        self.assertEqual(pool.pool.threads, [])
        pool.startService()
        self.clock.run_one_from_thread()
        self.assertEqual(self.successResultOf(d), "early")

    def test_cancelled_call_result_is_dropped(self):
        pool = self.started()
        release = threading.Event()
        self.addCleanup(release.set)
        d = pool.run(release.wait)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        release.set()
        self.clock.run_one_from_thread()  # the late result arrives harmlessly
        self.assertEqual(pool.statistics()["busy"], 0)
