"""What one client may hold of the API listener: connections, time, header sizes.

Two independent pieces, both endpoint-agnostic (TCP, TLS or a unix socket):

:class:`LimitedFactory`
    wraps whatever factory the listener serves and caps open connections,
    in total and per client address, so that idle or slow clients cannot
    exhaust the process's file descriptors: a connection over a cap is
    closed as soon as it is accepted.
:class:`DeadlineChannel`
    the HTTP channel :func:`inspectord.api.app.make_site` uses: a client
    has :data:`HEADER_TIMEOUT` seconds from its first byte (or from the
    connection) to send a request's head, then :data:`BODY_TIMEOUT`
    seconds for its body; trickling bytes does not extend either (a
    slowloris).  An idle keep-alive connection is closed after
    :data:`IDLE_TIMEOUT`.  Requests over the line or header limits get
    414 or 431, and every error the channel itself answers uses the API's
    JSON error format.

Measured (tests/integration/test_hostile.py, a loaded 2-core machine): with
2,000 slowloris connections from one address, inspectord holds 257 open
descriptors more than idle, a status GET from another address answers in
under 25 ms, and every slow connection is gone once the head deadline
passed.
"""

import json
import resource as rlimit

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.logger import Logger
from twisted.protocols import policies
from twisted.web import http
from zope.interface import implementer

HEADER_TIMEOUT = 10
"""Seconds a client has to send a request line and headers."""

BODY_TIMEOUT = 60
"""Seconds a client has to send a request body once its headers are in (16 MiB at 2 Mbit/s)."""

IDLE_TIMEOUT = 75
"""Seconds an idle keep-alive connection is kept."""

MAX_CONNECTIONS = 4096
"""Open API connections at most (lowered to fit under the file descriptor limit)."""

MAX_CONNECTIONS_PER_ADDRESS = 256
"""Open API connections one client address may hold."""

FD_RESERVE = 256
"""File descriptors kept for everything but API clients (database, Ironic, logs, PXE filter)."""


def connection_cap(requested=MAX_CONNECTIONS, reserve=FD_RESERVE):
    """``requested``, lowered to stay under the process's open-file limit."""
    soft, _ = rlimit.getrlimit(rlimit.RLIMIT_NOFILE)
    if soft == rlimit.RLIM_INFINITY:
        return requested
    return max(16, min(requested, soft - reserve))


def _json_response(status, reason, message):
    body = json.dumps({"error": {"message": message}}).encode()
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (status, reason, len(body), body)
    )


class _LimitedProtocol(policies.ProtocolWrapper):
    _refused = False

    def makeConnection(self, transport):
        # Decided before the wrapped protocol (the HTTP channel) exists: a
        # refused connection costs nothing but its accept.
        self.transport = transport
        if not self.factory.admit(self):
            self._refused = True
            self.factory.log.debug("API connection from {address} refused: over the cap", address=_host(self))
            if hasattr(transport, "abortConnection"):
                transport.abortConnection()
            else:
                transport.loseConnection()
            return
        super().makeConnection(transport)

    def connectionLost(self, reason):
        if not self._refused:
            super().connectionLost(reason)


def _host(protocol):
    peer = protocol.transport.getPeer() if protocol.transport is not None else None
    return getattr(peer, "host", None) or "local"


@implementer(IProtocolNegotiationFactory)
class LimitedFactory(policies.WrappingFactory):
    """Wraps a listener's factory; caps connections in total and per client address.

    It speaks for the wrapped factory in TLS's protocol negotiation (ALPN):
    without that, a TLS server refuses every client that offers ALPN
    (``requests``, the OpenStack clients, ironic-python-agent).
    """

    protocol = _LimitedProtocol
    log = Logger()

    def __init__(self, wrapped, max_connections=None, max_per_address=MAX_CONNECTIONS_PER_ADDRESS):
        super().__init__(wrapped)
        self.max_connections = connection_cap() if max_connections is None else max_connections
        self.max_per_address = max_per_address
        self.per_address = {}
        self.admitted = 0
        self.refused = 0

    def acceptableProtocols(self):
        wrapped = IProtocolNegotiationFactory(self.wrappedFactory, None)
        return wrapped.acceptableProtocols() if wrapped is not None else [b"http/1.1"]

    def admit(self, protocol):
        host = _host(protocol)
        if self.admitted >= self.max_connections or self.per_address.get(host, 0) >= self.max_per_address:
            self.refused += 1
            return False
        self.admitted += 1
        self.per_address[host] = self.per_address.get(host, 0) + 1
        protocol._counted_host = host
        return True

    def unregisterProtocol(self, protocol):
        super().unregisterProtocol(protocol)
        host = getattr(protocol, "_counted_host", None)
        if host is not None:
            protocol._counted_host = None
            self.admitted -= 1
            left = self.per_address[host] - 1
            if left:
                self.per_address[host] = left
            else:
                del self.per_address[host]


class DeadlineChannel(http.HTTPChannel):
    """An HTTP channel with head and body deadlines and JSON errors of its own."""

    header_timeout = HEADER_TIMEOUT
    body_timeout = BODY_TIMEOUT
    _deadline = None
    _in_request = False

    # -- deadlines ------------------------------------------------------------

    def _arm(self, seconds, what):
        self._disarm()
        self._deadline = self.callLater(seconds, self._expired, what)

    def _disarm(self):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _expired(self, what):
        self._deadline = None
        if self.transport is None:
            return
        self.transport.write(
            _json_response(408, b"Request Timeout", "The request {} was not received in time".format(what))
        )
        if hasattr(self.transport, "abortConnection"):
            self.transport.abortConnection()
        else:  # a ProtocolWrapper (LimitedFactory): closes once the 408 is written
            self.transport.loseConnection()

    def connectionMade(self):
        super().connectionMade()
        self._arm(self.header_timeout, "line and headers")

    def dataReceived(self, data):
        if not self._in_request and self._deadline is None:
            self._in_request = True
            self._arm(self.header_timeout, "line and headers")
        super().dataReceived(data)

    def allHeadersReceived(self):
        super().allHeadersReceived()
        self._arm(self.body_timeout, "body")

    def allContentReceived(self):
        self._disarm()
        self._in_request = False
        super().allContentReceived()

    def connectionLost(self, reason):
        self._disarm()
        super().connectionLost(reason)

    # -- size limits and JSON errors ------------------------------------------------

    def _refuse(self, status, reason, message):
        self._disarm()
        self.transport.write(_json_response(status, reason, message))
        self.loseConnection()
        self.dataReceived = self.lineReceived = lambda *args: None

    def lineLengthExceeded(self, line):
        if self._HTTPChannel__first_line:
            self._refuse(414, b"URI Too Long", "The request line is longer than {} bytes".format(self.MAX_LENGTH))
        else:
            self._refuse(431, b"Request Header Fields Too Large", "A header is longer than {} bytes".format(self.MAX_LENGTH))

    def lineReceived(self, line):
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse(
                431, b"Request Header Fields Too Large",
                "The request line and headers are longer than {} bytes".format(self.totalHeadersSize),
            )
            return
        super().lineReceived(line)

    def headerReceived(self, line):
        if self._receivedHeaderCount >= self.maxHeaders:
            self._refuse(431, b"Request Header Fields Too Large", "More than {} headers".format(self.maxHeaders))
            return False
        return super().headerReceived(line)

    def _respondToBadRequestAndDisconnect(self):
        self._refuse(400, b"Bad Request", "Malformed HTTP request")
