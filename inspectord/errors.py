"""Domain errors.  Each carries the HTTP status the API answers with."""


class InspectordError(Exception):
    """Base of every error the API turns into ``{"error": {"message": ...}}``."""

    code = 400

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self):
        return self.message


class BadRequest(InspectordError):
    code = 400


class Forbidden(InspectordError):
    code = 403


class NotFound(InspectordError):
    code = 404


class Conflict(InspectordError):
    """The node is busy: another request or periodic task holds it."""

    code = 409


class Unavailable(InspectordError):
    """inspectord cannot take the request now (it is stopping); retry later."""

    code = 503


class InvalidTransition(Conflict):
    def __init__(self, state, event):
        super().__init__(
            "Introspection in state {!r} cannot accept event {!r}".format(state, event)
        )
        self.state = state
        self.event = event


class StateChanged(Conflict):
    """A compare-and-set update found the node in another state."""


class ConfigError(Exception):
    """The configuration cannot be used; the message names the option."""


class IronicError(InspectordError):
    """Ironic answered with an error or could not be reached."""

    def __init__(self, message, status=None, retriable=False):
        super().__init__(message, code=503 if status is None else 400)
        self.status = status
        self.retriable = retriable


class IronicNotFound(IronicError):
    def __init__(self, message, status=404):
        super().__init__(message, status=status)
        self.code = 404


class ProcessingError(InspectordError):
    """Introspection data could not be processed (ends the node in error)."""

    code = 400


class SwiftError(InspectordError):
    """Swift answered with an error or could not be reached ([processing]store_data=swift)."""

    code = 503


class SchemaError(Exception):
    """The database holds a schema inspectord cannot use; the message names its revision."""
