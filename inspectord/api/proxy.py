"""The URL a client used, when a reverse proxy stands in front of inspectord.

With ``[oslo_middleware]enable_proxy_headers_parsing`` (off by default, as
in ironic-inspector), the links inspectord builds use the scheme, host and
path prefix the proxy reports, as oslo.middleware's ``HTTPProxyToWSGI``
applies them: the first element of an RFC 7239 ``Forwarded`` header
(``proto``, ``host``) when there is one, else ``X-Forwarded-Proto`` and
``X-Forwarded-Host``; and ``X-Forwarded-Prefix`` in both cases.  Unlike
oslo.middleware, quoted values (``host="[2001:db8::1]:8443"``) are
unquoted, and a scheme other than http/https or a host with characters no
host has is ignored, so a header cannot turn a link into something else.
"""

import re

_HOST = re.compile(r"^[A-Za-z0-9._~%:\[\]-]+$")
_PREFIX_UNSAFE = re.compile(r"[\s\"'<>\\?#]")


def _unquote(value):
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def parse_forwarded(value):
    """An RFC 7239 ``Forwarded`` header: one dict per proxy, parameter names in lower case."""
    proxies = []
    for element in value.split(","):
        entry = {}
        for pair in element.split(";"):
            key, _, item = pair.partition("=")
            entry[key.strip().lower()] = _unquote(item.strip())
        proxies.append(entry)
    return proxies


def external(get_header, scheme, host):
    """``(scheme, host, prefix)`` of the URL the client used.

    :param get_header: the request's header by lower-case name (a str or None).
    :param scheme: ``http`` or ``https``, as inspectord was reached.
    :param host: the ``Host`` the request carried.
    :returns: the proxy's values where it sent valid ones; ``prefix`` is
        ``""`` or a path starting with ``/``, without a trailing ``/``.
    """
    forwarded = get_header("forwarded")
    if forwarded:
        first = parse_forwarded(forwarded)[0]
        proto, forwarded_host = first.get("proto"), first.get("host")
    else:
        proto, forwarded_host = get_header("x-forwarded-proto"), get_header("x-forwarded-host")
    if proto and proto.strip().lower() in ("http", "https"):
        scheme = proto.strip().lower()
    if forwarded_host and _HOST.match(forwarded_host.strip()):
        host = forwarded_host.strip()
    prefix = (get_header("x-forwarded-prefix") or "").strip()
    if _PREFIX_UNSAFE.search(prefix):
        prefix = ""
    prefix = prefix.rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    return scheme, host, prefix
