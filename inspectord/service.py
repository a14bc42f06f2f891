"""The service tree: one MultiService holding every part of inspectord."""

import ctypes
import gc
import os

from twisted.application import internet, service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from treq.client import HTTPClient

from inspectord.api import auth as api_auth, limits
from inspectord.api.app import API, make_site
from inspectord.introspection import Introspection
from inspectord.ironic.client import IronicClient
from inspectord import errors, health as health_mod, ipmi, keystone, listening, pxe, tls_client
from inspectord.api import ops as api_ops
from inspectord.health import HealthCheck
from inspectord.processing import discovery, hooks
from inspectord.metrics import Metrics
from inspectord.sdnotify import Notifier
from inspectord.store import SQLStore, make_engine
from inspectord.store.pool import DatabasePool
from inspectord.ironic.http import AgentHTTPClient, CachedEndpoints
from inspectord.store.swift import make_data_store
from inspectord.store.sql import DatabaseUnreachable
from inspectord.threads import ThreadPoolService

MAX_BODY_SIZE = 16 * 1024 * 1024


def settle_memory():
    """Once started: set aside what start-up left behind, give free heap back.

    The objects start-up made (modules, configuration, the service tree)
    live as long as the process: frozen out of the garbage collector's
    generations, later collections do not walk them again.  glibc keeps
    the pages start-up freed (imports, migrations) until ``malloc_trim``
    returns them: a few MB of the idle footprint.  Returns True if the
    heap was trimmed (glibc only).
    """
    gc.collect()
    gc.freeze()
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter already links
    except (OSError, AttributeError):  # not glibc
        return False
    trim(0)
    return True


class OrderedMultiService(service.MultiService):
    """Stops its children one after the other, last started first.

    The thread pools must outlive the work that uses them: the main service
    finishes (or interrupts) its background work before the database pool
    stops.
    """

    async def _stop_children(self):
        for child in reversed(list(self)):
            await defer.maybeDeferred(child.stopService)

    def stopService(self):
        service.Service.stopService(self)
        return defer.Deferred.fromCoroutine(self._stop_children())


