"""The PXE filter service: keeps a driver in line with the store and Ironic.

Two kinds of sync, never more than one at a time:

* **event**: :meth:`PXEFilterService.notify` (introspection started,
  finished, failed, timed out, aborted) schedules a sync
  :data:`SYNC_DELAY` seconds later, so a burst of events costs one sync.
  It reads the MACs under introspection from the store and reuses the
  Ironic ports read last; the driver gets the previous state and applies
  only the difference where it can.  ``notify()`` also counts the change
  in the database (``inspectord_changes``), and every instance reads that
  counter each :data:`POLL_INTERVAL` seconds: a change made by another
  instance sharing the database is synced here within a second.
* **periodic** (every ``[pxe_filter]sync_period`` seconds, a
  ``TimerService`` on the injected clock): reads every Ironic port (paged),
  then syncs in full, which also repairs rules changed behind our back.

A sync that fails (command missing, permission denied, store or Ironic
unreachable) is retried with exponential backoff, the next attempt in
full; the failure is logged and shown by :meth:`health`, and the service
recovers by itself when the cause goes away.  Until Ironic's ports have
been read once, unknown MACs are refused (a denied MAC could not be told
from an unknown one).
"""

from twisted.application import internet, service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from inspectord import interfaces
from inspectord.background import Background
from inspectord.threads import STOP_GRACE, bounded
from inspectord.metrics import NO_METRICS
from inspectord.pxe import decisions
from inspectord.pxe.process import CommandFailed

#: Seconds between notify() and the sync it causes: bursts coalesce.
SYNC_DELAY = 0.2
#: Seconds between two reads of the database's change counter.
POLL_INTERVAL = 0.5
#: The counter's name in ``inspectord_changes``.
CHANGES = "pxe_filter"
#: First retry after a failed sync, doubled each time up to MAX_BACKOFF.
RETRY_BASE = 1.0
MAX_BACKOFF = 60.0


