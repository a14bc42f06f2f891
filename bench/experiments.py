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

``status-inline``
    ``GET /v1/introspection/<uuid>`` reads the store on the reactor thread
    instead of handing the query to the one-thread database pool and back
    (SQLite only: a primary-key read costs less than the two thread hops).

``status-lean``
    ``status-inline``, and the read selects only the status columns, not the
    recorded node, ports and options (JSON decoded for nothing), for a
    finished node.

``status-cache``
    Every node record the store returns (start, each transition, reads) is
    kept in memory, and ``GET /v1/introspection/<uuid>`` answers from it
    without touching the database: the upper bound of a write-through status
    cache, which is safe with SQLite (one host, in practice one instance).

Several can be combined: ``--experiment finish-first,status-lean``.
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

    def run(self, background, f, *args, **kwargs):
        # ``background``: the client's own class of request, ignored here (priority decides).
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


def status_inline():
    from inspectord.store import sql

    def get_node(self, uuid):
        # SQLite in WAL mode: a read by primary key takes ~0.1 ms, less than
        # the hand-off to the database thread and back costs.
        return defer.execute(self.thd_get_node, uuid)

    sql.SQLStore.get_node = get_node


def status_lean():
    import sqlalchemy as sa

    from inspectord import errors
    from inspectord.store import schema, sql
    from inspectord.store.records import NodeRecord

    n = schema.nodes
    columns = [n.c.uuid, n.c.state, n.c.started_at, n.c.finished_at, n.c.error, n.c.manage_boot, n.c.version_id,
               n.c.lease_until]
    full = sql.SQLStore.thd_get_node

    def thd_get_node(self, uuid):
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*columns).where(n.c.uuid == uuid)).first()
        if row is None:
            raise errors.NotFound("Node {} was not found in inspectord's records".format(uuid))
        record = NodeRecord(uuid=row.uuid, state=row.state, started_at=row.started_at, finished_at=row.finished_at,
                            error=row.error, manage_boot=row.manage_boot, version_id=row.version_id,
                            lease_until=row.lease_until)
        return full(self, uuid) if record.active else record  # the DHCP diagnosis needs the rest

    def get_node(self, uuid):
        return defer.execute(thd_get_node, self, uuid)

    sql.SQLStore.get_node = get_node


def status_cache():
    from inspectord.store import sql
    from inspectord.store.records import NodeRecord

    original_run = sql.SQLStore._run
    original_get_node = sql.SQLStore.get_node

    def _run(self, f, *args, **kwargs):
        d = original_run(self, f, *args, **kwargs)

        def remember(result):
            if isinstance(result, NodeRecord):
                self.__dict__.setdefault("_bench_cache", {})[result.uuid] = result
            return result

        return d.addCallback(remember)

    def get_node(self, uuid):
        cached = self.__dict__.get("_bench_cache", {}).get(uuid)
        if cached is not None:
            return defer.succeed(cached)
        return original_get_node(self, uuid)

    sql.SQLStore._run = _run
    sql.SQLStore.get_node = get_node


EXPERIMENTS = {
    "status-cache": status_cache,
    "finish-first": finish_first,
    "status-inline": status_inline,
    "status-lean": status_lean,
}

if __name__ == "__bench_preload__":  # run by bench.launch before the service
    for _name in os.environ["BENCH_EXPERIMENT"].split(","):
        EXPERIMENTS[_name]()
