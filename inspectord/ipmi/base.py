"""What one login attempt can end in, and the errors a verification raises."""

import dataclasses

from inspectord import errors

OK = "ok"
REJECTED = "rejected"
UNREACHABLE = "unreachable"
BMC_ERROR = "error"

ADMINISTRATOR = 4


@dataclasses.dataclass(frozen=True)
class AttemptResult:
    """The outcome of one IPMI login attempt: a plain record that crosses the thread boundary.

    ``reason`` is the BMC's or pyghmi's explanation; it never holds the password.
    """

    outcome: str
    reason: str = ""

    @property
    def ok(self):
        return self.outcome == OK


def format_address(address, port):
    """``host`` on the standard port, ``host:port`` (``[v6]:port``) otherwise."""
    if port == 623:
        return address
    if ":" in address:
        return "[{}]:{}".format(address, port)
    return "{}:{}".format(address, port)


class BMCVerificationError(errors.InspectordError):
    """The new BMC credentials could not be verified (the node ends in error)."""

    prefix = "BMC verification failed at {address}"

    def __init__(self, address, port=623, username=None, reason="", attempts=1, elapsed=0.0):
        self.address = address
        self.port = port
        self.username = username
        self.reason = reason
        self.attempts = attempts
        self.elapsed = elapsed
        message = self.prefix.format(address=format_address(address, port), username=username)
        if reason:
            message += ": " + reason
        message += " ({} attempt{} in {:.0f} s)".format(attempts, "" if attempts == 1 else "s", elapsed)
        super().__init__(message)


class CredentialsRejected(BMCVerificationError):
    """The BMC answered and refused the user name, password or privilege."""

    prefix = "credentials rejected by the BMC at {address} for user {username!r}"


class BMCUnreachable(BMCVerificationError):
    """No answer from the BMC (wrong address, port, network, or BMC down)."""

    prefix = "BMC unreachable at {address}"


class BMCSessionError(BMCVerificationError):
    """The BMC answered but could not open a session for another reason (resources, cipher suites)."""

    prefix = "BMC at {address} refused the IPMI session"


ERRORS = {REJECTED: CredentialsRejected, UNREACHABLE: BMCUnreachable, BMC_ERROR: BMCSessionError}
