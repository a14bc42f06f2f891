"""SIGTERM stops a real twistd inspectord within 2 s while Ironic is unreachable.

inspectord talks to the real Ironic through :class:`devenv.faultproxy.FaultProxy`.
A node is waiting for its ramdisk; the proxy goes away (connections to
"Ironic" are refused); the ramdisk's callback arrives and its processing
keeps retrying Ironic, and so does the PXE filter's read of Ironic's
ports.  SIGTERM must end the process within 2 s (before, a cancelled
Ironic call went back into backoff and the stop waited for it), and the
node, interrupted, is resumed by the next start.
"""

import signal
import time

from tests.integration.test_lifecycle import InBackground, LifecycleIntegration

STOP_WITHIN = 2.0


class StopWhileIronicUnreachableTests(LifecycleIntegration):
    # stop_grace is 15 s here ([lifecycle] of test_lifecycle): what cannot end must not wait for it.

    def test_sigterm_while_processing_retries_an_unreachable_ironic(self):
        [(uuid, macs)] = self.enroll(1)
        self.start_introspection(uuid)
        self.wait_for(uuid, ["waiting"])
        self.proxy.go_down()  # Ironic unreachable from here on
        answer = InBackground(self.callback, macs)
        self.wait_for(uuid, ["processing"])
        deadline = time.monotonic() + 30
        log = self.daemon.log_path
        while "retry 2 of" not in log.read_text(errors="replace"):
            self.assertLess(time.monotonic(), deadline, "processing never retried Ironic\n" + self.daemon.log_tail())
            time.sleep(0.05)
        stopped_at = time.monotonic()
        self.daemon.process.send_signal(signal.SIGTERM)
        code = self.daemon.process.wait(30)
        stop_time = time.monotonic() - stopped_at
        answer.join()
        print("\nSIGTERM with Ironic unreachable: stopped in {:.2f} s".format(stop_time))
        self.assertLess(stop_time, STOP_WITHIN, self.daemon.log_tail())
        self.assertIn(code, (0, -signal.SIGTERM), self.daemon.log_tail())
        text = log.read_text(errors="replace")
        self.assertNotIn("Unhandled error", text)
        self.assertNotIn("Traceback", text)
