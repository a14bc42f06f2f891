"""Named thread pools for blocking calls, and stopping them without blocking.

Every blocking call inspectord makes (SQLAlchemy, pyghmi, ``getaddrinfo``,
bcrypt, file reads) runs in a named, sized :class:`ThreadPoolService`.

Stopping a pool joins its threads, and joining blocks: a thread inside a
pyghmi login or a ``getaddrinfo`` for an unanswering DNS server may take
many seconds.  So the join runs in a thread of its own, never in the
reactor thread, and the stop waits for it at most ``grace`` seconds.  The
pools' threads are daemon threads: one still stuck after the grace does not
keep the process alive once the reactor has stopped.
"""

import collections
import queue
import threading

from twisted.application import service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import threadpool
from twisted.python.failure import Failure

#: Seconds a stop waits for a pool's threads to end.
STOP_GRACE = 1.0


def _daemon_thread(*args, **kwargs):
    thread = threading.Thread(*args, **kwargs)
    thread.daemon = True
    return thread


class DaemonThreadPool(threadpool.ThreadPool):
    """A ``ThreadPool`` whose threads do not hold the process at exit."""

    threadFactory = staticmethod(_daemon_thread)


def call_in_own_thread(reactor, f, *args, name="inspectord-join"):
    """Run blocking ``f(*args)`` in a new daemon thread; a Deferred with its result.

    For the rare blocking call that must not wait for a pool's thread (the
    join of a pool or of a sniffer's thread).  Cancelling the Deferred
    stops waiting for it, not the thread.
    """
    d = defer.Deferred()

    def run():
        try:
            result = f(*args)
        except BaseException:
            failure = Failure()
            reactor.callFromThread(_fire, d, failure)
        else:
            reactor.callFromThread(_fire, d, result)

    _daemon_thread(target=run, name=name).start()
    return d


def _fire(d, result):
    if d.called:  # cancelled: nobody waits any more
        return
    if isinstance(result, Failure):
        d.errback(result)
    else:
        d.callback(result)


def bounded(d, grace, clock, on_timeout=None):
    """``d``, or None once ``grace`` seconds have passed on ``clock``: a stop that never waits longer.

    :param on_timeout: called (no argument) when the grace ran out, once
        ``d`` has fired: it may interrupt the work whose end ``d`` waits for.
    """

    def gave_up(result, timeout):
        # Only called when the grace ran out; ``d`` was cancelled then.
        if on_timeout is not None:
            clock.callLater(0, on_timeout)
        return None

    return d.addTimeout(grace, clock, onTimeoutCancel=gave_up)


class ThreadPoolService(service.Service):
    """A named, sized thread pool started and stopped with the service tree.

    :param reactor: the reactor (``callFromThread``) and clock of the grace.
    :param name: the pool's and its threads' name (``inspectord-io``...).
    :param grace: seconds :meth:`stopService` waits for the threads.
    """

    log = Logger()

    def __init__(self, reactor, name, size, minthreads=0, grace=STOP_GRACE):
        self._reactor = reactor
        self.name = name
        self.grace = grace
        self.pool = DaemonThreadPool(minthreads=minthreads, maxthreads=size, name=name)

    def run(self, f, *args, **kwargs):
        """Run blocking ``f`` in the pool; a Deferred with its result."""
        return deferToThreadPool(self._reactor, self.pool, f, *args, **kwargs)

    def statistics(self):
        """``{"queued": calls waiting for a thread, "busy": threads working, "max": pool size}``."""
        return {"queued": self.pool.q.qsize(), "busy": len(self.pool.working), "max": self.pool.max}

    def startService(self):
        super().startService()
        self.pool.start()

    def stopService(self):
        super().stopService()

        def late():
            self.log.warn(
                "Thread pool {pool}: {busy} thread(s) still in a blocking call after {grace} s; not waiting for them",
                pool=self.name, busy=len(self.pool.working), grace=self.grace,
            )

        joined = call_in_own_thread(self._reactor, self.pool.stop, name=self.name + "-join")
        return bounded(joined, self.grace, self._reactor, on_timeout=late)


