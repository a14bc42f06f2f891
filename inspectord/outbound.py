"""Outbound HTTP calls: what is a timeout, a connection error, or a cancellation.

A cancelled call means stop: the caller (a stop, a client that went away)
does not want it any more.  Twisted reports a cancelled request in several
shapes (``CancelledError``; ``ConnectingCancelledError`` while connecting;
``ResponseNeverReceived`` or ``ResponseFailed`` wrapping a
``CancelledError`` once connected), and the last two look like connection
errors.  :func:`cancellation` recognises every shape, so the Ironic, Swift
and Keystone clients re-raise it instead of retrying it, and
:func:`with_timeout` turns the cancellation its own timeout causes into a
``defer.TimeoutError`` whatever its shape, so the two never mix.
"""

from twisted.internet import defer, error as net_error
from twisted.web import client as web_client

# Failures of the connection itself: worth retrying.
CONNECTION_ERRORS = (
    net_error.ConnectError,
    net_error.ConnectionLost,
    net_error.ConnectionClosed,
    net_error.TimeoutError,
    net_error.DNSLookupError,
    defer.TimeoutError,
    web_client.ResponseNeverReceived,
    web_client.ResponseFailed,
)


def cancellation(exc):
    """Whether ``exc`` says the call was cancelled (in any of Twisted's shapes)."""
    if isinstance(exc, (defer.CancelledError, net_error.ConnectingCancelledError)):
        return True
    reasons = getattr(exc, "reasons", None)
    if isinstance(exc, web_client.ResponseFailed) and reasons:
        return any(r.check(defer.CancelledError, net_error.ConnectingCancelledError) for r in reasons)
    return False


def raise_if_cancelled(exc):
    """Raise ``CancelledError`` if ``exc`` is a cancellation; the caller handles anything else."""
    if cancellation(exc) and not isinstance(exc, defer.CancelledError):
        raise defer.CancelledError() from exc
    if isinstance(exc, defer.CancelledError):
        raise exc


def with_timeout(d, timeout, clock):
    """``d`` cancelled after ``timeout`` seconds on ``clock``, then failing with ``defer.TimeoutError``."""

    def timed_out(result, timeout):
        # Whatever shape the cancelled call failed with, it was our timeout.
        raise defer.TimeoutError(timeout, "Deferred")

    return d.addTimeout(timeout, clock, onTimeoutCancel=timed_out)
