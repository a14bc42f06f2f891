"""Hostile input against a real ``twistd inspectord`` and the real Ironic.

* Property-based fuzzing (hypothesis) of every operation of
  ``GET /v1/openapi.json``, for ``noauth``, ``http_basic`` and
  ``keystone``, with and without credentials: no 5xx, no answer slower
  than 5 s, every error in the JSON error format, the server alive and
  under a memory bound at the end.  Failing examples are kept in
  ``.hypothesis/inspectord-fuzz`` at the top of the checkout and replayed
  first by later runs; the seed of a failing run is printed
  (``INSPECTORD_FUZZ_SEED`` pins one).  ``INSPECTORD_FUZZ_EXAMPLES`` sets
  the requests per run (default 500); figures are printed, and written to
  ``$INSPECTORD_FUZZ_REPORT`` when set.
* Hand-written cases a generator will not find: slowloris, a flood of
  unknown users against a real user's login, 20 identical concurrent
  callbacks, huge and chunked bodies, request smuggling, a callback for a
  node not under introspection.
* Secrets: new IPMI credentials set for introspections that finish, fail
  verification and are aborted; then every file inspectord wrote (logs,
  SQLite database, WAL, ramdisk logs) and every API answer is searched for
  the password.
"""

import base64
import concurrent.futures
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from hypothesis import HealthCheck, given, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from devenv import fuzz
from inspectord.api import limits
from tests.integration import base
from tests.integration import test_ipmi_credentials as ipmi_tests
from tests.integration import test_auth_keystone as keystone_tests
from tests.integration.test_auth_basic import add_user

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Pinned only on request: hypothesis writes no example database for a
# pinned seed.  Unpinned, the seed it drew is printed with any failure, and
# the failing example is kept in EXAMPLE_DB and replayed first by every
# later run until it passes.
SEED = int(os.environ["INSPECTORD_FUZZ_SEED"]) if os.environ.get("INSPECTORD_FUZZ_SEED") else None
EXAMPLES = int(os.environ.get("INSPECTORD_FUZZ_EXAMPLES", "500"))
EXAMPLE_DB = DirectoryBasedExampleDatabase(str(ROOT / ".hypothesis" / "inspectord-fuzz"))
MEMORY_BOUND_MB = 400
LOGIN_BOUND = float(os.environ.get("INSPECTORD_LOGIN_BOUND", "0.25"))

FIGURES = {"requests": 0, "5xx": 0, "slowest": 0.0, "slowest_request": None, "peak_rss_mb": {}}


def report(**figures):
    FIGURES.update(figures)
    text = json.dumps(FIGURES, indent=1, sort_keys=True, default=str)
    print("\nhostile-input figures: " + text)
    path = os.environ.get("INSPECTORD_FUZZ_REPORT")
    if path:
        pathlib.Path(path).write_text(text)


def _pinned(value):
    """``hypothesis.seed(value)``, or nothing when no seed is pinned."""
    return (lambda f: f) if value is None else seed(value)


def peak_rss_mb(pid):
    for line in pathlib.Path("/proc/{}/status".format(pid)).read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def basic(user, password):
    return b"Basic " + base64.b64encode("{}:{}".format(user, password).encode())


