"""A third-party hook package, built and pip-installed by the test, picked up by twistd inspectord.

The package ``acme-inspectord-hooks`` has its own setup.py and provides two
hooks: ``acme_asset_tag`` as a Twisted plugin drop-in
(``twisted/plugins/acme_inspectord.py``) and ``acme_rack`` as an
``inspectord.hooks`` entry point.  ``pip install --target`` puts it in a
directory that only the twistd process has on its PYTHONPATH.
"""

import os
import subprocess
import sys
import textwrap

from tests.integration.base import IntegrationCase, ipa_payload, new_macs
from tests.unit.helpers import fixture

LLDP = fixture("lldp-switches.json")["switches"]

HOOKS_CONFIG = """
[processing]
processing_hooks = $default_processing_hooks,acme_asset_tag,acme_rack
"""

PACKAGE = {
    "setup.py": """
        from setuptools import setup

        setup(
            name="acme-inspectord-hooks",
            version="1.0",
            packages=["acme_hooks", "twisted.plugins"],
            entry_points={"inspectord.hooks": ["acme_rack = acme_hooks.rack:RackHook"]},
        )
        """,
    "acme_hooks/__init__.py": """
        from twisted.internet import task

        from inspectord.processing.hooks import ProcessingHook, processing_hook


        @processing_hook
        class AssetTagHook(ProcessingHook):
            '''Asset tag from the DMI serial number, after the standard hooks.'''

            name = "acme_asset_tag"
            dependencies = ("scheduler",)

            def before_processing(self, data):
                data["acme_seen"] = True

            def before_update(self, data, node):
                from twisted.internet import reactor

                vendor = data["inventory"]["system_vendor"]
                # A Deferred: inspectord waits for it.
                return task.deferLater(
                    reactor, 0.1, node.update_properties,
                    acme_asset_tag="ACME-{}-{}".format(vendor["serial_number"] or "none", data["cpus"]),
                )
        """,
    "acme_hooks/rack.py": """
        from inspectord.processing.hooks import ProcessingHook


        class RackHook(ProcessingHook):
            def before_update(self, data, node):
                node.patch([{"op": "add", "path": "/extra/acme_rack", "value": "R12"}])
                node.add_trait("CUSTOM_ACME")
        """,
    "twisted/plugins/acme_inspectord.py": """
        from acme_hooks import AssetTagHook  # noqa: F401  (a plugin: found by twisted.plugin.getPlugins)
        """,
}


def build_package(workdir):
    """Write the package sources and pip-install them into ``workdir/site``; that directory."""
    source = os.path.join(workdir, "acme-src")
    for path, text in PACKAGE.items():
        full = os.path.join(source, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text).lstrip())
    target = os.path.join(workdir, "site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", target, source],
        check=True, capture_output=True, timeout=300,
    )
    return target


class ThirdPartyHookTests(IntegrationCase):
    extra_config = HOOKS_CONFIG

    def setUp(self):
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        self.site = build_package(workdir)
        self.inspectord_options = {"env": {"PYTHONPATH": self.site}}
        super().setUp()

    def test_installed_package(self):
        # What pip installed: the drop-in beside no __init__.py, the entry point in dist-info.
        self.assertTrue(os.path.exists(os.path.join(self.site, "twisted", "plugins", "acme_inspectord.py")))
        self.assertFalse(os.path.exists(os.path.join(self.site, "twisted", "__init__.py")))
        entry_points = [
            os.path.join(self.site, d, "entry_points.txt") for d in os.listdir(self.site) if d.endswith(".dist-info")
        ]
        with open(entry_points[0], encoding="utf-8") as f:
            self.assertIn("acme_rack = acme_hooks.rack:RackHook", f.read())

    def test_hooks_of_the_package_run(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        self.start_and_wait(name, uuid)
        data = ipa_payload(macs, "ipa-payload-all-collectors.json")
        status, _, body = self.inspectord.call("POST", "/v1/continue", data)
        self.assertEqual(status, 200, body)
        self.assertIsNone(self.inspectord.wait_finished(uuid)["error"])
        node = self.client.node.get(uuid)
        serial = data["inventory"]["system_vendor"]["serial_number"] or "none"
        self.assertEqual(node.properties["acme_asset_tag"], "ACME-{}-2".format(serial))
        self.assertEqual(node.extra["acme_rack"], "R12")
        self.assertIn("CUSTOM_ACME", self.client.node.get_traits(uuid))
        # Standard hooks ran too.
        self.assertEqual(node.properties["cpus"], "2")


class MissingPackageTests(IntegrationCase):
    """Without the package on its path, the same configuration does not start."""

    extra_config = HOOKS_CONFIG

    def setUp(self):
        # IntegrationCase.setUp would start inspectord; here starting it is the test.
        from tests.integration import base

        self.ironic = base.ironic()

    def test_refused_at_start_naming_the_hooks(self):
        from devenv.daemon import InspectordProcess

        process = InspectordProcess(os.path.abspath(self.mktemp()), self.ironic.url, extra_config=HOOKS_CONFIG)
        self.addCleanup(process.stop)
        with self.assertRaises(RuntimeError) as caught:
            process.start(timeout=60)
        message = str(caught.exception)
        self.assertIn("unknown hook(s) acme_asset_tag, acme_rack", message)
        self.assertIn("lldp_basic", message)  # the known ones are listed


class ExistingPortTests(IntegrationCase):
    """LLDP and physnet hooks on a port Ironic already has: changed once, then left alone."""

    extra_config = """
[processing]
processing_hooks = $default_processing_hooks,lldp_basic,local_link_connection,physnet_cidr_map

[port_physnet]
cidr_map = 198.51.100.0/24:other,192.0.2.0/24:physnet-a
"""

    def introspect(self, uuid, name, data):
        self.start_and_wait(name, uuid)
        status, _, body = self.inspectord.call("POST", "/v1/continue", data)
        self.assertEqual(status, 200, body)
        self.assertIsNone(self.inspectord.wait_finished(uuid)["error"])

    def test_existing_port(self):
        macs = new_macs(1)
        uuid, name = self.enroll(macs)
        port = self.client.port.list(address=macs[0])[0]
        self.client.port.update(port.uuid, [
            {"op": "add", "path": "/local_link_connection", "value": {"switch_id": "00:00:00:00:00:99", "port_id": "old"}},
        ])
        data = ipa_payload(macs, "ipa-payload-all-collectors.json")
        data["inventory"]["interfaces"][0]["lldp"] = LLDP["cisco-nexus-93180yc-fx"]["tlvs"]
        self.introspect(uuid, name, data)
        port = self.client.port.get(port.uuid)
        self.assertEqual(port.local_link_connection, {
            "switch_id": "00:3a:9c:5e:71:a8", "port_id": "Ethernet1/17", "switch_info": "leaf-r12-a"})
        self.assertEqual(port.physical_network, "physnet-a")
        self.assertEqual(self.port_patches(port.uuid), 2)  # the test's, then inspectord's one
        # Again with the same data: nothing to change, so no request for the port.
        self.introspect(uuid, name, data)
        self.assertEqual(self.port_patches(port.uuid), 2)
        self.assertEqual(self.client.port.get(port.uuid).updated_at, port.updated_at)

    def port_patches(self, port_uuid):
        """PATCH requests for the port in Ironic's API log."""
        with open(self.ironic.log_path, encoding="utf-8", errors="replace") as f:
            return sum(1 for line in f if "PATCH /v1/ports/" + port_uuid in line)
