"""DHCP requests seen, shared through the database by every instance.

What the sniffer or the builtin server records in its
:class:`~inspectord.dhcp.sniffer.DHCPSeen` is written to
``inspectord_dhcp_seen`` in batches (one transaction per
:data:`INTERVAL`, however many packets), and what other instances wrote is
read back into it, so a node's DHCP diagnosis (its status, its timeout
message) is the same on every instance and survives a restart.
"""

import calendar

from twisted.application import internet, service
from twisted.internet import defer
from twisted.logger import Logger

from inspectord.timeutil import utc

#: Seconds between two writes of what was seen here (and reads of the others').
INTERVAL = 1.0
#: Rows written by others up to this many seconds late (flush interval,
#: clocks of different hosts) are still read.
MARGIN = 10.0
#: Requests older than this are read at start and pruned from the database.
RETENTION = 24 * 3600.0
#: Pruning runs once every this many exchanges.
PRUNE_EVERY = 600


def posix(when):
    """POSIX seconds of a naive UTC datetime (as stored)."""
    return calendar.timegm(when.utctimetuple()) + when.microsecond / 1e6


class SharedDHCPSeen(service.MultiService):
    """Keeps a :class:`~inspectord.dhcp.sniffer.DHCPSeen` and the database in step.

    :param store: has ``put_dhcp_seen(rows)``, ``dhcp_seen_since(datetime)``
        and ``prune_dhcp_seen(datetime)``.
    :param clock: ``IReactorTime``.
    """

    log = Logger()
    name = "dhcp-seen-shared"

    def __init__(self, store, seen, clock, interval=INTERVAL):
        super().__init__()
        self._store = store
        self.seen = seen
        self._clock = clock
        # Latest request read from the database (POSIX seconds), None: none yet.
        self._watermark = None
        self._running = None
        self._rounds = 0
        self.failures = 0
        timer = internet.TimerService(interval, self.exchange)
        timer.clock = clock
        timer.setServiceParent(self)

    def exchange(self):
        """Write what was seen here, read what the others saw.  Never fails (TimerService)."""
        if self._running is not None:
            return self._running
        self._running = defer.Deferred.fromCoroutine(self._exchange())
        self._running.addErrback(self._failed)
        self._running.addBoth(self._done)
        return self._running

    async def _exchange(self):
        await self.flush()
        now = self._clock.seconds()
        since = now - RETENTION if self._watermark is None else self._watermark - MARGIN
        for mac, when, kind, allowed in await self._store.dhcp_seen_since(utc(since)):
            when = posix(when)
            self.seen.merge(mac, kind, allowed, when)
            self._watermark = when if self._watermark is None else max(self._watermark, when)
        self._rounds += 1
        if self._rounds % PRUNE_EVERY == 0:
            await self._store.prune_dhcp_seen(utc(now - RETENTION))
        if self.failures:
            self.log.info("DHCP observations reach the database again")
        self.failures = 0

    async def flush(self):
        """Write what was seen here since the last write, in one transaction."""
        rows = self.seen.take_unsaved()
        if not rows:
            return
        try:
            await self._store.put_dhcp_seen([(mac, utc(when), kind, allowed) for mac, when, kind, allowed in rows])
        except BaseException:
            self.seen.requeue(rows)  # written next time, unless newer requests replace them
            raise

    def _failed(self, f):
        self.failures += 1
        if self.failures == 1:
            self.log.error(
                "Cannot share DHCP observations through the database ({error}); retrying each second",
                error=f.getErrorMessage(),
            )

    def _done(self, _):
        self._running = None

    def stopService(self):
        d = defer.maybeDeferred(service.MultiService.stopService, self)
        # One last write, so a restart knows what was seen just before.
        d.addCallback(lambda _: defer.Deferred.fromCoroutine(self.flush()))
        d.addErrback(lambda f: self.log.error("Last write of DHCP observations failed: {error}",
                                              error=f.getErrorMessage()))
        return d
