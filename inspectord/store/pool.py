"""The database thread pool, as a Service."""

from inspectord.threads import SynchronousRunner, WorkerThreadsService


class DatabasePool(WorkerThreadsService):
    """A named, sized set of threads that runs every blocking database call.

    SQLite allows one writer at a time, so its pool has one thread; a
    server database gets up to ``size`` threads, started as calls queue up.
    The hand-off is :class:`~inspectord.threads.WorkerThreads`: one queue,
    results delivered to the reactor in batches.  It stops last, and like
    every pool waits for a blocked thread (a database that stopped
    answering) only ``grace`` seconds.
    """

    def __init__(self, reactor, size=1, **kwargs):
        super().__init__(reactor, "inspectord-db", size, **kwargs)
        self.name = "database-pool"


#: Runs the call at once in the calling thread (unit tests).
SynchronousPool = SynchronousRunner
