"""Introspection data in Swift (``[processing]store_data = swift``).

Objects are named as ironic-inspector named them, in the same container
(``[swift]container``), so inspectord reads what an ironic-inspector
deployment stored and the other way round: ``inspector_data-<uuid>`` holds
the processed data, ``inspector_data-<uuid>-UNPROCESSED`` the ramdisk's data
as received; both are JSON without the ramdisk logs.

The database keeps the working copy while a node is processed (and after a
failure); the objects are written when an introspection finishes, before
the database copy is dropped.

:class:`SwiftClient` speaks Swift's object API on treq.  Every request has a
timeout on the injected clock and is retried with exponential backoff when
Swift answers 5xx or cannot be reached; a 401 makes it ask keystoneauth for
a new token once.  The container is created on first use.
"""

import json

from twisted.internet import defer, task
from twisted.logger import Logger

from inspectord import errors
from inspectord.outbound import CONNECTION_ERRORS, raise_if_cancelled, with_timeout

OBJECT_PREFIX = "inspector_data"
UNPROCESSED_SUFFIX = "UNPROCESSED"
_MAX_BACKOFF = 30.0
# Keys never stored with the data (ironic-inspector's rule).
_EXCLUDED_KEYS = frozenset({"logs"})


def object_name(uuid, processed):
    """``inspector_data-<uuid>``, with ``-UNPROCESSED`` for the ramdisk's data."""
    name = "{}-{}".format(OBJECT_PREFIX, uuid)
    return name if processed else "{}-{}".format(name, UNPROCESSED_SUFFIX)


class SwiftClient:
    """Objects of one Swift container.

    :param http: a treq ``HTTPClient`` (``StubTreq`` in tests).
    :param endpoint: ``async`` callable returning ``(DecodedURL of the
        account, headers dict)``; see :func:`inspectord.keystone.endpoint_for`.
        If it has an ``invalidate()`` method, a 401 calls it and tries again.
    :param clock: an ``IReactorTime`` for timeouts and backoff.
    """

    log = Logger()

    def __init__(
        self, http, endpoint, clock, container="ironic-inspector", delete_after=0, timeout=60.0,
        max_retries=2, retry_interval=1.0,
    ):
        self._http = http
        self._endpoint = endpoint
        self._clock = clock
        self.container = container
        self._delete_after = delete_after
        self._timeout = timeout
        self._max_retries = max_retries
        self._retry_interval = retry_interval
        self._container_ready = False

    async def _once(self, method, name, body, headers):
        base, auth_headers = await self._endpoint()
        url = base.child(self.container, name) if name else base.child(self.container)
        all_headers = dict(auth_headers)
        all_headers.update(headers)
        response = await self._http.request(method, url, data=body, headers=all_headers)
        content = await response.content()
        return response.code, content

    def _timed(self, method, name, body, headers):
        d = defer.Deferred.fromCoroutine(self._once(method, name, body, headers))
        return with_timeout(d, self._timeout, self._clock)

    async def _request(self, method, name=None, body=None, headers=None):
        """``(status, body)`` of one request, after retrying 5xx and connection errors.

        :raises errors.SwiftError: Swift kept failing or is unreachable.
        """
        what = "{} {}/{}".format(method, self.container, name or "")
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            try:
                code, content = await self._timed(method, name, body, headers or {})
            except CONNECTION_ERRORS as e:
                raise_if_cancelled(e)
                problem = "cannot reach Swift: {}".format(e.__class__.__name__)
            else:
                if code == 401 and not reauthenticated and hasattr(self._endpoint, "invalidate"):
                    # The token may have been revoked before its expiry.
                    reauthenticated = True
                    self._endpoint.invalidate()
                    attempt -= 1
                    continue
                if code < 500:
                    return code, content
                problem = "Swift answered {}".format(code)
            if attempt > self._max_retries:
                raise errors.SwiftError(
                    "{} failed: {} (gave up after {} attempts)".format(what, problem, attempt)
                )
            delay = min(self._retry_interval * 2 ** (attempt - 1), _MAX_BACKOFF)
            self.log.warn(
                "Swift {request} failed ({problem}); retry {attempt} of {retries} in {delay}s",
                request=what,
                problem=problem,
                attempt=attempt,
                retries=self._max_retries,
                delay=delay,
            )
            await task.deferLater(self._clock, delay, lambda: None)

    async def _ensure_container(self):
        if self._container_ready:
            return
        code, content = await self._request("PUT", body=b"")
        if code not in (201, 202, 204):
            raise errors.SwiftError(
                "Swift refused to create container {}: {} {}".format(self.container, code, _text(content))
            )
        self._container_ready = True

    async def put_object(self, name, body):
        """Store ``body`` (bytes) as object ``name``; the container is created if needed."""
        headers = {"Content-Type": "application/json"}
        if self._delete_after:
            headers["X-Delete-After"] = str(self._delete_after)
        for _ in range(2):
            await self._ensure_container()
            code, content = await self._request("PUT", name, body, headers)
            if code == 404:  # the container was deleted under us: create it again
                self._container_ready = False
                continue
            break
        if code != 201:
            raise errors.SwiftError(
                "Swift refused to store object {}/{}: {} {}".format(self.container, name, code, _text(content))
            )

    async def get_object(self, name):
        """The bytes of object ``name``.

        :raises errors.NotFound: no such object (or container).
        :raises errors.SwiftError: any other failure.
        """
        code, content = await self._request("GET", name)
        if code == 404:
            raise errors.NotFound("No object {} in Swift container {}".format(name, self.container))
        if code != 200:
            raise errors.SwiftError(
                "Swift refused to read object {}/{}: {} {}".format(self.container, name, code, _text(content))
            )
        return content


