"""Where Ironic (or Swift) is and how to authenticate to it.

``auth_type=none`` with ``endpoint_override`` needs nothing but the URL.
Keystone auth (password, application credential...) goes through
keystoneauth1, whose calls block: the token and the catalog endpoint are
resolved in a thread pool and cached until the token is close to expiry.
"""

import time

from hyperlink import DecodedURL
from twisted.logger import Logger

from inspectord import errors
from inspectord.ironic.client import static_endpoint

# Ask keystoneauth again this long before the token expires.
_REFRESH_MARGIN = 120


def endpoint_for(auth_options, clock, pool, service="Ironic", error=errors.IronicError):
    """An ``async`` callable returning ``(base URL, headers)`` for Ironic (or ``service``).

    :param pool: has ``run(f, *args) -> Deferred`` (keystoneauth blocks:
        an :class:`inspectord.threads.ThreadPoolService`).

    :param error: the :class:`inspectord.errors.InspectordError` raised
        when Keystone cannot give a token or an endpoint.
    """
    if auth_options.auth is None:
        return static_endpoint(auth_options.endpoint_override)
    return KeystoneEndpoint(auth_options, clock, pool, service=service, error=error)


class KeystoneEndpoint:
    log = Logger()

    def __init__(self, auth_options, clock, pool, service="Ironic", error=errors.IronicError):
        from keystoneauth1 import exceptions  # only with Keystone authentication

        self._keystone_errors = exceptions.ClientException
        self._service = service
        self._error = error
        self._options = auth_options
        self._clock = clock
        self._pool = pool
        self._cached = None
        self._expires = 0.0

    def _thd_resolve(self):
        session, options = self._options.session, self._options
        headers = session.get_auth_headers(auth=options.auth)
        url = options.endpoint_override or session.get_endpoint(
            auth=options.auth,
            service_type=options.service_type,
            interface=list(options.interface),
            region_name=options.region_name,
        )
        # Token plugins say when their token expires; http_basic has no token.
        get_access = getattr(options.auth, "get_access", None)
        access = get_access(session) if get_access is not None else None
        expires = access.expires.timestamp() if access is not None and access.expires else time.time() + 3600
        return url, headers, expires

    def invalidate(self):
        """Forget the token: the service refused it (revoked before its expiry)."""
        self._cached = None
        self._options.auth.invalidate()

    async def __call__(self):
        if self._cached is None or self._clock.seconds() > self._expires - _REFRESH_MARGIN:
            try:
                url, headers, expires = await self._pool.run(self._thd_resolve)
            except self._keystone_errors as e:
                # Refused credentials, an unreachable Keystone, no such endpoint
                # in the catalog: the service cannot be reached (503), said plainly.
                self.log.error(
                    "Cannot authenticate to {service} through Keystone: {error}", service=self._service, error=e
                )
                raise self._error(
                    "cannot authenticate to {} through Keystone: {}".format(self._service, e)
                ) from None
            base = DecodedURL.from_text(url.rstrip("/"))
            if base.path and base.path[-1] == "v1":
                base = base.replace(path=base.path[:-1])
            self._cached = (base, headers)
            self._expires = expires
            self.log.info("{service} endpoint resolved to {url}", service=self._service, url=url)
        return self._cached
