"""auth_strategy=keystone against a real Keystone, a real Ironic and real ``twistd inspectord``.

One Keystone (``keystone==30.0.0`` under gunicorn, SQLite, fernet tokens;
:mod:`devenv.keystone`) serves the module; it is started on
first use (about 20 s) and stopped when the test process exits.  Users:

============== ===================================== ==========================
persona        Keystone role assignment              token scope
============== ===================================== ==========================
admin          admin on project admin (bootstrap)    project admin
system_admin   admin on the system (bootstrap)       system
service        service on project service            project service
system_reader  reader on the system                  system
member         member on project demo                project demo
project_reader reader on project demo                project demo
no_role        none                                  unscoped
============== ===================================== ==========================

inspectord validates tokens as user ``inspectord`` (service role on
project service), as a deployment's ironic-inspector user would.
"""

import atexit
import json
import os
import subprocess
import tempfile
import time

from devenv import clients
from devenv.daemon import free_port
from devenv.keystone import ADMIN_PASSWORD, ADMIN_PROJECT, ADMIN_USER, REGION, KeystoneServer
from tests.integration import base
from tests.integration.base import IntegrationCase, ipa_payload, new_macs

PASSWORD = "inspectord-test-password"
SERVICE_USER = "inspectord"
CACHE_TIME = 2

# persona -> (user, project or None, system scope)
PERSONAS = {
    "admin": (ADMIN_USER, ADMIN_PROJECT, False),
    "system_admin": (ADMIN_USER, None, True),
    "service": ("svc-ironic", "service", False),
    "system_reader": ("auditor", None, True),
    "member": ("demo-member", "demo", False),
    "project_reader": ("demo-reader", "demo", False),
    "no_role": ("lonely", None, False),
}
WRITERS = ("admin", "system_admin", "service")
READERS = WRITERS + ("system_reader",)

RULE = {
    "description": "auth test rule",
    "conditions": [{"op": "ge", "field": "memory_mb", "value": 1}],
    "actions": [{"action": "set-capability", "name": "auth-test", "value": "yes"}],
}

_keystone = None
_keystone_started_in = None


def keystone():
    """The shared real Keystone with the personas' users, started on first use."""
    global _keystone, _keystone_started_in
    if _keystone is None:
        base.ironic()  # creates the shared work directory
        started = time.monotonic()
        workdir = tempfile.mkdtemp(prefix="keystone-", dir=base._workdir)
        server = KeystoneServer(workdir)
        server.start()
        try:
            server.create_user(SERVICE_USER, PASSWORD, project="service", project_roles=["service"])
            server.create_user("svc-ironic", PASSWORD, project="service", project_roles=["service"])
            server.create_user("auditor", PASSWORD, system_roles=["reader"])
            server.create_user("demo-member", PASSWORD, project="demo", project_roles=["member"])
            server.create_user("demo-reader", PASSWORD, project="demo", project_roles=["reader"])
            server.create_user("lonely", PASSWORD)
        except BaseException:
            server.stop()
            raise
        _keystone = server
        _keystone_started_in = time.monotonic() - started
        print("Keystone ready at {} in {:.1f} s".format(server.url, _keystone_started_in))
        atexit.register(_stop_keystone)
    return _keystone


def _stop_keystone():
    if _keystone is not None:
        _keystone.stop()


def keystone_config(server, cache_time=CACHE_TIME, extra=""):
    return """
[DEFAULT]
auth_strategy = keystone

[keystone_authtoken]
auth_type = password
auth_url = {url}
www_authenticate_uri = {url}
username = {user}
password = {password}
user_domain_name = Default
project_name = service
project_domain_name = Default
token_cache_time = {cache_time}
region_name = {region}
memcached_servers = 127.0.0.1:11211
service_token_roles_required = true
{extra}""".format(url=server.url, user=SERVICE_USER, password=PASSWORD, cache_time=cache_time, region=REGION,
                  extra=extra)


