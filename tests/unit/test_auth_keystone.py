"""auth_strategy=keystone: token validation, the service token, the cache, the API's answers.

A fake Keystone (a Klein app on the test's Clock) is reached through
StubTreq, so every request inspectord makes to it is seen and can be held.
"""

import dataclasses
import datetime
import hashlib
import itertools
import json

from klein import Klein
from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from inspectord import keystone as keystone_client
from inspectord.api import auth, authz
from inspectord.api.status import status_for
from inspectord.threads import SynchronousRunner
from tests.unit.helpers import Harness

START = 1_800_000_000
AUTH_URL = "http://keystone.test:5000/v3"


def iso(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeKeystone:
    """Just enough of Keystone's token API: password logins, validation, revocation.

    ``users``: name -> (password, roles, scope) where scope is "project",
    "system" or None.  ``gate``: while set, validations wait on it.
    ``down``: validations answer 500.
    """

    app = Klein()

    def __init__(self, clock, lifetime=3600):
        self.clock = clock
        self.lifetime = lifetime
        self.users = {
            "inspectord": ("service-secret", ["service"], "project"),
            "alice": ("pw", ["admin", "member", "reader"], "project"),
            "mallory": ("pw", ["member", "reader"], "project"),
            "ruth": ("pw", ["reader"], "system"),
            "nobody": ("pw", [], None),
        }
        self.tokens = {}
        self.calls = []
        self.seen_tokens = []
        self.gate = None
        self.status = None
        self._ids = itertools.count(1)

    def issue(self, name, lifetime=None):
        """A token for user ``name``, as a client would have got it."""
        _password, roles, scope = self.users[name]
        token = "tok-{}-{}".format(name, next(self._ids))
        self.tokens[token] = {
            "user": {"id": "id-" + name, "name": name, "domain": {"id": "default", "name": "Default"}},
            "roles": [{"id": "r-" + r, "name": r} for r in roles],
            "methods": ["password"],
            "expires_at": iso(self.clock.seconds() + (lifetime or self.lifetime)),
            "issued_at": iso(self.clock.seconds()),
            **(
                {"project": {"id": "p-admin", "name": "admin", "domain": {"id": "default", "name": "Default"}}}
                if scope == "project"
                else {"system": {"all": True}} if scope == "system" else {}
            ),
        }
        return token

    def revoke(self, token):
        del self.tokens[token]

    def _live(self, token):
        body = self.tokens.get(token)
        if body is None:
            return None
        expires = datetime.datetime.fromisoformat(body["expires_at"]).timestamp()
        return body if expires > self.clock.seconds() else None

    def _json(self, request, code, body):
        request.setResponseCode(code)
        request.setHeader("Content-Type", "application/json")
        return json.dumps(body).encode()

    @app.route("/v3/auth/tokens", methods=["POST"])
    def login(self, request):
        self.calls.append(("POST", request.uri.decode()))
        body = json.loads(request.content.read())
        user = body["auth"]["identity"]["password"]["user"]
        known = self.users.get(user["name"])
        if known is None or known[0] != user["password"]:
            message = "The request you have made requires authentication."
            return self._json(request, 401, {"error": {"code": 401, "message": message}})
        token = self.issue(user["name"])
        request.setHeader("X-Subject-Token", token)
        return self._json(request, 201, {"token": self.tokens[token]})

    @app.route("/v3/auth/tokens", methods=["GET"])
    async def validate(self, request):
        self.calls.append(("GET", request.uri.decode()))
        self.seen_tokens.append((request.getHeader("X-Auth-Token"), request.getHeader("X-Subject-Token")))
        if self.gate is not None:
            await self.gate
        if self.status is not None:
            return self._json(request, self.status, {"error": {"code": self.status, "message": "broken"}})
        service = self._live(request.getHeader("X-Auth-Token"))
        if service is None:
            return self._json(request, 401, {"error": {"code": 401, "message": "unauthenticated"}})
        if "service" not in [r["name"] for r in service["roles"]]:
            return self._json(request, 403, {"error": {"code": 403, "message": "forbidden"}})
        subject = self._live(request.getHeader("X-Subject-Token"))
        if subject is None:
            return self._json(request, 404, {"error": {"code": 404, "message": "Could not find token"}})
        return self._json(request, 200, {"token": subject})

    def validations(self):
        return [c for c in self.calls if c[0] == "GET"]

    def logins(self):
        return [c for c in self.calls if c[0] == "POST"]


class Access:
    def __init__(self, expires):
        self.expires = expires


class FakeKeystoneauth:
    """keystoneauth's plugin and session as a service token uses them, logging in at a FakeKeystone.

    Called in the (synchronous) thread pool: one login per token, like
    keystoneauth's own token cache, and a new one after ``invalidate()``.
    """

    def __init__(self, keystone, name="inspectord", password="service-secret"):
        self.keystone = keystone
        self.name = name
        self.password = password
        self.token = None
        self.auth = self.session = self

    def get_auth_headers(self, auth):
        if self.token is None:
            from keystoneauth1 import exceptions

            self.keystone.calls.append(("POST", "/v3/auth/tokens"))
            known = self.keystone.users.get(self.name)
            if known is None or known[0] != self.password:
                raise exceptions.Unauthorized("The request you have made requires authentication.")
            self.token = self.keystone.issue(self.name)
        return {"X-Auth-Token": self.token}

    def get_access(self, session):
        expires = self.keystone.tokens[self.token]["expires_at"]
        return Access(datetime.datetime.fromisoformat(expires.replace("Z", "+00:00")))

    def invalidate(self):
        self.token = None
        return True


@dataclasses.dataclass(frozen=True)
class AuthtokenOptions:
    auth_type: str = "password"
    auth_url: str = AUTH_URL
    username: str = "inspectord"
    user_id: str = None
    password: str = "service-secret"
    user_domain_name: str = "Default"
    user_domain_id: str = None
    project_name: str = "service"
    project_id: str = None
    project_domain_name: str = "Default"
    project_domain_id: str = None
    system_scope: str = None
    application_credential_id: str = None
    application_credential_name: str = None
    application_credential_secret: str = None
    cafile: str = None
    insecure: bool = False


def service_token(keystone, clock, plugin=None):
    plugin = plugin or FakeKeystoneauth(keystone)
    return keystone_client.ServiceToken(plugin, plugin, clock, SynchronousRunner(), error=auth.AuthUnavailable)


class Unreachable:
    """An HTTP client whose every request is refused, like a Keystone that is down."""

    def __init__(self):
        self.requests = 0

    def request(self, method, url, **kwargs):
        self.requests += 1
        return defer.fail(ConnectionRefusedError("keystone.test:5000"))


class KeystoneCase(SynchronousTestCase):
    cache_time = 300

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(START)
        self.keystone = FakeKeystone(self.clock)
        self.http = StubTreq(self.keystone.app.resource())
        self.service_token = service_token(self.keystone, self.clock)
        self.validator = auth.TokenValidator(
            self.http, self.clock, AUTH_URL, self.service_token, cache_time=self.cache_time
        )

    def validate(self, token):
        d = defer.Deferred.fromCoroutine(self.validator.validate(token))
        self.http.flush()
        return d

    def identity(self, token):
        return self.successResultOf(self.validate(token))


class TokenValidatorTests(KeystoneCase):
    def test_valid_token(self):
        identity = self.identity(self.keystone.issue("alice"))
        self.assertEqual(identity.user_id, "id-alice")
        self.assertEqual(identity.user_name, "alice")
        self.assertEqual(identity.project_id, "p-admin")
        self.assertEqual(identity.roles, ("admin", "member", "reader"))
        self.assertIsNone(identity.system_scope)
        self.assertEqual(identity.expires_at, START + 3600)
        self.assertEqual(identity.creds()["roles"], ["admin", "member", "reader"])

    def test_system_scope(self):
        identity = self.identity(self.keystone.issue("ruth"))
        self.assertEqual(identity.system_scope, "all")
        self.assertIsNone(identity.project_id)

    def test_request_shape(self):
        """GET /v3/auth/tokens?nocatalog, service token in X-Auth-Token, user token in X-Subject-Token."""
        token = self.keystone.issue("alice")
        self.identity(token)
        self.assertEqual(self.keystone.validations(), [("GET", "/v3/auth/tokens?nocatalog")])
        self.assertEqual(self.keystone.logins(), [("POST", "/v3/auth/tokens")])
        service = self.successResultOf(defer.Deferred.fromCoroutine(self.service_token.get()))
        self.assertEqual(self.keystone.seen_tokens, [(service, token)])
        self.assertEqual(self.keystone.tokens[service]["user"]["name"], "inspectord")

    def test_unknown_token_is_none(self):
        """Keystone's 404 (invalid, expired or revoked) means no identity."""
        self.assertIsNone(self.identity("not-a-token"))

    def test_cached_for_cache_time(self):
        token = self.keystone.issue("alice")
        self.identity(token)
        self.clock.advance(299)
        self.assertEqual(self.identity(token).user_name, "alice")
        self.assertEqual(len(self.keystone.validations()), 1)
        self.clock.advance(1)
        self.identity(token)
        self.assertEqual(len(self.keystone.validations()), 2)

    def test_revoked_token_refused_once_cache_time_is_over(self):
        token = self.keystone.issue("alice")
        self.identity(token)
        self.keystone.revoke(token)
        self.assertIsNotNone(self.identity(token), "still cached")
        self.clock.advance(300)
        self.assertIsNone(self.identity(token))

    def test_never_cached_past_expiry(self):
        token = self.keystone.issue("alice", lifetime=60)
        self.identity(token)
        self.clock.advance(59)
        self.assertIsNotNone(self.identity(token))
        self.assertEqual(len(self.keystone.validations()), 1)
        self.clock.advance(1)
        self.assertIsNone(self.identity(token))
        self.assertEqual(len(self.keystone.validations()), 2)

    def test_negative_answer_cached(self):
        self.assertIsNone(self.identity("bogus"))
        self.assertIsNone(self.identity("bogus"))
        self.assertEqual(len(self.keystone.validations()), 1)

    def test_cache_keyed_by_hash(self):
        token = self.keystone.issue("alice")
        self.identity(token)
        keys = list(self.validator._cache._entries)
        self.assertEqual(keys, [hashlib.sha256(token.encode()).hexdigest()])
        self.assertNotIn(token, repr(self.validator._cache._entries))

    def test_cache_bounded(self):
        validator = auth.TokenValidator(self.http, self.clock, AUTH_URL, self.service_token, max_cached=3)
        for i in range(5):
            d = defer.Deferred.fromCoroutine(validator.validate("bogus-{}".format(i)))
            self.http.flush()
            self.successResultOf(d)
        self.assertEqual(len(validator._cache), 3)

    def test_concurrent_misses_one_call_each_waiter_own_deferred(self):
        token = self.keystone.issue("alice")
        self.keystone.gate = defer.Deferred()
        waiters = [defer.Deferred.fromCoroutine(self.validator.validate(token)) for _ in range(5)]
        self.http.flush()
        self.assertEqual(len(self.keystone.validations()), 1)
        self.assertEqual(len(set(map(id, waiters))), 5)
        self.assertFalse(any(d.called for d in waiters))
        # One waiter going away (its client disconnected) does not disturb the others.
        waiters[0].cancel()
        self.failureResultOf(waiters[0], defer.CancelledError)
        results = []
        waiters[1].addCallback(lambda identity: results.append(identity) or "changed by a callback")
        self.keystone.gate.callback(None)
        self.http.flush()
        identities = [self.successResultOf(d) for d in waiters[2:]]
        self.assertEqual([i.user_name for i in identities], ["alice"] * 3)
        self.assertEqual(results[0].user_name, "alice")
        self.assertEqual(len(self.keystone.validations()), 1)

    def test_concurrent_misses_share_failure(self):
        self.keystone.gate = defer.Deferred()
        self.keystone.status = 500
        waiters = [defer.Deferred.fromCoroutine(self.validator.validate("x")) for _ in range(3)]
        self.http.flush()
        self.keystone.gate.callback(None)
        self.http.flush()
        for d in waiters:
            self.failureResultOf(d, auth.AuthUnavailable)
        self.assertEqual(len(self.keystone.validations()), 1)
        self.assertEqual(len(self.validator._validations), 0)

    def test_keystone_error_is_unavailable_and_not_cached(self):
        self.keystone.status = 503
        failure = self.failureResultOf(self.validate("x"), auth.AuthUnavailable)
        self.assertEqual(status_for(failure.value), 503)
        self.keystone.status = None
        token = self.keystone.issue("alice")
        self.assertIsNotNone(self.identity(token))

    def test_keystone_unreachable(self):
        http = Unreachable()
        service = service_token(self.keystone, self.clock)
        validator = auth.TokenValidator(http, self.clock, AUTH_URL, service)
        d = defer.Deferred.fromCoroutine(validator.validate("anything"))
        failure = self.failureResultOf(d, auth.AuthUnavailable)
        self.assertEqual(status_for(failure.value), 503)
        self.assertIn("http://keystone.test:5000/v3/auth/tokens is unreachable", failure.value.message)
        self.assertIn("ConnectionRefusedError", failure.value.message)

    def test_keystone_hangs_times_out(self):
        token = self.keystone.issue("alice")
        self.identity(token)  # the service token is there already
        other = self.keystone.issue("alice")
        self.keystone.gate = defer.Deferred()
        d = self.validate(other)
        self.assertNoResult(d)
        self.clock.advance(auth.KEYSTONE_TIMEOUT)
        failure = self.failureResultOf(d, auth.AuthUnavailable)
        self.assertIn("did not answer within 10 s", failure.value.message)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_expired_in_body_is_invalid(self):
        """A 200 whose expires_at is already past (clock skew) is not trusted."""
        token = self.keystone.issue("alice")
        self.keystone.tokens[token]["expires_at"] = iso(START - 1)
        self.keystone._live = self.keystone.tokens.get  # a Keystone that does not check expiry
        self.assertIsNone(self.identity(token))


class ServiceTokenTests(KeystoneCase):
    def get(self):
        d = defer.Deferred.fromCoroutine(self.service_token.get())
        self.http.flush()
        return self.successResultOf(d)

    def test_fetched_once_and_reused(self):
        first = self.get()
        self.assertEqual(self.get(), first)
        self.assertEqual(self.service_token.fetched, 1)
        self.assertEqual(self.keystone.tokens[first]["user"]["name"], "inspectord")

    def test_service_user_plugin_from_options(self):
        """[keystone_authtoken] becomes keystoneauth's v3 password plugin (no network)."""
        plugin, session = keystone_client.load_authtoken_auth(AuthtokenOptions(), timeout=7)
        plugin = plugin.create_plugin(session, (3, 0), AUTH_URL)  # what version discovery picks for /v3
        method = plugin.auth_methods[0]
        self.assertEqual(
            (method.username, method.password, method.user_domain_name),
            ("inspectord", "service-secret", "Default"),
        )
        self.assertEqual((plugin.project_name, plugin.project_domain_name), ("service", "Default"))
        self.assertEqual(plugin.auth_url, AUTH_URL)
        self.assertEqual((session.timeout, session.verify), (7.0, True))

    def test_application_credential_plugin(self):
        options = AuthtokenOptions(
            auth_type="v3applicationcredential", username=None, password=None, project_name=None,
            application_credential_id="ac-1", application_credential_secret="s3cret", insecure=True,
        )
        plugin, session = keystone_client.load_authtoken_auth(options)
        method = plugin.auth_methods[0]
        self.assertEqual((method.application_credential_id, method.application_credential_secret),
                         ("ac-1", "s3cret"))
        self.assertFalse(session.verify)

    def test_refused_login_is_unavailable(self):
        self.keystone.users["inspectord"] = ("another", ["service"], "project")
        failure = self.failureResultOf(defer.Deferred.fromCoroutine(self.service_token.get()), auth.AuthUnavailable)
        self.assertIn("check [keystone_authtoken]", failure.value.message)
        self.assertEqual(self.service_token.fetched, 0)

    def test_renewed_before_expiry(self):
        first = self.get()
        self.clock.advance(3600 - keystone_client.REFRESH_MARGIN - 1)
        self.assertEqual(self.get(), first)
        self.clock.advance(1)
        second = self.get()
        self.assertNotEqual(second, first)
        self.assertEqual(self.service_token.fetched, 2)

    def test_short_lived_renewed_half_way(self):
        self.keystone.lifetime = 100
        first = self.get()
        self.clock.advance(49)
        self.assertEqual(self.get(), first)
        self.clock.advance(1)
        self.assertNotEqual(self.get(), first)

    def test_concurrent_fetches_one_login(self):
        waiters = [defer.Deferred.fromCoroutine(self.service_token.get()) for _ in range(4)]
        self.http.flush()
        tokens = {self.successResultOf(d) for d in waiters}
        self.assertEqual(len(tokens), 1)
        self.assertEqual(len(self.keystone.logins()), 1)

    def test_revoked_service_token_replaced(self):
        """Keystone's 401 for our service token: log in again and retry once."""
        token = self.keystone.issue("alice")
        self.identity(token)
        self.keystone.revoke(self.get())
        self.assertIsNotNone(self.identity(self.keystone.issue("alice")))
        self.assertEqual(self.service_token.fetched, 2)

    def test_wrong_service_password_is_503(self):
        self.keystone.users["inspectord"] = ("another", ["service"], "project")
        failure = self.failureResultOf(self.validate(self.keystone.issue("alice")), auth.AuthUnavailable)
        self.assertIn("cannot authenticate to Keystone (The request you have made requires authentication. (HTTP 401)); "
                      "check [keystone_authtoken]",
                      failure.value.message)
        self.assertIn("[keystone_authtoken]", failure.value.message)

    def test_service_user_without_service_role_is_503(self):
        self.keystone.users["inspectord"] = ("service-secret", ["member"], "project")
        failure = self.failureResultOf(self.validate(self.keystone.issue("alice")), auth.AuthUnavailable)
        self.assertIn("may not validate tokens", failure.value.message)


class KeystoneRootTests(SynchronousTestCase):
    def test_forms_of_auth_url(self):
        for url in ("http://k:5000", "http://k:5000/", "http://k:5000/v3", "http://k:5000/v3/"):
            self.assertEqual(str(auth.keystone_root(url)), "http://k:5000", url)
        self.assertEqual(str(auth.keystone_root("https://k/identity/v3")), "https://k/identity")


class KeystoneAPITests(KeystoneCase):
    """The API with auth_strategy=keystone: 401, 403 and 2xx with real-shaped tokens."""

    def setUp(self):
        super().setUp()
        self.harness = Harness()
        enforcer = authz.Enforcer(None, None, self.clock)
        self.harness.api.auth = auth.KeystoneAuth(self.validator, enforcer, "http://public.keystone.test:5000")
        self.uuid = self.harness.fake.add_node(name="node-1", macs=["52:54:00:00:00:01"])

    def call(self, method, path, token=None, headers=None, body=None):
        headers = dict(headers or {})
        if token is not None:
            headers["X-Auth-Token"] = token
        d = self.harness.http.request(method, "http://inspectord.test" + path, headers=headers,
                                      data=json.dumps(body).encode() if body is not None else None)
        for _ in range(20):
            self.harness.flush()
            self.http.flush()
        response = self.successResultOf(d)
        raw = self.successResultOf(response.content())
        self.harness.flush()
        return response.code, response.headers, json.loads(raw) if raw else None

    def test_no_token_401_with_challenge(self):
        code, headers, body = self.call("GET", "/v1/introspection/" + self.uuid)
        self.assertEqual(code, 401)
        self.assertEqual(headers.getRawHeaders("WWW-Authenticate"), ['Keystone uri="http://public.keystone.test:5000"'])
        self.assertIn("X-Auth-Token", body["error"]["message"])
        self.assertEqual(self.keystone.calls, [])

    def test_invalid_token_401(self):
        code, headers, body = self.call("GET", "/v1/introspection/" + self.uuid, token="nope")
        self.assertEqual(code, 401)
        self.assertIn("invalid, expired or revoked", body["error"]["message"])
        self.assertTrue(headers.hasHeader("WWW-Authenticate"))

    def test_malformed_tokens_401_without_keystone(self):
        for token in ("x" * (auth.MAX_TOKEN_LENGTH + 1), "a b", "t\x01"):
            code, _, _ = self.call("GET", "/v1/introspection/" + self.uuid, token=token)
            self.assertEqual(code, 401)
        self.assertEqual(self.keystone.validations(), [])

    def test_member_403_names_rule(self):
        token = self.keystone.issue("mallory")
        code, headers, body = self.call("POST", "/v1/introspection/" + self.uuid, token=token)
        self.assertEqual(code, 403)
        self.assertIn("introspection:start", body["error"]["message"])
        self.assertFalse(headers.hasHeader("WWW-Authenticate"))

    def test_identity_headers_from_client_ignored(self):
        token = self.keystone.issue("mallory")
        spoofed = {"X-Roles": "admin", "X-Identity-Status": "Confirmed", "X-User-Id": "id-alice",
                   "X-Service-Roles": "service", "X-System-Scope": "all"}
        code, _, _ = self.call("POST", "/v1/introspection/" + self.uuid, token=token, headers=spoofed)
        self.assertEqual(code, 403)
        code, _, _ = self.call("POST", "/v1/introspection/" + self.uuid, headers=spoofed)
        self.assertEqual(code, 401)

    def test_admin_allowed(self):
        token = self.keystone.issue("alice")
        code, _, body = self.call("POST", "/v1/introspection/" + self.uuid, token=token)
        self.assertEqual(code, 202, body)
        code, _, body = self.call("GET", "/v1/introspection/" + self.uuid, token=token)
        self.assertEqual(code, 200, body)
        self.assertEqual(len(self.keystone.validations()), 1, "the second request used the cache")

    def test_system_reader_reads_only(self):
        token = self.keystone.issue("ruth")
        code, _, _ = self.call("POST", "/v1/introspection/" + self.uuid, token=token)
        self.assertEqual(code, 403)
        code, _, _ = self.call("GET", "/v1/introspection/" + self.uuid, token=token)
        self.assertEqual(code, 404)  # allowed, and never introspected

    def test_public_endpoints_need_no_token(self):
        for method, path in (("GET", "/"), ("GET", "/v1")):
            code, _, _ = self.call(method, path)
            self.assertEqual(code, 200, path)
        code, _, body = self.call("POST", "/v1/continue", body={"inventory": {}})
        self.assertNotIn(code, (401, 403), body)
        self.assertEqual(self.keystone.calls, [])

    def test_keystone_down_503(self):
        http = Unreachable()
        service = service_token(self.keystone, self.clock)
        validator = auth.TokenValidator(http, self.clock, AUTH_URL, service)
        self.harness.api.auth.validator = validator
        code, headers, body = self.call("GET", "/v1/introspection/" + self.uuid, token="abc")
        self.assertEqual(code, 503)
        self.assertIn("unreachable", body["error"]["message"])
        self.assertFalse(headers.hasHeader("WWW-Authenticate"))

    def test_tokens_never_logged(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.keystone.users["inspectord"] = ("service-secret", ["member"], "project")  # validation refused: logs
        token = self.keystone.issue("alice")
        self.call("GET", "/v1/introspection/" + self.uuid, token=token)
        self.keystone.users["inspectord"] = ("other", ["service"], "project")
        self.service_token.invalidate()
        self.call("GET", "/v1/introspection/" + self.uuid, token=token)
        self.assertTrue(events)
        text = repr(events)
        self.assertNotIn(token, text)
        self.assertNotIn("service-secret", text)
        for issued in self.keystone.tokens:
            self.assertNotIn(issued, text)


class IdentityTests(SynchronousTestCase):
    def test_malformed_body(self):
        for body in ({}, {"token": {}}, {"token": {"user": {"id": "u"}}},
                     {"token": {"user": {"id": "u"}, "expires_at": "x"}}):
            self.assertRaises(ValueError, auth.identity_from_token, body)

    def test_is_admin_project_default_true(self):
        body = {"token": {"user": {"id": "u"}, "expires_at": "2030-01-01T00:00:00.000000Z", "roles": []}}
        self.assertIs(auth.identity_from_token(body).is_admin_project, True)
        body["token"]["is_admin_project"] = False
        self.assertIs(auth.identity_from_token(body).is_admin_project, False)

    def test_token_expiry_parsing(self):
        self.assertEqual(auth.parse_timestamp("2027-01-15T08:00:00.000000Z"),
                         datetime.datetime(2027, 1, 15, 8, tzinfo=datetime.timezone.utc).timestamp())
        self.assertEqual(auth.parse_timestamp("2027-01-15T08:00:00"), auth.parse_timestamp("2027-01-15T08:00:00Z"))

