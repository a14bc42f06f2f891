"""IPMI: checking new BMC credentials with pyghmi.

* :func:`validate_new_credentials`: the rules for a new user name and password;
* :class:`CredentialsVerifier`: logs in to the BMC (IPMI 2.0 LAN, RMCP+) in a
  dedicated thread pool, retried on the clock within a window;
* the errors it raises, all :class:`inspectord.errors.InspectordError`:
  :class:`CredentialsRejected` ("credentials rejected by the BMC at ..."),
  :class:`BMCUnreachable` ("BMC unreachable at ..."), :class:`BMCSessionError`
  (the BMC answered but opened no session), with :class:`BMCVerificationError`
  as their base.

pyghmi is imported only in the pool thread, so this package imports without
it; :func:`pyghmi_available` says whether it is installed.
"""

from inspectord import errors
from inspectord.ipmi.base import (
    ADMINISTRATOR,
    AttemptResult,
    BMCSessionError,
    BMCUnreachable,
    BMCVerificationError,
    CredentialsRejected,
)
from inspectord.ipmi.credentials import validate_new_credentials
from inspectord.ipmi.session import pyghmi_available, thd_open_session
from inspectord.ipmi.verifier import CredentialsVerifier


def check(processing):
    """Refuse ``[processing]enable_setting_ipmi_credentials`` without pyghmi."""
    if processing.enable_setting_ipmi_credentials and not pyghmi_available():
        raise errors.ConfigError("[processing]enable_setting_ipmi_credentials needs pyghmi (pip install pyghmi)")


__all__ = [
    "ADMINISTRATOR",
    "AttemptResult",
    "BMCSessionError",
    "BMCUnreachable",
    "BMCVerificationError",
    "CredentialsRejected",
    "CredentialsVerifier",
    "check",
    "pyghmi_available",
    "thd_open_session",
    "validate_new_credentials",
]
