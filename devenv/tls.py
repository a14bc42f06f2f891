"""A throw-away certificate authority for TLS tests (``cryptography``).

:func:`make_pki` writes, into a directory, a CA and the certificates the
tests need: the server's (for 127.0.0.1, ::1 and localhost), a client's
signed by the same CA, and a client's signed by another CA.  EC P-256 keys:
generating them takes milliseconds.
"""

import dataclasses
import datetime
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject, issuer, public_key, days=2):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


@dataclasses.dataclass
class Authority:
    name: str
    key: object
    certificate: object

    @classmethod
    def create(cls, name):
        key = _key()
        subject = _name(name)
        certificate = (
            _builder(subject, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(name, key, certificate)

    def issue(self, common_name, server=False, hosts=()):
        """``(key, certificate)`` signed by this authority."""
        key = _key()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            _builder(_name(common_name), self.certificate.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if hosts:
            names = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def _pem(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclasses.dataclass
class PKI:
    """Paths of the PEM files :func:`make_pki` wrote."""

    ca: pathlib.Path
    server_cert: pathlib.Path
    server_key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path
    stranger_cert: pathlib.Path  # a client certificate of another CA
    stranger_key: pathlib.Path
    other_ca: pathlib.Path


def make_pki(directory, hosts=("127.0.0.1", "::1", "localhost")):
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = Authority.create("inspectord test CA")
    other = Authority.create("another CA")
    files = {}

    def write(name, data, mode=0o644):
        path = directory / name
        path.write_bytes(data)
        path.chmod(mode)
        files[name] = path
        return path

    write("ca.pem", _pem(ca.certificate))
    write("other-ca.pem", _pem(other.certificate))
    for prefix, authority, kwargs in (
        ("server", ca, {"server": True, "hosts": hosts}),
        ("client", ca, {}),
        ("stranger", other, {}),
    ):
        key, certificate = authority.issue("inspectord test " + prefix, **kwargs)
        write(prefix + ".pem", _pem(certificate))
        write(prefix + "-key.pem", _key_pem(key), 0o600)
    return PKI(
        ca=files["ca.pem"],
        server_cert=files["server.pem"],
        server_key=files["server-key.pem"],
        client_cert=files["client.pem"],
        client_key=files["client-key.pem"],
        stranger_cert=files["stranger.pem"],
        stranger_key=files["stranger-key.pem"],
        other_ca=files["other-ca.pem"],
    )


class TLSRelay:
    """A TLS server on ``127.0.0.1`` relaying every connection to a plain TCP ``target``.

    Puts HTTPS in front of a test service that speaks HTTP (the test
    Ironic), with the certificate and key given; optionally requires a
    client certificate signed by ``client_ca``.  Threads only: a blocking
    helper for tests, stopped with :meth:`stop`.
    """

    def __init__(self, target, certfile, keyfile, client_ca=None):
        import socket
        import ssl
        import threading

        self.target = target
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(certfile), str(keyfile))
        if client_ca:
            self._context.verify_mode = ssl.CERT_REQUIRED
            self._context.load_verify_locations(str(client_ca))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        import socket
        import threading

        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, socket), daemon=True).start()

    def _serve(self, client, socket):
        import ssl
        import threading

        try:
            secure = self._context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()
            return
        upstream = socket.create_connection(self.target)

        def pump(source, sink):
            try:
                while True:
                    data = source.recv(65536)
                    if not data:
                        break
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                for s in (source, sink):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(upstream, secure), daemon=True).start()
        pump(secure, upstream)

    def stop(self):
        self._stopped.set()
        self._listener.close()
