"""inspectord's one Keystone client: options, service tokens, catalog endpoints.

Three sections talk to Keystone: ``[ironic]`` and ``[swift]`` (a token and
the service's endpoint from the catalog, keystoneauth options as
ironic-inspector read them) and ``[keystone_authtoken]`` (inspectord's own
service token, with which user tokens are validated).  All three go through
keystoneauth1: it knows every authentication plugin an operator may
configure, and it is the library ironic-inspector used, so a file that
worked there authenticates the same way here.

keystoneauth blocks (requests underneath): every call to it runs in a
thread pool (``pool.run``, an :class:`inspectord.threads.ThreadPoolService`
or :class:`inspectord.threads.PoolRunner`), and what it answers (token,
endpoint, expiry) is cached until shortly before the token expires
(:class:`KeystoneSession`).  Validating user tokens stays asynchronous
(treq, :mod:`inspectord.api.auth`): it is the per-request path.

keystoneauth1, requests and urllib3 weigh about 4 MB of memory; they are
imported only when a section uses Keystone (``auth_type`` other than
``none``/``http_basic``, or ``auth_strategy=keystone``).  The options are
read without them by :mod:`inspectord.keystone_options` (a leaf, imported
by :mod:`inspectord.config`).
"""

import dataclasses
import datetime

from hyperlink import DecodedURL
from twisted.logger import Logger

from inspectord import errors
from inspectord.keystone_options import validate_keystone_authtoken
from inspectord.singleflight import SingleFlight

#: Ask keystoneauth again this long before the token expires (or half-way
#: through a token that lives shorter than twice this).
REFRESH_MARGIN = 120

#: Seconds after which headers of a plugin that gives no expiry are asked for again.
UNTIMED_LIFETIME = 3600


def load_authtoken_auth(ks, timeout=None):
    """``(plugin, session)`` of keystoneauth for inspectord's service user of ``[keystone_authtoken]``."""
    from keystoneauth1 import loading as ks_loading
    from keystoneauth1 import session as ks_session

    validate_keystone_authtoken(ks)
    auth_type = ks.auth_type or "password"
    try:
        loader = ks_loading.get_plugin_loader(auth_type)
        names = {opt.dest for opt in loader.get_options()}
        values = {name: getattr(ks, name) for name in names if getattr(ks, name, None) not in (None, "")}
        auth = loader.load_from_options(**values)
    except Exception as e:
        raise errors.ConfigError("invalid [keystone_authtoken] authentication options: {}".format(e)) from None
    verify = False if ks.insecure else (ks.cafile or True)
    return auth, ks_session.Session(auth=auth, verify=verify, timeout=timeout)


# -- tokens and endpoints -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What keystoneauth answered: the auth headers, the endpoint (if asked) and the token's expiry."""

    headers: dict
    url: str
    # Seconds since the epoch; None: the plugin did not say.
    expires: float

    @property
    def token(self):
        return self.headers.get("X-Auth-Token")


