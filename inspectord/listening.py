"""Where and how the API listens: TCP, a unix socket, and TLS, as ironic-inspector.

ironic-inspector served its API through oslo.service: ``listen_address`` and
``listen_port``, or ``listen_unix_socket`` (with ``listen_unix_socket_mode``)
instead; ``use_ssl = true`` wrapped either in TLS with ``[ssl]cert_file`` and
``key_file``, and with ``[ssl]ca_file`` set every client had to present a
certificate signed by it.  inspectord serves the same with Twisted's TLS.

A listening or security option that cannot be honoured stops the start with
a :class:`~inspectord.errors.ConfigError` naming it: :func:`check` runs on
the values alone (when the service is wired), :func:`make_endpoint` reads the
certificate files (once, before the reactor runs).  :func:`warnings` names
the options that change nothing where ironic-inspector ignored them too.
"""

import os
import re
import stat

from OpenSSL import SSL, crypto
from twisted.internet import endpoints, ssl
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from inspectord import errors

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)

# [ssl]version (lower-cased) -> (lowest, highest) TLS version allowed, None: no limit
# (the lowest is always at least TLS 1.2).
_SSL_VERSIONS = {
    "sslv23": (None, None),
    "tls": (None, None),
    "tlsv1_2": (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
}
_INSECURE_SSL_VERSIONS = ("tlsv1", "tlsv1_1", "sslv2", "sslv3")


def check(default, tls):
    """Refuse listening options of ``[DEFAULT]`` and ``[ssl]`` that cannot be honoured; no file is read."""
    if default.listen_unix_socket is not None and not default.listen_unix_socket.strip():
        raise errors.ConfigError("[DEFAULT]listen_unix_socket is empty; remove it to listen on TCP")
    if not default.use_ssl:
        return
    missing = [name for name in ("cert_file", "key_file") if not getattr(tls, name)]
    if missing:
        raise errors.ConfigError(
            "[DEFAULT]use_ssl = true needs {} (PEM files); set them or set use_ssl = false".format(
                " and ".join("[ssl]" + name for name in missing)
            )
        )
    if tls.version:
        version = tls.version.lower()
        if version in _INSECURE_SSL_VERSIONS:
            raise errors.ConfigError(
                "[ssl]version = {} is refused: that protocol is broken and no longer offered; "
                "remove the option (TLS 1.2 and 1.3) or set TLSv1_2".format(tls.version)
            )
        if version not in _SSL_VERSIONS:
            raise errors.ConfigError(
                "[ssl]version = {} is not a TLS version (use TLSv1_2, SSLv23 or leave it unset)".format(tls.version)
            )
    if tls.ciphers is not None and not tls.ciphers.strip():
        raise errors.ConfigError("[ssl]ciphers is empty; remove it to use OpenSSL's defaults")


def warnings(default, tls):
    """Messages about ``[DEFAULT]`` and ``[ssl]`` listening options that have no effect, as in ironic-inspector."""
    messages = []
    if not default.use_ssl:
        ignored = ["[ssl]" + name for name in ("cert_file", "key_file", "ca_file", "version", "ciphers") if getattr(tls, name)]
        if ignored:
            messages.append(
                "{} set but [DEFAULT]use_ssl is false: serving plain HTTP, as ironic-inspector did; "
                "set use_ssl = true to serve HTTPS".format(", ".join(ignored))
            )
    if default.listen_unix_socket_mode is not None and not default.listen_unix_socket:
        messages.append("[DEFAULT]listen_unix_socket_mode has no effect without listen_unix_socket")
    return messages


def describe(default):
    """Where the API listens (``[DEFAULT]``), for the start-up log: ``https://[::]:5050``, ``unix:/run/x.sock``."""
    scheme = "https" if default.use_ssl else "http"
    if default.listen_unix_socket:
        return "{}+unix:{}".format(scheme, default.listen_unix_socket)
    address = default.listen_address
    if ":" in address:
        address = "[{}]".format(address)
    return "{}://{}:{}".format(scheme, address, default.listen_port)


def _read(option, path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise errors.ConfigError("[ssl]{} {}: {}".format(option, path, e.strerror)) from None


def _certificates(option, path):
    data = _read(option, path)
    blocks = _PEM_CERTIFICATE.findall(data)
    if not blocks:
        raise errors.ConfigError("[ssl]{} {} holds no PEM certificate".format(option, path))
    try:
        return [ssl.Certificate.loadPEM(block) for block in blocks]
    except Exception as e:  # pyOpenSSL raises its own Error with a list of OpenSSL reasons
        raise errors.ConfigError("[ssl]{} {}: not a valid certificate ({})".format(option, path, e)) from None


def tls_options(tls):
    """A Twisted ``CertificateOptions`` from the ``[ssl]`` records; files are read here.

    :raises errors.ConfigError: naming the file or option at fault.
    """
    chain = _certificates("cert_file", tls.cert_file)
    key_pem = _read("key_file", tls.key_file)
    try:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, key_pem)
    except Exception as e:
        raise errors.ConfigError(
            "[ssl]key_file {}: not an unencrypted PEM private key ({})".format(tls.key_file, e)
        ) from None
    kwargs = {
        "privateKey": key,
        "certificate": chain[0].original,
        "extraCertChain": [c.original for c in chain[1:]],
        # Python's ssl module, which served ironic-inspector, refuses TLS < 1.2 too.
        "raiseMinimumTo": ssl.TLSVersion.TLSv1_2,
    }
    if tls.ca_file:
        kwargs.update(
            verify=True,
            requireCertificate=True,
            caCerts=[c.original for c in _certificates("ca_file", tls.ca_file)],
        )
    if tls.version:
        highest = _SSL_VERSIONS[tls.version.lower()][1]
        if highest is not None:
            kwargs["lowerMaximumSecurityTo"] = highest
    if tls.ciphers:
        try:
            SSL.Context(SSL.TLS_METHOD).set_cipher_list(tls.ciphers.encode())
        except (SSL.Error, UnicodeError):
            raise errors.ConfigError(
                "[ssl]ciphers = {} matches no cipher this OpenSSL offers".format(tls.ciphers)
            ) from None
        kwargs["acceptableCiphers"] = ssl.AcceptableCiphers.fromOpenSSLCipherString(tls.ciphers)
    try:
        options = ssl.CertificateOptions(**kwargs)
        options.getContext()  # loads the key into OpenSSL: a key of another certificate fails here
    except errors.ConfigError:
        raise
    except Exception as e:
        raise errors.ConfigError(
            "[ssl]cert_file {} and key_file {} cannot be used together: {}".format(tls.cert_file, tls.key_file, e)
        ) from None
    return options


@implementer(IStreamServerEndpoint)
class UnixSocketEndpoint:
    """A unix socket at ``path`` with file ``mode``, replacing a stale socket there.

    ironic-inspector removed whatever was at the path before listening; this
    removes only a socket, so a mistyped path cannot delete a regular file
    (binding there then fails and says why).
    """

    def __init__(self, reactor, path, mode):
        self.path = path
        self.mode = mode
        self._endpoint = endpoints.UNIXServerEndpoint(reactor, path, mode=mode)

    def listen(self, factory):
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        return self._endpoint.listen(factory)


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_endpoint(default, tls, reactor, site):
    """``(endpoint, factory)`` serving ``site`` as ``[DEFAULT]`` and ``[ssl]`` say.

    :raises errors.ConfigError: an option that cannot be honoured (a missing,
        unreadable or mismatched certificate or key file...).
    """
    factory = site
    options = tls_options(tls) if default.use_ssl else None
    if default.listen_unix_socket:
        mode = default.listen_unix_socket_mode
        if mode is None:  # what bind() gives: ironic-inspector did not chmod then
            mode = 0o777 & ~_umask()
        endpoint = UnixSocketEndpoint(reactor, default.listen_unix_socket, mode)
        if options is not None:
            factory = TLSMemoryBIOFactory(options, False, site)
        return endpoint, factory
    if options is not None:
        endpoint = endpoints.SSL4ServerEndpoint(reactor, default.listen_port, options, interface=default.listen_address)
    else:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, default.listen_port, interface=default.listen_address)
    return endpoint, factory
