"""The HTTP API (Klein): ironic-inspector's API, same paths and bodies.

Routes are thin: negotiate the version, parse, call the domain, render.
Domain errors become ``{"error": {"message": ...}}`` with their status in
one place (:meth:`API._respond`).
"""

import functools
import re
import urllib.parse
import uuid as uuidlib

from klein import Klein
from twisted.logger import Logger
from twisted.web import http, resource, server
from twisted.web.iweb import IAccessLogFormatter
from zope.interface import provider
from werkzeug import exceptions as werkzeug_exceptions

from inspectord import errors
from inspectord import state as st
from inspectord.api import bodies, limits, openapi, ops, proxy, ui, versions
from inspectord.api.status import BodyTooLarge, status_for
from inspectord.processing import rules as rules_mod

JSON = "application/json"


def _is_uuid(value):
    try:
        uuidlib.UUID(value)
        return True
    except ValueError:
        return False


def _rule_uuid(value):
    """Rules are stored under canonical UUIDs; anything else cannot match."""
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise errors.NotFound("Rule {} was not found".format(value)) from None


def _bool_arg(request, name, default=None):
    raw = request.args.get(name.encode())
    if not raw:
        return default
    text = raw[-1].decode("utf-8", "replace").strip().lower()
    if text in ("true", "1", "yes", "on", "y", "t"):
        return True
    if text in ("false", "0", "no", "off", "n", "f"):
        return False
    raise errors.InvalidInput("Invalid boolean value for {}: {!r}".format(name, text))


def _str_arg(request, name):
    raw = request.args.get(name.encode())
    return raw[-1].decode("utf-8", "replace") if raw else None


def endpoint(rule=None):
    """Wrap a route: version negotiation, authorization, headers, error rendering.

    :param rule: the policy rule the request must pass (ironic-inspector's
        names, e.g. ``introspection:status``); None for public endpoints.
    """

    def wrap(f):
        name = f.__name__

        @functools.wraps(f)
        async def wrapper(self, request, *args, **kwargs):
            request.inspectord_endpoint = name  # the route's metrics label without matching again
            return await self._respond(f, request, args, kwargs, rule)

        return wrapper

    return wrap


class LimitedRequest(server.Request):
    """A request that stops buffering a body past ``max_body_size``."""

    max_body_size = 16 * 1024 * 1024
    too_large = False
    # The API reads JSON bodies only; Twisted's own form parsing would answer
    # a malformed multipart body with a bare 400 before the API sees it.
    _parsePOSTFormSubmission = False
    _received = 0

    def gotLength(self, length):
        if length is not None and length > self.max_body_size:
            self.too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data):
        if self.too_large:
            return
        self._received += len(data)
        if self._received > self.max_body_size:
            self.too_large = True
            self.content.seek(0)
            self.content.truncate()
            return
        super().handleContentChunk(data)


_SECRET_NAMES = ("pass", "secret", "token", "credential", "key")


def _carries_secret(query):
    """Whether a query string has a parameter whose decoded name looks like a credential.

    Names are compared as Twisted decodes them (``new_ipmi_pass%77ord`` is
    ``new_ipmi_password``), never on the raw bytes.
    """
    for pair in query.split(b"&"):
        name = urllib.parse.unquote_to_bytes(pair.split(b"=", 1)[0].replace(b"+", b" ")).lower()
        if any(marker.encode() in name for marker in _SECRET_NAMES):
            return True
    return False


class _MaskedURIRequest:
    """A view of a request whose query string is dropped when it carries a credential."""

    def __init__(self, request):
        self._request = request
        path, sep, query = request.uri.partition(b"?")
        self.uri = path + b"?(query with credentials not logged)" if sep and _carries_secret(query) else request.uri

    def __getattr__(self, name):
        return getattr(self._request, name)


@provider(IAccessLogFormatter)
def access_log_formatter(timestamp, request):
    """The combined log format, minus query strings that carry secrets."""
    return http.combinedLogFormatter(timestamp, _MaskedURIRequest(request))


