"""API authentication strategies: ``keystone``, ``http_basic`` and ``noauth``.

Each strategy has ``async check(request, rule)``, called by
:class:`inspectord.api.app.API` before every route: ``rule`` None means a
public endpoint (``/``, ``/v1``, ``/v1/continue``); otherwise the request
must authenticate (else 401 with a ``WWW-Authenticate`` challenge) and its
credentials must pass the policy ``rule`` (else 403 naming the rule).

keystone
    The user's ``X-Auth-Token`` is validated by inspectord itself, with
    treq: ``GET /v3/auth/tokens?nocatalog`` with inspectord's service token
    in ``X-Auth-Token`` and the user's in ``X-Subject-Token``
    (:class:`TokenValidator`).  The service token comes from
    ``[keystone_authtoken]`` through keystoneauth, in a thread pool, and is
    renewed before it expires (:class:`inspectord.keystone.ServiceToken`).  Validations are cached under a hash of the token for
    ``token_cache_time`` seconds, never past the token's expiry; concurrent
    requests with one uncached token make one Keystone call.  Keystone
    unreachable is a 503.  Identity headers a client sends (``X-Roles``,
    ``X-User-Id``...) are never read: the roles come from Keystone.
http_basic
    An Apache htpasswd file of bcrypt hashes, re-read when it changes; the
    bcrypt checks run in a thread pool, and a successful one is remembered
    for :data:`BASIC_CACHE_TIME` seconds.  Users get policy roles from
    ``[http_basic]user_roles`` (``default_roles``, ``admin`` unless
    configured, for the others) and a system scope.
noauth
    Everything is allowed; a warning at start unless listening on loopback.

Tokens and passwords are never logged.
"""

import base64
import binascii
import collections
import dataclasses
import datetime
import hashlib
import json
import os

import bcrypt
from hyperlink import DecodedURL
from treq.client import HTTPClient
from twisted.internet import defer, ssl
from twisted.logger import Logger
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from inspectord import errors
from inspectord.api import authz
from inspectord.outbound import cancellation
from inspectord.singleflight import SingleFlight
from inspectord.threads import PoolRunner
from inspectord.watchedfile import WatchedFile

LOOPBACK = ("127.0.0.1", "::1", "localhost")

KEYSTONE_TIMEOUT = 10
"""Default seconds for a Keystone request ([keystone_authtoken]http_connect_timeout)."""

MAX_TOKEN_LENGTH = 8192
"""Longer ``X-Auth-Token`` values are refused without asking Keystone."""

MAX_CACHED = 10000
"""Most token validations (or successful basic logins) remembered."""

BASIC_CACHE_TIME = 60
"""Seconds a successful bcrypt check is remembered (for that user, password and hash)."""

MAX_AUTHORIZATION_LENGTH = 4096
BCRYPT_MAX_PASSWORD = 72
"""bcrypt only reads 72 bytes; the ``bcrypt`` package refuses longer passwords."""

BASIC_MAX_CHECKS_PER_SOURCE = 1
"""bcrypt checks one client address may have running at once."""

BASIC_MAX_QUEUED_PER_SOURCE = 16
"""bcrypt checks one client address may have waiting; more are refused with 429 at no cost."""


class Unauthorized(errors.InspectordError):
    """No credentials, or unknown ones; ``headers`` has the ``WWW-Authenticate`` challenge for the answer."""

    def __init__(self, message, challenge):
        super().__init__(message)
        self.headers = {"WWW-Authenticate": challenge}


class AuthUnavailable(errors.InspectordError):
    """The identity service cannot be used right now."""


class TooManyLogins(errors.InspectordError):
    """One client address has too many login checks waiting."""


def _fingerprint(secret):
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class _ExpiringCache:
    """At most ``size`` entries, each with its own deadline on ``clock``; oldest evicted first."""

    def __init__(self, clock, size=MAX_CACHED):
        self._clock = clock
        self._size = size
        self._entries = collections.OrderedDict()

    def __len__(self):
        return len(self._entries)

    def get(self, key, default=None):
        entry = self._entries.get(key)
        if entry is None:
            return default
        value, until = entry
        if self._clock.seconds() >= until:
            del self._entries[key]
            return default
        return value

    def put(self, key, value, until):
        if until <= self._clock.seconds():
            return
        self._entries[key] = (value, until)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def clear(self):
        self._entries.clear()


# -- noauth --------------------------------------------------------------------


