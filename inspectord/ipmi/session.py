"""One blocking IPMI 2.0 LAN login with pyghmi (runs in the pyghmi thread pool only).

What pyghmi (1.6) does that this module works around or relies on:

* Its session layer is process-global: one daemon I/O thread (started on
  first use, never stopped) reads every client socket and queues packets;
  any thread waiting in ``Session.wait_for_rsp`` may run any session's
  state machine.  UDP sockets are pooled (up to 64 BMCs share one) and kept
  for the life of the process; a session "closes" by logging out and
  leaving the pool, not by closing its socket.  So the number of sockets is
  bounded, and none is opened per attempt.
* ``Session(...)`` blocks until the login ends and is bounded by pyghmi's
  own retry timers: about 1 to 2 ms against a BMC that answers (accepted or
  rejected), about 5 s when nothing answers (timeouts of 0.5-1 s growing by
  1 s, one re-login).  It cannot be interrupted from another thread; the
  caller's timeout only stops waiting for it.
* Sessions are shared by key ``(bmc, userid, password, port, kg)``: a new
  ``Session`` with the same key returns a live or *initialising* one.  On
  Python 3 pyghmi never removes its ``initting_sessions`` entry (it deletes
  with the encoded user and password), so the next ``Session`` with the same
  credentials gets the old, dead object back *without an exception* and
  with ``logged == 0``.  That would make a repeated check pass silently.
  This module removes the entry before and after each attempt and checks
  ``logged``; the verifier also never runs two attempts on one BMC at once.
* Errors are ``IpmiException`` with a text, classified by
  :func:`classify_error`.  A timeout shows as ``IpmiException(None)``
  (pyghmi overwrites its own ``'timeout'`` message).
* The session lock ``Session.socketchecking`` is created lazily without a
  lock; it is created here once, before any thread uses pyghmi.
"""

import threading

from inspectord.ipmi.base import ADMINISTRATOR, BMC_ERROR, OK, REJECTED, UNREACHABLE, AttemptResult

_prepared = threading.Lock()

# Substrings of pyghmi's error texts, first match wins.
_REJECTED = (
    "Incorrect password provided",  # RAKP2 code did not match our password
    "Unauthorized name",  # RAKP2 status 0x0D: unknown or disabled user
    "Invalid role",  # RAKP2 status 0x09: privilege above the user's limit
    "Unauthorized role",  # RAKP2 status 0x0A
    "Invalid username length",
    "Invalid integrity check value",  # RAKP4 status 0x0F: the BMC disagrees on the password
    "wrong Kg",
    "while requesting privelege level",  # (sic) Set Session Privilege refused
    "Username too long",
)
_UNREACHABLE = (
    "timeout",
    "Session no longer connected",
    "Unable to transmit",
)


def classify_error(message):
    """An :class:`AttemptResult` for a pyghmi error text (``None`` is a timeout)."""
    if message is None or message == "None":
        return AttemptResult(UNREACHABLE, "no answer")
    for marker in _REJECTED:
        if marker in message:
            return AttemptResult(REJECTED, message)
    for marker in _UNREACHABLE:
        if marker in message:
            return AttemptResult(UNREACHABLE, "no answer" if marker == "timeout" else message)
    return AttemptResult(BMC_ERROR, message)


def pyghmi_available():
    try:
        import pyghmi.ipmi.private.session  # noqa: F401
    except ImportError:
        return False
    return True


def _prepare(ipmisession):
    with _prepared:
        if ipmisession.Session.socketchecking is None:
            ipmisession.Session.socketchecking = threading.Lock()


def thd_open_session(address, port, username, password, privilege=ADMINISTRATOR):
    """Log in to the BMC at ``address:port`` (IPMI 2.0, RMCP+) and out again.

    Blocking; runs in the pyghmi thread pool.  Returns an
    :class:`AttemptResult`, never raises for what the BMC or the network
    does.  ``privilege`` is the session privilege asked for (4,
    ADMINISTRATOR, as Ironic's ipmitool driver uses by default); a user
    below it is rejected.
    """
    try:
        from pyghmi import exceptions as pyghmi_exceptions
        from pyghmi.ipmi.private import session as ipmisession
    except ImportError:
        return AttemptResult(BMC_ERROR, "pyghmi is not installed")
    _prepare(ipmisession)
    key = (address, username, password, port, None)
    ipmisession.Session.initting_sessions.pop(key, None)
    session = None
    try:
        session = ipmisession.Session(
            bmc=address, userid=username, password=password, port=port, privlevel=privilege, keepalive=False
        )
        if not session.logged:
            return AttemptResult(UNREACHABLE, "session not established")
        return AttemptResult(OK)
    except pyghmi_exceptions.IpmiException as e:
        return classify_error(e.args[0] if e.args else None)
    except OSError as e:  # getaddrinfo or sendto
        return AttemptResult(UNREACHABLE, "cannot send to the address: {}".format(e.strerror or e))
    except Exception as e:  # a pyghmi bug: report it, do not kill the verification
        return AttemptResult(BMC_ERROR, "pyghmi failed: {}".format(type(e).__name__))
    finally:
        ipmisession.Session.initting_sessions.pop(key, None)
        if session is not None and session.logged:
            try:
                session.logout()
            except Exception:
                pass
