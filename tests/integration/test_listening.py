"""HTTPS (with and without client certificates) and the unix socket, served by a real ``twistd inspectord``.

The test makes its own CA and certificates (``devenv.tls``).  Real TLS
handshakes from Python's ``ssl``, the unmodified ``openstack baremetal
introspection`` CLI (``OS_CACERT``, ``OS_CERT``/``OS_KEY``) and
ironic-python-agent's collector (its ``--cafile``, ``--certfile`` and
``--keyfile`` options, which ``call_inspector`` hands to ``requests``).
"""

import os
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile

from devenv import clients, ipa, tls
from devenv.daemon import InspectordProcess, client_tls_context, free_port
from tests.integration import base
from tests.integration.base import IntegrationCase, ipa_payload, new_macs


def handshake(port, context):
    """TLS handshake with 127.0.0.1:port; the negotiated version, or raise."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            conn.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            reply = conn.recv(100)
            if not reply:
                raise ssl.SSLError("connection closed without an answer")
            return conn.version(), reply


class TLSCase(IntegrationCase):
    client_certificates = False

    def setUp(self):
        base.ironic()
        self.pki = tls.make_pki(tempfile.mkdtemp(dir=base._workdir))
        self.extra_config = "\n[DEFAULT]\nuse_ssl = true\n\n[ssl]\ncert_file = {}\nkey_file = {}\n".format(
            self.pki.server_cert, self.pki.server_key
        )
        if self.client_certificates:
            self.extra_config += "ca_file = {}\n".format(self.pki.ca)
            context = client_tls_context(self.pki.ca, self.pki.client_cert, self.pki.client_key)
        else:
            context = client_tls_context(self.pki.ca)
        self.inspectord_options = {"tls": context}
        super().setUp()

    def cli(self, *args, **env):
        return clients.openstack(["baremetal", "introspection", *args], self.inspectord.url,
                                 env=dict(env, NO_PROXY="127.0.0.1,localhost"))

    def introspect_with_ipa(self, *tls_args):
        uuid, name = self.enroll(ipa.expected_macs())
        self.addCleanup(self.client.node.delete, uuid)
        self.start_and_wait(name, uuid)
        result = ipa.run_collector(self.inspectord.url + "/v1/continue", ("--cafile", str(self.pki.ca), *tls_args))
        self.assertEqual(result.returncode, 0, result.stdout[-3000:])
        status = self.inspectord.wait_finished(uuid)
        self.assertIsNone(status["error"], self.inspectord.log_tail())


class HTTPSTests(TLSCase):
    def test_https_handshake_and_links(self):
        version, reply = handshake(self.inspectord.port, client_tls_context(self.pki.ca))
        self.assertIn(version, ("TLSv1.2", "TLSv1.3"))
        self.assertTrue(reply.startswith(b"HTTP/1.0 200"), reply)
        status, _, body = self.inspectord.call("GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(body["versions"][0]["links"][0]["href"].startswith("https://127.0.0.1:"), body)

    def test_untrusted_certificate_and_plain_http_fail(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            handshake(self.inspectord.port, client_tls_context(self.pki.other_ca))
        with socket.create_connection(("127.0.0.1", self.inspectord.port), timeout=10) as raw:
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
            self.assertNotIn(b"HTTP/1.", raw.recv(100))  # a TLS alert or nothing, never plain HTTP

    def test_tls_1_1_refused(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(str(self.pki.ca))
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("ALL:@SECLEVEL=0")
        self.assertRaises(ssl.SSLError, handshake, self.inspectord.port, context)

    def test_openstack_cli_with_cacert(self):
        macs = new_macs(1)
        uuid, _ = self.enroll(macs)
        result = self.cli("start", uuid, OS_CACERT=str(self.pki.ca))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.wait_state(uuid, ["waiting"])
        status, _, body = self.inspectord.call("POST", "/v1/continue", body=ipa_payload(macs))
        self.assertEqual(status, 200, body)
        self.inspectord.wait_finished(uuid)
        result = self.cli("status", uuid, "-f", "value", "-c", "state", OS_CACERT=str(self.pki.ca))
        self.assertEqual((result.returncode, result.stdout.strip()), (0, "finished"), result.stderr)
        # without the CA the client refuses the certificate
        result = self.cli("list")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("CERTIFICATE_VERIFY_FAILED", result.stdout + result.stderr)

    def test_ipa_collector_with_cafile(self):
        if os.geteuid() != 0:
            self.skipTest("ironic-python-agent's collector inspects the machine as root")
        self.introspect_with_ipa()


class ClientCertificateTests(TLSCase):
    client_certificates = True

    def test_client_certificate_accepted_missing_or_foreign_refused(self):
        version, reply = handshake(
            self.inspectord.port, client_tls_context(self.pki.ca, self.pki.client_cert, self.pki.client_key)
        )
        self.assertTrue(reply.startswith(b"HTTP/1.0 200"), reply)
        for context in (
            client_tls_context(self.pki.ca),
            client_tls_context(self.pki.ca, self.pki.stranger_cert, self.pki.stranger_key),
        ):
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                handshake(self.inspectord.port, context)

    def test_openstack_cli_with_client_certificate(self):
        ok = self.cli("list", OS_CACERT=str(self.pki.ca), OS_CERT=str(self.pki.client_cert), OS_KEY=str(self.pki.client_key))
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        refused = self.cli("list", OS_CACERT=str(self.pki.ca))
        self.assertNotEqual(refused.returncode, 0, refused.stdout)

    def test_ipa_collector_with_client_certificate(self):
        if os.geteuid() != 0:
            self.skipTest("ironic-python-agent's collector inspects the machine as root")
        self.introspect_with_ipa("--certfile", str(self.pki.client_cert), "--keyfile", str(self.pki.client_key))


class UnixSocketTests(IntegrationCase):
    def setUp(self):
        base.ironic()
        directory = tempfile.mkdtemp(dir=base._workdir)
        self.socket_path = os.path.join(directory, "inspector.sock")
        # a stale socket left by a previous run is replaced
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(self.socket_path)
        stale.close()
        self.extra_config = "\n[DEFAULT]\nlisten_unix_socket = {}\nlisten_unix_socket_mode = 0640\n".format(
            self.socket_path
        )
        self.inspectord_options = {"unix_socket": self.socket_path}
        super().setUp()

    def test_served_on_the_socket_with_its_mode_and_not_on_tcp(self):
        mode = os.stat(self.socket_path).st_mode
        self.assertTrue(stat.S_ISSOCK(mode))
        self.assertEqual(stat.S_IMODE(mode), 0o640)
        status, _, body = self.inspectord.call("GET", "/")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["versions"][0]["links"][0]["href"], "http://localhost/v1")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.inspectord.port), timeout=5).close()

    def test_ramdisk_callback_through_the_socket(self):
        macs = new_macs(1)
        uuid, _ = self.enroll(macs)
        self.start_and_wait(uuid, uuid)
        status, _, body = self.inspectord.call("POST", "/v1/continue", body=ipa_payload(macs))
        self.assertEqual(status, 200, body)
        self.assertEqual(self.inspectord.wait_finished(uuid)["error"], None)

    def test_socket_removed_at_stop(self):
        self.inspectord.stop()
        self.assertFalse(os.path.exists(self.socket_path))


class CommandTests(IntegrationCase):
    """``ironic-inspector`` and ``ironic-inspector-dbsync``, with several files, as RDO and kolla run them."""

    def setUp(self):
        base.ironic()
        self.directory = tempfile.mkdtemp(dir=base._workdir)
        self.site_conf = os.path.join(self.directory, "inspector.conf")
        self.site_port = free_port()
        with open(self.site_conf, "w") as f:
            f.write("[DEFAULT]\nlisten_port = {}\nlog_color = true\n\n[processing]\nstore_data_location = x\n"
                    "\n[iptables]\nmanage_firewall = false\n".format(self.site_port))
        self.inspectord_options = {
            "program": "ironic-inspector", "extra_config_files": [self.site_conf], "port": self.site_port,
        }
        super().setUp()

    def test_ironic_inspector_merges_files_and_warns_once(self):
        status, _, _ = self.inspectord.call("GET", "/v1/introspection")
        self.assertEqual(status, 200)
        with open(os.path.join(self.workdir, "twistd.out")) as f:
            output = f.read()
        unknown = [line for line in output.splitlines() if "Unknown option" in line]
        self.assertEqual(len(unknown), 1, output[-3000:])
        self.assertIn("[processing]store_data_location, [iptables]manage_firewall", unknown[0])
        self.assertIn("[DEFAULT]log_color", output)  # an oslo.log option: accepted and ignored
        self.assertIn("inspectord is ready", output)

    def test_ironic_inspector_dbsync(self):
        database = os.path.join(self.directory, "synced.sqlite")
        later = os.path.join(self.directory, "db.conf")
        with open(later, "w") as f:
            f.write("[database]\nconnection = sqlite:///{}\n".format(database))
        dbsync = shutil.which("ironic-inspector-dbsync", path=os.path.dirname(__import__("sys").executable))
        result = subprocess.run([dbsync, "--config-file", str(self.inspectord.config_path), "--config-file", self.site_conf,
                                 "--config-file", later, "upgrade"], capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        import sqlite3

        with sqlite3.connect(database) as db:
            tables = {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
        self.assertIn("inspectord_nodes", tables)


class RefusedStartTests(base.unittest.SynchronousTestCase):
    skip = base.SKIP

    def start_fails(self, extra):
        base.ironic()
        process = InspectordProcess(tempfile.mkdtemp(dir=base._workdir), base.ironic().url, extra_config=extra)
        with self.assertRaises(RuntimeError) as caught:
            process.start(timeout=60)
        return str(caught.exception)

    def test_use_ssl_without_certificate(self):
        message = self.start_fails("\n[DEFAULT]\nuse_ssl = true\n")
        self.assertIn("[ssl]cert_file and [ssl]key_file", message)

    def test_unreadable_key(self):
        pki = tls.make_pki(tempfile.mkdtemp(dir=base._workdir))
        message = self.start_fails(
            "\n[DEFAULT]\nuse_ssl = true\n[ssl]\ncert_file = {}\nkey_file = {}\n".format(pki.server_cert, pki.client_key)
        )
        self.assertIn("cannot be used together", message)

    def test_socket_directory_missing(self):
        path = os.path.join(tempfile.mkdtemp(dir=base._workdir), "missing", "inspector.sock")
        message = self.start_fails("\n[DEFAULT]\nlisten_unix_socket = {}\n".format(path))
        self.assertIn(path, message)


class IronicOverHTTPSTests(base.unittest.SynchronousTestCase):
    """[ironic]cafile, certfile, keyfile and insecure apply to the requests to Ironic itself.

    The real Ironic behind a TLS relay (``devenv.tls.TLSRelay``) with the
    test CA's server certificate, requiring a client certificate.
    """

    skip = base.SKIP

    def setUp(self):
        self.ironic = base.ironic()
        self.pki = tls.make_pki(tempfile.mkdtemp(dir=base._workdir))
        target = ("127.0.0.1", int(self.ironic.url.rsplit(":", 1)[1].split("/")[0]))
        self.relay = tls.TLSRelay(target, self.pki.server_cert, self.pki.server_key, client_ca=self.pki.ca)
        self.addCleanup(self.relay.stop)
        self.url = "https://127.0.0.1:{}".format(self.relay.port)

    def start(self, ironic_options):
        process = InspectordProcess(
            tempfile.mkdtemp(dir=base._workdir), self.url, extra_config="\n[ironic]\n" + ironic_options
        )
        process.start()
        self.addCleanup(process.stop)
        uuid = self.ironic.enroll_node("tls-" + new_macs(1)[0].replace(":", "")[-6:], new_macs(1)).uuid
        self.addCleanup(self.ironic.client().node.delete, uuid)
        return process, uuid

    def test_private_ca_and_client_certificate(self):
        process, uuid = self.start("cafile = {}\ncertfile = {}\nkeyfile = {}\n".format(
            self.pki.ca, self.pki.client_cert, self.pki.client_key))
        status, _, body = process.call("POST", "/v1/introspection/" + uuid)
        self.assertEqual(status, 202, body)

    def test_untrusted_ironic_certificate_is_refused(self):
        # The system's CAs do not know the test CA: fails closed, as a 503 naming Ironic.
        process, uuid = self.start("certfile = {}\nkeyfile = {}\n".format(self.pki.client_cert, self.pki.client_key))
        status, _, body = process.call("POST", "/v1/introspection/" + uuid)
        self.assertEqual(status, 503, body)
        self.assertIn("Ironic", body["error"]["message"])

    def test_missing_client_certificate_is_refused_by_ironic(self):
        process, uuid = self.start("cafile = {}\n".format(self.pki.ca))
        status, _, body = process.call("POST", "/v1/introspection/" + uuid)
        self.assertEqual(status, 503, body)

    def test_unreadable_cafile_stops_the_start(self):
        process = InspectordProcess(
            tempfile.mkdtemp(dir=base._workdir), self.url, extra_config="\n[ironic]\ncafile = /nonexistent/ca.pem\n"
        )
        with self.assertRaises(RuntimeError) as caught:
            process.start(timeout=60)
        self.assertIn("[ironic]cafile /nonexistent/ca.pem", str(caught.exception))
