"""use_ssl, [ssl] and listen_unix_socket: honoured, or refused naming the option."""

import os

from twisted.internet import endpoints, ssl
from twisted.internet.testing import MemoryReactor
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase
from OpenSSL import SSL

from devenv import tls
from inspectord import config, errors, listening

BASE = """\
[DEFAULT]
auth_strategy = noauth
listen_address = 127.0.0.1
listen_port = 5443
{default}
[ironic]
auth_type = none
endpoint_override = http://127.0.0.1:6385

[ssl]
{ssl}
"""


def make_endpoint(conf, reactor, site):
    return listening.make_endpoint(conf.default, conf.ssl, reactor, site)


def describe(conf):
    return listening.describe(conf.default)


def warnings(conf):
    return listening.warnings(conf.default, conf.ssl)


class ListeningTestCase(SynchronousTestCase):
    def setUp(self):
        self.pki = tls.make_pki(self.mktemp())

    def load(self, default="", ssl_section=""):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(BASE.format(default=default, ssl=ssl_section))
        conf = config.load(path)
        listening.check(conf.default, conf.ssl)
        return conf

    def tls_config(self, extra=""):
        return self.load(
            "use_ssl = true",
            "cert_file = {}\nkey_file = {}\n{}".format(self.pki.server_cert, self.pki.server_key, extra),
        )

    def refused(self, default="", ssl_section="", build=False):
        with self.assertRaises(errors.ConfigError) as caught:
            conf = self.load(default, ssl_section)
            if build:
                make_endpoint(conf, MemoryReactor(), object())
        return str(caught.exception)


