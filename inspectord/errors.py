"""Domain errors, named by what happened.

They carry no HTTP status: :mod:`inspectord.api.status` maps each to the
code the API answers with, so the domain does not know it is served over
HTTP.
"""


class InspectordError(Exception):
    """Base of every error the API turns into ``{"error": {"message": ...}}``."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


class InvalidInput(InspectordError):
    """A request's parameters or body cannot be used."""


class AccessDenied(InspectordError):
    """The caller's credentials do not allow this (the API policy)."""


class NotFound(InspectordError):
    """No such node, rule or data."""


class NodeBusy(InspectordError):
    """The node is busy: another request or periodic task holds it, or it is still starting."""


class NotUnderIntrospection(InspectordError):
    """Ramdisk data for a node that is not waiting for it."""


class Stopping(InspectordError):
    """inspectord is stopping and takes no more work; retry later (elsewhere)."""


class InternalError(InspectordError):
    """An unexpected failure; its traceback is in the log, its message says what was being done."""


class InvalidTransition(NodeBusy):
    def __init__(self, state, event):
        super().__init__(
            "Introspection in state {!r} cannot accept event {!r}".format(state, event)
        )
        self.state = state
        self.event = event


class StateChanged(NodeBusy):
    """A compare-and-set update found the node in another state."""


class ConfigError(Exception):
    """The configuration cannot be used; the message names the option."""


class IronicError(InspectordError):
    """Ironic answered with an error; ``status`` is its HTTP status."""

    def __init__(self, message, status=None, retriable=False):
        super().__init__(message)
        self.status = status
        self.retriable = retriable


class IronicUnavailable(IronicError):
    """Ironic could not be reached, or not used (TLS refused): no answer to report."""

    def __init__(self, message, retriable=False):
        super().__init__(message, status=None, retriable=retriable)


class IronicNotFound(IronicError):
    def __init__(self, message, status=404):
        super().__init__(message, status=status)


class ProcessingError(InspectordError):
    """Introspection data could not be processed (ends the node in error)."""


class SwiftError(InspectordError):
    """Swift answered with an error or could not be reached ([processing]store_data=swift)."""


class SchemaError(Exception):
    """The database holds a schema inspectord cannot use; the message names its revision."""