class InspectordService(service.MultiService):
    """Starts the store (migrations first), then the API and periodic work.

    twistd ignores the Deferred ``startService`` returns, so a failed start
    is logged and stops the reactor instead of leaving a half-started daemon.
    """

    log = Logger()

    def __init__(self, reactor, store, introspection, api_endpoint, site, clean_up_period, pxe_filter=None,
                 notifier=None, lease_check_period=None, settle=None):
        """:param api_endpoint: an ``IStreamServerEndpoint`` or an endpoint
        description string; ``site`` is the factory served on it.
        :param notifier: a :class:`inspectord.sdnotify.Notifier`, told when
        inspectord is ready (database migrated, API listening, first PXE
        filter sync done) and when it stops.
        :param settle: called once inspectord is ready (:func:`settle_memory`
            in the daemon; nothing by default, as in tests)."""
        super().__init__()
        self._reactor = reactor
        self.notifier = notifier
        # Started once the store is migrated: it reads the store.
        self.pxe_filter = pxe_filter
        self.store = store
        self.introspection = introspection
        if isinstance(api_endpoint, str):
            api_endpoint = endpoints.serverFromString(reactor, api_endpoint)
        self._api = internet.StreamServerEndpointService(api_endpoint, site)
        # A port or socket that cannot be bound fails the start (see
        # _start_failed) instead of leaving a daemon that serves nothing.
        self._api._raiseSynchronously = True
        self._timer = None
        if clean_up_period:
            self._timer = internet.TimerService(
                clean_up_period, lambda: defer.Deferred.fromCoroutine(introspection.periodic())
            )
            self._timer.clock = reactor
        self._lease_timer = None
        if lease_check_period:
            self._lease_timer = internet.TimerService(
                lease_check_period, lambda: defer.Deferred.fromCoroutine(introspection.lease_scan())
            )
            self._lease_timer.clock = reactor
        self._settle = settle
        self.ready = None

    def startService(self):
        service.MultiService.startService(self)
        self.ready = self.store.upgrade()
        self.ready.addCallback(self._adopted)
        self.ready.addCallback(self._start_rest)
        self.ready.addErrback(self._start_failed)
        return self.ready

    def _adopted(self, report):
        """Log what was taken over from ironic-inspector's tables, if anything."""
        if report is None:
            return
        self.log.info(
            "Adopted ironic-inspector's database (revision {revision}): {rules} rule(s), {nodes} node(s), "
            "{data} introspection data record(s); {waiting} node(s) waiting for their ramdisk, "
            "{resumed} to process again, {failed} interrupted one(s) failed",
            revision=report.upstream_revision,
            rules=report.rules,
            nodes=report.nodes,
            data=report.data,
            waiting=len(report.waiting),
            resumed=len(report.resumed),
            failed=len(report.failed),
        )
        for uuid in report.failed:
            self.log.warn("Node {node}: interrupted by the swap from ironic-inspector, now in error", node=uuid)

    def _start_rest(self, _):
        self._api.setServiceParent(self)
        if self._timer is not None:
            self._timer.setServiceParent(self)
        if self._lease_timer is not None:
            self._lease_timer.setServiceParent(self)
        first_sync = defer.succeed(True)
        if self.pxe_filter is not None:
            self.pxe_filter.setServiceParent(self)
            first_sync = self.pxe_filter.sync()
        first_sync.addCallback(self._ready)
        first_sync.addErrback(lambda f: self.log.failure("Announcing readiness failed", f))

    def _ready(self, synced):
        state = "ok"
        if self.pxe_filter is not None:
            health = self.pxe_filter.health()
            state = health.get("state", "ok") if synced else "failing: {}".format(health.get("last_error"))
        self.log.info("inspectord is ready (PXE filter {state})", state=state)
        if self._settle is not None:
            self._settle()
        if self.notifier is not None:
            self.notifier.ready("serving; PXE filter {}".format(state))

    def _start_failed(self, failure):
        if failure.check(errors.SchemaError):
            # A database inspectord cannot use: the message says why, no traceback.
            self.log.critical("inspectord cannot start: {reason}", reason=failure.getErrorMessage())
        elif failure.check(DatabaseUnreachable):
            self.log.critical("inspectord failed to start: {error}", error=failure.value)
        else:
            self.log.failure("inspectord failed to start", failure)
        if self._reactor.running:
            self._reactor.stop()

    async def _stop(self):
        await self.introspection.stop()

    def stopService(self):
        """Stop the children (listening, timers, PXE filter) while the introspection work drains.

        Both at once: a timer's call in progress is introspection work the
        drain interrupts after its grace, so waiting for the timers first
        would wait for work nothing interrupts.
        """
        if self.notifier is not None:
            self.notifier.stopping()
        draining = defer.Deferred.fromCoroutine(self._stop())
        children = defer.maybeDeferred(service.MultiService.stopService, self)
        return defer.gatherResults([children, draining], consumeErrors=True).addCallback(lambda _: None)


def _https_policy(section, auth_options):
    """How ``[section]``'s service's HTTPS certificate is checked (and which client certificate is shown)."""
    return tls_client.https_policy(
        section, cafile=auth_options.cafile, insecure=auth_options.insecure,
        certfile=auth_options.certfile, keyfile=auth_options.keyfile,
    )


def check(config):
    """Each component's start-up checks of the sections it reads.

    :func:`inspectord.config.load` parses and checks options against each
    other; what only a component knows (its drivers, hooks, TLS versions,
    health backends) it checks here, before anything listens.
    :returns: the processing hooks, built while checking them.
    :raises errors.ConfigError: naming the option.
    """
    ipmi.check(config.processing)
    pxe.check(config.pxe_filter)
    discovery.check(config.processing, config.pxe_filter, config.discovery)
    processing_hooks = hooks.check(config)
    listening.check(config.default, config.ssl)
    health_mod.check(config.healthcheck)
    return processing_hooks


