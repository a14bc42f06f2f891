"""Prometheus metrics of one inspectord service tree.

:class:`Metrics` owns a ``CollectorRegistry`` of its own (never
prometheus_client's global default registry), so every service tree and
every test counts alone.  Components get it as a ``metrics`` argument and
call one method where an event happens; without one they use
:data:`NO_METRICS`, whose methods do nothing.

What is a level rather than an event (nodes by state, the PXE filter's
allowed MACs, the database pool's queue) is read when Prometheus scrapes:
custom collectors report what the store, the filter and the pool say then.
The node counts come from one ``GROUP BY`` run in the database thread pool
just before the exposition is rendered (:meth:`Metrics.render`), never on
the reactor thread.
"""

import functools
import re
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.logger import Logger
from twisted.web import server

from inspectord import __version__
from inspectord import state as st

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Latency buckets (seconds): Ironic and database calls take milliseconds,
# a ramdisk callback up to tens of seconds with slow hooks or a loaded Ironic.
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

#: Reasons an introspection ends in error (the ``reason`` label).
FAILURE_REASONS = ("timeout", "aborted", "boot", "ramdisk", "ironic", "processing", "power", "bmc_credentials", "internal")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
# Path segments after these name one object: a node by UUID or name, a port...
_ID_AFTER = {"nodes": "{node}", "ports": "{port}", "portgroups": "{portgroup}", "traits": "{trait}"}


def ironic_endpoint(path):
    """The template of an Ironic API path, for a label: ``/v1/nodes/{node}/states/power``."""
    segments = [s for s in path.split("/") if s]
    out = []
    for i, segment in enumerate(segments):
        if i and segments[i - 1] in _ID_AFTER:
            out.append(_ID_AFTER[segments[i - 1]])
        elif _UUID.match(segment):
            out.append("{id}")
        else:
            out.append(segment)
    return "/" + "/".join(out)


@functools.lru_cache(maxsize=1024)  # SQLAlchemy sends the few statements of its cache again and again
def _statement_kind(statement):
    word = statement.lstrip().split(None, 1)[:1]
    kind = word[0].upper() if word else ""
    return kind if kind in ("SELECT", "INSERT", "UPDATE", "DELETE") else "OTHER"


class _NullMetrics:
    """Every method of :class:`Metrics`, doing nothing (components built without metrics)."""

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _nothing


def _nothing(*args, **kwargs):
    return None


#: The default of components that were given no :class:`Metrics`.
NO_METRICS = _NullMetrics()


