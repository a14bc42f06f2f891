"""The URL a client used, when a reverse proxy stands in front of inspectord.

Unless ``[oslo_middleware]enable_proxy_headers_parsing`` is false, the
links inspectord builds use the scheme, host, port and path prefix the
proxy reports: the first element of an RFC 7239 ``Forwarded`` header
(``proto``, ``host``) when there is one, as oslo.middleware's
``HTTPProxyToWSGI`` reads it; else the last value of each of
``X-Forwarded-Proto``, ``-Host`` and ``-Port``, as werkzeug's ``ProxyFix``
in ironic-inspector 12.5.0 (which applied them always); and the last
``X-Forwarded-Prefix`` in both cases.  Quoted values
(``host="[2001:db8::1]:8443"``) are unquoted, and a scheme other than
http/https, a host with characters no host has or a port that is not a
number is ignored, so a header cannot turn a link into something else.
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


def _last(value):
    """The last element of a comma-separated header (the proxy nearest to inspectord)."""
    return value.rsplit(",", 1)[-1].strip() if value else value


def _with_port(host, port):
    """``host`` (``name``, ``name:port``, ``[v6]``, ``[v6]:port``) with its port replaced."""
    if host.startswith("["):
        name = host[: host.index("]") + 1] if "]" in host else host
    elif host.count(":") == 1:
        name = host.split(":", 1)[0]
    else:
        name = host
    return "{}:{}".format(name, port)


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
        proto, forwarded_host = _last(get_header("x-forwarded-proto")), _last(get_header("x-forwarded-host"))
        port = _last(get_header("x-forwarded-port"))
        if port and port.isdigit() and 0 < int(port) < 65536:
            forwarded_host = _with_port(forwarded_host or host, int(port))
    if proto and proto.strip().lower() in ("http", "https"):
        scheme = proto.strip().lower()
    if forwarded_host and _HOST.match(forwarded_host.strip()):
        host = forwarded_host.strip()
    prefix = _last(get_header("x-forwarded-prefix") or "")
    if _PREFIX_UNSAFE.search(prefix):
        prefix = ""
    prefix = prefix.rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    return scheme, host, prefix
