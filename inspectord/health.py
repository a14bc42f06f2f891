"""Health of inspectord: ironic-inspector's ``/healthcheck`` and a detailed view.

:meth:`HealthCheck.verdict` is what ironic-inspector answered with
``[healthcheck]enabled`` (oslo.middleware's health check): healthy unless
a configured backend says otherwise (a ``disable_by_file_path`` file
exists, an ``enable_by_file_paths`` file is missing).  Load balancers take
an instance out of service by touching the file, whatever else is going on.

:meth:`HealthCheck.detail` asks every dependency, in parallel and each
with a timeout: the database (one ``SELECT 1`` in the database thread
pool), Ironic (its root document: reachable, API versions), the PXE
filter (driver, state, last successful sync), the BMC verifier's threads,
uptime and version.
"""

import dataclasses
import ipaddress
import os

from twisted.internet import defer

from inspectord import __version__
from inspectord import errors
from inspectord.timeutil import iso

BACKENDS = ("disable_by_file", "disable_by_files_ports", "enable_by_files")
#: Seconds a dependency may take to answer the detailed view.
PROBE_TIMEOUT = 5.0


def check(options):
    """Raise ConfigError naming a ``[healthcheck]`` option inspectord cannot use."""
    unknown = [b for b in options.backends if b not in BACKENDS]
    if unknown:
        raise errors.ConfigError(
            "[healthcheck]backends: unknown backend(s) {} (available: {})".format(", ".join(unknown), ", ".join(BACKENDS))
        )
    if "disable_by_file" in options.backends and "enable_by_files" in options.backends:
        raise errors.ConfigError("[healthcheck]backends: disable_by_file and enable_by_files exclude each other")
    for pair in options.disable_by_file_paths:
        port, sep, path = pair.strip().partition(":")
        if not sep or not port.isdigit() or not path:
            raise errors.ConfigError("[healthcheck]disable_by_file_paths: expected port:path, got {!r}".format(pair))
    for cidr in options.allowed_source_ranges:
        try:
            ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise errors.ConfigError("[healthcheck]allowed_source_ranges: invalid network {!r}".format(cidr)) from None


@dataclasses.dataclass(frozen=True)
class Verdict:
    healthy: bool
    reasons: tuple


def _thd_ping(engine):
    import sqlalchemy as sa

    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1")).scalar()
    return engine.dialect.name


