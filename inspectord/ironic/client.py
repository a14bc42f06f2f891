"""An asynchronous Ironic client on treq.

Every call has a timeout on the injected clock, goes through a semaphore
that bounds the requests in flight (a single Ironic resets connections when
dozens of writes arrive at once), and is retried with exponential backoff
when Ironic answers 503, says the node is locked (409), or the connection
fails; an idempotent request (a GET, setting the power on or off or the
boot device) is also retried after a 500, 502 or 504, which a busy Ironic
answers when its database is locked.  Other errors are final and raised at
once.
"""

import collections
import json
import urllib.parse

from hyperlink import DecodedURL
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from inspectord import bmc_address, errors, interfaces
from inspectord.outbound import CONNECTION_ERRORS, raise_if_cancelled, with_timeout
from inspectord.metrics import NO_METRICS

API_VERSION_HEADER = "X-OpenStack-Ironic-API-Version"
_MAX_BACKOFF = 30.0
#: Answers retried only for idempotent requests: Ironic (or a proxy before it) failed, likely for a moment.
_RETRIED_IF_IDEMPOTENT = (500, 502, 504)
_PAGE = 1000


def _passing(f, *args):
    def call(result):
        f(*args)
        return result

    return call


class _Slots:
    """Bounds the requests in flight; waiting requests are served by class.

    A request someone waits on (an API call, a ramdisk callback's PATCH)
    takes a free slot before a background one (power changes: the
    ramdisk was already answered, the start already recorded), so a
    callback is not answered only after the power-offs of every node that
    called in before it.  A background request passed over ``limit`` times
    in a row goes next: background work is delayed, never starved.
    """

    def __init__(self, limit):
        self.limit = limit
        self.tokens = limit
        self._waiting = (collections.deque(), collections.deque())  # foreground, background
        self._passed_over = 0

    def run(self, background, f, *args):
        def call(_):
            # Only a request that got a slot gives one back (not one
            # cancelled while it waited).
            return defer.maybeDeferred(f, *args).addBoth(self._release)

        return self._acquire(background).addCallback(call)

    def _acquire(self, background):
        if self.tokens > 0:
            self.tokens -= 1
            return defer.succeed(None)
        queue = self._waiting[background]
        d = defer.Deferred(lambda d: queue.remove(d))
        queue.append(d)
        return d

    def _release(self, result):
        foreground, background = self._waiting
        if background and (not foreground or self._passed_over >= self.limit):
            self._passed_over = 0
            background.popleft().callback(None)
        elif foreground:
            if background:
                self._passed_over += 1
            foreground.popleft().callback(None)
        else:
            self.tokens += 1
        return result


def tls_failure(error):
    """The OpenSSL error behind a connection failure (certificate refused, handshake failed), or None."""
    from OpenSSL import SSL

    pending = [error]
    while pending:
        current = pending.pop()
        if isinstance(current, Failure):
            current = current.value
        if isinstance(current, SSL.Error):
            reasons = [r for r in (current.args[0] if current.args else []) if isinstance(r, tuple)]
            return "; ".join(str(r[-1]) for r in reasons) or str(current)
        pending.extend(getattr(current, "reasons", None) or [])
    return None


def _fault(body):
    """The human message of an Ironic error body."""
    if isinstance(body, dict):
        message = body.get("error_message", body)
        if isinstance(message, str):
            try:
                message = json.loads(message)
            except ValueError:
                return message
        if isinstance(message, dict):
            return message.get("faultstring") or json.dumps(message)
    return str(body)


