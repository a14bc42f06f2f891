"""systemd's readiness and watchdog protocol, spoken over ``$NOTIFY_SOCKET``.

With ``Type=notify`` systemd considers the service started when it receives
``READY=1`` on the unix datagram socket named by ``$NOTIFY_SOCKET``; with
``WatchdogSec=`` it restarts the service unless ``WATCHDOG=1`` arrives at
least every ``$WATCHDOG_USEC`` microseconds.  The keep-alives are sent from
the reactor, so a reactor blocked for longer than that gets inspectord
restarted.  ``STATUS=...`` lines show in ``systemctl status``;
``STOPPING=1`` announces an orderly stop.

Whatever starts the process (systemd, a container supervisor, a test), the
messages go out only when ``NOTIFY_SOCKET`` is set.  A datagram that
cannot be sent is logged and dropped; it never blocks the reactor.
"""

import os
import socket

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger


def _address(value):
    """The socket address of ``$NOTIFY_SOCKET``: a path, or ``@name`` for the abstract namespace."""
    if value.startswith("@"):
        return "\0" + value[1:]
    return value


def _open_socket():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    return sock


def watchdog_interval(environ):
    """Seconds between keep-alives (half the watchdog timeout), or None without a watchdog.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is meant
    for; another process (a child that inherited the environment) sends none.
    """
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(usec)
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class Notifier(service.Service):
    """Sends systemd's notifications; does nothing when ``NOTIFY_SOCKET`` is unset.

    :param clock: the reactor's clock, for the watchdog keep-alives.
    :param environ: the process environment (``os.environ``).
    :param open_socket: makes the datagram socket (tests pass a fake).
    """

    log = Logger()

    def __init__(self, clock, environ, open_socket=None):
        self._clock = clock
        self._open_socket = open_socket or _open_socket
        target = environ.get("NOTIFY_SOCKET")
        self._address = _address(target) if target else None
        self._socket = None
        self._interval = watchdog_interval(environ) if target else None
        self._keepalive = None
        self.sent = []  # what was sent, for the health view and tests

    @property
    def enabled(self):
        return self._address is not None

    def notify(self, **fields):
        """Send ``KEY=value`` lines, e.g. ``notify(READY=1, STATUS="serving")``."""
        if self._address is None:
            return False
        message = "\n".join("{}={}".format(k, str(v).replace("\n", " ")) for k, v in fields.items())
        try:
            if self._socket is None:
                self._socket = self._open_socket()
            self._socket.sendto(message.encode("utf-8"), self._address)
        except OSError as e:
            self.log.warn("Cannot notify systemd at {address}: {error}", address=self._address, error=e)
            return False
        self.sent.append(message)
        return True

    def ready(self, status):
        return self.notify(READY=1, STATUS=status)

    def status(self, status):
        return self.notify(STATUS=status)

    def startService(self):
        super().startService()
        if self._interval:
            self._keepalive = task.LoopingCall(self.notify, WATCHDOG=1)
            self._keepalive.clock = self._clock
            self._keepalive.start(self._interval, now=True)

    def stopping(self):
        """The stop begins (sent by the service stopped first; the keep-alives go on until the end)."""
        return self.notify(STOPPING=1, STATUS="stopping")

    def stopService(self):
        super().stopService()
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        self._keepalive = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
