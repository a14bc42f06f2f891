"""The spawnProcess runner: stdin, exit codes, timeouts, commands that cannot start."""

from twisted.internet import defer, error as net_error, task
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from inspectord.pxe.process import CommandFailed, Runner, command_env


class FakeTransport:
    def __init__(self):
        self.written = []
        self.stdin_closed = False
        self.signals = []

    def write(self, data):
        self.written.append(data)

    def closeStdin(self):
        self.stdin_closed = True

    def signalProcess(self, signal):
        self.signals.append(signal)


class FakeProcessReactor(task.Clock):
    """A Clock whose spawnProcess hands the protocol to the test."""

    def __init__(self, refuse=None):
        super().__init__()
        self.spawned = []
        self.refuse = refuse

    def spawnProcess(self, proto, executable, args, env=None, **kwargs):
        if self.refuse is not None:
            raise self.refuse
        transport = FakeTransport()
        self.spawned.append((proto, executable, args, env, transport))
        proto.makeConnection(transport)
        return transport


def ended(code):
    if code == 0:
        return Failure(net_error.ProcessDone(0))
    return Failure(net_error.ProcessTerminated(exitCode=code))


class RunnerTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = FakeProcessReactor()
        self.runner = Runner(self.reactor, prefix=("ip", "netns", "exec", "ns1"), timeout=5)

    def test_argv_stdin_env_and_output(self):
        d = defer.ensureDeferred(self.runner.run(("nft", "-f", "-"), stdin=b"flush ruleset\n"))
        proto, executable, args, env, transport = self.reactor.spawned[0]
        self.assertEqual((executable, args), ("ip", ["ip", "netns", "exec", "ns1", "nft", "-f", "-"]))
        self.assertIn("/usr/sbin", env["PATH"].split(":"))
        self.assertEqual((transport.written, transport.stdin_closed), ([b"flush ruleset\n"], True))
        self.assertNoResult(d)
        proto.outReceived(b"out")
        proto.errReceived(b"err")
        proto.processEnded(ended(0))
        result = self.successResultOf(d)
        self.assertEqual((result.code, result.stdout, result.stderr), (0, b"out", b"err"))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_unexpected_exit_code(self):
        d = defer.ensureDeferred(self.runner.run(("iptables", "-C", "INPUT")))
        proto = self.reactor.spawned[0][0]
        proto.errReceived(b"iptables: Bad rule (does a matching rule exist in that chain?).\n")
        proto.processEnded(ended(1))
        failure = self.failureResultOf(d, CommandFailed)
        self.assertEqual(failure.value.code, 1)
        self.assertEqual(
            str(failure.value),
            "iptables -C INPUT exited with code 1: iptables: Bad rule (does a matching rule exist in that chain?).",
        )
        self.assertEqual(failure.value.argv[:4], ("ip", "netns", "exec", "ns1"))

    def test_accepted_exit_code(self):
        d = defer.ensureDeferred(self.runner.run(("iptables", "-C", "INPUT"), ok=(0, 1)))
        self.reactor.spawned[0][0].processEnded(ended(1))
        self.assertEqual(self.successResultOf(d).code, 1)

    def test_timeout_kills(self):
        d = defer.ensureDeferred(self.runner.run(("nft", "-f", "-")))
        proto, _, _, _, transport = self.reactor.spawned[0]
        self.reactor.advance(5)
        self.assertEqual(transport.signals, ["KILL"])
        proto.processEnded(Failure(net_error.ProcessTerminated(signal=9)))
        self.assertIn("timed out after 5", str(self.failureResultOf(d, CommandFailed).value))

    def test_killed_by_signal(self):
        d = defer.ensureDeferred(self.runner.run(("nft", "-f", "-")))
        self.reactor.spawned[0][0].processEnded(Failure(net_error.ProcessTerminated(signal=15)))
        self.assertIn("signal 15", str(self.failureResultOf(d, CommandFailed).value))

    def test_cannot_start(self):
        runner = Runner(FakeProcessReactor(refuse=FileNotFoundError(2, "No such file or directory")))
        failure = self.failureResultOf(defer.ensureDeferred(runner.run(("nft", "-f", "-"))), CommandFailed)
        self.assertIn("cannot be started (No such file or directory)", str(failure.value))

    def test_shell(self):
        d = defer.ensureDeferred(Runner(self.reactor).shell("kill $(cat /run/dnsmasq.pid)"))
        proto, executable, args, _, _ = self.reactor.spawned[0]
        self.assertEqual(args, ["/bin/sh", "-c", "kill $(cat /run/dnsmasq.pid)"])
        proto.processEnded(ended(0))
        self.successResultOf(d)

    def test_env_adds_sbin(self):
        self.assertEqual(command_env({"PATH": "/usr/bin"}), {"PATH": "/usr/bin:/usr/sbin:/sbin", "LC_ALL": "C"})
        self.assertIn("/sbin", command_env({})["PATH"].split(":"))
