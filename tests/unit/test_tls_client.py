"""HTTPS verification of the services inspectord calls: the policy from the options, TLS failures told apart."""

import os
import tempfile

from OpenSSL import SSL
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import BrowserLikePolicyForHTTPS, ResponseNeverReceived

from inspectord import errors, tls_client
from inspectord.ironic.client import tls_failure


class HTTPSPolicyTests(SynchronousTestCase):
    def test_system_cas_by_default(self):
        self.assertIsInstance(tls_client.https_policy("ironic"), BrowserLikePolicyForHTTPS)

    def test_unreadable_or_empty_cafile_named(self):
        e = self.assertRaises(errors.ConfigError, tls_client.https_policy, "ironic", cafile="/nonexistent/ca.pem")
        self.assertIn("[ironic]cafile /nonexistent/ca.pem", str(e))
        fd, path = tempfile.mkstemp()
        os.close(fd)
        self.addCleanup(os.unlink, path)
        e = self.assertRaises(errors.ConfigError, tls_client.https_policy, "swift", cafile=path)
        self.assertIn("[swift]cafile", str(e))

    def test_bad_client_certificate_named(self):
        fd, path = tempfile.mkstemp()
        os.write(fd, b"not a certificate")
        os.close(fd)
        self.addCleanup(os.unlink, path)
        e = self.assertRaises(errors.ConfigError, tls_client.https_policy, "ironic", certfile=path)
        self.assertIn("[ironic]certfile", str(e))

    def test_insecure_skips_verification(self):
        policy = tls_client.https_policy("ironic", insecure=True)
        options = policy.creatorForNetloc(b"ironic.test", 443)
        self.assertFalse(options.verify)


class TLSFailureTests(SynchronousTestCase):
    def test_ssl_error_inside_response_never_received(self):
        error = SSL.Error([("SSL routines", "", "certificate verify failed")])
        self.assertEqual(tls_failure(ResponseNeverReceived([Failure(error)])), "certificate verify failed")

    def test_plain_connection_failure_is_not_tls(self):
        self.assertIsNone(tls_failure(ResponseNeverReceived([Failure(ConnectionRefusedError())])))
