"""How inspectord verifies the HTTPS services it calls (Ironic, Swift, Keystone).

keystoneauth's session options, as ironic-inspector read them from
``[ironic]`` and ``[swift]`` (and keystonemiddleware's from
``[keystone_authtoken]``): ``cafile`` (trust these CAs instead of the
system's), ``insecure`` (no verification), ``certfile``/``keyfile`` (a client
certificate).  The files are read once, at start; a missing or unusable one
stops the start naming the option.
"""

from twisted.internet import ssl
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from inspectord import errors

_END = b"-----END CERTIFICATE-----"


def _read(path, option):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise errors.ConfigError("{} {}: {}".format(option, path, e.strerror)) from None


def _trust_root(cafile, option):
    pem = _read(cafile, option)
    try:
        certificates = [ssl.Certificate.loadPEM(block + _END) for block in pem.split(_END) if block.strip()]
        if not certificates:
            raise ValueError("no certificate in the file")
        return ssl.trustRootFromCertificates(certificates)
    except Exception as e:
        raise errors.ConfigError("{} {}: {}".format(option, cafile, e)) from None


@implementer(IPolicyForHTTPS)
class _NoVerification:
    def __init__(self, client_certificate):
        self._client_certificate = client_certificate

    def creatorForNetloc(self, hostname, port):
        if self._client_certificate is None:
            return ssl.CertificateOptions(verify=False)
        return ssl.CertificateOptions(
            verify=False,
            privateKey=self._client_certificate.privateKey.original,
            certificate=self._client_certificate.original,
        )


@implementer(IPolicyForHTTPS)
class _Verifying:
    def __init__(self, trust_root, client_certificate):
        self._trust_root = trust_root
        self._client_certificate = client_certificate

    def creatorForNetloc(self, hostname, port):
        return ssl.optionsForClientTLS(
            hostname.decode("ascii"), trustRoot=self._trust_root, clientCertificate=self._client_certificate
        )


def https_policy(section, cafile=None, insecure=False, certfile=None, keyfile=None):
    """The ``IPolicyForHTTPS`` for a client configured by ``[section]``'s options.

    :raises errors.ConfigError: a file that cannot be read or used, named
        with its option.
    """
    client_certificate = None
    if certfile:
        option = "[{}]certfile".format(section)
        pem = _read(certfile, option)
        key = _read(keyfile, "[{}]keyfile".format(section)) if keyfile else pem
        try:
            client_certificate = ssl.PrivateCertificate.loadPEM(pem + b"\n" + key)
        except Exception as e:
            raise errors.ConfigError("{} {} with its key: {}".format(option, certfile, e)) from None
    if insecure:
        return _NoVerification(client_certificate)
    trust_root = _trust_root(cafile, "[{}]cafile".format(section)) if cafile else ssl.platformTrust()
    if client_certificate is None and not cafile:
        return BrowserLikePolicyForHTTPS()
    return _Verifying(trust_root, client_certificate)