class KeystoneCase(IntegrationCase):
    """inspectord with auth_strategy=keystone; tokens for every persona."""

    policy = None

    def setUp(self):
        self.keystone = keystone()
        extra = ""
        if self.policy is not None:
            self.policy_path = os.path.join(tempfile.mkdtemp(dir=base._workdir), "policy.yaml")
            with open(self.policy_path, "w") as f:
                f.write(self.policy)
            extra = "\n[oslo_policy]\npolicy_file = {}\n".format(self.policy_path)
        self.extra_config = keystone_config(self.keystone, extra=extra)
        super().setUp()
        self.tokens = {name: self.token(name) for name in PERSONAS}

    def token(self, persona):
        user, project, system = PERSONAS[persona]
        password = ADMIN_PASSWORD if user == ADMIN_USER else PASSWORD
        return self.keystone.issue_token(user, password, project=project, system=system)

    def call(self, method, path, persona=None, body=None, token=None):
        headers = {}
        if persona is not None:
            token = self.tokens[persona]
        if token is not None:
            headers["X-Auth-Token"] = token
        return self.inspectord.call(method, path, body=body, headers=headers)

    def wait_state(self, uuid, states, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = self.call("GET", "/v1/introspection/" + uuid, "admin")
            if status == 200 and body["state"] in states:
                return body
            if time.monotonic() > deadline:
                self.fail("node {} not in {} after {} s: {}".format(uuid, states, timeout, body))
            time.sleep(0.1)


def endpoints(uuid, rule_uuid):
    """(method, path, body, rule) of every non-public endpoint."""
    node = "/v1/introspection/" + uuid
    return [
        ("GET", "/v1/introspection", None, "introspection:status"),
        ("GET", node, None, "introspection:status"),
        ("POST", node, None, "introspection:start"),
        ("POST", node + "/abort", None, "introspection:abort"),
        ("GET", node + "/data", None, "introspection:data"),
        ("GET", node + "/data/unprocessed", None, "introspection:data"),
        ("POST", node + "/data/unprocessed", None, "introspection:reapply"),
        ("GET", "/v1/rules", None, "introspection:rule:get"),
        ("GET", "/v1/rules/" + rule_uuid, None, "introspection:rule:get"),
        ("POST", "/v1/rules", RULE, "introspection:rule:create"),
        ("DELETE", "/v1/rules/" + rule_uuid, None, "introspection:rule:delete"),
        ("DELETE", "/v1/rules", None, "introspection:rule:delete"),
    ]


class KeystoneAuthTests(KeystoneCase):
    def setUp(self):
        super().setUp()
        self.macs = new_macs(1)
        self.uuid, self.name = self.enroll(self.macs)
        status, _, rule = self.call("POST", "/v1/rules", "admin", body=RULE)
        self.assertEqual(status, 201, rule)
        self.rule_uuid = rule["uuid"]

    def test_no_token_401_everywhere(self):
        for method, path, body, _rule in endpoints(self.uuid, self.rule_uuid):
            status, headers, answer = self.call(method, path, body=body)
            self.assertEqual(status, 401, "{} {}: {}".format(method, path, answer))
            self.assertEqual(headers["WWW-Authenticate"], 'Keystone uri="{}"'.format(self.keystone.url))
            self.assertIn("X-Auth-Token", answer["error"]["message"])

    def test_bad_tokens_401(self):
        revoked = self.token("admin")
        self.keystone.revoke_token(revoked)
        for token in ("not-a-token", "gAAAAAB" + "x" * 180, revoked):
            status, headers, answer = self.call("GET", "/v1/introspection", token=token)
            self.assertEqual(status, 401, answer)
            self.assertIn("Keystone uri=", headers["WWW-Authenticate"])

    def test_denied_personas_403_naming_the_rule(self):
        for persona in PERSONAS:
            for method, path, body, rule in endpoints(self.uuid, self.rule_uuid):
                if persona in WRITERS or (persona in READERS and rule == "introspection:status"):
                    continue  # allowed: see the other tests
                status, headers, answer = self.call(method, path, persona, body=body)
                self.assertEqual(status, 403, "{} {} {}: {}".format(persona, method, path, answer))
                self.assertIn(rule, answer["error"]["message"])
                self.assertIsNone(headers["WWW-Authenticate"])
        # nothing happened
        self.assertEqual(self.call("GET", "/v1/introspection/" + self.uuid, "admin")[0], 404)
        self.assertEqual(self.call("GET", "/v1/rules/" + self.rule_uuid, "admin")[0], 200)

    def test_writers_can_do_everything(self):
        for persona in WRITERS:
            uuid, _ = self.enroll(new_macs(1))
            node = "/v1/introspection/" + uuid
            self.assertEqual(self.call("POST", node, persona)[0], 202, persona)
            self.wait_state(uuid, ["waiting"])
            self.assertEqual(self.call("GET", node, persona)[0], 200, persona)
            status, _, listed = self.call("GET", "/v1/introspection", persona)
            self.assertEqual(status, 200)
            self.assertIn(uuid, [n["uuid"] for n in listed["introspection"]])
            self.assertEqual(self.call("POST", node + "/abort", persona)[0], 202, persona)
            for method, path in (("GET", node + "/data"), ("GET", node + "/data/unprocessed"),
                                 ("POST", node + "/data/unprocessed")):
                status, _, answer = self.call(method, path, persona)
                self.assertNotIn(status, (401, 403), "{} {} {}: {}".format(persona, method, path, answer))
            status, _, rule = self.call("POST", "/v1/rules", persona, body=RULE)
            self.assertEqual(status, 201, persona)
            self.assertEqual(self.call("GET", "/v1/rules/" + rule["uuid"], persona)[0], 200)
            self.assertEqual(self.call("GET", "/v1/rules", persona)[0], 200)
            self.assertEqual(self.call("DELETE", "/v1/rules/" + rule["uuid"], persona)[0], 204)
        self.assertEqual(self.call("DELETE", "/v1/rules", "service")[0], 204)
        self.assertEqual(self.call("GET", "/v1/rules", "admin")[2]["rules"], [])

    def test_system_reader_reads(self):
        self.assertEqual(self.call("POST", "/v1/introspection/" + self.uuid, "admin")[0], 202)
        self.wait_state(self.uuid, ["waiting"])
        status, _, body = self.call("GET", "/v1/introspection/" + self.uuid, "system_reader")
        self.assertEqual((status, body["state"]), (200, "waiting"))
        self.assertEqual(self.call("GET", "/v1/introspection", "system_reader")[0], 200)

    def test_public_endpoints_and_continue_need_no_token(self):
        for path in ("/", "/v1"):
            self.assertEqual(self.call("GET", path)[0], 200, path)
        self.assertEqual(self.call("POST", "/v1/introspection/" + self.uuid, "service")[0], 202)
        self.wait_state(self.uuid, ["waiting"])
        status, _, body = self.call("POST", "/v1/continue", body=ipa_payload(self.macs))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["uuid"], self.uuid)
        self.assertTrue(self.wait_state(self.uuid, ["finished"])["finished"])

    def test_client_identity_headers_ignored(self):
        spoofed = {"X-Roles": "admin,service", "X-Identity-Status": "Confirmed", "X-Service-Roles": "service",
                   "X-User-Id": "admin", "X-Project-Id": "admin", "X-System-Scope": "all"}
        status, _, _ = self.inspectord.call("GET", "/v1/introspection", headers=spoofed)
        self.assertEqual(status, 401)
        status, _, _ = self.inspectord.call("GET", "/v1/introspection",
                                            headers=dict(spoofed, **{"X-Auth-Token": self.tokens["member"]}))
        self.assertEqual(status, 403)

    def test_revoked_token_refused_once_cache_time_is_over(self):
        token = self.token("admin")
        self.assertEqual(self.call("GET", "/v1/introspection", token=token)[0], 200)
        self.keystone.revoke_token(token)
        revoked_at = time.monotonic()
        status = self.call("GET", "/v1/introspection", token=token)[0]
        if time.monotonic() - revoked_at < CACHE_TIME - 0.5:
            self.assertEqual(status, 200, "still within token_cache_time")
        time.sleep(max(0, CACHE_TIME - (time.monotonic() - revoked_at)) + 0.2)
        status, headers, body = self.call("GET", "/v1/introspection", token=token)
        self.assertEqual(status, 401, body)

    def test_tokens_and_passwords_not_logged(self):
        self.call("GET", "/v1/introspection", "admin")
        self.call("GET", "/v1/introspection", "member")
        self.call("GET", "/v1/introspection", token="bogus-token-value")
        self.inspectord.stop()
        with open(self.inspectord.log_path) as f:
            log = f.read()
        self.assertIn("Keystone service token", log)
        for token in self.tokens.values():
            self.assertNotIn(token, log)
        self.assertNotIn("bogus-token-value", log)
        self.assertNotIn(PASSWORD, log)


