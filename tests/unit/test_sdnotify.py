"""systemd notifications: what is sent, when, and never when NOTIFY_SOCKET is unset."""

import os

from twisted.internet import task
from twisted.trial import unittest

from inspectord import sdnotify


class FakeSocket:
    def __init__(self, fail=False):
        self.sent = []
        self.closed = False
        self.fail = fail

    def sendto(self, data, address):
        if self.fail:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        self.sent.append((address, data.decode()))

    def close(self):
        self.closed = True


class WatchdogIntervalTests(unittest.SynchronousTestCase):
    def test_half_the_timeout(self):
        self.assertEqual(sdnotify.watchdog_interval({"WATCHDOG_USEC": "20000000"}), 10.0)

    def test_none_without_watchdog_or_for_another_pid(self):
        self.assertIsNone(sdnotify.watchdog_interval({}))
        self.assertIsNone(sdnotify.watchdog_interval({"WATCHDOG_USEC": "0"}))
        self.assertIsNone(sdnotify.watchdog_interval({"WATCHDOG_USEC": "x"}))
        self.assertIsNone(sdnotify.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}))
        self.assertEqual(
            sdnotify.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}), 1.0
        )


class NotifierTests(unittest.SynchronousTestCase):
    def make(self, environ, sock=None):
        self.sock = sock or FakeSocket()
        self.clock = task.Clock()
        return sdnotify.Notifier(self.clock, environ, open_socket=lambda: self.sock)

    def test_silent_without_notify_socket(self):
        notifier = self.make({"WATCHDOG_USEC": "1000000"})
        notifier.startService()
        self.assertFalse(notifier.ready("serving"))
        self.clock.advance(10)
        notifier.stopService()
        self.assertEqual(self.sock.sent, [])

    def test_ready_status_and_stopping(self):
        notifier = self.make({"NOTIFY_SOCKET": "/run/systemd/notify"})
        notifier.startService()
        notifier.ready("serving on port 5050")
        notifier.status("PXE filter failing")
        notifier.stopping()
        notifier.stopService()
        self.assertEqual(
            self.sock.sent,
            [
                ("/run/systemd/notify", "READY=1\nSTATUS=serving on port 5050"),
                ("/run/systemd/notify", "STATUS=PXE filter failing"),
                ("/run/systemd/notify", "STOPPING=1\nSTATUS=stopping"),
            ],
        )
        self.assertTrue(self.sock.closed)

    def test_abstract_socket_address(self):
        notifier = self.make({"NOTIFY_SOCKET": "@/org/freedesktop/systemd1/notify"})
        notifier.status("x")
        self.assertEqual(self.sock.sent[0][0], "\0/org/freedesktop/systemd1/notify")

    def test_newlines_in_a_value_cannot_forge_a_field(self):
        notifier = self.make({"NOTIFY_SOCKET": "/n"})
        notifier.status("bad\nREADY=1")
        self.assertEqual(self.sock.sent, [("/n", "STATUS=bad READY=1")])

    def test_watchdog_keepalives_on_the_clock(self):
        notifier = self.make({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "4000000"})
        notifier.startService()
        self.assertEqual([m for _, m in self.sock.sent], ["WATCHDOG=1"])
        self.clock.advance(2)
        self.clock.advance(2)
        self.assertEqual([m for _, m in self.sock.sent], ["WATCHDOG=1"] * 3)
        notifier.stopService()
        self.clock.advance(10)
        self.assertEqual(len(self.sock.sent), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_failed_send_is_logged_not_raised(self):
        notifier = self.make({"NOTIFY_SOCKET": "/n"}, FakeSocket(fail=True))
        self.assertFalse(notifier.ready("serving"))
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        self.assertEqual(notifier.sent, [])