@implementer(interfaces.IIronic)
class IronicClient:
    """Talks to Ironic's REST API.

    :param http: a treq ``HTTPClient`` (``StubTreq`` in tests) or an
        :class:`~inspectord.ironic.http.AgentHTTPClient` (the service's).
    :param endpoint: ``async`` callable returning ``(DecodedURL base,
        headers dict)``; see :func:`inspectord.keystone.endpoint_for`.
    :param clock: an ``IReactorTime`` for timeouts and backoff.
    """

    log = Logger()

    def __init__(
        self,
        http,
        endpoint,
        clock,
        api_version="1.46",
        timeout=60.0,
        max_retries=30,
        retry_interval=2.0,
        max_in_flight=8,
        metrics=None,
    ):
        self._http = http
        self._metrics = metrics or NO_METRICS
        self._endpoint = endpoint
        self._clock = clock
        self._api_version = api_version
        self._timeout = timeout
        self._max_retries = max_retries
        self._retry_interval = retry_interval
        self._semaphore = _Slots(max_in_flight)
        self._base, self._base_text = None, None  # the endpoint's URL as text, for the last base seen
        # Backoff waits after a connection error; cancelled by stop_retrying().
        self._unreachable_waits = set()
        self._stopping = False
        #: Requests made, by method: for benchmarks and the health view.
        self.calls = {}

    async def _once(self, method, path, body, params):
        base, headers = await self._endpoint()
        url = self._url(base, path)
        headers = dict(headers)
        headers[API_VERSION_HEADER] = self._api_version
        headers["Accept"] = "application/json"
        kwargs = {"headers": headers, "params": params}
        if body is not None:
            kwargs["json"] = body
        self.calls[method] = self.calls.get(method, 0) + 1
        response = await self._http.request(method, url, **kwargs)
        content = await response.content()
        try:
            parsed = json.loads(content) if content else None
        except ValueError:
            parsed = content.decode("utf-8", "replace")
        return response.code, parsed

    def _url(self, base, path):
        """The request URL of ``path`` under ``base`` (a ``DecodedURL``), as text; every character of a
        segment but letters, digits and ``-._~`` percent-encoded, as hyperlink's ``child`` does.

        Built as a string: hyperlink's ``child`` decodes the host (IDNA) and
        re-checks every part, about 60 µs a request, 8 times this.
        """
        if base is not self._base:
            self._base, self._base_text = base, base.encoded_url.to_text().rstrip("/")
        return self._base_text + "/" + "/".join(
            urllib.parse.quote(segment, safe="") for segment in path.strip("/").split("/")
        )

    def _timed(self, method, path, body, params):
        # The timeout covers the whole exchange, the body included.
        d = defer.Deferred.fromCoroutine(self._once(method, path, body, params))
        return with_timeout(d, self._timeout, self._clock)

    async def request(self, method, path, body=None, params=None, ok=(200,), background=False, idempotent=None):
        """Make one request, retrying what can be retried.

        :param background: nobody waits on the answer: requests others
            wait on take free slots first.
        :param idempotent: making the request twice does what making it
            once does, so a 500, 502 or 504 is retried too (default: GETs).

        :returns: the decoded JSON body (or None).
        :raises errors.IronicNotFound: 404.
        :raises errors.IronicError: any other failure.
        """
        if idempotent is None:
            idempotent = method == "GET"
        attempt = 0
        while True:
            attempt += 1
            started = self._clock.seconds()
            try:
                code, parsed = await self._semaphore.run(background, self._timed, method, path, body, params)
            except CONNECTION_ERRORS as e:
                raise_if_cancelled(e)  # a cancelled call stops here, never back into backoff
                self._metrics.ironic_request(method, path, "connection_error", self._clock.seconds() - started)
                tls = tls_failure(e)
                if tls is not None:
                    # A certificate Ironic or inspectord refuses does not heal by itself.
                    raise errors.IronicUnavailable("TLS with Ironic failed ({} {}): {}".format(method, path, tls)) from None
                problem = "cannot reach Ironic: {}".format(e.__class__.__name__)
                code = None
                if self._stopping:
                    raise defer.CancelledError("inspectord is stopping: " + problem)
            else:
                self._metrics.ironic_request(method, path, code, self._clock.seconds() - started)
                if code in ok:
                    return parsed
                problem = "Ironic answered {} to {} {}: {}".format(code, method, path, _fault(parsed))
                if code == 404:
                    raise errors.IronicNotFound(problem)
                if not (
                    code == 503
                    or (code == 409 and "locked" in problem.lower())
                    or (idempotent and code in _RETRIED_IF_IDEMPOTENT)
                ):
                    raise errors.IronicError(problem, status=code)
            if attempt > self._max_retries:
                problem += " (gave up after {} attempts)".format(attempt)
                if code is None:
                    raise errors.IronicUnavailable(problem)
                raise errors.IronicError(problem, status=code)
            delay = min(self._retry_interval * 2 ** (attempt - 1), _MAX_BACKOFF)
            self._metrics.ironic_retry(method, path)
            self.log.warn(
                "{method} {path} failed ({problem}); retry {attempt} of {retries} in {delay}s",
                method=method,
                path=path,
                problem=problem,
                attempt=attempt,
                retries=self._max_retries,
                delay=delay,
            )
            wait = task.deferLater(self._clock, delay, lambda: None)
            if code is None:
                self._unreachable_waits.add(wait)
                wait.addBoth(_passing(self._unreachable_waits.discard, wait))
            await wait

    def stop_retrying(self):
        """inspectord is stopping: an unreachable Ironic is not waited for.

        Calls waiting to retry after a connection error, and calls whose
        next attempt cannot connect, fail with ``CancelledError`` at once.
        Retries of answers (503, a locked node) go on: they usually end
        within the stop's grace.
        """
        self._stopping = True
        for wait in list(self._unreachable_waits):
            wait.cancel()

    async def api_versions(self, timeout=5.0):
        """``(minimum, maximum)`` API versions Ironic's root announces: one attempt, no retry (health view)."""
        d = defer.Deferred.fromCoroutine(self._once("GET", "/", None, None))
        code, parsed = await with_timeout(d, timeout, self._clock)
        if code != 200:
            raise errors.IronicError("Ironic answered {} to GET /: {}".format(code, _fault(parsed)), status=code)
        default = (parsed or {}).get("default_version") or {}
        return default.get("min_version"), default.get("version")

    # -- nodes ---------------------------------------------------------------

    def get_node(self, node_id):
        """A node by UUID or name (``node_id`` is passed through as is)."""
        return self.request("GET", "/v1/nodes/" + node_id)

    async def validate_power(self, uuid):
        """``(ok, reason)`` of Ironic's validation of the power interface."""
        result = await self.request("GET", "/v1/nodes/{}/validate".format(uuid))
        power = (result or {}).get("power") or {}
        return bool(power.get("result")), power.get("reason")

    def set_boot_device_pxe(self, uuid):
        return self.request(
            "PUT",
            "/v1/nodes/{}/management/boot_device".format(uuid),
            {"boot_device": "pxe", "persistent": False},
            ok=(200, 202, 204),
            idempotent=True,
        )

    def set_power_state(self, uuid, target):
        """``target``: ``power on``, ``power off`` or ``rebooting``.

        A background request: power changes come after the API's answer
        (start) or the ramdisk's (finish).
        """
        return self.request(
            "PUT", "/v1/nodes/{}/states/power".format(uuid), {"target": target}, ok=(200, 202, 204),
            background=True, idempotent=target in ("power on", "power off"),
        )

    def patch_node(self, uuid, patch):
        """Apply one JSON patch (every property change of a run at once)."""
        return self.request("PATCH", "/v1/nodes/" + uuid, patch)

    def create_node(self, body):
        """Create a node (``POST /v1/nodes``); it starts in the enroll state."""
        return self.request("POST", "/v1/nodes", body, ok=(201,))

    def delete_node(self, uuid):
        return self.request("DELETE", "/v1/nodes/" + uuid, ok=(204,))

    async def list_nodes(self, fields):
        """Every node (all pages), with only ``fields`` (a comma-separated string)."""
        return [node async for node in self._paged("/v1/nodes", "nodes", {"fields": fields})]

    async def find_node_by_bmc(self, addresses, fields):
        """Nodes whose ``driver_info`` has one of ``addresses`` in ``fields``.

        Addresses compare as :func:`inspectord.bmc_address.host` spells
        them (a URL's host, one spelling per IP); names are not resolved.
        """
        wanted = {bmc_address.host(a) for a in addresses}
        found = []
        async for node in self._paged("/v1/nodes", "nodes", {"fields": "uuid,driver_info"}):
            if bmc_address.hosts_in(node.get("driver_info"), fields) & wanted:
                found.append(node["uuid"])
        return found

    def add_trait(self, uuid, trait):
        return self.request("PUT", "/v1/nodes/{}/traits/{}".format(uuid, trait), ok=(204,))

    async def remove_trait(self, uuid, trait):
        try:
            await self.request("DELETE", "/v1/nodes/{}/traits/{}".format(uuid, trait), ok=(204,))
        except errors.IronicNotFound:
            pass  # the node does not have it: nothing to remove

    # -- ports ---------------------------------------------------------------

    async def _paged(self, path, key, params):
        params = dict(params, limit=str(_PAGE))
        while True:
            body = await self.request("GET", path, params=params)
            items = body.get(key) or []
            for item in items:
                yield item
            if not body.get("next") or len(items) < _PAGE:
                return
            params["marker"] = items[-1]["uuid"]

    async def list_ports(self, node_uuid, fields="uuid,address,pxe_enabled"):
        """Every port of a node, with ``fields`` (uuid, address and pxe_enabled by default)."""
        return [
            port
            async for port in self._paged("/v1/ports", "ports", {"node_uuid": node_uuid, "fields": fields})
        ]

    async def list_all_port_macs(self):
        """The address of every port Ironic has (all pages), for the PXE filter."""
        return [
            port["address"]
            async for port in self._paged("/v1/ports", "ports", {"fields": "uuid,address"})
            if port.get("address")
        ]

    async def find_port(self, address):
        body = await self.request(
            "GET", "/v1/ports", params={"address": address, "fields": "uuid,address,node_uuid,pxe_enabled"}
        )
        ports = body.get("ports") or []
        return ports[0] if ports else None

    async def create_port(self, node_uuid, address, pxe_enabled=True, extra=None):
        body = {"node_uuid": node_uuid, "address": address, "pxe_enabled": pxe_enabled}
        body.update(extra or {})
        try:
            return await self.request("POST", "/v1/ports", body, ok=(201,))
        except errors.IronicError as e:
            if e.status != 409:
                raise
            # A retried POST whose first attempt went through, or a port
            # another node already has: tell which.
            existing = await self.find_port(address)
            if existing is None:
                raise
            if existing.get("node_uuid") != node_uuid:
                # The ramdisk reported a MAC another node owns (a moved NIC,
                # a copied payload): leave that node alone, as ironic-inspector did.
                self.log.warn(
                    "Port {address} already exists on node {other}, not on {node}: skipping it",
                    address=address, other=existing.get("node_uuid"), node=node_uuid,
                )
                return None
            return existing

    def patch_port(self, port_uuid, patch):
        return self.request("PATCH", "/v1/ports/" + port_uuid, patch)

    def delete_port(self, port_uuid):
        return self.request("DELETE", "/v1/ports/" + port_uuid, ok=(204,))


def static_endpoint(url, headers=None):
    """An endpoint callable for ``auth_type=none`` + ``endpoint_override``."""
    base = DecodedURL.from_text(url.rstrip("/"))
    if base.path and base.path[-1] == "v1":
        base = base.replace(path=base.path[:-1])
    frozen = dict(headers or {})

    async def endpoint():
        return base, frozen

    return endpoint