class KeystoneDownTests(KeystoneCase):
    """Keystone unreachable: 503 with a clear message, quickly."""

    def setUp(self):
        self.keystone = keystone()
        unreachable = "http://127.0.0.1:{}/v3".format(free_port())
        self.extra_config = keystone_config(self.keystone).replace(self.keystone.url, unreachable)
        IntegrationCase.setUp(self)

    def test_503(self):
        started = time.monotonic()
        status, headers, body = self.inspectord.call("GET", "/v1/introspection", headers={"X-Auth-Token": "abc"})
        self.assertEqual(status, 503, body)
        self.assertIn("unreachable", body["error"]["message"])
        self.assertLess(time.monotonic() - started, 5)
        self.assertIsNone(headers["WWW-Authenticate"])
        # public endpoints do not need Keystone
        self.assertEqual(self.inspectord.call("GET", "/")[0], 200)


class PolicyFileTests(KeystoneCase):
    policy = '"introspection:status": "role:member"\n"introspection:start": "role:admin and system_scope:all"\n'

    def test_overrides_apply(self):
        uuid, _ = self.enroll(new_macs(1))
        self.assertEqual(self.call("GET", "/v1/introspection", "member")[0], 200)
        self.assertEqual(self.call("GET", "/v1/introspection", "system_reader")[0], 403)
        status, _, body = self.call("POST", "/v1/introspection/" + uuid, "admin")
        self.assertEqual(status, 403, body)
        self.assertIn("introspection:start", body["error"]["message"])
        self.assertEqual(self.call("POST", "/v1/introspection/" + uuid, "system_admin")[0], 202)
        # not overridden: the default
        self.assertEqual(self.call("GET", "/v1/rules", "service")[0], 200)

    def test_changes_picked_up(self):
        self.assertEqual(self.call("GET", "/v1/rules", "member")[0], 403)
        with open(self.policy_path, "a") as f:
            f.write('"introspection:rule:get": "role:reader"\n')
        deadline = time.monotonic() + 10
        while self.call("GET", "/v1/rules", "member")[0] != 200:
            self.assertLess(time.monotonic(), deadline, "policy change not picked up")
            time.sleep(0.2)