class PoolRunner:
    """``run(f, *args) -> Deferred`` over a raw ``ThreadPool`` (the shape :class:`ThreadPoolService` has)."""

    def __init__(self, reactor, pool):
        self._reactor = reactor
        self._pool = pool

    def run(self, f, *args, **kwargs):
        return deferToThreadPool(self._reactor, self._pool, f, *args, **kwargs)


class SynchronousRunner:
    """Runs the call at once in the calling thread (unit tests)."""

    def run(self, f, *args, **kwargs):
        return defer.execute(f, *args, **kwargs)


_STOP = object()


class WorkerThreads:
    """A few daemon threads taking calls from one queue: the lean thread hand-off of the database.

    Twisted's ``ThreadPool`` wakes a worker through a ``Condition`` and
    wraps every call in a logging context; a Deferred per call and a
    ``SimpleQueue`` do here.  Results come back to the reactor thread in
    batches: a worker that finishes a call while an earlier result still
    waits for delivery adds its own to the same wake-up.

    :meth:`submit` and the delivery run in the reactor thread only, so the
    counts need no lock; the workers touch only the queue, the results
    deque and the ``_wake_pending`` flag.
    """

    def __init__(self, reactor, name, size):
        self._reactor = reactor
        self.name = name
        self.max = size
        self.q = queue.SimpleQueue()
        self.threads = []
        self._submitted = 0  # calls not yet delivered (reactor thread)
        self._done = collections.deque()
        self._wake_pending = False
        self._started = False

    @property
    def working(self):
        """Calls taken or waiting for a thread, not yet answered (for :meth:`ThreadPoolService.statistics`)."""
        return range(min(self._submitted, len(self.threads)))

    def start(self):
        """Start taking calls (those submitted before wait for this)."""
        self._started = True
        self._grow()

    def _grow(self):
        while self._started and self._submitted > len(self.threads) and len(self.threads) < self.max:
            thread = _daemon_thread(target=self._work, name="{}-{}".format(self.name, len(self.threads)))
            self.threads.append(thread)
            thread.start()

    def submit(self, f, *args, **kwargs):
        """Run blocking ``f(*args, **kwargs)`` in a thread; a Deferred fired in the reactor thread."""
        d = defer.Deferred()
        self._submitted += 1
        self._grow()
        self.q.put((d, f, args, kwargs))
        return d

    def _work(self):
        get, done = self.q.get, self._done
        while True:
            item = get()
            if item is _STOP:
                return
            d, f, args, kwargs = item
            try:
                done.append((d, True, f(*args, **kwargs)))
            except BaseException:
                done.append((d, False, Failure()))
            del item, d, f, args, kwargs
            if not self._wake_pending:
                self._wake_pending = True
                self._reactor.callFromThread(self._deliver)

    def _deliver(self):
        self._wake_pending = False
        done = self._done
        while done:
            d, ok, result = done.popleft()
            self._submitted -= 1
            if d.called:  # cancelled: nobody waits any more
                continue
            if ok:
                d.callback(result)
            else:
                d.errback(result)

    def stop(self):
        """Blocking: let the queued calls run, then end and join every thread."""
        self._started = False
        threads = list(self.threads)
        for _ in threads:
            self.q.put(_STOP)
        for thread in threads:
            thread.join()


class WorkerThreadsService(ThreadPoolService):
    """A :class:`ThreadPoolService` over :class:`WorkerThreads` (same ``run``, statistics and bounded stop)."""

    def __init__(self, reactor, name, size, grace=STOP_GRACE):
        self._reactor = reactor
        self.name = name
        self.grace = grace
        self.pool = WorkerThreads(reactor, name, size)

    def run(self, f, *args, **kwargs):
        return self.pool.submit(f, *args, **kwargs)