class KeystoneSession:
    """A keystoneauth plugin and session used off the reactor thread; answers cached until near expiry.

    :param options: anything with ``auth`` and ``session`` (keystoneauth
        objects) and, for an endpoint, ``endpoint_override``,
        ``service_type``, ``interface``, ``region_name``.
    :param pool: ``run(f, *args) -> Deferred``: keystoneauth blocks.
    :param endpoint: resolve the service's endpoint from the catalog too.
    :param error: the :class:`inspectord.errors.InspectordError` raised
        when Keystone cannot give a token or an endpoint.
    """

    log = Logger()

    def __init__(self, options, clock, pool, service, error, endpoint=True, margin=REFRESH_MARGIN,
                 message="cannot authenticate to {service} through Keystone: {error}"):
        from keystoneauth1 import exceptions  # only with Keystone authentication

        self._keystone_errors = exceptions.ClientException
        self._unreachable_errors = (exceptions.ConnectionError, exceptions.RequestTimeout)
        self._options = options
        self._clock = clock
        self._pool = pool
        self._service = service
        self._error = error
        self._endpoint = endpoint
        self._margin = margin
        self._message = message
        self._cached = None
        self._renew_at = 0.0
        self._resolutions = SingleFlight()
        self.fetched = 0

    def _thd_resolve(self, renew):
        options = self._options
        session, auth = options.session, options.auth
        if renew and hasattr(auth, "invalidate"):
            # keystoneauth would hand back its cached token until 30 s before expiry.
            auth.invalidate()
        headers = session.get_auth_headers(auth=auth)
        url = None
        if self._endpoint:
            url = options.endpoint_override or session.get_endpoint(
                auth=auth,
                service_type=options.service_type,
                interface=list(options.interface),
                region_name=options.region_name,
            )
        # Token plugins say when their token expires; others are asked again hourly (see _resolve).
        get_access = getattr(auth, "get_access", None)
        access = get_access(session) if get_access is not None else None
        expires = access.expires.timestamp() if access is not None and access.expires else None
        return Resolved(dict(headers or {}), url, expires)

    async def resolve(self):
        """The cached :class:`Resolved`, asked again when the token is close to its expiry."""
        if self._cached is not None and self._clock.seconds() < self._renew_at:
            return self._cached
        return await self._resolutions.call(None, self._resolve)

    async def _resolve(self):
        try:
            resolved = await self._pool.run(self._thd_resolve, self._cached is not None)
        except Exception as e:
            if not isinstance(e, self._keystone_errors):
                # Not keystoneauth's own error (a plugin bug, unusable options): logged in full.
                self.log.failure("keystoneauth failed for {service}", service=self._service)
            # Refused credentials, an unreachable Keystone, no such endpoint
            # in the catalog: said plainly (a 503 for the API).
            self.log.error(
                "Cannot authenticate to {service} through Keystone: {error}", service=self._service, error=e
            )
            if isinstance(e, self._unreachable_errors):
                e = "Keystone is unreachable: {}; try again later".format(e)
            raise self._error(self._message.format(service=self._service, error=e)) from None
        now = self._clock.seconds()
        if resolved.expires is None:
            resolved = dataclasses.replace(resolved, expires=now + UNTIMED_LIFETIME)
        self._renew_at = max(now, resolved.expires - min(self._margin, (resolved.expires - now) / 2))
        self._cached = resolved
        self.fetched += 1
        self.log.info(
            "Obtained a Keystone service token for {service}, valid until {expires}",
            service=self._service,
            expires=datetime.datetime.fromtimestamp(resolved.expires, datetime.timezone.utc).isoformat(),
        )
        return resolved

    def invalidate(self):
        """Forget the token: it was refused (revoked before its expiry)."""
        self._cached = None
        self._options.auth.invalidate()


class ServiceEndpoint:
    """``await endpoint()`` is ``(base URL, headers)`` of Ironic or Swift, through Keystone."""

    log = Logger()

    def __init__(self, options, clock, pool, service="Ironic", error=errors.IronicError):
        self._session = KeystoneSession(options, clock, pool, service, error)
        self._service = service
        self._last_url = None
        self._base = None

    def invalidate(self):
        self._session.invalidate()

    async def __call__(self):
        resolved = await self._session.resolve()
        if resolved.url != self._last_url:
            base = DecodedURL.from_text(resolved.url.rstrip("/"))
            if base.path and base.path[-1] == "v1":
                base = base.replace(path=base.path[:-1])
            self._base, self._last_url = base, resolved.url
            self.log.info("{service} endpoint resolved to {url}", service=self._service, url=resolved.url)
        return self._base, resolved.headers


def endpoint_for(auth_options, clock, pool, service="Ironic", error=errors.IronicError):
    """An ``async`` callable returning ``(base URL, headers)`` for Ironic (or ``service``)."""
    if auth_options.auth is None:
        from inspectord.ironic.client import static_endpoint

        return static_endpoint(auth_options.endpoint_override, auth_options.headers)
    return ServiceEndpoint(auth_options, clock, pool, service=service, error=error)


class ServiceToken:
    """inspectord's own token (``[keystone_authtoken]``), renewed before it expires.

    ``await get()`` is the token; ``invalidate(token)`` after Keystone
    refused it.  Errors are ``error`` (the API's
    :class:`inspectord.api.auth.AuthUnavailable`, a 503).
    """

    def __init__(self, auth, session, clock, pool, error, margin=REFRESH_MARGIN):
        options = _PluginOnly(auth, session)
        self._session = KeystoneSession(
            options, clock, pool, "token validation", error, endpoint=False, margin=margin,
            message="inspectord cannot authenticate to Keystone ({error}); check [keystone_authtoken]",
        )
        self._error = error

    @property
    def fetched(self):
        return self._session.fetched

    async def get(self):
        resolved = await self._session.resolve()
        if not resolved.token:
            raise self._error("Keystone gave inspectord's service user no token; check [keystone_authtoken]")
        return resolved.token

    def invalidate(self, token=None):
        """Keystone refused ``token`` (None: whatever the current one is): fetch another next time."""
        cached = self._session._cached
        if cached is not None and (token is None or cached.token == token):
            self._session.invalidate()


@dataclasses.dataclass(frozen=True)
class _PluginOnly:
    auth: object
    session: object