def _text(content):
    return content[:200].decode("utf-8", "replace").strip()


class SwiftDataStore:
    """Processed and unprocessed introspection data of nodes, as Swift objects."""

    log = Logger()

    def __init__(self, client):
        self.client = client

    async def save(self, uuid, data, processed):
        body = json.dumps({k: v for k, v in data.items() if k not in _EXCLUDED_KEYS}).encode("utf-8")
        name = object_name(uuid, processed)
        await self.client.put_object(name, body)
        self.log.info(
            "Node {node}: introspection data stored in Swift object {container}/{object}",
            node=uuid,
            container=self.client.container,
            object=name,
        )

    async def get(self, uuid, processed):
        """The stored data (a dict).

        :raises errors.NotFound: nothing stored for ``uuid``.
        :raises errors.SwiftError: Swift failed or the object is not JSON.
        """
        name = object_name(uuid, processed)
        try:
            content = await self.client.get_object(name)
        except errors.NotFound:
            raise errors.NotFound(
                "No {} introspection data stored for node {}".format("processed" if processed else "unprocessed", uuid)
            ) from None
        try:
            return json.loads(content)
        except ValueError:
            raise errors.SwiftError("Swift object {}/{} is not JSON".format(self.client.container, name)) from None


def make_data_store(processing, swift, swift_auth, http, clock, pool):
    """The :class:`SwiftDataStore` of the ``[swift]`` section, or None without ``[processing]store_data=swift``.

    :param swift_auth: the loaded ``[swift]`` authentication
        (:class:`inspectord.keystone_options.IronicAuthOptions`).
    """
    if processing.store_data != "swift":
        return None
    from inspectord import keystone

    client = SwiftClient(
        http,
        keystone.endpoint_for(swift_auth, clock, pool, service="Swift", error=errors.SwiftError),
        clock,
        container=swift.container,
        delete_after=swift.delete_after,
        timeout=swift_auth.timeout or 60.0,
        max_retries=swift.max_retries,
    )
    return SwiftDataStore(client)
