"""The idle footprint of a real ``twistd inspectord`` with the default configuration.

What the configuration does not use is not imported: Alembic only when the
database needs migrating, scapy only for the builtin DHCP or the sniffer,
pyghmi only to set BMC credentials, the YAML, JSON path and JSON patch
libraries only when a policy file, a rule or a hook uses them, keystoneauth1
(and requests, urllib3) only with Keystone authentication.  The
modules are those the process held when it stopped (:mod:`bench.launch`).
"""

import shutil
import tempfile

from bench import footprint
from tests.integration.base import IntegrationCase


class IdleFootprintTests(IntegrationCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="inspectord-footprint-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_only_what_the_default_configuration_needs(self):
        first, restart = footprint.measure(self.dir, settle=1.0)
        first_modules, restart_modules = set(first["all_modules"]), set(restart["all_modules"])
        # The first start migrates a new database: Alembic is there (the list is the service's).
        self.assertIn("alembic", first_modules)
        for name in footprint.NEEDED:
            self.assertIn(name, restart_modules)
        imported = sorted(name for name in footprint.NOT_NEEDED if name in restart_modules)
        self.assertEqual(imported, [], "imported by an idle inspectord on a migrated database")
        self.assertGreater(restart["idle_rss_mb"], 0)
