"""auth_strategy=http_basic: a real ``twistd inspectord`` with an htpasswd file of bcrypt hashes.

The file is written by Apache's ``htpasswd -B`` (Debian ``apache2-utils``)
when it is installed, else with the ``bcrypt`` package in the same
``$2y$`` format.
"""

import base64
import os
import shutil
import subprocess
import tempfile
import time

import bcrypt

from devenv import clients
from tests.integration import base
from tests.integration.base import IntegrationCase, ipa_payload, new_macs

HTPASSWD = shutil.which("htpasswd")


def add_user(path, user, password):
    """Add or replace ``user`` in the htpasswd file ``path`` (bcrypt, cost 5)."""
    if HTPASSWD:
        flags = "-bBC5" if os.path.exists(path) else "-cbBC5"
        subprocess.run([HTPASSWD, flags, path, user, password], check=True, capture_output=True)
        return
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(5)).decode().replace("$2b$", "$2y$", 1)
    lines = []
    if os.path.exists(path):
        with open(path) as f:
            lines = [line for line in f if not line.startswith(user + ":")]
    lines.append("{}:{}\n".format(user, hashed))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.replace(tmp, path)


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode("{}:{}".format(user, password).encode()).decode()}


class BasicAuthTests(IntegrationCase):
    def setUp(self):
        base.ironic()
        directory = tempfile.mkdtemp(dir=base._workdir)
        self.htpasswd = os.path.join(directory, "htpasswd")
        add_user(self.htpasswd, "operator", "operator-pw")
        add_user(self.htpasswd, "auditor", "auditor-pw")
        self.extra_config = """
[DEFAULT]
auth_strategy = http_basic
http_basic_auth_user_file = {}

[http_basic]
user_roles = auditor:reader
""".format(self.htpasswd)
        super().setUp()

    def call(self, method, path, headers=None, body=None):
        return self.inspectord.call(method, path, body=body, headers=headers)

    def wait_state(self, uuid, states, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = self.call("GET", "/v1/introspection/" + uuid, basic("operator", "operator-pw"))
            if status == 200 and body["state"] in states:
                return body
            self.assertLess(time.monotonic(), deadline, "node {} not in {}: {}".format(uuid, states, body))
            time.sleep(0.1)

    def test_401s(self):
        cases = [
            None,
            basic("operator", "wrong"),
            basic("nobody", "operator-pw"),
            {"Authorization": "Basic !!!not-base64"},
            {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
            {"Authorization": "Bearer abc"},
            basic("operator", "x" * 100),
            {"Authorization": "Basic " + "A" * 6000},
        ]
        for headers in cases:
            status, response_headers, body = self.call("GET", "/v1/introspection", headers)
            self.assertEqual(status, 401, headers)
            self.assertEqual(response_headers["WWW-Authenticate"], 'Basic realm="inspectord"')
            self.assertTrue(body["error"]["message"])

    def test_operator_and_auditor(self):
        macs = new_macs(1)
        uuid, _ = self.enroll(macs)
        node = "/v1/introspection/" + uuid
        status, _, body = self.call("POST", node, basic("auditor", "auditor-pw"))
        self.assertEqual(status, 403)
        self.assertIn("introspection:start", body["error"]["message"])
        self.assertEqual(self.call("POST", node, basic("operator", "operator-pw"))[0], 202)
        self.wait_state(uuid, ["waiting"])
        self.assertEqual(self.call("GET", node, basic("auditor", "auditor-pw"))[0], 200)
        # the ramdisk needs no credentials
        status, _, body = self.call("POST", "/v1/continue", body=ipa_payload(macs))
        self.assertEqual(status, 200, body)
        self.assertEqual(self.call("GET", "/", None)[0], 200)

    def test_file_changes_picked_up(self):
        add_user(self.htpasswd, "newcomer", "new-pw")
        add_user(self.htpasswd, "operator", "rotated-pw")
        deadline = time.monotonic() + 10
        while self.call("GET", "/v1/introspection", basic("newcomer", "new-pw"))[0] != 200:
            self.assertLess(time.monotonic(), deadline, "new user not picked up")
            time.sleep(0.2)
        self.assertEqual(self.call("GET", "/v1/introspection", basic("operator", "operator-pw"))[0], 401)
        self.assertEqual(self.call("GET", "/v1/introspection", basic("operator", "rotated-pw"))[0], 200)

    def test_passwords_not_logged(self):
        self.call("GET", "/v1/introspection", basic("operator", "operator-pw"))
        self.call("GET", "/v1/introspection", basic("operator", "wrong-pw-value"))
        self.inspectord.stop()
        with open(self.inspectord.log_path) as f:
            log = f.read()
        self.assertIn("HTTP basic", log)
        self.assertNotIn("operator-pw", log)
        self.assertNotIn("wrong-pw-value", log)

    def test_openstack_cli_with_http_basic(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "INSPECTOR_"))}
        env.update({"OS_AUTH_TYPE": "http_basic", "OS_USERNAME": "operator", "OS_PASSWORD": "operator-pw",
                    "INSPECTOR_URL": self.inspectord.url, "NO_PROXY": "127.0.0.1,localhost"})
        openstack = str(clients.venv() / "bin" / "openstack")
        result = subprocess.run([openstack, "baremetal", "introspection", "list"], env=env,
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        env["OS_PASSWORD"] = "wrong"
        result = subprocess.run([openstack, "baremetal", "introspection", "list"], env=env,
                                capture_output=True, text=True, timeout=120)
        self.assertNotEqual(result.returncode, 0)
