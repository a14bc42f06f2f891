"""What a real inspectord writes to its log, with each way it is run.

A real ``twistd`` process against the real Ironic introspects one node
(start, then a ramdisk callback) and answers a request whose query string
carries a secret; then its log is read as an operator would: the access
lines in the combined format with the secret masked, and the node's lines
(with ``mac`` and ``bmc_address`` in the JSON log, for ``jq``).
"""

import json
import re

from tests.integration.base import IntegrationCase, ipa_payload, new_macs

SECRET = "Zq7LogSecret"
ACCESS = re.compile(
    r'"127\.0\.0\.1" - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /v1/introspection\?\(query with credentials '
    r'not logged\) HTTP/1\.1" \d{3} \d+ "-" "Python-urllib/[\d.]+"'
)
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"


class LogRun(IntegrationCase):
    """One node introspected and one request with a secret, then the log read."""

    def introspect_one(self):
        macs = new_macs(1)
        uuid, _ = self.enroll(macs, driver_info={"ipmi_address": "192.0.2.77"})
        self.inspectord.call("GET", "/v1/introspection?limit=1&new_ipmi_password=" + SECRET)
        self.start_and_wait(uuid, uuid)
        status, _, body = self.inspectord.call("POST", "/v1/continue", ipa_payload(macs))
        self.assertEqual(status, 200, body)
        self.wait_state(uuid, ["finished"])
        self.inspectord.stop()
        return uuid, macs[0]

    def read(self, path):
        text = path.read_text(errors="replace")
        self.assertNotIn(SECRET, text)
        return text


class JSONLogTests(LogRun):
    """``twistd --logger=inspectord.logs.json_to_stdout``, as the shipped systemd unit runs it."""

    def setUp(self):
        super().setUp()
        self.inspectord.stop()
        command = self.inspectord.command()
        at = command.index("--logfile")
        command[at:at + 2] = ["--logger=inspectord.logs.json_to_stdout"]
        self.inspectord.command = lambda: command
        self.inspectord.start()

    def test_events(self):
        uuid, mac = self.introspect_one()
        records = [json.loads(r) for r in self.read(self.inspectord.workdir / "twistd.out").split("\x1e") if r.strip()]
        access = [r for r in records if r.get("log_namespace") == "twisted.python.log" and "log_io" in r]
        self.assertTrue(any(ACCESS.fullmatch(r["log_io"]) for r in access), [r["log_io"] for r in access][:5])
        for record in access:
            self.assertEqual((record["log_format"], record["log_level"]["name"]), ("{log_io}", "info"))
        mine = [r for r in records if r.get("node") == uuid]
        messages = [r["log_format"] for r in mine]
        self.assertIn("Node {node}: introspection finished", messages)
        started = [r for r in mine if r["log_format"].startswith("Node {node}: introspection started")]
        self.assertEqual([(r["mac"], r["bmc_address"]) for r in started], [(mac, "192.0.2.77")])
        self.assertEqual(started[0]["log_flattened"]["node!s:"], uuid)


class TextLogTests(LogRun):
    """``twistd --logfile`` (Twisted's own text observer)."""

    def test_lines(self):
        uuid, _ = self.introspect_one()
        lines = self.read(self.inspectord.log_path).splitlines()
        self.assertTrue(
            any(re.fullmatch(STAMP + r" \[twisted\.python\.log#info\] " + ACCESS.pattern, line) for line in lines),
            [line for line in lines if "GET /v1/introspection?" in line],
        )
        self.assertTrue(any(re.fullmatch(STAMP + r" \[[\w.]+#info\] Node {}: introspection finished".format(uuid), line)
                            for line in lines))


class IronicInspectorLogTests(LogRun):
    """The ``ironic-inspector`` command: inspectord's leveled text observer on standard output."""

    inspectord_options = {"program": "ironic-inspector"}

    def test_lines(self):
        uuid, _ = self.introspect_one()
        lines = self.read(self.inspectord.workdir / "twistd.out").splitlines()
        self.assertTrue(
            any(re.fullmatch(STAMP + r" \[twisted\.python\.log#info\] " + ACCESS.pattern, line) for line in lines),
            [line for line in lines if "GET /v1/introspection?" in line],
        )
        self.assertTrue(any(re.fullmatch(STAMP + r" \[[\w.]+#info\] Node {}: introspection finished".format(uuid), line)
                            for line in lines))
        self.assertFalse([line for line in lines if "#debug]" in line])
