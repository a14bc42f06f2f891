"""inspectord on the ``ironic-inspector.conf`` files deployment tools write, unchanged.

``tests/integration/deploy_configs/`` holds the files kolla-ansible, bifrost,
openstack-ansible, metal3's ironic-image, puppet-ironic, TripleO and
devstack render (see its ``SOURCES.md``).  Each test fills in only the
host-specific values the file leaves as placeholders (addresses, ports,
paths, the database URL) and starts inspectord on the file as the tool runs
it (TripleO: two files), against a real Ironic, a real Keystone holding the
file's service users (and devstack's administrator), a real MariaDB where the
tool writes a MySQL URL, a real Swift for ``store_data = swift``; then a node
is introspected through the file's authentication and listener (TLS, unix
socket) with a real ramdisk payload.

When a file sets no port (inspectord would take 5050), or leaves a path at a
default outside the test's directory (dnsmasq's hosts directory), a second
``--config-file`` sets only that host-specific value.  The iptables driver
(devstack) adds its chain and a jump for an interface that does not exist on
this machine to the host's firewall; the test removes both.
"""

import configparser
import os
import shutil
import subprocess
import tempfile

from devenv import databases
from devenv.daemon import InspectordProcess, client_tls_context, free_port
from devenv.keystone import ADMIN_PROJECT, KeystoneServer
from devenv.swift import SwiftServer
from devenv.tls import make_pki
from tests.integration.base import SKIP, IntegrationCase, ipa_payload, ironic, new_macs

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "deploy_configs")
DEVSTACK_ADMIN_PASSWORD = "secretadmin"  # devstack's ADMIN_PASSWORD, in its [ironic] section
OPERATOR = ("deploy-operator", "operator-password")

# What each tool's file needs besides itself: how the tool runs it.
SPECS = {
    "kolla-ansible": {"files": ["kolla-ansible.conf"], "db": "mariadb"},
    "bifrost-http-basic": {
        "files": ["bifrost-http-basic.conf"], "db": "mariadb",
        "htpasswd": "bifrost-http-basic.htpasswd", "basic": ("admin", "Lx9-hB4.cT6_pJ1:eF3w"),
    },
    "bifrost-keystone": {"files": ["bifrost-keystone.conf"], "db": "mariadb"},
    "openstack-ansible": {"files": ["openstack-ansible.conf"], "db": "mariadb"},
    "metal3-plain": {"files": ["metal3-plain.conf"], "db": "sqlite"},
    "metal3-tls": {
        "files": ["metal3-tls.conf"], "db": "sqlite", "tls": True,
        "htpasswd": "metal3-tls.htpasswd", "basic": ("ironic-inspector", "Pq7nW3xK9mT2vR5z"),
    },
    "metal3-tls-proxy": {"files": ["metal3-tls-proxy.conf"], "db": "sqlite", "unix_socket": "inspector.sock"},
    "puppet-ironic": {"files": ["puppet-ironic.conf"], "db": "mariadb"},
    "tripleo": {"files": ["tripleo-inspector-dist.conf", "tripleo-inspector.conf"], "db": "mariadb"},
    "devstack-inspector": {"files": ["devstack-inspector.conf"], "db": "mariadb"},
    "devstack-discovery": {"files": ["devstack-discovery.conf"], "db": "mariadb", "discovery": True},
}

_services = None


def services():
    """Keystone (with devstack's administrator password) and Swift, shared by the tests; started once."""
    global _services
    if _services is None:
        import atexit

        workdir = tempfile.mkdtemp(prefix="inspectord-deploy-")
        keystone = KeystoneServer(os.path.join(workdir, "keystone"), admin_password=DEVSTACK_ADMIN_PASSWORD)
        swift = None

        def stop():
            for server in (swift, keystone):
                if server is not None:
                    server.stop()
            shutil.rmtree(workdir, ignore_errors=True)

        atexit.register(stop)
        keystone.start()
        keystone.ensure_user("swift", "swift-service-password", project="service", project_roles=["admin"])
        swift = SwiftServer(
            os.path.join(workdir, "swift"),
            keystone={"auth_url": keystone.url, "username": "swift", "password": "swift-service-password",
                      "project_name": "service"},
        )
        swift.start()
        for region in ("RegionOne", "regionOne"):  # TripleO writes the latter
            keystone.register_endpoint("object-store", "swift", swift.url + "/v1/AUTH_$(project_id)s", region)
        keystone.ensure_user(OPERATOR[0], OPERATOR[1], project=ADMIN_PROJECT, project_roles=["admin"],
                             system_roles=["admin"])
        _services = (keystone, swift)
    return _services


def _read(paths):
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    for path in paths:
        with open(path, encoding="utf-8") as f:
            parser.read_string(f.read(), source=path)
    return parser


