"""auth_strategy=http_basic: htpasswd with bcrypt, the Authorization header, the API's answers."""

import base64
import os

import bcrypt
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from inspectord import errors
from inspectord.api import auth, authz
from tests.unit.helpers import Harness, make_config


def hashed(password, rounds=4):
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def basic(user, password):
    return "Basic " + base64.b64encode("{}:{}".format(user, password).encode()).decode()


class RecordingPool:
    """Runs at once, recording what ran (the thread pool's stand-in)."""

    def __init__(self):
        self.calls = []

    def run(self, f, *args):
        self.calls.append(f.__name__)
        return defer.execute(f, *args)


class HtpasswdTests(SynchronousTestCase):
    def test_parse(self):
        text = "\n".join([
            "# operators",
            "",
            "alice:" + hashed("a"),
            "bob:$2y$" + hashed("b")[4:],
            "carol:$apr1$abc$def",
            "dave:{SHA}xyz",
            "no-colon-here",
            ":$2b$04$nouser",
        ])
        users, problems = auth.parse_htpasswd(text)
        self.assertEqual(sorted(users), ["alice", "bob"])
        self.assertEqual(len(problems), 4)
        self.assertIn("line 5: user carol has no bcrypt hash (use htpasswd -B)", problems)
        self.assertTrue(bcrypt.checkpw(b"b", users["bob"]))


class HeaderTests(SynchronousTestCase):
    def parse(self, value):
        return auth.parse_basic_authorization(value if isinstance(value, bytes) or value is None else value.encode())

    def test_valid(self):
        self.assertEqual(self.parse(basic("alice", "s3cret")), ("alice", "s3cret"))
        self.assertEqual(self.parse(basic("alice", "with:colon")), ("alice", "with:colon"))
        self.assertEqual(self.parse(basic("alice", "")), ("alice", ""))
        self.assertEqual(self.parse("basic " + basic("a", "b").split()[1]), ("a", "b"))
        self.assertEqual(self.parse(basic("alice", "x" * 72)), ("alice", "x" * 72))

    def test_refused(self):
        cases = {
            None: "Authentication required",
            "": "Authentication required",
            "Bearer abc": "Basic scheme",
            "Basic": "not valid base64",
            "Basic !!!!": "not valid base64",
            "Basic " + base64.b64encode(b"nocolon").decode(): "not valid base64",
            "Basic " + base64.b64encode(b":password").decode(): "not valid base64",
            "Basic " + base64.b64encode(b"\xff\xfe:x").decode(): "not valid base64",
            basic("alice", "x" * 73): "longer than 72 bytes",
            basic("alice", "\u00e9" * 37): "longer than 72 bytes",
            "Basic " + "A" * 5000: "too long",
        }
        for value, message in cases.items():
            error = self.assertRaises(ValueError, self.parse, value)
            self.assertIn(message, str(error), value)


class BasicAuthTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "htpasswd")
        self.write({"alice": "alice-pw", "ruth": "ruth-pw", "mallory": "mallory-pw"})
        self.pool = RecordingPool()
        self.users = authz.WatchedFile(self.path, auth.load_htpasswd, self.pool, self.clock)
        self.users.load_now()
        self.auth = auth.BasicAuth(
            self.users, self.pool, self.clock, authz.Enforcer(None, None, self.clock),
            default_roles=["admin"], user_roles={"ruth": "reader", "mallory": "member;baremetal_observer"},
        )
        self.harness = Harness()
        self.harness.api.auth = self.auth
        self.uuid = self.harness.fake.add_node(name="node-1", macs=["52:54:00:00:00:01"])

    def write(self, users):
        with open(self.path, "w") as f:
            f.write("".join("{}:{}\n".format(u, hashed(p)) for u, p in users.items()))
        st = os.stat(self.path)
        os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    def call(self, method, path, authorization=None):
        headers = {"Authorization": authorization} if authorization is not None else {}
        return self.harness.request(method, path, headers=headers)

    def status(self, authorization):
        return self.call("GET", "/v1/introspection/" + self.uuid, authorization)

    def test_no_credentials_401_with_challenge(self):
        code, headers, body = self.status(None)
        self.assertEqual(code, 401)
        self.assertEqual(headers.getRawHeaders("WWW-Authenticate"), ['Basic realm="inspectord"'])
        self.assertIn("Authentication required", body["error"]["message"])

    def test_malformed_header_is_401_json(self):
        for value in ("Basic !!!", "Digest abc", "Basic " + "A" * 5000, basic("alice", "p" * 100)):
            code, headers, body = self.status(value)
            self.assertEqual(code, 401, value)
            self.assertTrue(body["error"]["message"], value)
            self.assertTrue(headers.hasHeader("WWW-Authenticate"))
        self.assertEqual(self.pool.calls, [])

    def test_valid_admin(self):
        code, _, body = self.call("POST", "/v1/introspection/" + self.uuid, basic("alice", "alice-pw"))
        self.assertEqual(code, 202, body)

    def test_wrong_password_and_unknown_user(self):
        code, _, body = self.status(basic("alice", "nope"))
        self.assertEqual(code, 401)
        self.assertEqual(body["error"]["message"], "Invalid user name or password")
        code, _, body = self.status(basic("eve", "alice-pw"))
        self.assertEqual(code, 401)
        self.assertEqual(body["error"]["message"], "Invalid user name or password")
        # an unknown user costs a bcrypt check too (no user enumeration by timing)
        self.assertEqual(self.pool.calls, ["_thd_checkpw", "_thd_checkpw"])

    def test_roles_mapping(self):
        code, _, _ = self.status(basic("ruth", "ruth-pw"))
        self.assertEqual(code, 404)  # allowed; the node was never introspected
        code, _, body = self.call("POST", "/v1/introspection/" + self.uuid, basic("ruth", "ruth-pw"))
        self.assertEqual(code, 403)
        self.assertIn("introspection:start", body["error"]["message"])
        code, _, _ = self.status(basic("mallory", "mallory-pw"))
        self.assertEqual(code, 403)
        self.assertEqual(self.auth.roles("mallory"), ("member", "baremetal_observer"))

    def test_bcrypt_in_pool_and_cached(self):
        for _ in range(3):
            self.assertEqual(self.status(basic("alice", "alice-pw"))[0], 404)
        self.assertEqual(self.pool.calls.count("_thd_checkpw"), 1)
        self.clock.advance(auth.BASIC_CACHE_TIME)
        self.assertEqual(self.status(basic("alice", "alice-pw"))[0], 404)
        self.assertEqual(self.pool.calls.count("_thd_checkpw"), 2)

    def test_failures_not_cached(self):
        self.status(basic("alice", "nope"))
        self.status(basic("alice", "nope"))
        self.assertEqual(self.pool.calls.count("_thd_checkpw"), 2)

    def test_file_reread_when_changed(self):
        self.assertEqual(self.status(basic("alice", "alice-pw"))[0], 404)
        self.write({"alice": "new-pw"})
        self.clock.advance(1)
        self.assertEqual(self.status(basic("alice", "alice-pw"))[0], 401, "old password, although cached")
        self.assertEqual(self.status(basic("alice", "new-pw"))[0], 404)
        self.assertEqual(self.status(basic("ruth", "ruth-pw"))[0], 401, "removed user")
        self.assertIn("_thd_read", self.pool.calls)

    def test_public_endpoints_open(self):
        self.assertEqual(self.call("GET", "/")[0], 200)
        self.assertEqual(self.call("GET", "/v1")[0], 200)
        self.assertEqual(self.pool.calls, [])

    def test_corrupt_hash_refuses(self):
        self.assertFalse(auth._thd_checkpw("x", b"$2b$04$corrupt"))


