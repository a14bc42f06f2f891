"""The service tree: one MultiService holding every part of inspectord."""

from twisted.application import internet, service, strports
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import threadpool
from twisted.web.client import Agent, HTTPConnectionPool
from treq.client import HTTPClient

from inspectord.api import auth as api_auth, limits
from inspectord.api.app import API, make_site
from inspectord.introspection import Introspection
from inspectord.ironic import auth as ironic_auth
from inspectord.ironic.client import IronicClient
from inspectord import pxe
from inspectord.store import SQLStore, make_engine
from inspectord.store.pool import DatabasePool

MAX_BODY_SIZE = 16 * 1024 * 1024


class ThreadPoolService(service.Service):
    """A named thread pool started and stopped with the service tree."""

    def __init__(self, name, size):
        self.name = name
        self.pool = threadpool.ThreadPool(minthreads=0, maxthreads=size, name=name)

    def startService(self):
        super().startService()
        self.pool.start()

    def stopService(self):
        super().stopService()
        self.pool.stop()


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

    def __init__(self, reactor, store, introspection, api_endpoint, site, clean_up_period, pxe_filter=None):
        super().__init__()
        self._reactor = reactor
        # Started once the store is migrated: it reads the store.
        self.pxe_filter = pxe_filter
        self.store = store
        self.introspection = introspection
        self._api = strports.service(api_endpoint, site, reactor=reactor)
        self._timer = None
        if clean_up_period:
            self._timer = internet.TimerService(
                clean_up_period, lambda: defer.Deferred.fromCoroutine(introspection.periodic())
            )
            self._timer.clock = reactor
        self.ready = None

    def startService(self):
        service.MultiService.startService(self)
        self.ready = self.store.upgrade()
        self.ready.addCallback(self._start_rest)
        self.ready.addErrback(self._start_failed)
        return self.ready

    def _start_rest(self, _):
        self._api.setServiceParent(self)
        if self._timer is not None:
            self._timer.setServiceParent(self)
        if self.pxe_filter is not None:
            self.pxe_filter.setServiceParent(self)
        self.log.info("inspectord is ready")

    def _start_failed(self, failure):
        self.log.failure("inspectord failed to start", failure)
        if self._reactor.running:
            self._reactor.stop()

    async def _stop(self):
        await self.introspection.stop()

    def stopService(self):
        d = defer.maybeDeferred(service.MultiService.stopService, self)
        d.addCallback(lambda _: defer.Deferred.fromCoroutine(self._stop()))
        return d


def make_service(config, reactor):
    """Wire inspectord from a frozen config."""
    top = OrderedMultiService()
    engine = make_engine(config.database.connection)
    db_pool = DatabasePool(reactor, size=1 if engine.dialect.name == "sqlite" else 8)
    db_pool.setServiceParent(top)
    io_pool = ThreadPoolService("inspectord-io", 4)
    io_pool.setServiceParent(top)
    store = SQLStore(engine, db_pool, clock=reactor, status_cache_time=config.api.status_cache_time)
    http_pool = HTTPConnectionPool(reactor, persistent=True)
    http_pool.maxPersistentPerHost = config.ironic_client.max_in_flight
    ironic = IronicClient(
        HTTPClient(Agent(reactor, pool=http_pool)),
        ironic_auth.endpoint_for(config.ironic_auth, reactor, io_pool.pool),
        reactor,
        api_version=config.ironic_client.api_version,
        timeout=config.ironic_client.request_timeout,
        max_retries=config.ironic.max_retries,
        retry_interval=config.ironic.retry_interval,
        max_in_flight=config.ironic_client.max_in_flight,
    )
    pxe_filter = pxe.make_filter(config, store, ironic, reactor, io_pool=io_pool.pool)
    verifier = None
    if config.processing.enable_setting_ipmi_credentials:
        from inspectord.ipmi import CredentialsVerifier

        options = config.ipmi_verification
        ipmi_pool = ThreadPoolService("inspectord-ipmi", options.threads)
        ipmi_pool.setServiceParent(top)
        verifier = CredentialsVerifier(
            reactor, reactor, ipmi_pool.pool, window=options.window, attempt_timeout=options.attempt_timeout
        )
    introspection = Introspection(
        store,
        ironic,
        config,
        reactor,
        io_pool=io_pool.pool,
        pxe_filter=pxe_filter,
        reactor=reactor,
        verifier=verifier,
    )
    auth_threads = None
    if config.default.auth_strategy != "noauth":
        # bcrypt checks and policy/htpasswd file reads; small, so a flood of
        # logins cannot take the I/O threads.
        auth_pool = ThreadPoolService("inspectord-auth", 2)
        auth_pool.setServiceParent(top)
        auth_threads = auth_pool.pool
    api = API(introspection, store, ironic, config, api_auth.make_auth(config, reactor, auth_threads))
    site = limits.LimitedFactory(make_site(api.app.resource(), MAX_BODY_SIZE, reactor))
    endpoint = "tcp:{}:interface={}".format(config.default.listen_port, config.default.listen_address.replace(":", r"\:"))
    main = InspectordService(
        reactor, store, introspection, endpoint, site, config.default.clean_up_period, pxe_filter=pxe_filter
    )
    main.setServiceParent(top)
    return top