class Metrics:
    """The metrics of one inspectord, in a registry of its own.

    :param clock: ``IReactorTime`` for durations measured across Deferreds.
    :param process: also export the standard ``process_*`` metrics of this
        process (CPU, memory, file descriptors).
    """

    log = Logger()

    def __init__(self, clock=None, process=False):
        self.clock = clock
        # Labelled children by (metric, label values): prometheus_client's
        # labels() validates and locks at every call.
        self._children = {}
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._sources = _Sources()
        registry.register(self._sources)
        if process:
            ProcessCollector(registry=registry)
        Gauge("inspectord_build_info", "inspectord's version (value 1)", ["version"], registry=registry).labels(
            __version__
        ).set(1)
        Gauge(
            "inspectord_start_time_seconds", "When this inspectord process started (POSIX time)", registry=registry
        ).set(time.time())
        # -- introspection ---------------------------------------------------
        self.started = Counter(
            "inspectord_introspections_started", "Introspections started", registry=registry
        )
        self.finished = Counter(
            "inspectord_introspections_finished", "Introspections finished successfully", registry=registry
        )
        self.failed = Counter(
            "inspectord_introspections_failed",
            "Introspections ended in error, by reason class",
            ["reason"],
            registry=registry,
        )
        for reason in FAILURE_REASONS:
            self.failed.labels(reason)
        self.callbacks = Histogram(
            "inspectord_callback_duration_seconds",
            "Time to process a ramdisk callback (POST /v1/continue), by HTTP status class",
            ["result"],
            buckets=_SLOW,
            registry=registry,
        )
        # -- Ironic ----------------------------------------------------------
        self.ironic_requests = Counter(
            "inspectord_ironic_requests",
            "Requests to Ironic, by method, endpoint and result (HTTP status or connection_error)",
            ["method", "endpoint", "result"],
            registry=registry,
        )
        self.ironic_latency = Histogram(
            "inspectord_ironic_request_duration_seconds",
            "Latency of requests to Ironic (waiting for a free slot included), by method and endpoint",
            ["method", "endpoint"],
            buckets=_FAST,
            registry=registry,
        )
        self.ironic_retries = Counter(
            "inspectord_ironic_retries",
            "Requests to Ironic retried (503, node locked, connection failed)",
            ["method", "endpoint"],
            registry=registry,
        )
        # -- PXE filter and DHCP ---------------------------------------------
        self.pxe_syncs = Counter(
            "inspectord_pxe_filter_syncs",
            "PXE filter syncs, by driver and result (success or failure)",
            ["driver", "result"],
            registry=registry,
        )
        self.pxe_sync_latency = Histogram(
            "inspectord_pxe_filter_sync_duration_seconds",
            "Time a PXE filter sync took, by driver",
            ["driver"],
            buckets=_FAST,
            registry=registry,
        )
        self.dhcp_requests = Counter(
            "inspectord_dhcp_requests",
            "DHCP requests seen (sniffer or builtin server), by PXE filter driver and verdict (allowed, blocked)",
            ["driver", "verdict"],
            registry=registry,
        )
        # -- database --------------------------------------------------------
        self.db_latency = Histogram(
            "inspectord_db_statement_duration_seconds",
            "Time database statements took, by kind (SELECT, INSERT, UPDATE, DELETE, OTHER)",
            ["statement"],
            buckets=_FAST,
            registry=registry,
        )
        self.db_errors = Counter(
            "inspectord_db_statement_errors", "Database statements that raised an error", registry=registry
        )
        # -- HTTP API --------------------------------------------------------
        self.http_requests = Counter(
            "inspectord_http_requests",
            "HTTP requests served, by method, route and status code",
            ["method", "route", "code"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "inspectord_http_request_duration_seconds",
            "Time to serve HTTP requests, by method and route",
            ["method", "route"],
            buckets=_SLOW,
            registry=registry,
        )

    # -- sources read at scrape time ---------------------------------------------

    def watch_store(self, engine, db_pool):
        """Count nodes by state (at each scrape) and time every statement of ``engine``.

        :param db_pool: has ``run(f, *args) -> Deferred`` (the database
            thread pool) and optionally ``statistics()``.
        """
        import sqlalchemy as sa

        self._sources.engine = engine
        self._sources.db_pool = db_pool

        @sa.event.listens_for(engine, "before_cursor_execute")
        def _before(conn, cursor, statement, parameters, context, executemany):
            conn.info.setdefault("inspectord_started", []).append(time.perf_counter())

        @sa.event.listens_for(engine, "after_cursor_execute")
        def _after(conn, cursor, statement, parameters, context, executemany):
            started = conn.info.get("inspectord_started")
            if started:
                self._child(self.db_latency, _statement_kind(statement)).observe(time.perf_counter() - started.pop())

        @sa.event.listens_for(engine, "handle_error")
        def _error(context):
            started = context.connection.info.get("inspectord_started") if context.connection is not None else None
            if started:
                started.pop()
            self.db_errors.inc()

    def watch_pxe_filter(self, pxe_filter):
        """Report the filter's allowed/denied MACs and last sync (its ``health()``) at each scrape."""
        self._sources.pxe_filter = pxe_filter

    async def render(self):
        """The exposition (bytes), the node counts read from the database first."""
        await self._sources.refresh()
        return generate_latest(self.registry)

    # -- events ---------------------------------------------------------------------

    def _child(self, metric, *values):
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def introspection_started(self):
        self.started.inc()

    def introspection_finished(self):
        self.finished.inc()

    def introspection_failed(self, reason):
        self.failed.labels(reason if reason in FAILURE_REASONS else "internal").inc()

    def callback_processed(self, seconds, code):
        self._child(self.callbacks, "{}xx".format(code // 100)).observe(seconds)

    def ironic_request(self, method, path, result, seconds):
        endpoint = ironic_endpoint(path)
        self._child(self.ironic_requests, method, endpoint, str(result)).inc()
        if seconds is not None:
            self._child(self.ironic_latency, method, endpoint).observe(seconds)

    def ironic_retry(self, method, path):
        self.ironic_retries.labels(method, ironic_endpoint(path)).inc()

    def pxe_sync(self, driver, ok, seconds):
        self.pxe_syncs.labels(driver, "success" if ok else "failure").inc()
        self.pxe_sync_latency.labels(driver).observe(seconds)

    def dhcp_request(self, driver, allowed):
        self.dhcp_requests.labels(driver, "allowed" if allowed else "blocked").inc()

    def http_request(self, method, route, code, seconds):
        self._child(self.http_requests, method, route, str(code)).inc()
        self._child(self.http_latency, method, route).observe(seconds)


def thd_count_by_state(engine):
    """``{state: count}`` of the introspection records (blocking: database thread)."""
    import sqlalchemy as sa

    from inspectord.store import schema

    nodes = schema.nodes
    with engine.connect() as conn:
        rows = conn.execute(sa.select(nodes.c.state, sa.func.count()).group_by(nodes.c.state)).all()
    return {state: count for state, count in rows}


class _Sources:
    """A collector of what is read at scrape time: node states, PXE filter, database pool."""

    log = Logger()

    def __init__(self):
        self.engine = None
        self.db_pool = None
        self.pxe_filter = None
        self.states = None

    async def refresh(self):
        if self.engine is None:
            return
        try:
            self.states = await self.db_pool.run(thd_count_by_state, self.engine)
        except Exception as e:
            # The scrape still answers, with the counts read last.
            self.log.warn("Cannot count nodes by state for /metrics: {error}", error=str(e) or type(e).__name__)

    def describe(self):
        return []

    def collect(self):
        if self.states is not None:
            nodes = GaugeMetricFamily(
                "inspectord_nodes", "Introspection records by state (read from the database)", labels=["state"]
            )
            for s in st.State:
                nodes.add_metric([s.value], self.states.get(s.value, 0))
            yield nodes
        stats = getattr(self.db_pool, "statistics", None)
        if stats is not None:
            figures = stats()
            yield GaugeMetricFamily(
                "inspectord_db_pool_queue_depth",
                "Database calls waiting for a thread of the database pool",
                value=figures["queued"],
            )
            yield GaugeMetricFamily(
                "inspectord_db_pool_busy_threads", "Threads of the database pool running a call", value=figures["busy"]
            )
            yield GaugeMetricFamily(
                "inspectord_db_pool_max_threads", "Size of the database thread pool", value=figures["max"]
            )
        if self.pxe_filter is not None:
            yield from _pxe_families(self.pxe_filter.health())


def _pxe_families(health):
    driver = health.get("driver", "unknown")
    up = GaugeMetricFamily(
        "inspectord_pxe_filter_up", "1 when the PXE filter's last sync succeeded, 0 when it is failing", labels=["driver"]
    )
    up.add_metric([driver], 1 if health.get("state") == "ok" else 0)
    yield up
    if "allowed" in health:
        macs = GaugeMetricFamily(
            "inspectord_pxe_filter_macs",
            "MACs the PXE filter enforces, by verdict (allowed, denied)",
            labels=["driver", "verdict"],
        )
        macs.add_metric([driver, "allowed"], health.get("allowed") or 0)
        macs.add_metric([driver, "denied"], health.get("denied") or 0)
        yield macs
        failures = GaugeMetricFamily(
            "inspectord_pxe_filter_consecutive_failures", "PXE filter syncs failed since the last success", labels=["driver"]
        )
        failures.add_metric([driver], health.get("consecutive_failures") or 0)
        yield failures
    if health.get("last_success") is not None:
        last = GaugeMetricFamily(
            "inspectord_pxe_filter_last_success_timestamp_seconds",
            "When the PXE filter last synced successfully (POSIX time)",
            labels=["driver"],
        )
        last.add_metric([driver], health["last_success"])
        yield last


# -- HTTP -------------------------------------------------------------------------


class MetricsSite(server.Site):
    """A ``Site`` counting every request it serves, by route template and status.

    :param url_map: the Klein app's werkzeug ``Map``: a request's route is
        the rule it matches (``/v1/introspection/<node_id>``), ``other``
        when it matches none, so labels stay few whatever clients ask for.
        A request whose handler set ``request.inspectord_endpoint`` (the
        Klein endpoint it ran) is not matched again when that endpoint has
        a single rule.
    """

    def __init__(self, resource, metrics, url_map, clock, **kwargs):
        super().__init__(resource, **kwargs)
        self.metrics = metrics
        self._routes = url_map.bind("inspectord")
        rules = {}
        for rule in url_map.iter_rules():
            rules.setdefault(rule.endpoint, set()).add(rule.rule)
        self._single_rule = {endpoint: next(iter(r)) for endpoint, r in rules.items() if len(r) == 1}
        self._clock = clock

    def getResourceFor(self, request):
        request.inspectord_started = self._clock.seconds()
        return super().getResourceFor(request)

    def route(self, request):
        rule = self._single_rule.get(getattr(request, "inspectord_endpoint", None))
        if rule is not None:
            return rule
        try:
            rule, _ = self._routes.match(
                request.path.decode("utf-8", "replace"), method=request.method.decode("ascii", "replace"), return_rule=True
            )
        except Exception:  # werkzeug's NotFound, MethodNotAllowed, RequestRedirect
            return "other"
        return rule.rule

    def log(self, request):
        super().log(request)
        started = getattr(request, "inspectord_started", None)
        seconds = self._clock.seconds() - started if started is not None else 0.0
        method = request.method.decode("ascii", "replace")
        if method not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            method = "other"
        self.metrics.http_request(method, self.route(request), request.code, seconds)
