"""systemd's side of NOTIFY_SOCKET, played by the test against a real ``twistd inspectord``.

The test binds the unix datagram socket systemd would, starts inspectord
with ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` in its environment, and reads
what arrives: ``READY=1`` only once the API answers, keep-alives at half the
watchdog interval, ``STOPPING=1`` on SIGTERM.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from devenv.daemon import InspectordProcess
from tests.integration.base import SKIP, IntegrationCase, ironic

WATCHDOG_USEC = 2_000_000  # keep-alives every second


class NotifySocketTests(IntegrationCase):
    skip = SKIP

    def setUp(self):
        self.ironic = ironic()
        self.dir = tempfile.mkdtemp(prefix="inspectord-notify-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.addCleanup(self.sock.close)

    def receive(self, until, timeout=60):
        """Messages received until one contains ``until`` (each a ``{key: value}``)."""
        messages = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            message = dict(line.split("=", 1) for line in data.split("\n") if line)
            messages.append((time.monotonic(), message))
            if until in message:
                return messages
        self.fail("no {} within {} s; got {}".format(until, timeout, messages))

    def test_ready_watchdog_and_stopping(self):
        daemon = InspectordProcess(
            os.path.join(self.dir, "run"), self.ironic.url,
            env={"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)},
        )
        self.addCleanup(daemon.stop)
        # Not daemon.start(): it polls the API, and READY=1 must come first.
        daemon.process = subprocess.Popen(
            daemon.command(), cwd=str(daemon.workdir), stdin=subprocess.DEVNULL,
            stdout=open(daemon.workdir / "twistd.out", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True, env=dict(os.environ, **daemon.env),
        )
        before_ready = self.receive("READY")
        ready = before_ready[-1][1]
        self.assertEqual(ready["READY"], "1")
        self.assertIn("PXE filter ok", ready["STATUS"])
        # Readiness means serving: the API answers at once.
        with urllib.request.urlopen(daemon.url + "/", timeout=5) as response:
            self.assertEqual(response.status, 200)

        keepalives = []
        deadline = time.monotonic() + 3.5
        self.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            if data == "WATCHDOG=1":
                keepalives.append(time.monotonic())
        self.assertGreaterEqual(len(keepalives), 2, keepalives)
        gaps = [b - a for a, b in zip(keepalives, keepalives[1:])]
        self.assertLess(max(gaps), WATCHDOG_USEC / 1e6, gaps)

        daemon.process.send_signal(signal.SIGTERM)
        stopping = self.receive("STOPPING", timeout=30)[-1][1]
        self.assertEqual(stopping["STOPPING"], "1")
        # twistd ends by the signal it stopped on, as systemd expects of a clean stop.
        self.assertIn(daemon.process.wait(30), (0, -signal.SIGTERM))

    def test_silent_without_notify_socket(self):
        daemon = InspectordProcess(os.path.join(self.dir, "run"), self.ironic.url)
        self.addCleanup(daemon.stop)
        daemon.start()
        self.sock.settimeout(1)
        with self.assertRaises(socket.timeout):
            self.sock.recv(4096)