def error_body(request, code, message):
    """Answer ``request`` with the JSON error format and the version headers."""
    request.setResponseCode(code)
    request.setHeader(versions.MIN_HEADER, versions.fmt(versions.MINIMUM))
    request.setHeader(versions.MAX_HEADER, versions.fmt(versions.CURRENT))
    request.setHeader("Content-Type", JSON)
    return bodies.dumps({"error": {"message": message}})


class JSONErrorsResource(resource.Resource):
    """The API resource behind checks Klein does not answer in JSON.

    A path that is not UTF-8 and a ``Host`` header werkzeug refuses would
    otherwise get a text or HTML error (or a 500) from Klein or Twisted.
    """

    isLeaf = True

    def __init__(self, wrapped):
        super().__init__()
        self._wrapped = wrapped

    def render(self, request):
        try:
            request.path.decode("utf-8")
            urllib.parse.unquote_to_bytes(request.path).decode("utf-8")
        except UnicodeDecodeError:
            return error_body(request, 400, "The request path is not valid UTF-8")
        host = request.getHeader(b"host")
        if host is not None and (len(host) > MAX_HOST_LENGTH or not _HOST.fullmatch(host)):
            return error_body(request, 400, "Invalid Host header")
        try:
            return self._wrapped.render(request)
        except werkzeug_exceptions.HTTPException as e:
            return error_body(request, e.code or 400, e.description or e.name)


MAX_HOST_LENGTH = 300
# A DNS name, IPv4 or bracketed IPv6 address, and an optional port.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]{1,5})?")


def make_site(api_resource, max_body_size, reactor=None, idle_timeout=limits.IDLE_TIMEOUT, metrics=None, clock=None):
    """The HTTP factory of the API: size and time limits, JSON errors, masked access log.

    With ``metrics`` (and ``clock``), every request is counted by route and status.
    """

    class Request(LimitedRequest):
        pass

    Request.max_body_size = max_body_size
    kwargs = {"logFormatter": access_log_formatter, "timeout": idle_timeout, "reactor": reactor}
    if metrics is None:
        site = server.Site(JSONErrorsResource(api_resource), **kwargs)
    else:
        from inspectord.metrics import MetricsSite

        site = MetricsSite(JSONErrorsResource(api_resource), metrics, API.app.url_map, clock, **kwargs)
    site.requestFactory = Request
    site.protocol = limits.DeadlineChannel
    site.displayTracebacks = False
    return site