class NoAuth:
    """``auth_strategy=noauth``: every request is allowed."""

    log = Logger()

    def __init__(self, listen_address):
        if listen_address not in LOOPBACK:
            self.log.warn(
                "auth_strategy=noauth and listening on {address}: anyone who can "
                "reach this address can start introspection and read its data",
                address=listen_address,
            )

    async def check(self, request, rule):
        return None


# -- keystone ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who a token or login is, as the policy sees it."""

    user_id: str
    user_name: str = None
    user_domain_id: str = None
    project_id: str = None
    project_name: str = None
    project_domain_id: str = None
    domain_id: str = None
    system_scope: str = None
    roles: tuple = ()
    is_admin_project: bool = True
    expires_at: float = None

    def creds(self):
        """oslo.context's ``to_policy_values()`` shape."""
        return {
            "user_id": self.user_id,
            "user_name": self.user_name,
            "user_domain_id": self.user_domain_id,
            "project_id": self.project_id,
            "project_name": self.project_name,
            "project_domain_id": self.project_domain_id,
            "domain_id": self.domain_id,
            "system_scope": self.system_scope,
            "roles": list(self.roles),
            "is_admin_project": self.is_admin_project,
            "is_public_api": False,
        }


def parse_timestamp(text):
    """Seconds since the epoch from Keystone's ``2026-11-27T12:00:00.000000Z``."""
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def identity_from_token(body):
    """An :class:`Identity` from Keystone's ``{"token": {...}}``; ValueError if malformed."""
    try:
        token = body["token"]
        user = token["user"]
        project = token.get("project") or {}
        domain = token.get("domain") or {}
        system = token.get("system") or {}
        return Identity(
            user_id=user["id"],
            user_name=user.get("name"),
            user_domain_id=(user.get("domain") or {}).get("id"),
            project_id=project.get("id"),
            project_name=project.get("name"),
            project_domain_id=(project.get("domain") or {}).get("id"),
            domain_id=domain.get("id"),
            system_scope="all" if system.get("all") else None,
            roles=tuple(role["name"] for role in token.get("roles") or ()),
            is_admin_project=bool(token.get("is_admin_project", True)),
            expires_at=parse_timestamp(token["expires_at"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError("malformed token body from Keystone: {!r}".format(e)) from None


def keystone_root(auth_url):
    """Keystone's root URL from ``auth_url`` (with or without ``/v3``)."""
    url = DecodedURL.from_text(auth_url.rstrip("/"))
    segments = [s for s in url.path if s]
    if segments and segments[-1] in ("v3", "v3.0"):
        segments = segments[:-1]
    return url.replace(path=segments, query=(), fragment="")


async def _keystone_request(http, clock, timeout, method, url, what, **kwargs):
    """``(status, headers, JSON body or None)``; :class:`AuthUnavailable` if Keystone cannot be reached."""

    async def go():
        response = await http.request(method, url, **kwargs)
        raw = await response.content()
        return response.code, response.headers, raw

    def timed_out(result, timeout):
        # Whatever the cancelled request failed with (ResponseNeverReceived...), it was our timeout.
        raise AuthUnavailable(
            "Keystone at {} did not answer within {} s ({}); try again later".format(url.split("?")[0], timeout, what)
        )

    d = defer.Deferred.fromCoroutine(go())
    d.addTimeout(timeout, clock, onTimeoutCancel=timed_out)
    try:
        code, headers, raw = await d
    except AuthUnavailable:
        raise
    except Exception as e:
        if cancellation(e):
            # The request's client went away, or inspectord is stopping: not Keystone's fault.
            raise defer.CancelledError() from None
        raise AuthUnavailable(
            "Keystone at {} is unreachable ({}): {}; try again later".format(
                url.split("?")[0], what, e.__class__.__name__
            )
        ) from None
    body = None
    if raw:
        try:
            body = json.loads(raw)
        except ValueError:
            if 200 <= code < 300:
                raise AuthUnavailable("Keystone answered {} with a body that is not JSON".format(what)) from None
    return code, headers, body


class TokenValidator:
    """Validates user tokens with Keystone; results cached by a hash of the token.

    ``await validate(token)`` is an :class:`Identity`, or None for a token
    Keystone does not know (invalid, expired, revoked: a 404), or raises
    :class:`AuthUnavailable`.  Both answers are cached for ``cache_time``
    seconds (a valid one never past its ``expires_at``); ``cache_time`` of
    0 or -1 disables the cache.
    """

    log = Logger()

    def __init__(self, http, clock, auth_url, service_token, cache_time=300, timeout=KEYSTONE_TIMEOUT,
                 max_cached=MAX_CACHED):
        self._http = http
        self._clock = clock
        self._url = str(keystone_root(auth_url).child("v3", "auth", "tokens")) + "?nocatalog"
        self._service_token = service_token
        self._cache_time = cache_time
        self._timeout = timeout
        self._cache = _ExpiringCache(clock, max_cached)
        self._validations = SingleFlight()
        self.keystone_calls = 0

    async def validate(self, token):
        key = _fingerprint(token)
        cached = self._cache.get(key, _MISSING)
        if cached is not _MISSING:
            return cached
        return await self._validations.call(key, self._validate, key, token)

    async def _validate(self, key, token):
        identity = await self._ask_keystone(token)
        if self._cache_time > 0:
            until = self._clock.seconds() + self._cache_time
            if identity is not None:
                until = min(until, identity.expires_at)
            self._cache.put(key, identity, until)
        return identity

    async def _ask_keystone(self, token):
        for attempt in (1, 2):
            service_token = await self._service_token.get()
            self.keystone_calls += 1
            code, _, body = await _keystone_request(
                self._http, self._clock, self._timeout, "GET", self._url, "token validation",
                headers={"X-Auth-Token": service_token, "X-Subject-Token": token},
            )
            if code == 200:
                try:
                    identity = identity_from_token(body)
                except ValueError as e:
                    raise AuthUnavailable("Keystone answered a token validation with {}".format(e)) from None
                if identity.expires_at <= self._clock.seconds():
                    return None
                return identity
            if code == 404:
                return None
            if code == 401 and attempt == 1:
                # Our service token was revoked or expired early: get another one.
                self._service_token.invalidate(service_token)
                continue
            if code in (401, 403):
                self.log.error(
                    "Keystone refused to let inspectord's service user validate tokens ({code}); "
                    "it needs the service role (or admin)", code=code,
                )
                raise AuthUnavailable(
                    "inspectord's service user may not validate tokens (Keystone answered {})".format(code)
                )
            raise AuthUnavailable("Keystone answered token validation with HTTP {}".format(code))


_MISSING = object()


class KeystoneAuth:
    """``auth_strategy=keystone``: ``X-Auth-Token`` validated with Keystone, then the policy."""

    def __init__(self, validator, enforcer, www_authenticate_uri):
        self.validator = validator
        self.enforcer = enforcer
        self.challenge = 'Keystone uri="{}"'.format(www_authenticate_uri)

    async def check(self, request, rule):
        if rule is None:
            return None
        raw = request.getHeader(b"x-auth-token")
        if not raw:
            raise Unauthorized("Authentication required: send a Keystone token in X-Auth-Token", self.challenge)
        token = _decode_token(raw)
        if token is None:
            raise Unauthorized("The X-Auth-Token header is not a valid token", self.challenge)
        identity = await self.validator.validate(token)
        if identity is None:
            raise Unauthorized("The token in X-Auth-Token is invalid, expired or revoked", self.challenge)
        await self.enforcer.enforce(rule, identity.creds())
        return identity


def _decode_token(raw):
    if len(raw) > MAX_TOKEN_LENGTH:
        return None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        return None
    return token


# -- http_basic ----------------------------------------------------------------


def parse_htpasswd(text):
    """``({user: bcrypt hash}, [problems])`` from an htpasswd file; only bcrypt entries count."""
    users, problems = {}, []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            problems.append("line {}: not user:hash".format(number))
        elif not hashed.startswith(("$2y$", "$2b$", "$2a$")):
            problems.append("line {}: user {} has no bcrypt hash (use htpasswd -B)".format(number, user))
        else:
            users[user] = hashed.encode("ascii", "replace")
    return users, problems


@dataclasses.dataclass(frozen=True)
class Htpasswd:
    users: dict
    problems: tuple = ()
    # Checked for a user the file does not have: a hash of a random password
    # at the file's own bcrypt cost, so an unknown user costs what a known
    # one does (no user-name oracle, no cheap-to-send expensive requests).
    dummy_hash: bytes = b""


def _cost(hashed):
    try:
        return int(hashed[4:6])
    except ValueError:
        return None


def load_htpasswd(text):
    users, problems = parse_htpasswd(text)
    costs = collections.Counter(c for c in map(_cost, users.values()) if c is not None and 4 <= c <= 31)
    cost = costs.most_common(1)[0][0] if costs else 12
    dummy = bcrypt.hashpw(os.urandom(18).hex().encode(), bcrypt.gensalt(cost))
    return Htpasswd(users, tuple(problems), dummy)


def parse_basic_authorization(raw):
    """``(user, password)`` from an ``Authorization: Basic`` value; ValueError saying why not."""
    if not raw:
        raise ValueError("Authentication required: send HTTP basic credentials")
    if len(raw) > MAX_AUTHORIZATION_LENGTH:
        raise ValueError("The Authorization header is too long")
    scheme, _, encoded = raw.strip().partition(b" ")
    if scheme.lower() != b"basic":
        raise ValueError("The Authorization header must use the Basic scheme")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise ValueError("The Authorization header is not valid base64 user:password") from None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        raise ValueError("The Authorization header is not valid base64 user:password")
    if len(password.encode("utf-8")) > BCRYPT_MAX_PASSWORD:
        raise ValueError("The password is longer than {} bytes".format(BCRYPT_MAX_PASSWORD))
    return user, password


def _thd_checkpw(password, hashed):
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed)
    except ValueError:  # a corrupt hash in the file
        return False


class BasicAuth:
    """``auth_strategy=http_basic``: htpasswd users with bcrypt hashes, then the policy.

    :param users: a :class:`inspectord.watchedfile.WatchedFile` of :class:`Htpasswd`.
    :param pool: runs the bcrypt checks, ``run(f, *args) -> Deferred``.
    """

    log = Logger()

    def __init__(self, users, pool, clock, enforcer, realm="inspectord", default_roles=("admin",),
                 user_roles=None, cache_time=BASIC_CACHE_TIME):
        self.users = users
        self._pool = pool
        self._clock = clock
        self.enforcer = enforcer
        self.challenge = 'Basic realm="{}"'.format(realm)
        self._default_roles = tuple(default_roles)
        self._user_roles = dict(user_roles or {})
        self._cache_time = cache_time
        self._cache = _ExpiringCache(clock)
        self.bcrypt_checks = 0
        self._sources = {}  # client address -> _SourceGate

    def roles(self, user):
        if user in self._user_roles:
            return tuple(r.strip() for r in self._user_roles[user].split(";") if r.strip())
        return self._default_roles

    async def check(self, request, rule):
        if rule is None:
            return None
        try:
            user, password = parse_basic_authorization(request.getHeader(b"authorization"))
        except ValueError as e:
            raise Unauthorized(str(e), self.challenge) from None
        htpasswd = await self.users.get()
        hashed = htpasswd.users.get(user)
        key = hashlib.sha256(b"\0".join([user.encode(), password.encode(), hashed or b""])).hexdigest()
        if hashed is None or not self._cache.get(key, False):
            ok = await self._checkpw(_source(request), password, hashed or htpasswd.dummy_hash)
            if not ok or hashed is None:
                raise Unauthorized("Invalid user name or password", self.challenge)
            self._cache.put(key, True, self._clock.seconds() + self._cache_time)
        identity = Identity(user_id=user, user_name=user, system_scope="all", roles=self.roles(user))
        await self.enforcer.enforce(rule, identity.creds())
        return identity


    async def _checkpw(self, source, password, hashed):
        """One bcrypt check, at most :data:`BASIC_MAX_CHECKS_PER_SOURCE` at once per client address."""
        gate = self._sources.get(source)
        if gate is None:
            gate = self._sources[source] = _SourceGate()
        if gate.running >= BASIC_MAX_CHECKS_PER_SOURCE:
            if len(gate.waiting) >= BASIC_MAX_QUEUED_PER_SOURCE:
                raise TooManyLogins("Too many login attempts at once from this address; try again")
            turn = defer.Deferred()
            gate.waiting.append(turn)
            await turn
        else:
            gate.running += 1
        try:
            self.bcrypt_checks += 1
            return await self._pool.run(_thd_checkpw, password, hashed)
        finally:
            if gate.waiting:
                gate.waiting.popleft().callback(None)  # its turn: the running count stays
            else:
                gate.running -= 1
                if not gate.running:
                    del self._sources[source]


class _SourceGate:
    def __init__(self):
        self.running = 0
        self.waiting = collections.deque()


def _source(request):
    address = request.getClientAddress()
    return getattr(address, "host", None) or "local"


# -- wiring --------------------------------------------------------------------


@implementer(IPolicyForHTTPS)
class _NoVerification:
    """``[keystone_authtoken]insecure = true``: TLS without certificate checks."""

    def creatorForNetloc(self, hostname, port):
        return ssl.CertificateOptions(verify=False)


def _keystone_http_client(reactor, options):
    """A treq client for Keystone honouring ``cafile`` and ``insecure``."""
    if options.insecure:
        tls = _NoVerification()
    elif options.cafile:
        try:
            with open(options.cafile, "rb") as f:
                pem = f.read()
            marker = b"-----END CERTIFICATE-----"
            certificates = [ssl.Certificate.loadPEM(block + marker) for block in pem.split(marker) if block.strip()]
            tls = BrowserLikePolicyForHTTPS(trustRoot=ssl.trustRootFromCertificates(certificates))
        except Exception as e:
            raise errors.ConfigError("[keystone_authtoken]cafile {}: {}".format(options.cafile, e)) from None
    else:
        tls = BrowserLikePolicyForHTTPS()
    return HTTPClient(Agent(reactor, contextFactory=tls, pool=HTTPConnectionPool(reactor, persistent=True)))


def policy_path(config):
    """``([oslo_policy]policy_file resolved, required)``: relative paths are next to the config file."""
    configured = config.oslo_policy.policy_file
    if not configured:
        return None, False
    path = configured
    if not os.path.isabs(path) and config.path:
        path = os.path.join(os.path.dirname(os.path.abspath(config.path)), path)
    return path, configured != "policy.yaml"


def make_enforcer(config, pool, clock):
    path, required = policy_path(config)
    return authz.Enforcer(
        path, pool, clock, required=required, enforce_new_defaults=config.oslo_policy.enforce_new_defaults
    )


def make_auth(config, reactor=None, threadpool=None, http_client=None, pool=None):
    """The strategy of ``[DEFAULT]auth_strategy``.

    :param reactor: the reactor (also the clock); not needed for noauth.
    :param threadpool: where bcrypt checks, policy/htpasswd file reads and
        keystoneauth's service token requests run (or ``pool``, anything with ``run(f, *args) -> Deferred``).
    :param http_client: a treq client for Keystone; built from
        ``[keystone_authtoken]`` (TLS options) if not given.
    :raises errors.ConfigError: an unusable policy or htpasswd file.
    """
    log = Logger(namespace="inspectord.api.auth")
    strategy = config.default.auth_strategy
    if strategy == "noauth":
        return NoAuth(config.default.listen_address)
    if pool is None:
        pool = PoolRunner(reactor, threadpool)
    enforcer = make_enforcer(config, pool, reactor)
    if strategy == "keystone":
        options = config.keystone_authtoken
        if http_client is None:
            http_client = _keystone_http_client(reactor, options)
        timeout = options.http_connect_timeout or KEYSTONE_TIMEOUT
        from inspectord import keystone  # imports keystoneauth1

        plugin, session = keystone.load_authtoken_auth(options, timeout=timeout)
        service_token = keystone.ServiceToken(plugin, session, reactor, pool, error=AuthUnavailable)
        validator = TokenValidator(
            http_client, reactor, options.auth_url, service_token,
            cache_time=options.token_cache_time, timeout=timeout,
        )
        log.info("API authentication: Keystone tokens, validated at {url}", url=options.auth_url)
        return KeystoneAuth(validator, enforcer, options.www_authenticate_uri or options.auth_url)
    if strategy == "http_basic":
        path = config.default.http_basic_auth_user_file
        users = WatchedFile(path, load_htpasswd, pool, reactor, what="htpasswd file", on_load=_report_htpasswd)
        try:
            loaded = users.load_now()
        except (OSError, ValueError) as e:
            raise errors.ConfigError("[DEFAULT]http_basic_auth_user_file {}: {}".format(path, e)) from None
        if not loaded.users:
            raise errors.ConfigError(
                "[DEFAULT]http_basic_auth_user_file {} has no bcrypt users (create them with htpasswd -B)".format(path)
            )
        log.info("API authentication: HTTP basic, users from {path}", path=path)
        return BasicAuth(
            users, pool, reactor, enforcer,
            default_roles=config.http_basic.default_roles, user_roles=config.http_basic.user_roles,
        )
    raise errors.ConfigError("[DEFAULT]auth_strategy={} is not supported".format(strategy))


def _report_htpasswd(htpasswd):
    log = Logger(namespace="inspectord.api.auth")
    for problem in htpasswd.problems:
        log.warn("htpasswd file: {problem}", problem=problem)