@implementer(interfaces.IPXEFilter)
class PXEFilterService(service.MultiService):
    """Computes who may get a DHCP answer and has the driver enforce it.

    :param driver: has ``async apply(state, previous)`` (``previous`` None
        means "apply in full") and ``async stop()``.
    :param store: has ``filter_macs() -> Deferred((macs, active_nodes))``.
    :param ironic: has ``async list_all_port_macs()``.
    :param clock: ``IReactorTime``.
    :param metrics: :class:`inspectord.metrics.Metrics` counting syncs.
    """

    log = Logger()

    def __init__(
        self,
        driver,
        store,
        ironic,
        clock,
        sync_period=15,
        deny_unknown_macs=False,
        discovery=False,
        delay=SYNC_DELAY,
        retry_base=RETRY_BASE,
        max_backoff=MAX_BACKOFF,
        seen=None,
        metrics=None,
        stop_grace=STOP_GRACE,
        poll_interval=POLL_INTERVAL,
    ):
        super().__init__()
        self.driver = driver
        self._metrics = metrics or NO_METRICS
        #: :class:`~inspectord.dhcp.sniffer.DHCPSeen` filled by the builtin
        #: server or the DHCP sniffer, when there is one.
        self.seen = seen
        self._store = store
        self._ironic = ironic
        self._clock = clock
        self._deny_unknown = deny_unknown_macs
        self._discovery = discovery
        self._delay = delay
        self._retry_base = retry_base
        self._max_backoff = max_backoff
        # Ironic port MACs read last (None: never read), and MACs allowed
        # since then (ports of nodes that finished: denied at once).
        self._known = None
        self._known_extra = set()
        self._fetch = None
        # The state the driver enforces, None when unknown (next sync in full).
        self.applied = None
        self._call = None
        self._running = None
        self._again = False
        self._full = True
        self._retrying = False
        self._waiters = []
        self._failures = 0
        self._health = {
            "driver": driver.name,
            "state": "starting",
            "consecutive_failures": 0,
            "last_error": None,
            "last_success": None,
            "last_duration": None,
            "next_retry": None,
            "syncs": 0,
            "allowed": 0,
            "denied": 0,
            "allow_unknown": False,
            "ironic": {"state": "not read yet", "ports": None, "last_success": None, "last_error": None},
        }
        self._work = Background(self.log)
        self._stop_grace = stop_grace
        # The change counter read last (None: not read yet).
        self.generation = None
        self._polling = False
        self._poller = None
        if poll_interval and hasattr(store, "generation"):
            self._poller = internet.TimerService(poll_interval, self._poll)
            self._poller.clock = clock
            self._poller.setServiceParent(self)
        self._timer = None
        if sync_period:
            self._timer = internet.TimerService(sync_period, lambda: defer.Deferred.fromCoroutine(self.refresh()))
            self._timer.clock = clock
            self._timer.setServiceParent(self)

    # -- public -----------------------------------------------------------

    def notify(self):
        """The set of nodes under introspection changed: sync within a second, here and elsewhere.

        The change is counted in the database, so every other instance
        sharing it syncs too (its next :meth:`_poll`).
        """
        self._request(self._delay, full=False)
        if self._poller is not None:
            d = self._store.bump(CHANGES)
            d.addCallback(self._bumped)
            d.addErrback(
                lambda f: self.log.error(
                    "Cannot tell other instances of a PXE filter change ({error}); their periodic sync will",
                    error=f.getErrorMessage(),
                )
            )

    def _bumped(self, generation):
        # Only this change since the last read: no need to sync for it again.
        if self.generation is not None and generation == self.generation + 1:
            self.generation = generation

    def _poll(self):
        """Sync when another instance counted a change.  Never fails (TimerService)."""
        if self._polling or not self.running:
            return None
        self._polling = True

        def read(generation):
            if self.generation is not None and generation != self.generation:
                self._request(0, full=False)
            self.generation = generation

        def failed(f):
            # The periodic sync and its retries report an unreachable database.
            self.log.debug("Reading the PXE filter change counter failed: {error}", error=f.getErrorMessage())

        def done(_):
            self._polling = False

        d = self._store.generation(CHANGES)
        d.addCallbacks(read, failed)
        d.addBoth(done)
        return None

    def sync(self, full=True):
        """Ask for a sync now; a Deferred firing with True/False once one that started later ends."""
        d = defer.Deferred()
        self._waiters.append(d)
        self._request(0, full)
        return d

    async def refresh(self):
        """Read every Ironic port, then sync in full.  Never raises (a TimerService stops on failure)."""
        try:
            await self._refresh_known()
            await self.sync(full=True)
        except defer.CancelledError:
            pass
        except Exception:
            self.log.failure("PXE filter refresh failed unexpectedly")

    def allows(self, mac):
        """The verdict the driver enforces now for ``mac``."""
        return self.applied is not None and self.applied.allows(mac)

    def dhcp_seen(self, mac):
        """What is known of ``mac``'s DHCP requests, for a node's status.

        ``{"last_dhcp_request": POSIX seconds, "dhcp_message": "discover"...,
        "allowed_by_filter": bool}``; None if no request from it was seen or
        nothing records requests (no sniffer and not the builtin driver).
        """
        if self.seen is None:
            return None
        return self.seen.get(mac)

    def health(self):
        """The filter's state for the health view and operators (a plain dict)."""
        report = dict(self._health)
        report["ironic"] = dict(self._health["ironic"])
        if self.seen is not None:
            report["dhcp_macs_seen"] = len(self.seen)
        return report

    # -- service ----------------------------------------------------------

    def startService(self):
        super().startService()
        self._health["state"] = "starting"
        # Apply what the store says at once, before Ironic's ports are read.
        self._request(0, full=True)
        if self._timer is None:
            self._work.start(self.refresh(), "refreshing the PXE filter")

    def stopService(self):
        self._health["state"] = "stopped"
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._fetch is not None:
            self._fetch.cancel()
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(False)
        # The periodic refresh in progress waits for the sync: end the sync first.
        ending = self._end_running()
        d = defer.maybeDeferred(service.MultiService.stopService, self)
        d.addCallback(lambda _: ending)
        d.addCallback(lambda _: defer.Deferred.fromCoroutine(self.driver.stop()))
        d.addErrback(lambda f: self.log.failure("Stopping the PXE filter failed", f))
        return d

    # -- internals --------------------------------------------------------

    def _end_running(self):
        """A sync in progress gets ``stop_grace`` seconds to end, then is interrupted."""
        running = self._running
        if running is None:
            return None
        ended = defer.Deferred()

        def signal(result):
            if not ended.called:
                ended.callback(None)
            return result

        running.addBoth(signal)

        def late():
            self.log.warn(
                "PXE filter ({driver}): the sync in progress did not end within {grace} s; interrupting it",
                driver=self.driver.name, grace=self._stop_grace,
            )
            running.cancel()

        return bounded(ended, self._stop_grace, self._clock, on_timeout=late)

    async def _refresh_known(self):
        ironic = self._health["ironic"]
        self._fetch = defer.ensureDeferred(self._ironic.list_all_port_macs())
        try:
            addresses = await self._fetch
        except defer.CancelledError:
            raise
        except Exception as e:
            ironic.update(state="failing", last_error=str(e) or e.__class__.__name__)
            self.log.error(
                "PXE filter cannot read Ironic's ports ({error}); keeping the {count} read before",
                error=str(e) or e.__class__.__name__,
                count=len(self._known) if self._known is not None else 0,
            )
            return
        finally:
            self._fetch = None
        known, refused = decisions.normalize_macs(addresses)
        if refused:
            self.log.warn(
                "Ignoring {count} Ironic port address(es) that are not MACs: {sample}",
                count=len(refused),
                sample=", ".join(repr(a) for a in refused[:5]),
            )
        self._known = frozenset(known)
        self._known_extra = set()
        ironic.update(state="ok", ports=len(known), last_success=self._clock.seconds(), last_error=None)

    def _request(self, delay, full):
        if full:
            self._full = True
        if not self.running:
            return
        if self._running is not None:
            self._again = True
            return
        if self._call is not None and self._call.active():
            # A retry keeps its backoff; otherwise the earlier time wins.
            if not self._retrying and self._call.getTime() > self._clock.seconds() + delay:
                self._call.reset(delay)
            return
        self._call = self._clock.callLater(delay, self._start_sync)

    def _start_sync(self):
        self._call = None
        waiters, self._waiters = self._waiters, []
        full, self._full = self._full, False
        self._again = False
        started = self._clock.seconds()
        d = defer.Deferred.fromCoroutine(self._sync_once(full))
        self._running = d
        d.addBoth(self._sync_done, waiters, started)

    async def _sync_once(self, full):
        macs, active_nodes = await self._store.filter_macs()
        active, refused = decisions.normalize_macs(macs)
        if refused:
            self.log.warn("Ignoring recorded MAC(s) that are not MACs: {sample}", sample=refused[:5])
        known = None if self._known is None else self._known | self._known_extra
        state = decisions.decide(active, active_nodes > 0, known, self._deny_unknown, self._discovery)
        self._known_extra |= state.allowed
        previous = None if full else self.applied
        if previous is None or previous != state:
            await self.driver.apply(state, previous)
            if self.applied is None or (self.applied.allowed, self.applied.allow_unknown) != (
                state.allowed,
                state.allow_unknown,
            ):
                self.log.info(
                    "PXE filter ({driver}): {allowed} MAC(s) allowed, {denied} denied, unknown MACs {unknown}",
                    driver=self.driver.name,
                    allowed=len(state.allowed),
                    denied=len(state.denied),
                    unknown="allowed" if state.allow_unknown else "refused",
                )
        return state

    def _sync_done(self, result, waiters, started):
        self._running = None
        now = self._clock.seconds()
        ok = not isinstance(result, Failure)
        if not ok and not self.running and result.check(defer.CancelledError):
            self.log.info("PXE filter ({driver}): sync interrupted by the stop", driver=self.driver.name)
            self._health.update(state="stopped")
            for d in waiters:
                d.callback(False)
            return None
        self._metrics.pxe_sync(self.driver.name, ok, now - started)
        if ok:
            if self._failures:
                self.log.info(
                    "PXE filter ({driver}) recovered after {failures} failed sync(s)",
                    driver=self.driver.name,
                    failures=self._failures,
                )
            self._failures = 0
            self._retrying = False
            self.applied = result
            self._health.update(
                state="ok" if self.running else "stopped",
                consecutive_failures=0,
                last_error=None,
                next_retry=None,
                last_success=now,
                last_duration=now - started,
                syncs=self._health["syncs"] + 1,
                **result.summary(),
            )
        else:
            self._failures += 1
            self.applied = None
            self._full = True
            delay = min(self._retry_base * 2 ** (self._failures - 1), self._max_backoff)
            error = result.value
            message = str(error) or error.__class__.__name__
            self._health.update(
                state="failing" if self.running else "stopped",
                consecutive_failures=self._failures,
                last_error=message,
                next_retry=now + delay if self.running else None,
            )
            if isinstance(error, CommandFailed):
                self.log.error(
                    "PXE filter ({driver}) sync failed ({failures} in a row), retrying in {delay}s: {error}",
                    driver=self.driver.name,
                    failures=self._failures,
                    delay=delay,
                    error=message,
                )
            else:
                self.log.failure(
                    "PXE filter ({driver}) sync failed ({failures} in a row), retrying in {delay}s",
                    result,
                    driver=self.driver.name,
                    failures=self._failures,
                    delay=delay,
                )
            if self.running:
                self._retrying = True
                self._call = self._clock.callLater(delay, self._start_sync)
        for d in waiters:
            d.callback(ok)
        if self._again and ok:
            self._request(0, full=False)
        return None