class API:
    """The API resource tree.

    :param introspection: :class:`inspectord.introspection.Introspection`.
    :param auth: authenticates and authorizes a request:
        ``await auth.check(request, rule)`` raises an InspectordError (401,
        403, 503) or returns; ``rule`` is None for public endpoints.
    :param metrics: :class:`inspectord.metrics.Metrics` for ``/metrics``.
    :param health: :class:`inspectord.health.HealthCheck` for ``/healthcheck``.
    """

    app = Klein()
    # werkzeug would answer "//" in a path with an HTML 308 redirect, before
    # authentication; such a path is simply not found.
    app.url_map.merge_slashes = False
    log = Logger()

    def __init__(self, introspection, store, ironic, config, auth, metrics=None, health=None):
        self.metrics = metrics
        self.health = health
        self.introspection = introspection
        self.store = store
        self.ironic = ironic
        self.config = config
        self.auth = auth

    # -- plumbing ---------------------------------------------------------

    def _headers(self, request):
        request.setHeader(versions.MIN_HEADER, versions.fmt(versions.MINIMUM))
        request.setHeader(versions.MAX_HEADER, versions.fmt(versions.CURRENT))
        request.setHeader(versions.VERSION_HEADER, versions.fmt(getattr(request, "api_version", versions.DEFAULT)))

    def _error(self, request, code, message):
        request.setResponseCode(code)
        request.setHeader("Content-Type", JSON)
        return bodies.dumps({"error": {"message": message}})

    async def _respond(self, f, request, args, kwargs, rule):
        try:
            # Bytes: a value that is not UTF-8 is a malformed version, not a crash.
            header = request.getHeader(versions.VERSION_HEADER.encode())
            standard = request.getHeader(versions.STANDARD_HEADER.encode())
            request.api_version = versions.negotiate(header, standard)
            self._headers(request)
            if getattr(request, "too_large", False):
                raise BodyTooLarge(
                    "Request body is larger than the limit of {} bytes".format(request.max_body_size)
                )
            await self.auth.check(request, rule)
            result = await f(self, request, *args, **kwargs)
        except errors.InspectordError as e:
            self._headers(request)
            for name, value in getattr(e, "headers", {}).items():  # e.g. WWW-Authenticate on a 401
                request.setHeader(name, value)
            code = status_for(e)
            if code >= 500:
                self.log.error("{method} {path}: {error}", method=request.method.decode(), path=request.path.decode("utf-8", "replace"), error=e.message)
            return self._error(request, code, e.message)
        except Exception:
            self.log.failure("Unexpected error in {method} {path}", method=request.method.decode(), path=request.path.decode("utf-8", "replace"))
            self._headers(request)
            return self._error(request, 500, "Internal error; see the inspectord log")
        if result is None:
            request.setHeader("Content-Type", "text/plain")
            if request.code == 204:
                request.setHeader("Content-Length", b"0")
            return b""
        request.setHeader("Content-Type", JSON)
        return bodies.dumps(result)

    def _external(self, request):
        """``(scheme, host, prefix)`` of the URL the client used (:mod:`inspectord.api.proxy`)."""
        host = request.getHeader("host")
        if not host:
            local = request.getHost()
            # A unix socket (listen_unix_socket) has no host and port.
            host = "{}:{}".format(local.host, local.port) if hasattr(local, "port") else "localhost"
        scheme = "https" if request.isSecure() else "http"
        if not self.config.oslo_middleware.enable_proxy_headers_parsing:
            return scheme, host, ""
        return proxy.external(request.getHeader, scheme, host)

    def _root_url(self, request):
        return "{}://{}{}/".format(*self._external(request))

    @staticmethod
    def _link(root, path):
        """The ``links`` of a resource at ``path`` under ``root`` (:meth:`_root_url`, once per request)."""
        return [{"rel": "self", "href": root + path}]

    def _json_body(self, request):
        return bodies.parse_json(request.content.read())

    def _status(self, record, root, diagnose):
        """A node's status; ``root`` is :meth:`_root_url`, ``diagnose`` whether DHCP is recorded.

        Both are the request's, computed once for a whole page of statuses.
        """
        status = {
            "uuid": record.uuid,
            "finished": record.finished,
            "state": record.state,
            "started_at": record.started_at.isoformat(),
            "finished_at": record.finished_at.isoformat() if record.finished_at else None,
            "error": record.error,
            "links": self._link(root, "v1/introspection/" + record.uuid),
        }
        if diagnose and record.active:
            dhcp = self.introspection.dhcp_status(record)
            if dhcp is not None:
                status["dhcp"] = dhcp
        return status

    async def _node_uuid(self, node_id):
        """A node's UUID from a UUID or (from API 1.5) a name."""
        if _is_uuid(node_id):
            return node_id.lower()
        try:
            node = await self.ironic.get_node(node_id)
        except errors.IronicNotFound:
            raise errors.NotFound("Node {} was not found in Ironic".format(node_id)) from None
        return node["uuid"]

    # -- routes -----------------------------------------------------------

    @app.route("/", methods=["GET"])
    @endpoint()
    async def root(self, request):
        return {
            "versions": [
                {
                    "id": versions.fmt(versions.CURRENT),
                    "status": "CURRENT",
                    "links": self._link(self._root_url(request), "v1"),
                }
            ]
        }

    @app.route("/v1", methods=["GET"])
    @endpoint()
    async def version_root(self, request):
        root = self._root_url(request)
        return {
            "resources": [
                {"name": name, "links": self._link(root, "v1/" + name)}
                for name in ("continue", "introspection", "rules")
            ]
        }

    @app.route("/v1/openapi.json", methods=["GET"])
    @endpoint()
    async def openapi_document(self, request):
        return openapi.document()

    @app.route("/v1/continue", methods=["POST"])
    @endpoint()
    async def continue_(self, request):
        clock, code = self.introspection.clock, 500
        started = clock.seconds()
        try:
            data = self._json_body(request)
            # None on a unix socket (a local proxy): no IP address to count discovery attempts by.
            source = getattr(request.getClientAddress(), "host", None)
            result = await self.introspection.process(data, source=source)
            code = 200
            return result
        except errors.InspectordError as e:
            code = status_for(e)
            raise
        finally:
            if self.metrics is not None:
                self.metrics.callback_processed(clock.seconds() - started, code)

    @app.route("/v1/introspection/<node_id>", methods=["POST"])
    @endpoint("introspection:start")
    async def start(self, request, node_id):
        await self.introspection.start(
            node_id,
            manage_boot=_bool_arg(request, "manage_boot"),
            new_ipmi_username=_str_arg(request, "new_ipmi_username"),
            new_ipmi_password=_str_arg(request, "new_ipmi_password"),
        )
        request.setResponseCode(202)
        return None

    @app.route("/v1/introspection/<node_id>", methods=["GET"])
    @endpoint("introspection:status")
    async def status(self, request, node_id):
        uuid = await self._node_uuid(node_id)
        try:
            record = await self.store.get_node_recent(uuid)
        except errors.NotFound:
            raise errors.NotFound("Node {} was never introspected".format(node_id)) from None
        return self._status(record, self._root_url(request), self.introspection.records_dhcp)

    @app.route("/v1/introspection", methods=["GET"])
    @endpoint("introspection:status")
    async def list_statuses(self, request):
        limit = self._limit(request)
        marker = _str_arg(request, "marker")
        if marker is not None and not _is_uuid(marker):
            raise errors.InvalidInput("Invalid marker {!r}: expected a node UUID".format(marker))
        states = []
        for raw in request.args.get(b"state", []):
            states.extend(s.strip() for s in raw.decode("utf-8", "replace").split(",") if s.strip())
        unknown = [s for s in states if s not in {x.value for x in st.State}]
        if unknown:
            raise errors.InvalidInput(
                "Invalid state(s) {}; valid states are {}".format(
                    ", ".join(unknown), ", ".join(x.value for x in st.State)
                )
            )
        # Without a recording PXE filter no status has a DHCP diagnosis: the page reads no ports.
        diagnose = self.introspection.records_dhcp
        try:
            records = await self.store.list_nodes(
                limit, marker.lower() if marker else None, states or None, brief=True, active_ports=diagnose
            )
        except errors.NotFound:
            raise errors.InvalidInput("Marker {} does not match any introspection".format(marker)) from None
        root = self._root_url(request)
        return {"introspection": [self._status(r, root, diagnose) for r in records]}

    def _limit(self, request):
        maximum = self.config.default.api_max_limit
        raw = _str_arg(request, "limit")
        if raw is None:
            return maximum
        try:
            limit = int(raw)
        except ValueError:
            raise errors.InvalidInput("Invalid limit {!r}: expected a positive integer".format(raw)) from None
        if limit < 0:
            raise errors.InvalidInput("Invalid limit {}: expected a positive integer".format(limit))
        if limit > maximum:
            raise errors.InvalidInput("Limit {} is larger than the maximum of {}".format(limit, maximum))
        return limit or maximum

    @app.route("/v1/introspection/<node_id>/abort", methods=["POST"])
    @endpoint("introspection:abort")
    async def abort(self, request, node_id):
        uuid = await self._node_uuid(node_id)
        try:
            await self.introspection.abort(uuid)
        except errors.NotFound:
            raise errors.NotFound("Node {} is not being introspected".format(node_id)) from None
        request.setResponseCode(202)
        return None

    async def _data(self, node_id, processed):
        if self.config.processing.store_data == "none":
            raise errors.NotFound(
                "Inspector is not configured to store data. Set the [processing]store_data "
                "configuration option to change this."
            )
        uuid = await self._node_uuid(node_id)
        return await self.introspection.get_data(uuid, processed)

    @app.route("/v1/introspection/<node_id>/data", methods=["GET"])
    @endpoint("introspection:data")
    async def data(self, request, node_id):
        return await self._data(node_id, True)

    @app.route("/v1/introspection/<node_id>/data/unprocessed", methods=["GET"])
    @endpoint("introspection:data")
    async def unprocessed_data(self, request, node_id):
        return await self._data(node_id, False)

    @app.route("/v1/introspection/<node_id>/data/unprocessed", methods=["POST"])
    @endpoint("introspection:reapply")
    async def reapply(self, request, node_id):
        raw = request.content.read()
        data = None
        if raw.strip():
            data = bodies.parse_json(raw)
            if not isinstance(data, dict):
                raise errors.InvalidInput("Invalid data: expected a JSON object, got {}".format(type(data).__name__))
        uuid = await self._node_uuid(node_id)
        try:
            await self.introspection.reapply(uuid, data)
        except errors.NotFound as e:
            raise errors.NotFound("Node {} was never introspected: {}".format(node_id, e)) from None
        request.setResponseCode(202)
        return None

    # -- rules --------------------------------------------------------------

    def _rule(self, prefix, rule, short=False):
        """A rule's JSON; ``prefix`` is the request's path prefix (:meth:`_external`), once per request."""
        result = rules_mod.as_dict(rule, short=short)
        result["links"] = [{"href": prefix + "/v1/rules/" + rule["uuid"], "rel": "self"}]
        return result

    @app.route("/v1/rules", methods=["GET"])
    @endpoint("introspection:rule:get")
    async def list_rules(self, request):
        rules = await self.store.list_rules()
        prefix = self._external(request)[2]
        return {"rules": [self._rule(prefix, r, short=True) for r in rules]}

    @app.route("/v1/rules", methods=["POST"])
    @endpoint("introspection:rule:create")
    async def create_rule(self, request):
        rule = rules_mod.validate(self._json_body(request))
        await self.store.create_rule(rule, self.introspection.now())
        request.setResponseCode(200 if request.api_version < (1, 6) else 201)
        return self._rule(self._external(request)[2], rule)

    @app.route("/v1/rules", methods=["DELETE"])
    @endpoint("introspection:rule:delete")
    async def delete_rules(self, request):
        await self.store.delete_all_rules()
        request.setResponseCode(204)
        return None

    @app.route("/v1/rules/<uuid>", methods=["GET"])
    @endpoint("introspection:rule:get")
    async def get_rule(self, request, uuid):
        return self._rule(self._external(request)[2], await self.store.get_rule(_rule_uuid(uuid)))

    @app.route("/v1/rules/<uuid>", methods=["DELETE"])
    @endpoint("introspection:rule:delete")
    async def delete_rule(self, request, uuid):
        await self.store.delete_rule(_rule_uuid(uuid))
        request.setResponseCode(204)
        return None

    @app.handle_errors(werkzeug_exceptions.NotFound)
    def not_found(self, request, failure):
        self._headers(request)
        return self._error(request, 404, "No resource at {}".format(request.path.decode("utf-8", "replace")))

    @app.handle_errors(werkzeug_exceptions.MethodNotAllowed)
    def not_allowed(self, request, failure):
        self._headers(request)
        allowed = failure.value.valid_methods or []
        request.setHeader("Allow", ", ".join(sorted(set(allowed))))
        return self._error(
            request, 405, "Method {} is not allowed on {}".format(request.method.decode(), request.path.decode("utf-8", "replace"))
        )


# Operators' routes, in modules of their own: /healthcheck, /metrics, /ui.
ops.register(API.app)
ui.register(API.app)
