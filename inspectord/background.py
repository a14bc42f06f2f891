"""Fire-and-forget work that is never forgotten: every failure is logged.

A Deferred nobody waits on loses its failure (at best a "Unhandled error in
Deferred" at garbage collection).  :class:`Background` starts such work,
logs its failure with what it was doing, logs an interruption (the work
was cancelled, e.g. at a stop) as one line without a traceback, and keeps
the work in flight countable, so a stop can wait for it.
"""

from twisted.internet import defer
from twisted.logger import Logger


class Background:
    """Starts coroutines nobody awaits and tracks them until they end.

    :param log: the ``Logger`` the failures go to (the owner's).
    """

    def __init__(self, log=None):
        self._log = log or Logger()
        self._pending = set()

    def __len__(self):
        return len(self._pending)

    def __bool__(self):
        return bool(self._pending)

    def start(self, coro, what, **fields):
        """Run ``coro``; its Deferred, which never fails.

        :param what: what the work does, for the log (``"finishing node X"``).
        :param fields: more named fields of the log lines (``node=uuid``).
        """
        d = self.track(coro)

        def failed(f):
            if f.check(defer.CancelledError):
                self._log.info("Interrupted while {what}", what=what, **fields)
            else:
                self._log.failure("Unexpected failure while {what}", f, what=what, **fields)

        return d.addErrback(failed)

    def track(self, coro):
        """Run ``coro``, counted as in flight until it ends; its Deferred (failures are the caller's)."""
        d = defer.Deferred.fromCoroutine(coro)
        self._pending.add(d)

        def done(result):
            self._pending.discard(d)
            return result

        return d.addBoth(done)

    def idle(self):
        """A Deferred that fires when the work in flight now has ended.

        The work's results are left alone, and cancelling the wait (a
        timeout) stops waiting, not the work: see :meth:`cancel_all`.
        """
        idle = defer.Deferred()
        left = len(self._pending)
        if not left:
            idle.callback(None)
            return idle

        def ended(result):
            nonlocal left
            left -= 1
            if not left and not idle.called:
                idle.callback(None)
            return result

        for d in self._pending:
            d.addBoth(ended)
        return idle

    def cancel_all(self):
        """Cancel the work in flight."""
        for d in list(self._pending):
            d.cancel()
