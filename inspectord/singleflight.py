"""Single flight: concurrent calls under one key share one underlying call.

Each caller gets its own Deferred: cancelling one (its client went away)
neither cancels the shared call nor touches the other callers, and no
caller can change the result the others see.
"""

from twisted.internet import defer
from twisted.python.failure import Failure


class SingleFlight:
    """One call in flight per key; every waiter its own Deferred."""

    def __init__(self):
        self._waiters = {}

    def __len__(self):
        """How many keys have a call in flight."""
        return len(self._waiters)

    def __contains__(self, key):
        return key in self._waiters

    def call(self, key, async_function, *args, **kwargs):
        """``async_function(*args, **kwargs)`` unless a call under ``key`` is in flight; a Deferred of its result."""
        mine = defer.Deferred()
        if key in self._waiters:
            self._waiters[key].append(mine)
            return mine
        self._waiters[key] = [mine]
        running = defer.maybeDeferred(_call, async_function, *args, **kwargs)
        running.addBoth(self._done, key)
        return mine

    def _done(self, result, key):
        for waiter in self._waiters.pop(key):
            if waiter.called:  # cancelled: its caller went away
                continue
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
        if isinstance(result, Failure):
            return None  # handed to every waiter
        return result


def _call(async_function, *args, **kwargs):
    result = async_function(*args, **kwargs)
    if hasattr(result, "send"):  # a coroutine
        return defer.Deferred.fromCoroutine(result)
    return result