def _unquote(value):
    return value.strip().strip('"').strip("'") if value is not None else None


class DeploymentConfigTests(IntegrationCase):
    """One test per deployment tool's file: it starts unchanged and a node is introspected through it."""

    skip = SKIP
    timeout = 300

    def setUp(self):
        # Not IntegrationCase.setUp: the test starts inspectord on the tool's file itself.
        self.ironic = ironic()
        self.client = self.ironic.client()
        self.state = tempfile.mkdtemp(prefix="inspectord-deploy-state-")
        self.addCleanup(shutil.rmtree, self.state, True)
        self.inspectord = None

    # -- rendering -----------------------------------------------------------

    def render(self, name, spec):
        keystone, _swift = services()
        values = {
            "@IRONIC_URL@": self.ironic.url,
            "@KEYSTONE_URL@": keystone.url[: -len("/v3")],
            "@LISTEN_ADDRESS@": "127.0.0.1",
            "@LISTEN_PORT@": str(free_port()),
            "@STATE_DIR@": self.state,
        }
        if spec["db"] == "mariadb":
            _server, values["@DB_URL@"] = databases.fresh_database("mariadb")
        else:
            values["@DB_URL@"] = "sqlite:///{}/inspector.sqlite".format(self.state)
        self.pki = make_pki(os.path.join(self.state, "pki"))
        values.update({"@CERT_FILE@": str(self.pki.server_cert), "@KEY_FILE@": str(self.pki.server_key),
                       "@CA_FILE@": str(self.pki.ca)})
        paths = []
        for file_name in spec["files"]:
            with open(os.path.join(HERE, file_name), encoding="utf-8") as f:
                text = f.read()
            for placeholder, value in values.items():
                text = text.replace(placeholder, value)
            self.assertNotIn("@", "".join(l for l in text.splitlines() if "@STATE" in l or "@DB" in l))
            path = os.path.join(self.state, file_name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            paths.append(path)
        if spec.get("htpasswd"):
            shutil.copy(os.path.join(HERE, spec["htpasswd"]), os.path.join(self.state, "htpasswd"))
        open(os.path.join(self.state, "policy.yaml"), "w").close()  # Puppet's empty policy file
        return paths, _read(paths)

    def host_overrides(self, parsed):
        """A second file with only host-specific values the tool's file leaves to defaults."""
        lines = {}
        if not parsed.has_option("DEFAULT", "listen_port") and not parsed.has_option("DEFAULT", "listen_unix_socket"):
            self.port = free_port()
            lines.setdefault("DEFAULT", []).append("listen_port = {}".format(self.port))
        else:
            self.port = parsed.getint("DEFAULT", "listen_port", fallback=None)
        driver = parsed.get("pxe_filter", "driver", fallback="iptables")
        if driver == "dnsmasq" and not parsed.has_option("dnsmasq_pxe_filter", "dhcp_hostsdir"):
            lines.setdefault("dnsmasq_pxe_filter", []).append(
                "dhcp_hostsdir = {}".format(os.path.join(self.state, "dhcp-hostsdir")))
        if not lines:
            return []
        path = os.path.join(self.state, "host.conf")
        with open(path, "w") as f:
            for section, options in lines.items():
                f.write("[{}]\n{}\n".format(section, "\n".join(options)))
        return [path]

    def keystone_users(self, parsed):
        """The service users the file authenticates as, with the roles a deployment gives them."""
        keystone, _swift = services()
        for section in ("ironic", "keystone_authtoken", "swift"):
            if not parsed.has_section(section):
                continue
            get = lambda option: _unquote(parsed.get(section, option, fallback=None))  # noqa: E731
            auth_type = get("auth_type") or get("auth_plugin") or ("password" if section == "swift" else None)
            if auth_type not in ("password", "v3password") or not get("username") or not get("password"):
                continue
            if get("username") == "admin":
                self.assertEqual(get("password"), DEVSTACK_ADMIN_PASSWORD)
                continue
            project = get("project_name") or "service"
            # A Keystone on MariaDB (every deployment's) finds domain names
            # whatever their case; this one (SQLite) does not, so a file
            # naming the domain "default" gets a domain of that exact name.
            domain_name = get("user_domain_name")
            domain_id = "default" if domain_name in (None, "Default") else keystone.ensure_domain(domain_name)
            keystone.ensure_user(
                get("username"), get("password"), project=project, project_roles=["admin", "member", "service"],
                system_roles=["admin"] if get("system_scope") else [], domain_id=domain_id,
            )
            region = get("region_name") or "RegionOne"
            keystone.register_endpoint("baremetal", "ironic", self.ironic.url, region)

    def firewall_cleanup(self, parsed):
        if parsed.get("pxe_filter", "driver", fallback="iptables") != "iptables":
            return
        from inspectord.pxe import iptables

        chain = parsed.get("iptables", "firewall_chain", fallback="ironic-inspector")
        interface = parsed.get("iptables", "dnsmasq_interface", fallback="br-ctlplane")
        jump = iptables.jump_rule(chain, interface, "4")

        def remove():
            subprocess.run(["iptables", "-w", "-D", *jump], capture_output=True)
            subprocess.run(["iptables", "-w", "-F", chain], capture_output=True)
            subprocess.run(["iptables", "-w", "-X", chain], capture_output=True)

        self.addCleanup(remove)

    # -- running ---------------------------------------------------------------

    def start(self, name):
        spec = SPECS[name]
        paths, parsed = self.render(name, spec)
        self.keystone_users(parsed)
        self.firewall_cleanup(parsed)
        files = paths + self.host_overrides(parsed)
        tls = client_tls_context(self.pki.ca) if spec.get("tls") else None
        unix_socket = os.path.join(self.state, spec["unix_socket"]) if spec.get("unix_socket") else None
        daemon = InspectordProcess(
            os.path.join(self.state, "run"), self.ironic.url, port=self.port, tls=tls, unix_socket=unix_socket,
            config_files=files,
        )
        self.addCleanup(daemon.stop)
        daemon.start(timeout=120)
        strategy = parsed.get("DEFAULT", "auth_strategy", fallback="keystone")
        if strategy == "keystone":
            keystone, _swift = services()
            daemon.headers["X-Auth-Token"] = keystone.issue_token(*OPERATOR, project=None, system=True)
        elif strategy == "http_basic":
            import base64

            user, password = spec["basic"]
            daemon.headers["Authorization"] = "Basic " + base64.b64encode(
                "{}:{}".format(user, password).encode()).decode()
        self.inspectord = daemon  # what IntegrationCase.wait_state asks
        return daemon, parsed

    def introspect(self, name):
        daemon, parsed = self.start(name)
        log = daemon.log_tail(400)
        self.assertNotIn("Traceback", log)
        macs = new_macs(1)
        if SPECS[name].get("discovery"):
            status, _, body = daemon.call("POST", "/v1/continue", ipa_payload(macs))
            self.assertEqual(status, 200, body)
            uuid = body["uuid"]
        else:
            uuid, node_name = self.enroll(macs)
            status, _, body = daemon.call("POST", "/v1/introspection/" + uuid)
            self.assertEqual(status, 202, "{}\n{}".format(body, daemon.log_tail(60)))
            self.wait_state(uuid, ["waiting"], timeout=120)
            status, _, body = daemon.call("POST", "/v1/continue", ipa_payload(macs))
            self.assertEqual((status, body), (200, {"uuid": uuid}))
        result = daemon.wait_finished(uuid, timeout=120)
        self.assertIsNone(result["error"], daemon.log_tail())
        self.assertEqual(result["state"], "finished")
        node = self.client.node.get(uuid)
        self.assertEqual(node.properties["memory_mb"], "24576")
        self.assertIn(macs[0], [p.address for p in self.client.port.list(node=uuid)])
        if parsed.get("processing", "store_data", fallback="none") != "none":
            status, _, data = daemon.call("GET", "/v1/introspection/{}/data".format(uuid))
            self.assertEqual(status, 200, data)
            self.assertEqual(data["inventory"]["interfaces"][0]["mac_address"], macs[0])
        return daemon, parsed, uuid

    def test_kolla_ansible(self):
        self.introspect("kolla-ansible")

    def test_bifrost_http_basic(self):
        daemon, _, _ = self.introspect("bifrost-http-basic")
        daemon.headers.pop("Authorization")
        self.assertEqual(daemon.call("GET", "/v1/introspection")[0], 401)

    def test_bifrost_keystone(self):
        self.introspect("bifrost-keystone")

    def test_openstack_ansible(self):
        self.introspect("openstack-ansible")

    def test_metal3_plain(self):
        self.introspect("metal3-plain")

    def test_metal3_tls(self):
        daemon, _, _ = self.introspect("metal3-tls")
        self.assertTrue(daemon.url.startswith("https://"))

    def test_metal3_tls_proxy_unix_socket(self):
        daemon, _, _ = self.introspect("metal3-tls-proxy")
        path = os.path.join(self.state, "inspector.sock")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o666)

    def test_puppet_ironic(self):
        self.introspect("puppet-ironic")

    def test_tripleo_two_files(self):
        self.introspect("tripleo")

    def test_devstack_inspector_swift(self):
        _daemon, _, uuid = self.introspect("devstack-inspector")
        _keystone, swift = services()
        self.assertTrue(swift.url)

    def test_devstack_discovery(self):
        self.introspect("devstack-discovery")