class _Fuzz:
    """Mixed into an IntegrationCase: fuzz runs for its auth strategy.

    ``credentials()`` is the header a valid client sends (None for noauth).
    """

    def credentials(self):
        return None

    def seed_nodes(self):
        """Nodes in Ironic, two under introspection: generated requests find real data."""
        ids, macs = [], []
        for _ in range(3):
            node_macs = base.new_macs(2)
            uuid, name = self.enroll(node_macs)
            ids += [uuid, name]
            macs += node_macs
        credentials = self.credentials()
        headers = {credentials[0]: credentials[1].decode()} if credentials else {}
        for node in (ids[0], ids[2]):
            status, _, body = self.inspectord.call("POST", "/v1/introspection/" + node, headers=headers)
            self.assertEqual(status, 202, body)
        return ids, macs

    def fuzz(self, label, with_credentials=True, offset=0, examples=EXAMPLES):
        """``examples`` generated requests, with the valid credentials or without any."""
        ids, macs = self.seed_nodes()
        status, _, document = self.inspectord.call("GET", "/v1/openapi.json")
        self.assertEqual(status, 200)
        address = ("127.0.0.1", self.inspectord.port)
        credentials = self.credentials() if with_credentials else None
        run_seed = None if SEED is None else SEED + offset
        seen = []

        @_pinned(run_seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=EXAMPLE_DB,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        )
        @given(fuzz.requests(document, ids=ids, macs=macs, credentials=credentials))
        def one(request):
            method, target, headers, body = request
            status, response_headers, content, elapsed = fuzz.send(address, method, target, headers, body)
            seen.append(1)
            FIGURES["requests"] += 1
            if status is not None and status >= 500:
                FIGURES["5xx"] += 1
            if elapsed > FIGURES["slowest"]:
                FIGURES["slowest"] = round(elapsed, 3)
                FIGURES["slowest_request"] = "{} {}".format(method, target[:80])
            found = fuzz.problems(status, response_headers, content, elapsed, method)
            assert not found, "{} {} -> {}: {}\n{}".format(
                method, target[:200], status, found, self.inspectord.log_tail(20)
            )
            if self.credentials() is not None and not with_credentials:
                # No valid credentials: a protected route answers 401 (or an
                # error found before authentication).
                public = target.split("?")[0] in ("/", "/v1", "/v1/openapi.json", "/v1/continue")
                valid = self.credentials() in headers
                assert public or valid or status in (401, 400, 404, 405, 406, 408, 413, 414, 431), (
                    "{} {} -> {} without credentials".format(method, target[:200], status)
                )

        try:
            one()
        except AssertionError as e:
            # trial does not print exception notes: hypothesis's falsifying
            # example, seed and reproduce_failure blob go in the message.
            raise AssertionError("\n".join([str(e)] + list(getattr(e, "__notes__", [])))) from None
        self.assertGreaterEqual(len(seen), examples // 2)
        # Alive, answering and under the memory bound.
        status, _, _ = self.inspectord.call("GET", "/")
        self.assertEqual(status, 200)
        rss = peak_rss_mb(self.inspectord.process.pid)
        FIGURES["peak_rss_mb"][label] = round(rss, 1)
        self.assertLess(rss, MEMORY_BOUND_MB)
        report()


class FuzzNoAuthTests(_Fuzz, base.IntegrationCase):
    def test_fuzz(self):
        self.fuzz("noauth")


class _BasicAuthCase(base.IntegrationCase):
    def setUp(self):
        base.ironic()
        self.htpasswd = os.path.join(tempfile.mkdtemp(dir=base._workdir), "htpasswd")
        add_user(self.htpasswd, "operator", "operator-pw")
        self.extra_config = (
            "\n[DEFAULT]\nauth_strategy = http_basic\nhttp_basic_auth_user_file = {}\n".format(self.htpasswd)
        )
        super().setUp()


class FuzzBasicAuthTests(_Fuzz, _BasicAuthCase):
    def credentials(self):
        return ("Authorization", basic("operator", "operator-pw"))

    def test_fuzz_with_credentials(self):
        self.fuzz("http_basic+credentials")

    def test_fuzz_without_credentials(self):
        self.fuzz("http_basic-no-credentials", with_credentials=False, offset=1, examples=EXAMPLES // 2)


class FuzzKeystoneTests(_Fuzz, keystone_tests.KeystoneCase):
    """auth_strategy=keystone against the real Keystone of test_auth_keystone."""

    def credentials(self):
        return ("X-Auth-Token", self.tokens["admin"].encode())

    def test_fuzz_with_token(self):
        self.fuzz("keystone+token", offset=2, examples=EXAMPLES // 2)

    def test_fuzz_without_token(self):
        self.fuzz("keystone-no-token", with_credentials=False, offset=3, examples=EXAMPLES // 4)


class LoginFloodTests(_BasicAuthCase):
    """A flood of unknown users from one address; a real user's logins from another."""

    def test_real_user_login_under_flood(self):
        address = ("127.0.0.1", self.inspectord.port)
        target = "/v1/introspection?limit=1"
        seconds = 20
        quiet = []
        for _ in range(10):
            status, _, _, elapsed = fuzz.send(
                address, "GET", target, [("Authorization", basic("operator", "operator-pw"))], timeout=10
            )
            self.assertEqual(status, 200)
            quiet.append(elapsed)
        flood = subprocess.Popen(
            [sys.executable, "-m", "devenv.fuzz", "flood", address[0], str(address[1]), "60", str(seconds), "127.0.0.2"],
            cwd=str(ROOT), stdout=subprocess.PIPE, text=True,
        )
        try:
            time.sleep(3)  # the flood is running
            times, uncached = [], []
            for i in range(20):
                if i % 5 == 0:
                    # A new password: the next login is a real bcrypt check, not a cached success.
                    password = "operator-pw-{}".format(i)
                    add_user(self.htpasswd, "operator", password)
                    time.sleep(1.5)  # the file is re-read within a second
                status, _, _, elapsed = fuzz.send(
                    address, "GET", target, [("Authorization", basic("operator", password))], timeout=10
                )
                self.assertEqual(status, 200)
                times.append(elapsed)
                if i % 5 == 0:
                    uncached.append(elapsed)
            self.assertIsNone(flood.poll(), "the flood ended before the measurement")
            out, _ = flood.communicate(timeout=seconds + 30)
        finally:
            if flood.poll() is None:
                flood.kill()
                flood.wait()
        counts = {int(k) if k != "null" else None: v for k, v in json.loads(out).items()}
        self.assertGreater(sum(counts.values()), 100)
        self.assertEqual(set(counts) - {401, 429}, set(), counts)
        report(
            login_under_flood_ms={
                "without_flood_median": round(statistics.median(quiet) * 1000, 1),
                "median": round(statistics.median(times) * 1000, 1),
                "max": round(max(times) * 1000, 1),
                "uncached": [round(t * 1000, 1) for t in uncached],
            },
            flood_requests=sum(counts.values()),
            flood_answers=counts,
        )
        # The goal is under 100 ms; the bound leaves room for a loaded CI
        # machine (the flood's own process shares its CPUs).  Before the
        # per-address bound and the cost-matched dummy hash, such a flood
        # made logins take seconds.
        self.assertLess(statistics.median(times), LOGIN_BOUND)
        self.assertLess(statistics.median(uncached), LOGIN_BOUND)
        self.assertLess(max(times), 2.0)


class HandWrittenTests(base.IntegrationCase):
    def test_slowloris(self):
        """2,000 connections trickling headers from one address; a status GET from another answers within 2 s."""
        address = ("127.0.0.1", self.inspectord.port)
        pid = self.inspectord.process.pid
        baseline = open_fds(pid)
        sockets = []
        try:
            for _ in range(2000):
                s = socket.socket()
                s.bind(("127.0.0.2", 0))
                s.setblocking(False)
                try:
                    s.connect(address)
                except BlockingIOError:
                    pass
                sockets.append(s)
            time.sleep(0.5)
            for s in sockets:
                try:
                    s.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                except OSError:
                    pass
            start = time.monotonic()
            status, _, _, elapsed = fuzz.send(address, "GET", "/v1/introspection", timeout=10)
            self.assertEqual(status, 200)
            self.assertLess(elapsed, 2.0)
            # The per-address cap bounds what one address holds (the client
            # side may see more: connections the kernel's accept queue dropped).
            during = open_fds(pid)
            self.assertLess(during - baseline, limits.MAX_CONNECTIONS_PER_ADDRESS + 20)
            # The slow clients are dropped within the head deadline.
            time.sleep(limits.HEADER_TIMEOUT + 2)
            after = open_fds(pid)
            self.assertLess(after - baseline, 10)
            report(slowloris={"status_get_s": round(elapsed, 3), "server_fds_before": baseline,
                              "server_fds_during": during, "server_fds_after_deadline": after})
            self.assertLess(time.monotonic() - start, 30)
        finally:
            for s in sockets:
                s.close()

    def test_concurrent_identical_callbacks(self):
        macs = base.new_macs(1)
        uuid, _ = self.enroll(macs)
        self.start_and_wait(uuid, uuid)
        payload = json.dumps(base.ipa_payload(macs)).encode()
        address = ("127.0.0.1", self.inspectord.port)
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(
                lambda _: fuzz.send(address, "POST", "/v1/continue", [("Content-Type", "application/json")], payload),
                range(20),
            ))
        statuses = sorted(a[0] for a in answers)
        self.assertEqual(statuses.count(200), 1, statuses)
        self.assertEqual(set(statuses) - {200, 403, 409}, set(), statuses)
        self.wait_state(uuid, ["finished"])

    def test_huge_chunked_and_smuggled_bodies(self):
        address = ("127.0.0.1", self.inspectord.port)
        status, headers, body, _ = fuzz.send(address, "POST", "/v1/continue", [], b"x" * (17 * 1024 * 1024))
        self.assertEqual(fuzz.problems(status, headers, body, 0), [])
        self.assertEqual(status, 413)
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in [b"{", b'"error": "x"', b"}"]) + b"0\r\n\r\n"
        with socket.create_connection(address) as s:
            s.sendall(b"POST /v1/continue HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
            status, headers, body = fuzz.parse(_read_all(s))
        self.assertIn(status, (400, 404))
        self.assertEqual(fuzz.problems(status, headers, body, 0), [])
        # Content-Length and Transfer-Encoding together, a smuggled second request.
        with socket.create_connection(address) as s:
            s.sendall(b"POST /v1/continue HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/rules HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            raw = _read_all(s)
        status, headers, body = fuzz.parse(raw)
        self.assertEqual(status, 400, raw[:300])
        self.assertEqual(fuzz.problems(status, headers, body, 0), [])
        self.assertEqual(raw.count(b"HTTP/1.1 "), 1, raw[:500])

    def test_callback_for_node_not_under_introspection(self):
        macs = base.new_macs(1)
        uuid, _ = self.enroll(macs)
        before = self.client.node.get(uuid).to_dict()
        ports_before = sorted(p.address for p in self.client.port.list(node=uuid))
        status, _, body = self.inspectord.call("POST", "/v1/continue", base.ipa_payload(macs + base.new_macs(1)))
        self.assertIn(status, (403, 404), body)
        self.assertEqual(list(body), ["error"])
        after = self.client.node.get(uuid).to_dict()
        self.assertEqual(before["properties"], after["properties"])
        self.assertEqual(before["updated_at"], after["updated_at"])
        self.assertEqual(sorted(p.address for p in self.client.port.list(node=uuid)), ports_before)

    def test_other_nodes_mac_in_payload(self):
        """Issue 13, defect 10, with the real Ironic's 409."""
        other_macs = base.new_macs(1)
        other, _ = self.enroll(other_macs)
        other_before = self.client.node.get(other).to_dict()
        macs = base.new_macs(1)
        uuid, _ = self.enroll(macs)
        self.start_and_wait(uuid, uuid)
        status, _, body = self.inspectord.call("POST", "/v1/continue", base.ipa_payload(macs + other_macs))
        self.assertEqual(status, 200, body)
        self.assertEqual(self.wait_state(uuid, ["finished", "error"])["state"], "finished")
        self.assertEqual([p.address for p in self.client.port.list(node=other)], other_macs)
        self.assertEqual(self.client.node.get(other).to_dict()["updated_at"], other_before["updated_at"])


def open_fds(pid):
    return len(os.listdir("/proc/{}/fd".format(pid)))


def _read_all(s):
    chunks = []
    while True:
        try:
            data = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


class SecretsTests(ipmi_tests._CredentialsCase):
    """New IPMI credentials: finished, failed verification, aborted; then search everything for the password."""

    window = 6

    def test_password_nowhere(self):
        password = ipmi_tests.NEW_PASSWORD
        bmc = self.start_bmc()
        answers = []

        def call(method, path, body=None):
            status, _, answer = self.inspectord.call(method, path, body)
            answers.append(json.dumps(answer))
            return status, answer

        # 1. finished
        finished, macs = self.enroll_bmc_node(bmc.port)
        status, _, body = self.start_setting(finished, new_ipmi_username=ipmi_tests.NEW_USER, new_ipmi_password=password)
        self.assertEqual(status, 202, body)
        self.wait_state(finished, ["waiting"])
        self.callback(finished, macs, ipmi_tests.NEW_USER, password)
        self.ramdisk_sets_credentials(bmc, ipmi_tests.NEW_USER, password)
        self.assertEqual(self.ended(finished)["state"], "finished", self.inspectord.log_tail())

        # 2. verification fails (the ramdisk set another password)
        failed, macs = self.enroll_bmc_node(bmc.port)
        status, _, body = self.start_setting(failed, new_ipmi_username="other", new_ipmi_password=password)
        self.assertEqual(status, 202, body)
        self.wait_state(failed, ["waiting"])
        self.callback(failed, macs, "other", password)
        self.assertEqual(self.ended(failed, timeout=self.window + 30)["state"], "error")

        # 3. aborted while waiting
        aborted, _ = self.enroll_bmc_node(bmc.port)
        status, _, body = self.start_setting(aborted, new_ipmi_username=ipmi_tests.NEW_USER, new_ipmi_password=password)
        self.assertEqual(status, 202, body)
        self.wait_state(aborted, ["waiting"])
        status, body = call("POST", "/v1/introspection/{}/abort".format(aborted))
        self.assertEqual(status, 202, body)
        self.ended(aborted)

        for uuid in (finished, failed, aborted):
            for path in ("", "/data", "/data/unprocessed"):
                call("GET", "/v1/introspection/{}{}".format(uuid, path))
        call("GET", "/v1/introspection")
        for answer in answers:
            self.assertNotIn(password, answer)

        # Every file inspectord wrote, while it runs and after it stopped.
        def search():
            files = [p for p in self.inspectord.workdir.rglob("*") if p.is_file()]
            names = {p.name for p in files}
            self.assertIn("inspectord.sqlite", names)
            for path in files:
                self.assertNotIn(password.encode(), path.read_bytes(), str(path))
            return names

        names = search()
        self.assertIn("inspectord.sqlite-wal", names)
        for name in ("inspectord.sqlite", "inspectord.sqlite-wal", "inspectord.sqlite-shm"):
            mode = (self.inspectord.workdir / name).stat().st_mode & 0o777
            self.assertEqual(mode, 0o600, name)
        self.inspectord.stop()
        search()
        report(secrets="password in no file and no API answer (3 introspections: finished, failed, aborted)")
