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
``none``/``http_basic``, or ``auth_strategy=keystone``).  To read and
classify the files without them, the options keystoneauth registers on
``[ironic]``/``[swift]`` are declared here (:data:`SESSION_OPTS`,
:data:`ADAPTER_OPTS`, :data:`PLUGIN_OPTIONS`); a unit test checks the
declaration against the installed keystoneauth.
"""

import base64
import dataclasses
import datetime

from hyperlink import DecodedURL
from oslo_config import cfg
from twisted.logger import Logger

from inspectord import errors
from inspectord.singleflight import SingleFlight

#: Ask keystoneauth again this long before the token expires (or half-way
#: through a token that lives shorter than twice this).
REFRESH_MARGIN = 120

#: Seconds after which headers of a plugin that gives no expiry are asked for again.
UNTIMED_LIFETIME = 3600

#: ``auth_type`` values that need no Keystone (nor keystoneauth).
WITHOUT_KEYSTONE = ("none", "http_basic")

# -- options ------------------------------------------------------------------
# keystoneauth's conf options for a section (register_auth_conf_options,
# register_session_conf_options, register_adapter_conf_options), declared
# statically so that reading them does not import keystoneauth.

AUTH_COMMON_OPTS = [
    cfg.Opt("auth_type", type=str, deprecated_opts=[cfg.DeprecatedOpt("auth_plugin")],
            help="Authentication type to load"),
    cfg.Opt("auth_section", type=str, help="Config Section from which to load plugin specific options"),
]

SESSION_OPTS = [
    cfg.StrOpt("cafile", help="PEM encoded Certificate Authority to use when verifying HTTPs connections."),
    cfg.StrOpt("certfile", help="PEM encoded client certificate cert file"),
    cfg.StrOpt("keyfile", help="PEM encoded client certificate key file"),
    cfg.BoolOpt("insecure", default=False, help="Verify HTTPS connections."),
    cfg.FloatOpt("timeout", help="Timeout value for http requests"),
    cfg.BoolOpt("collect_timing", default=False, help="Collect per-API call timing information."),
    cfg.BoolOpt("split_loggers", default=False, help="Log requests to multiple loggers."),
    cfg.StrOpt("tls_ciphers", help="An OpenSSL cipher string for TLS connections."),
    cfg.StrOpt("tls_min_version", choices=[None, "1.2", "1.3"], help="The minimum TLS version to require."),
]

ADAPTER_OPTS = [
    cfg.StrOpt("service_type", help="The default service_type for endpoint URL discovery."),
    cfg.StrOpt("service_name", help="The default service_name for endpoint URL discovery."),
    cfg.ListOpt("valid_interfaces", help="List of interfaces, in order of preference, for endpoint URL."),
    cfg.StrOpt("region_name", help="The default region_name for endpoint URL discovery."),
    cfg.StrOpt("endpoint_override", help="Always use this endpoint URL for requests for this client."),
    cfg.StrOpt("version", help="Minimum Major API version within a given Major API version."),
    cfg.StrOpt("min_version", help="The minimum major version of a given API."),
    cfg.StrOpt("max_version", help="The maximum major version of a given API."),
    cfg.IntOpt("connect_retries", help="The maximum number of retries for connection errors."),
    cfg.FloatOpt("connect_retry_delay", help="Delay (in seconds) between two retries for connection errors."),
    cfg.IntOpt("status_code_retries", help="The maximum number of retries for retriable HTTP status codes."),
    cfg.FloatOpt("status_code_retry_delay", help="Delay (in seconds) between two status code retries."),
    cfg.ListOpt("retriable_status_codes", help="List of retriable HTTP status codes."),
    cfg.StrOpt(
        "interface",
        deprecated_for_removal=True,
        deprecated_reason="Using valid-interfaces allows for the specification of multiple interfaces.",
        help="The default interface for endpoint URL discovery.",
    ),
]

#: Option names (old names included) of the keystoneauth plugins whose
#: options may appear in ``[ironic]``/``[swift]`` whatever ``auth_type`` says.
PLUGIN_OPTIONS = {
    "password": (
        "auth_url system_scope domain_id domain_name project_id tenant_id project_name tenant_name "
        "project_domain_id project_domain_name trust_id default_domain_id default_domain_name user_id "
        "username user_name user_domain_id user_domain_name password"
    ).split(),
    "v3applicationcredential": (
        "auth_url system_scope domain_id domain_name project_id project_name project_domain_id "
        "project_domain_name trust_id user_id username user_name user_domain_id user_domain_name "
        "application_credential_secret application_credential_id application_credential_name"
    ).split(),
    "token": (
        "auth_url system_scope domain_id domain_name project_id tenant_id project_name tenant_name "
        "project_domain_id project_domain_name trust_id default_domain_id default_domain_name token"
    ).split(),
    "none": ["endpoint"],
    "http_basic": ["username", "user_name", "password", "endpoint"],
}

# keystoneauth's http_basic plugin options, read without keystoneauth.
_HTTP_BASIC_OPTS = [
    cfg.StrOpt("username", deprecated_opts=[cfg.DeprecatedOpt("user-name"), cfg.DeprecatedOpt("user_name")],
               help="Username"),
    cfg.StrOpt("password", secret=True, help="User's password"),
    cfg.StrOpt("endpoint", help="The endpoint that will always be used"),
]


def register_options(conf, group):
    """Register keystoneauth's auth, session and adapter options on ``group`` (without keystoneauth)."""
    conf.register_opts(AUTH_COMMON_OPTS + SESSION_OPTS + ADAPTER_OPTS, group=group)