def make_service(config, reactor, environ=None):
    """Wire inspectord from a frozen config (checked first: :func:`check`).

    :param environ: the process environment, for systemd's ``NOTIFY_SOCKET``
        and ``WATCHDOG_USEC`` (``os.environ`` by default).
    """
    processing_hooks = check(config)
    top = OrderedMultiService()
    # First in, so it stops last: watchdog keep-alives go on during the stop.
    notifier = Notifier(reactor, os.environ if environ is None else environ)
    notifier.setServiceParent(top)
    metrics = Metrics(reactor, process=True)
    engine = make_engine(config.database.connection)
    db_pool = DatabasePool(reactor, size=1 if engine.dialect.name == "sqlite" else 8)
    db_pool.setServiceParent(top)
    metrics.watch_store(engine, db_pool)
    io_pool = ThreadPoolService(reactor, "inspectord-io", 4)
    io_pool.setServiceParent(top)
    store = SQLStore(
        engine,
        db_pool,
        clock=reactor,
        status_cache_time=config.api.status_cache_time,
        connect_retries=config.database.max_retries,
        connect_retry_interval=config.database.retry_interval,
    )
    http_pool = HTTPConnectionPool(reactor, persistent=True)
    http_pool.maxPersistentPerHost = config.ironic_client.max_in_flight
    endpoints = CachedEndpoints(reactor, _https_policy("ironic", config.ironic_auth))
    http = AgentHTTPClient(Agent.usingEndpointFactory(reactor, endpoints, pool=http_pool))
    ironic = IronicClient(
        http,
        keystone.endpoint_for(config.ironic_auth, reactor, io_pool),
        reactor,
        api_version=config.ironic_client.api_version,
        timeout=config.ironic_client.request_timeout,
        max_retries=config.ironic.max_retries,
        retry_interval=config.ironic.retry_interval,
        max_in_flight=config.ironic_client.max_in_flight,
        metrics=metrics,
    )
    pxe_filter = pxe.make_filter(config, store, ironic, reactor, io_pool=io_pool, metrics=metrics)
    metrics.watch_pxe_filter(pxe_filter)
    verifier = ipmi_pool = None
    if config.processing.enable_setting_ipmi_credentials:
        from inspectord.ipmi import CredentialsVerifier

        options = config.ipmi_verification
        ipmi_pool = ThreadPoolService(reactor, "inspectord-ipmi", options.threads)
        ipmi_pool.setServiceParent(top)
        verifier = CredentialsVerifier(
            reactor, ipmi_pool, window=options.window, attempt_timeout=options.attempt_timeout
        )
    introspection = Introspection(
        store,
        ironic,
        config,
        reactor,
        io_pool=io_pool,
        pxe_filter=pxe_filter,
        reactor=reactor,
        verifier=verifier,
        hooks=processing_hooks,
        swift=make_data_store(
            config.processing, config.swift, config.swift_auth,
            None if config.swift_auth is None else HTTPClient(
                Agent(reactor, contextFactory=_https_policy("swift", config.swift_auth), pool=http_pool)
            ),
            reactor, io_pool,
        ),
        metrics=metrics,
    )
    auth_threads = None
    if config.default.auth_strategy != "noauth":
        # bcrypt checks and policy/htpasswd file reads; small, so a flood of
        # logins cannot take the I/O threads.
        auth_pool = ThreadPoolService(reactor, "inspectord-auth", 2)
        auth_pool.setServiceParent(top)
        auth_threads = auth_pool.pool
    health = HealthCheck(
        config.healthcheck, reactor, engine=engine, db_pool=db_pool, ironic=ironic, pxe_filter=pxe_filter,
        ipmi_pool=ipmi_pool.pool if ipmi_pool is not None else None,
    )
    api = API(
        introspection, store, ironic, config, api_auth.make_auth(config, reactor, auth_threads),
        metrics=metrics, health=health,
    )
    site = limits.LimitedFactory(make_site(api.app.resource(), MAX_BODY_SIZE, reactor, metrics=metrics, clock=reactor))
    endpoint, factory = listening.make_endpoint(config.default, config.ssl, reactor, site)
    main = InspectordService(
        reactor, store, introspection, endpoint, factory, config.default.clean_up_period, pxe_filter=pxe_filter,
        notifier=notifier, lease_check_period=config.lifecycle.lease_check_period, settle=settle_memory,
    )
    main.setServiceParent(top)
    if config.metrics.enabled and config.metrics.listen_port:
        listener = api_ops.MetricsListener(api)
        metrics_endpoint = endpoints.TCP4ServerEndpoint(
            reactor, config.metrics.listen_port, interface=config.metrics.listen_address
        )
        internet.StreamServerEndpointService(
            metrics_endpoint, make_site(listener.app.resource(), 4096)
        ).setServiceParent(top)
    return top
