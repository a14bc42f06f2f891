"""Daemon changes tried out from the benchmark, without editing inspectord.

``python -m bench.run --experiment NAME`` starts inspectord with this file
preloaded (``BENCH_PRELOAD``, run by :mod:`bench.launch` before twistd) and
``BENCH_EXPERIMENT=NAME``; the function of that name patches inspectord's
classes before the service is built.  What proves worth it belongs in the
daemon itself; these patches only measure the idea.

``finish-first``
    Ironic requests wait for a slot (``[ironic_client]max_in_flight``) in
    priority order instead of first come, first served: a node's power-off
    (the last call of its introspection) goes ahead of the property PATCHes
    of nodes whose callbacks arrived later.  With plain FIFO, 50 callbacks
    in flight put 50 PATCHes ahead of the first power-off, so no node
    finishes for seconds and the power-offs then arrive at Ironic bunched
    together, where they cost more than interleaved with PATCHes.
"""

import contextvars
import heapq
import itertools
import os

from twisted.internet import defer

PRIORITY = contextvars.ContextVar("bench_ironic_priority", default=1)


class PrioritySemaphore:
    """``DeferredSemaphore.run`` with waiters served by (priority, arrival)."""

    def __init__(self, tokens):
        self.limit = tokens
        self.tokens = tokens
        self._waiting = []
        self._arrival = itertools.count()

    def _acquire(self):
        if self.tokens > 0:
            self.tokens -= 1
            return defer.succeed(None)
        d = defer.Deferred()
        heapq.heappush(self._waiting, (PRIORITY.get(), next(self._arrival), d))
        return d

    def _release(self):
        if self._waiting:
            heapq.heappop(self._waiting)[2].callback(None)
        else:
            self.tokens += 1

    def run(self, f, *args, **kwargs):
        d = self._acquire()
        d.addCallback(lambda _: defer.maybeDeferred(f, *args, **kwargs))

        def release(result):
            self._release()
            return result

        return d.addBoth(release)


def finish_first():
    from inspectord.ironic import client

    cls = client.IronicClient
    original_init = cls.__init__
    original_set_power_state = cls.set_power_state

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._semaphore = PrioritySemaphore(getattr(self._semaphore, "limit", 8))

    async def set_power_state(self, uuid, target, *args, **kwargs):
        token = PRIORITY.set(0 if target == "power off" else 1)
        try:
            return await original_set_power_state(self, uuid, target, *args, **kwargs)
        finally:
            PRIORITY.reset(token)

    cls.__init__ = __init__
    cls.set_power_state = set_power_state


EXPERIMENTS = {"finish-first": finish_first}

if __name__ == "__bench_preload__":  # run by bench.launch before the service
    EXPERIMENTS[os.environ["BENCH_EXPERIMENT"]]()