def known_options(conf, group):
    """Option names of ``[ironic]``/``[swift]``, with the old names keystoneauth still accepts (tenant_name...)."""
    names = set(conf[group]) | {"auth_plugin"}
    for plugin_names in PLUGIN_OPTIONS.values():
        names.update(plugin_names)
    return names


def uses_keystone(auth_type):
    return (auth_type or "none") not in WITHOUT_KEYSTONE


@dataclasses.dataclass(frozen=True)
class IronicAuthOptions:
    """What a client of Ironic (or Swift) needs to authenticate: a keystoneauth plugin, basic or none."""

    auth_type: str
    endpoint_override: str
    service_type: str
    interface: object
    region_name: str
    # Loaded keystoneauth plugin and session; None without Keystone.
    auth: object = dataclasses.field(repr=False, compare=False, default=None)
    session: object = dataclasses.field(repr=False, compare=False, default=None)
    # keystoneauth's session timeout option (seconds), if set.
    timeout: float = None
    # keystoneauth's TLS session options: how the service's HTTPS is verified
    # (inspectord.tls_client.https_policy), for Keystone and the service alike.
    cafile: str = None
    insecure: bool = False
    certfile: str = None
    keyfile: str = None
    # auth_type=http_basic: the Authorization header sent with every request.
    headers: dict = dataclasses.field(repr=False, compare=False, default=None)


def load_service_auth(conf, name="ironic", service_type="baremetal"):
    """:class:`IronicAuthOptions` of ``[name]``; keystoneauth is imported only if it uses Keystone."""
    group = conf[name]
    auth_type = group.auth_type or "none"
    auth = session = headers = None
    endpoint = group.endpoint_override
    try:
        if auth_type == "http_basic":
            conf.register_opts(_HTTP_BASIC_OPTS, group=name)
            group = conf[name]
            if not group.username:
                raise errors.ConfigError("[{0}]username is required with [{0}]auth_type=http_basic".format(name))
            endpoint = endpoint or group.endpoint
            credentials = "{}:{}".format(group.username, group.password or "").encode("utf-8")
            headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}
        elif auth_type != "none":
            from keystoneauth1 import loading as ks_loading

            auth = ks_loading.load_auth_from_conf_options(conf, name)
            session = ks_loading.load_session_from_conf_options(conf, name, auth=auth)
    except errors.ConfigError:
        raise
    except Exception as e:  # keystoneauth raises many types; all mean bad config
        raise errors.ConfigError("invalid [{}] authentication options: {}".format(name, e)) from None
    if auth is None and not endpoint:
        raise errors.ConfigError(
            "[{0}]endpoint_override is required with [{0}]auth_type={1}".format(name, auth_type)
        )
    return IronicAuthOptions(
        auth_type=auth_type,
        endpoint_override=endpoint,
        service_type=group.service_type or service_type,
        interface=tuple(group.valid_interfaces or ["internal", "public"]),
        region_name=group.region_name,
        auth=auth,
        session=session,
        timeout=group.timeout,
        cafile=group.cafile or None,
        insecure=bool(group.insecure),
        certfile=group.certfile or None,
        keyfile=group.keyfile or None,
        headers=headers,
    )


def validate_keystone_authtoken(ks):
    """What auth_strategy=keystone needs to get a service token; the message names the option."""

    def missing(option, why):
        return errors.ConfigError(
            "[DEFAULT]auth_strategy=keystone needs [keystone_authtoken]{} ({})".format(option, why)
        )

    if not ks.auth_url:
        raise missing("auth_url", "the Keystone endpoint tokens are validated with")
    if ks.auth_type == "v3applicationcredential":
        if not ks.application_credential_secret:
            raise missing("application_credential_secret", "auth_type=v3applicationcredential")
        if not ks.application_credential_id and not (ks.application_credential_name and (ks.user_id or ks.username)):
            raise missing("application_credential_id", "or application_credential_name with username")
        return
    if not (ks.username or ks.user_id):
        raise missing("username", "the service user inspectord validates tokens as")
    if not ks.password:
        raise missing("password", "the service user's password")
    if ks.username and not ks.user_id and not (ks.user_domain_name or ks.user_domain_id):
        raise missing("user_domain_name", "the domain of username")
    if ks.project_name and not ks.project_id and not (ks.project_domain_name or ks.project_domain_id):
        raise missing("project_domain_name", "the domain of project_name")


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
