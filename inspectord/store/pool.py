"""The database thread pool, as a Service."""

from twisted.application import service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python import threadpool


class DatabasePool(service.Service):
    """A named, sized thread pool that runs every blocking database call.

    SQLite allows one writer at a time, so its pool has one thread; a
    server database gets ``size`` threads.
    """

    name = "database-pool"

    def __init__(self, reactor, size=1):
        self._reactor = reactor
        self._pool = threadpool.ThreadPool(minthreads=1, maxthreads=size, name="inspectord-db")

    def startService(self):
        super().startService()
        self._pool.start()

    def stopService(self):
        super().stopService()
        return deferToThreadPool(self._reactor, _idle_pool(self._reactor), self._pool.stop)

    def run(self, f, *args, **kwargs):
        """Run ``f`` in the pool; a Deferred with its result."""
        return deferToThreadPool(self._reactor, self._pool, f, *args, **kwargs)

    def statistics(self):
        """``{"queued": calls waiting for a thread, "busy": threads working, "max": pool size}``."""
        return {"queued": self._pool.q.qsize(), "busy": len(self._pool.working), "max": self._pool.max}


def _idle_pool(reactor):
    # Joining the pool's threads blocks: do it from the reactor's own pool.
    return reactor.getThreadPool()


class SynchronousPool:
    """Runs the call at once in the calling thread (unit tests)."""

    def run(self, f, *args, **kwargs):
        return defer.execute(f, *args, **kwargs)