class EndpointTests(ListeningTestCase):
    def test_plain_tcp(self):
        endpoint, factory = make_endpoint(self.load(), MemoryReactor(), "site")
        self.assertIsInstance(endpoint, endpoints.TCP4ServerEndpoint)
        self.assertEqual((endpoint._port, endpoint._interface), (5443, "127.0.0.1"))
        self.assertEqual(factory, "site")

    def test_tls(self):
        endpoint, factory = make_endpoint(self.tls_config(), MemoryReactor(), "site")
        self.assertIsInstance(endpoint, endpoints.SSL4ServerEndpoint)
        self.assertEqual((endpoint._port, endpoint._interface), (5443, "127.0.0.1"))
        context = endpoint._sslContextFactory.getContext()
        self.assertEqual(context.get_verify_mode(), SSL.VERIFY_NONE)

    def test_client_certificates_required_with_ca_file(self):
        conf = self.tls_config("ca_file = {}".format(self.pki.ca))
        endpoint, _ = make_endpoint(conf, MemoryReactor(), "site")
        options = endpoint._sslContextFactory
        mode = options.getContext().get_verify_mode()
        self.assertEqual(mode & SSL.VERIFY_PEER, SSL.VERIFY_PEER)
        self.assertEqual(mode & SSL.VERIFY_FAIL_IF_NO_PEER_CERT, SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
        with open(self.pki.ca, "rb") as f:
            ca = ssl.Certificate.loadPEM(f.read())
        self.assertEqual([c.digest("sha256") for c in options.caCerts], [ca.original.digest("sha256")])

    def test_tls_version_1_2_only(self):
        endpoint, _ = make_endpoint(self.tls_config("version = TLSv1_2"), MemoryReactor(), "site")
        flags = endpoint._sslContextFactory._options
        self.assertTrue(flags & SSL.OP_NO_TLSv1_3)
        self.assertFalse(flags & SSL.OP_NO_TLSv1_2)
        self.assertTrue(flags & SSL.OP_NO_TLSv1_1)
        default, _ = make_endpoint(self.tls_config(), MemoryReactor(), "site")
        self.assertFalse(default._sslContextFactory._options & SSL.OP_NO_TLSv1_3)

    def test_ciphers(self):
        endpoint, _ = make_endpoint(self.tls_config("ciphers = ECDHE+AESGCM"), MemoryReactor(), "site")
        self.assertIsNotNone(endpoint._sslContextFactory.getContext())

    def test_unix_socket_with_mode_and_no_tcp(self):
        path = os.path.join(self.mktemp(), "inspector.sock")
        conf = self.load("listen_unix_socket = {}\nlisten_unix_socket_mode = 0660".format(path))
        reactor = MemoryReactor()
        endpoint, factory = make_endpoint(conf, reactor, "site")
        self.assertIsInstance(endpoint, listening.UnixSocketEndpoint)
        os.makedirs(os.path.dirname(path))
        endpoint.listen(factory)
        self.assertEqual(reactor.tcpServers, [])
        self.assertEqual(reactor.sslServers, [])
        [(address, served, _, mode, _)] = reactor.unixServers
        self.assertEqual((address, served, mode), (path, "site", 0o660))
        self.assertEqual(describe(conf), "http+unix:" + path)

    def test_unix_socket_without_mode_keeps_the_umask_mode(self):
        path = os.path.join(self.mktemp(), "inspector.sock")
        old = os.umask(0o027)
        self.addCleanup(os.umask, old)
        endpoint, _ = make_endpoint(self.load("listen_unix_socket = " + path), MemoryReactor(), "site")
        self.assertEqual(endpoint.mode, 0o750)

    def test_unix_socket_does_not_remove_a_regular_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("not a socket")
        endpoint, _ = make_endpoint(self.load("listen_unix_socket = " + path), MemoryReactor(), "site")
        endpoint.listen("site")
        self.assertTrue(os.path.isfile(path))

    def test_tls_on_unix_socket(self):
        path = os.path.join(self.mktemp(), "inspector.sock")
        conf = self.load(
            "use_ssl = true\nlisten_unix_socket = " + path,
            "cert_file = {}\nkey_file = {}".format(self.pki.server_cert, self.pki.server_key),
        )
        _, factory = make_endpoint(conf, MemoryReactor(), "site")
        self.assertIsInstance(factory, TLSMemoryBIOFactory)
        self.assertEqual(describe(conf), "https+unix:" + path)


class RefusalTests(ListeningTestCase):
    def test_use_ssl_without_files(self):
        message = self.refused("use_ssl = true")
        self.assertIn("[ssl]cert_file and [ssl]key_file", message)
        message = self.refused("use_ssl = true", "cert_file = {}".format(self.pki.server_cert))
        self.assertIn("[ssl]key_file", message)
        self.assertNotIn("cert_file and", message)

    def test_insecure_or_unknown_version(self):
        for version in ("TLSv1", "TLSv1_1", "SSLv3"):
            message = self.refused("use_ssl = true", "cert_file = a\nkey_file = b\nversion = " + version)
            self.assertIn("[ssl]version = " + version, message)
            self.assertIn("refused", message)
        self.assertIn("not a TLS version", self.refused("use_ssl = true", "cert_file = a\nkey_file = b\nversion = TLSv9"))

    def test_missing_certificate_file(self):
        missing = os.path.join(self.mktemp(), "cert.pem")
        message = self.refused("use_ssl = true", "cert_file = {}\nkey_file = {}".format(missing, self.pki.server_key), build=True)
        self.assertIn("[ssl]cert_file " + missing, message)

    def test_missing_ca_file(self):
        missing = os.path.join(self.mktemp(), "ca.pem")
        message = self.refused(
            "use_ssl = true",
            "cert_file = {}\nkey_file = {}\nca_file = {}".format(self.pki.server_cert, self.pki.server_key, missing),
            build=True,
        )
        self.assertIn("[ssl]ca_file " + missing, message)

    def test_key_of_another_certificate(self):
        message = self.refused(
            "use_ssl = true", "cert_file = {}\nkey_file = {}".format(self.pki.server_cert, self.pki.client_key), build=True
        )
        self.assertIn("cannot be used together", message)

    def test_not_a_certificate(self):
        message = self.refused(
            "use_ssl = true", "cert_file = {}\nkey_file = {}".format(self.pki.server_key, self.pki.server_key), build=True
        )
        self.assertIn("holds no PEM certificate", message)

    def test_bad_ciphers(self):
        message = self.refused(
            "use_ssl = true",
            "cert_file = {}\nkey_file = {}\nciphers = NO-SUCH-CIPHER".format(self.pki.server_cert, self.pki.server_key),
            build=True,
        )
        self.assertIn("[ssl]ciphers = NO-SUCH-CIPHER", message)

    def test_bad_socket_mode(self):
        message = self.refused("listen_unix_socket = /run/x.sock\nlisten_unix_socket_mode = 0999")
        self.assertIn("listen_unix_socket_mode", message)


class WarningTests(ListeningTestCase):
    def test_ssl_options_without_use_ssl(self):
        conf = self.load("", "cert_file = {}\nkey_file = {}".format(self.pki.server_cert, self.pki.server_key))
        [message] = warnings(conf)
        self.assertIn("[ssl]cert_file, [ssl]key_file", message)
        self.assertIn("plain HTTP", message)
        self.assertEqual(describe(conf), "http://127.0.0.1:5443")

    def test_mode_without_socket(self):
        [message] = warnings(self.load("listen_unix_socket_mode = 0600"))
        self.assertIn("listen_unix_socket_mode", message)

    def test_nothing_to_say(self):
        self.assertEqual(warnings(self.tls_config()), [])
        self.assertEqual(describe(self.tls_config()), "https://127.0.0.1:5443")
