"""The HTTP client of the Ironic client: a Twisted ``Agent``, without treq's per-request layers.

treq's ``HTTPClient.request`` wraps every request in a cookie agent, a
redirect agent and a gzip-decoding agent, and encodes the URL again
through IDNA: about 0.13 ms of CPU per request, and an introspection makes
seven Ironic requests.  Ironic's API sets no cookie, redirects no API call
and answers uncompressed JSON, so :class:`AgentHTTPClient` sends the
request straight to the agent.  It takes what :class:`IronicClient
<inspectord.ironic.client.IronicClient>` passes to treq (``headers``,
``params``, ``json``), so tests keep using treq's ``StubTreq``.

:class:`CachedEndpoints` gives the ``Agent`` one endpoint per scheme, host
and port, where Twisted's own factory builds one (and IDNA-encodes its
host) for every request, even one sent on a pooled connection.
"""

import json as jsonlib
import urllib.parse

from hyperlink import DecodedURL
from twisted.internet import defer, protocol
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.python.failure import Failure
from twisted.web.client import PotentialDataLoss, ResponseDone, SchemeNotSupported
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer


def url_bytes(url, params=None):
    """The request URI of a ``DecodedURL`` (or text), ``params`` appended as a query."""
    if isinstance(url, DecodedURL):
        text = url.encoded_url.to_text()
        if not text.isascii():  # an international host name or path: IDNA and percent-encoding
            text = url.to_uri().to_text()
    else:
        text = url
    if params:
        text += ("&" if "?" in text else "?") + urllib.parse.urlencode(params, doseq=True)
    return text.encode("ascii")


@implementer(IBodyProducer)
class _BytesProducer:
    def __init__(self, body):
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer):
        consumer.write(self._body)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class _Collect(protocol.Protocol):
    def __init__(self, done):
        self._done = done
        self._chunks = []

    def dataReceived(self, data):
        self._chunks.append(data)

    def connectionLost(self, reason):
        if self._done.called:  # cancelled
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._chunks))
        else:
            self._done.errback(reason)


class Response:
    """An answer: ``code``, ``headers`` and ``content()`` (a Deferred with the body), as treq's."""

    def __init__(self, response):
        self._response = response
        self.code = response.code
        self.headers = response.headers
        self._content = None

    def content(self):
        if self._content is None:
            collected = []

            def cancel(d):
                abort = getattr(collected[0].transport, "abortConnection", None) if collected else None
                if abort is not None:
                    abort()

            self._content = defer.Deferred(cancel)
            collected.append(_Collect(self._content))
            self._response.deliverBody(collected[0])
        d = defer.Deferred()
        self._content.addBoth(_chain, d)
        return d


def _chain(result, d):
    """Pass ``result`` on to ``d`` (unless cancelled); the shared Deferred keeps its value, never a failure."""
    if isinstance(result, Failure):
        if not d.called:
            d.errback(result)
        return None
    if not d.called:
        d.callback(result)
    return result


class AgentHTTPClient:
    """``request(method, url, headers=, params=, json=)`` on an ``IAgent``: the treq calls the Ironic client makes."""

    def __init__(self, agent):
        self._agent = agent

    def request(self, method, url, headers=None, params=None, json=None):
        raw = Headers()
        for name, value in (headers or {}).items():
            raw.setRawHeaders(name.encode("ascii"), [value.encode("latin-1") if isinstance(value, str) else value])
        producer = None
        if json is not None:
            raw.setRawHeaders(b"Content-Type", [b"application/json; charset=UTF-8"])
            producer = _BytesProducer(jsonlib.dumps(json, separators=(",", ":")).encode("utf-8"))
        d = self._agent.request(method.encode("ascii"), url_bytes(url, params), raw, producer)
        return d.addCallback(Response)


@implementer(IAgentEndpointFactory)
class CachedEndpoints:
    """The endpoints of an ``Agent`` (``Agent.usingEndpointFactory``): TCP, or TLS with ``tls_policy``; built once."""

    def __init__(self, reactor, tls_policy):
        self._reactor = reactor
        self._tls_policy = tls_policy
        self._endpoints = {}

    def endpointForURI(self, uri):
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            if uri.scheme not in (b"http", b"https"):
                raise SchemeNotSupported("Unsupported scheme: {!r}".format(uri.scheme))
            endpoint = HostnameEndpoint(self._reactor, uri.host.decode("ascii"), uri.port)
            if uri.scheme == b"https":
                endpoint = wrapClientTLS(self._tls_policy.creatorForNetloc(uri.host, uri.port), endpoint)
            if len(self._endpoints) >= 16:  # the endpoint is a single Ironic: never many
                self._endpoints.clear()
            self._endpoints[key] = endpoint
        return endpoint
