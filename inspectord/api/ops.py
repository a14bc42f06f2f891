"""Routes for operators' tools: ``/healthcheck`` and ``/metrics``.

Registered on the API's Klein app by :func:`register`; the handlers run
with the :class:`inspectord.api.app.API` instance as ``self``.
"""

import json

from klein import Klein
from twisted.logger import Logger

from inspectord import errors
from inspectord.api.status import status_for
from inspectord.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

#: The policy rule the detailed health view and an authenticated /metrics need.
RULE = "introspection:status"
#: Routes whose authentication the [healthcheck] and [metrics] options decide,
#: not the policy table: public like ironic-inspector's /healthcheck.
ROUTES = (("GET", "/healthcheck"), ("GET", "/metrics"))

log = Logger()


def _wants_json(request):
    accept = (request.getHeader("accept") or "").lower()
    return "application/json" in accept


def _detail_arg(request):
    raw = request.args.get(b"detail")
    return bool(raw) and raw[-1].strip().lower() in (b"1", b"true", b"yes", b"on")


async def _authorized(api, request, rule):
    """``None`` when ``request`` may pass ``rule``, else the error to answer with."""
    try:
        await api.auth.check(request, rule)
    except errors.InspectordError as e:
        return e
    return None


def _render_error(api, request, e):
    api._headers(request)
    for name, value in getattr(e, "headers", {}).items():
        request.setHeader(name, value)
    return api._error(request, status_for(e), e.message)


async def healthcheck(api, request):
    """``GET|HEAD /healthcheck``: ironic-inspector's answer, or the detailed view."""
    health = api.health
    config = api.config.healthcheck
    if health is None or not config.enabled or not health.serves(request.getClientAddress().host, request.getHeader):
        return _render_error(api, request, errors.NotFound("No resource at /healthcheck"))
    port = request.getHost().port
    verdict = health.verdict(port)
    code = 200 if verdict.healthy else 503
    request.setHeader("Cache-Control", "no-store")
    if request.method == b"HEAD":
        request.setResponseCode(204 if verdict.healthy else 503)
        return b""
    asked = _detail_arg(request)
    if asked or _wants_json(request):
        denied = await _authorized(api, request, RULE)
        if denied is None:
            try:
                report = await health.detail(port)
            except Exception:
                log.failure("The detailed health view failed")
                return _render_error(api, request, errors.InternalError("Internal error; see the inspectord log"))
            request.setResponseCode(code)
            request.setHeader("Content-Type", "application/json")
            return json.dumps(report, indent=2, sort_keys=True).encode()
        if asked:
            return _render_error(api, request, denied)
        # Not authorized to see more: oslo.middleware's short JSON, as before.
        request.setResponseCode(code)
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"reasons": list(verdict.reasons), "detailed": False}).encode()
    request.setResponseCode(code)
    request.setHeader("Content-Type", "text/plain; charset=UTF-8")
    return "\n".join(verdict.reasons).encode()


async def metrics(api, request, on_own_listener=False):
    """``GET /metrics``: the Prometheus exposition (``[metrics]`` options)."""
    options = api.config.metrics
    if api.metrics is None or not options.enabled or (options.listen_port and not on_own_listener):
        return _render_error(api, request, errors.NotFound("No resource at /metrics"))
    if options.require_auth:
        denied = await _authorized(api, request, RULE)
        if denied is not None:
            return _render_error(api, request, denied)
    body = await api.metrics.render()
    request.setHeader("Content-Type", METRICS_CONTENT_TYPE)
    request.setHeader("Cache-Control", "no-store")
    return body


def register(app):
    """Add the routes to the API's Klein ``app``."""
    app.route("/healthcheck", methods=["GET", "HEAD"])(healthcheck)
    app.route("/metrics", methods=["GET"])(metrics)


class MetricsListener:
    """``[metrics]listen_port``: ``/metrics`` alone, on a listener of its own."""

    app = Klein()

    def __init__(self, api):
        self.api = api

    @app.route("/metrics", methods=["GET"])
    async def metrics(self, request):
        return await metrics(self.api, request, on_own_listener=True)
