"""One bounded IPMI 2.0 LAN login with pyghmi (runs in the pyghmi thread pool only).

What pyghmi (1.6) does, learnt from its source and from running it against
the simulator (``devenv.bmc``), and what this module does about it:

* Its session layer is process-global: one daemon I/O thread (started on
  first use, never stopped) reads every client socket and queues packets;
  any thread pumping ``Session.wait_for_rsp`` may run *any* session's state
  machine, callbacks included.  UDP sockets are pooled (up to 64 BMCs share
  one) and kept for the life of the process; a session ends by logging out
  and leaving the pool, not by closing a socket.  So no socket is opened
  per attempt and their number stays bounded.
* A login takes 1 to 10 ms against a BMC that answers (accepted or
  rejected), sometimes up to about 1 s: a reply that arrives before the
  waiting thread registers is only seen at its next retry timer.  When
  nothing answers, pyghmi gives up after about 5 s (timeouts of 0.5-1 s
  growing by 1 s, one re-login).
* Blocking mode (``Session(...)`` without ``onlogon``) is not safe with
  several threads: pyghmi marks a failed session broken before it stores
  its error text, and when another thread runs that session's packets the
  owner raises ``AttributeError: errormsg`` (17 of 300 logins with 4
  threads on 4 simulators).  This module uses callback mode and pumps the
  loop itself until its callback fires or its own deadline passes (0 wrong
  outcomes in 1,810 logins with up to 8 threads, 6 simulators and closed ports).
* Sessions are shared by key ``(bmc, userid, password, port, kg)``: a new
  ``Session`` with the same key returns a live or *initialising* one.  On
  Python 3 pyghmi never removes its ``initting_sessions`` entry (it deletes
  with the encoded user and password), so the next ``Session`` with the
  same credentials gets the old, dead object back *without an exception*
  and with ``logged == 0``: a repeated check would pass silently.  This
  module removes the entry before and after each attempt and checks
  ``logged``; two logins with the same key at once still go wrong
  (``KeyError``), so the verifier runs one attempt per BMC at a time.
* Errors are texts, classified by :func:`classify_error`; a timeout may
  come as ``'timeout'`` or as ``None``.
* ``Session.socketchecking`` (the socket pool's lock) is created lazily and
  unguarded; it is created here once, under a lock.
"""

import threading
import time

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
    "Session failed to initialize",  # pyghmi gave up mid-login
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


def thd_open_session(address, port, username, password, privilege=ADMINISTRATOR, timeout=10.0):
    """Log in to the BMC at ``address:port`` (IPMI 2.0, RMCP+) and out again.

    Blocking, at most about ``timeout`` seconds; runs in the pyghmi thread
    pool.  Returns an :class:`AttemptResult`, never raises for what the BMC
    or the network does.  ``privilege`` is the session privilege asked for
    (4, ADMINISTRATOR, as Ironic's ipmitool driver uses by default); a user
    below it is rejected.

    The session is opened in pyghmi's callback mode: the outcome comes with
    the callback, which may run in any thread that pumps pyghmi's loop.  In
    blocking mode pyghmi marks a failed session broken *before* it stores
    the error text, and a thread that pumps another session's packets
    exposes that gap (``AttributeError: errormsg``) under concurrency.
    """
    try:
        from pyghmi.ipmi.private import session as ipmisession
    except ImportError:
        return AttemptResult(BMC_ERROR, "pyghmi is not installed")
    _prepare(ipmisession)
    key = (address, username, password, port, None)
    ipmisession.Session.initting_sessions.pop(key, None)
    outcome = []
    finished = threading.Event()

    def logged_on(response):
        if not outcome:
            outcome.append(response)
        finished.set()

    deadline = time.monotonic() + timeout
    session = None
    try:
        session = ipmisession.Session(
            bmc=address, userid=username, password=password, port=port, privlevel=privilege,
            keepalive=False, onlogon=logged_on,
        )
        while not finished.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return AttemptResult(UNREACHABLE, "no answer within {:g} s".format(timeout))
            try:
                ipmisession.Session.wait_for_rsp(timeout=min(remaining, 0.5))
            except Exception:
                # pyghmi raises here what any session's packets caused; ours
                # ends by its callback or by the deadline.
                pass
        response = outcome[0]
        if "error" in response:
            return classify_error(response["error"])
        if not session.logged:
            return AttemptResult(UNREACHABLE, "session not established")
        return AttemptResult(OK)
    except OSError as e:  # getaddrinfo or sendto
        return AttemptResult(UNREACHABLE, "cannot send to the address: {}".format(e.strerror or e))
    except Exception as e:  # a pyghmi bug: report it, do not kill the verification
        error = getattr(e, "args", None)
        if type(e).__name__ == "IpmiException":
            return classify_error(error[0] if error else None)
        return AttemptResult(BMC_ERROR, "pyghmi failed: {}".format(type(e).__name__))
    finally:
        ipmisession.Session.initting_sessions.pop(key, None)
        if session is not None:
            _close(session)


def _close(session):
    try:
        if session.logged:
            session.logout()
        elif not session.broken:
            # still logging in (our deadline passed): stop its retries
            session._mark_broken("abandoned")
    except Exception:
        pass