class HealthCheck:
    """What ``/healthcheck`` reports.

    :param options: the frozen ``[healthcheck]`` options.
    :param clock: ``IReactorTime`` (uptime, timeouts).
    :param engine: SQLAlchemy engine, with ``db_pool`` (``run(f, *args)``,
        ``statistics()``) to reach it.
    :param ironic: :class:`inspectord.ironic.client.IronicClient`.
    :param pxe_filter: has ``health()``.
    :param ipmi_pool: the BMC verifier's thread pool, when credentials
        may be set.
    """

    def __init__(self, options, clock, engine=None, db_pool=None, ironic=None, pxe_filter=None, ipmi_pool=None):
        self.options = options
        self.clock = clock
        self.engine = engine
        self.db_pool = db_pool
        self.ironic = ironic
        self.pxe_filter = pxe_filter
        self.ipmi_pool = ipmi_pool
        self.started = clock.seconds()
        self._ranges = [ipaddress.ip_network(c.strip(), strict=False) for c in options.allowed_source_ranges]

    # -- ironic-inspector's endpoint -----------------------------------------

    def serves(self, source, headers):
        """Whether ``/healthcheck`` answers this client (``allowed_source_ranges``, proxies)."""
        if self._ranges:
            try:
                address = ipaddress.ip_address(source)
            except ValueError:
                return False
            if not any(address.version == r.version and address in r for r in self._ranges):
                return False
        if self.options.ignore_proxied_requests:
            if any(headers(name) for name in ("x-forwarded", "x-forwarded-for", "x-forwarded-proto",
                                              "x-forwarded-host", "x-forwarded-prefix", "forwarded")):
                return False
        return True

    def verdict(self, server_port=None):
        """The backends' :class:`Verdict`, as oslo.middleware computes it."""
        options = self.options
        backends = list(options.backends)
        if not backends and options.disable_by_file_path:
            backends = ["disable_by_file"]
        results = []
        for backend in backends:
            if backend == "disable_by_file":
                path = options.disable_by_file_path
                results.append((False, "DISABLED BY FILE") if path and os.path.exists(path) else (True, "OK"))
            elif backend == "disable_by_files_ports":
                paths = dict(p.strip().split(":", 1) for p in options.disable_by_file_paths if p.strip())
                path = paths.get(str(server_port))
                results.append((False, "DISABLED BY FILE") if path and os.path.exists(path) else (True, "OK"))
            elif backend == "enable_by_files":
                missing = [p for p in options.enable_by_file_paths if not os.path.exists(p)]
                results.append((False, "FILE PATH MISSING") if missing else (True, "OK"))
        if not results:
            results = [(True, "OK")]
        return Verdict(all(ok for ok, _ in results), tuple(reason for _, reason in results))

    # -- the detailed view --------------------------------------------------------

    async def detail(self, server_port=None):
        """Every dependency's state, a plain dict (JSON)."""
        verdict = self.verdict(server_port)
        database, ironic = await defer.gatherResults(
            [
                defer.Deferred.fromCoroutine(self._probe(self._database())),
                defer.Deferred.fromCoroutine(self._probe(self._ironic())),
            ]
        )
        pxe = self._pxe_filter()
        checks = {"database": database, "ironic": ironic, "pxe_filter": pxe}
        now = self.clock.seconds()
        report = {
            # oslo.middleware's JSON fields first: a superset of its answer.
            "reasons": list(verdict.reasons),
            "detailed": True,
            "status": "disabled" if not verdict.healthy else ("ok" if all(c["ok"] for c in checks.values()) else "degraded"),
            "version": __version__,
            "started_at": iso(self.started),
            "uptime_seconds": round(now - self.started, 3),
            "database": database,
            "ironic": ironic,
            "pxe_filter": pxe,
            "bmc_verifier": self._verifier(),
        }
        return report

    async def _probe(self, coro):
        started = self.clock.seconds()
        d = defer.Deferred.fromCoroutine(coro)
        d.addTimeout(PROBE_TIMEOUT, self.clock)
        try:
            result = await d
        except defer.TimeoutError:
            return {"ok": False, "error": "no answer within {} s".format(PROBE_TIMEOUT)}
        except Exception as e:
            return {"ok": False, "error": str(e) or type(e).__name__}
        result = dict(result, ok=True)
        result["latency_seconds"] = round(self.clock.seconds() - started, 6)
        return result

    async def _database(self):
        if self.engine is None:
            return {}
        backend = await self.db_pool.run(_thd_ping, self.engine)
        result = {"backend": backend}
        stats = getattr(self.db_pool, "statistics", None)
        if stats is not None:
            result["pool"] = stats()
        return result

    async def _ironic(self):
        if self.ironic is None:
            return {}
        minimum, maximum = await self.ironic.api_versions(timeout=PROBE_TIMEOUT)
        return {"api_version": maximum, "min_api_version": minimum, "requests": dict(self.ironic.calls)}

    def _pxe_filter(self):
        if self.pxe_filter is None:
            return {"ok": True, "driver": None}
        report = self.pxe_filter.health()
        report["ok"] = report.get("state") == "ok"
        for key in ("last_success", "next_retry"):
            if isinstance(report.get(key), (int, float)):
                report[key] = iso(report[key])
        ironic = report.get("ironic")
        if isinstance(ironic, dict) and isinstance(ironic.get("last_success"), (int, float)):
            report["ironic"] = dict(ironic, last_success=iso(ironic["last_success"]))
        return report

    def _verifier(self):
        pool = self.ipmi_pool
        if pool is None:
            return {"enabled": False}
        return {"enabled": True, "threads": pool.max, "busy": len(pool.working), "queued": pool.q.qsize()}