class MakeAuthTests(SynchronousTestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.clock = Clock()

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def make(self, **overrides):
        config = make_config(**overrides)
        return auth.make_auth(config, self.clock, pool=RecordingPool())

    def test_noauth(self):
        self.assertIsInstance(self.make(), auth.NoAuth)

    def test_http_basic(self):
        path = self.write("htpasswd", "alice:{}\n".format(hashed("pw")))
        strategy = self.make(DEFAULT__auth_strategy="http_basic", DEFAULT__http_basic_auth_user_file=path,
                             http_basic__user_roles={"alice": "reader"})
        self.assertIsInstance(strategy, auth.BasicAuth)
        self.assertEqual(strategy.roles("alice"), ("reader",))
        self.assertEqual(strategy.roles("bob"), ("admin",))

    def test_http_basic_bad_files(self):
        missing = os.path.join(self.dir, "missing")
        error = self.assertRaises(errors.ConfigError, self.make, DEFAULT__auth_strategy="http_basic",
                                  DEFAULT__http_basic_auth_user_file=missing)
        self.assertIn("[DEFAULT]http_basic_auth_user_file", str(error))
        path = self.write("htpasswd", "alice:$apr1$x$y\n")
        error = self.assertRaises(errors.ConfigError, self.make, DEFAULT__auth_strategy="http_basic",
                                  DEFAULT__http_basic_auth_user_file=path)
        self.assertIn("no bcrypt users", str(error))

    def test_keystone(self):
        strategy = self.make(
            DEFAULT__auth_strategy="keystone",
            keystone_authtoken__auth_url="http://keystone.test:5000/v3",
            keystone_authtoken__username="inspectord",
            keystone_authtoken__password="pw",
            keystone_authtoken__user_domain_name="Default",
            keystone_authtoken__project_name="service",
            keystone_authtoken__project_domain_name="Default",
        )
        self.assertIsInstance(strategy, auth.KeystoneAuth)
        self.assertEqual(strategy.challenge, 'Keystone uri="http://keystone.test:5000/v3"')

    def test_explicit_policy_file_must_exist(self):
        error = self.assertRaises(
            errors.ConfigError, self.make, DEFAULT__auth_strategy="http_basic",
            DEFAULT__http_basic_auth_user_file=self.write("htpasswd", "a:{}\n".format(hashed("pw"))),
            oslo_policy__policy_file=os.path.join(self.dir, "nope.yaml"),
        )
        self.assertIn("[oslo_policy]policy_file", str(error))


class NoAuthTests(SynchronousTestCase):
    def warnings(self, address):
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        try:
            auth.NoAuth(address)
        finally:
            globalLogPublisher.removeObserver(events.append)
        return [e for e in events if "noauth" in e.get("log_format", "")]

    def test_loud_unless_loopback(self):
        self.assertEqual(self.warnings("127.0.0.1"), [])
        self.assertEqual(self.warnings("::1"), [])
        self.assertEqual(len(self.warnings("::")), 1)
        self.assertEqual(len(self.warnings("192.0.2.1")), 1)

    def test_everything_allowed(self):
        check = auth.NoAuth("127.0.0.1").check(None, "introspection:start")
        self.assertIsNone(self.successResultOf(defer.Deferred.fromCoroutine(check)))
