"""Run a command without blocking the reactor (``spawnProcess``), with a timeout.

Drivers build argv with pure functions and hand them to a :class:`Runner`;
tests hand drivers a fake runner that records argv and stdin.
"""

import dataclasses
import os

from twisted.internet import defer, error as net_error, protocol
from twisted.logger import Logger

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CommandFailed(Exception):
    """A command could not be run, timed out or exited with an unexpected code."""

    def __init__(self, argv, reason, code=None, stderr=b"", prefix=()):
        self.argv = tuple(argv)
        self.reason = reason
        self.code = code
        self.stderr = stderr
        #: argv without the runner's prefix (``ip netns exec ...``): what the driver ran.
        self.command = self.argv[len(prefix):]
        super().__init__(argv, reason, code, stderr)

    def __str__(self):
        shown = self.command[:3]
        text = "{}{} {}".format(" ".join(shown), " ..." if len(self.command) > len(shown) else "", self.reason)
        lines = [line.strip() for line in self.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        if lines:
            text += ": " + lines[0][:300]
        return text


@dataclasses.dataclass(frozen=True)
class Result:
    code: int
    stdout: bytes
    stderr: bytes


class _Collect(protocol.ProcessProtocol):
    def __init__(self, stdin, done):
        self._stdin = stdin
        self._done = done
        self._out = []
        self._err = []

    def connectionMade(self):
        if self._stdin:
            self.transport.write(self._stdin)
        self.transport.closeStdin()

    def outReceived(self, data):
        self._out.append(data)

    def errReceived(self, data):
        self._err.append(data)

    def processEnded(self, reason):
        value = reason.value
        code = getattr(value, "exitCode", None)
        if code is None and isinstance(value, net_error.ProcessDone):
            code = 0
        self._done.callback((code, getattr(value, "signal", None), b"".join(self._out), b"".join(self._err)))


def command_env(environ=os.environ):
    """The environment commands run with: a PATH that finds sbin tools, the C locale."""
    path = environ.get("PATH") or DEFAULT_PATH
    for extra in ("/usr/sbin", "/sbin"):
        if extra not in path.split(":"):
            path += ":" + extra
    return {"PATH": path, "LC_ALL": "C"}


class Runner:
    """Runs argv through ``reactor.spawnProcess``.

    :param prefix: prepended to every argv, e.g. ``("ip", "netns", "exec",
        "ns1")`` to act inside a network namespace (tests and the benchmark).
    """

    log = Logger()

    def __init__(self, reactor, prefix=(), timeout=60.0):
        self._reactor = reactor
        self.prefix = tuple(prefix)
        self.timeout = timeout

    async def run(self, argv, stdin=b"", ok=(0,)):
        """Run ``argv``; a :class:`Result` if it exits with a code in ``ok``.

        :raises CommandFailed: cannot be started, timed out, killed, or an
            exit code not in ``ok``.
        """
        argv = self.prefix + tuple(argv)
        done = defer.Deferred()
        proto = _Collect(stdin, done)
        try:
            transport = self._reactor.spawnProcess(proto, argv[0], list(argv), env=command_env())
        except OSError as e:
            raise CommandFailed(argv, "cannot be started ({})".format(e.strerror or e), prefix=self.prefix) from None
        timed_out = []

        def kill():
            timed_out.append(True)
            try:
                transport.signalProcess("KILL")
            except net_error.ProcessExitedAlready:
                pass

        timer = self._reactor.callLater(self.timeout, kill)
        try:
            code, signal, out, err = await done
        finally:
            if timer.active():
                timer.cancel()
        if timed_out:
            raise CommandFailed(argv, "timed out after {}s".format(self.timeout), stderr=err, prefix=self.prefix)
        if code is None:
            raise CommandFailed(argv, "killed by signal {}".format(signal), stderr=err, prefix=self.prefix)
        if code not in ok:
            raise CommandFailed(
                argv, "exited with code {}".format(code), code=code, stderr=err, prefix=self.prefix
            )
        return Result(code, out, err)

    async def shell(self, command, ok=(0,)):
        """Run an operator-given shell command line (``dnsmasq_start_command``...)."""
        return await self.run(("/bin/sh", "-c", command), ok=ok)
