"""The HTTP status of each error: the one place where domain errors meet HTTP."""

from inspectord import errors
from inspectord.api import auth, versions
from inspectord.ipmi import base as ipmi
from inspectord.store.enrollment import DiscoveryLimited


class BodyTooLarge(errors.InspectordError):
    """The request body is over the size limit."""


# Most specific first: the first class an error is an instance of decides.
_STATUS = (
    (auth.Unauthorized, 401),
    (auth.AuthUnavailable, 503),
    (auth.TooManyLogins, 429),
    (versions.UnsupportedVersion, 406),
    (BodyTooLarge, 413),
    (errors.IronicNotFound, 404),
    (errors.IronicUnavailable, 503),
    (errors.InvalidInput, 400),
    (errors.ProcessingError, 400),
    (errors.AccessDenied, 403),
    (errors.NotUnderIntrospection, 403),
    (errors.NotFound, 404),
    (errors.NodeBusy, 409),
    (errors.Stopping, 503),
    (errors.SwiftError, 503),
    (DiscoveryLimited, 503),
    (ipmi.CredentialsRejected, 400),
    (ipmi.BMCUnreachable, 503),
    (ipmi.BMCSessionError, 503),
    (errors.InternalError, 500),
)


def status_for(error):
    """The HTTP status the API answers ``error`` (an :class:`errors.InspectordError`) with."""
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    if isinstance(error, errors.IronicError):
        # Ironic answered and refused: the request cannot be served as it is.  No answer: try later.
        return 400 if error.status is not None else 503
    return 400