class OpenStackCLITests(KeystoneCase):
    """The real ``openstack baremetal introspection`` with password auth; the endpoint from the catalog."""

    def setUp(self):
        super().setUp()
        self.keystone.register_endpoint("baremetal-introspection", "ironic-inspector", self.inspectord.url)

    def cli(self, persona, *args):
        user, project, _system = PERSONAS[persona]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "INSPECTOR_"))}
        env.update({
            "OS_AUTH_TYPE": "password",
            "OS_AUTH_URL": self.keystone.url,
            "OS_IDENTITY_API_VERSION": "3",
            "OS_USERNAME": user,
            "OS_PASSWORD": ADMIN_PASSWORD if user == ADMIN_USER else PASSWORD,
            "OS_PROJECT_NAME": project,
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_REGION_NAME": REGION,
            "OS_INTERFACE": "public",
            "NO_PROXY": "127.0.0.1,localhost",
        })
        return subprocess.run([str(clients.venv() / "bin" / "openstack"), *args], env=env, capture_output=True,
                              text=True, timeout=120)

    def ok(self, persona, *args):
        result = self.cli(persona, *args)
        self.assertEqual(result.returncode, 0,
                         "openstack {}:\n{}{}".format(" ".join(args), result.stdout, result.stderr))
        return result.stdout

    def test_admin_walk(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        self.ok("admin", "baremetal", "introspection", "start", name)
        self.wait_state(uuid, ["waiting"])
        status = json.loads(self.ok("admin", "baremetal", "introspection", "status", name, "-f", "json"))
        self.assertEqual(status["state"], "waiting")
        listed = json.loads(self.ok("service", "baremetal", "introspection", "list", "-f", "json"))
        self.assertIn(uuid, [row["UUID"] for row in listed])
        rule_file = os.path.join(self.workdir, "rule.json")
        with open(rule_file, "w") as f:
            json.dump(RULE, f)
        self.ok("admin", "baremetal", "introspection", "rule", "import", rule_file)
        rules = json.loads(self.ok("admin", "baremetal", "introspection", "rule", "list", "-f", "json"))
        self.assertEqual([r["Description"] for r in rules], ["auth test rule"])
        self.ok("admin", "baremetal", "introspection", "abort", name)
        self.ok("admin", "baremetal", "introspection", "rule", "purge")

    def test_member_forbidden(self):
        result = self.cli("member", "baremetal", "introspection", "list")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("introspection:status", result.stderr)

