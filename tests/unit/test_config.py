"""Configuration: an ironic-inspector.conf loads; mistakes name the option."""

import dataclasses
import os
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from inspectord import config, ipmi, errors

INSPECTOR_CONF = """\
[DEFAULT]
listen_address = 192.0.2.1
listen_port = 5051
auth_strategy = noauth
timeout = 1800
debug = true
transport_url = fake://
clean_up_period = 30
ipmi_address_fields = redfish_address,ilo_address

[ironic]
auth_type = none
endpoint_override = http://192.0.2.5:6385
max_retries = 5
retry_interval = 1.5

[database]
connection = sqlite:////var/lib/ironic-inspector/inspector.sqlite

[pxe_filter]
driver = noop
sync_period = 20

[processing]
add_ports = all
keep_ports = present
overwrite_existing = false
processing_hooks = $default_processing_hooks
ramdisk_logs_dir = /var/log/ironic-inspector/ramdisk
always_store_ramdisk_logs = true
store_data = database
power_off = false

[capabilities]
boot_mode = true

[pci_devices]
alias = {"vendor_id": "8086", "product_id": "1521", "name": "i350"}
alias = {"vendor_id": "10de", "product_id": "1eb8", "name": "t4"}

[coordination]
backend_url = memcached://127.0.0.1:11211

[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 60
"""


class ConfigTestCase(SynchronousTestCase):
    def write(self, text):
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text))
        return path

    def edit(self, section, line, base=INSPECTOR_CONF):
        """``base`` with ``line`` added at the top of ``[section]``."""
        header = "[{}]\n".format(section)
        if header not in base:
            return base + "\n" + header + line + "\n"
        return base.replace(header, header + line + "\n", 1)

    def load_error(self, text):
        with self.assertRaises(errors.ConfigError) as caught:
            config.load(self.write(text))
        return str(caught.exception)


class LoadTests(ConfigTestCase):
    def test_inspector_file(self):
        path = self.write(INSPECTOR_CONF)
        conf = config.load(path)
        self.assertEqual(conf.path, path)
        self.assertEqual(conf.default.listen_address, "192.0.2.1")
        self.assertEqual(conf.default.listen_port, 5051)
        self.assertEqual(conf.default.auth_strategy, "noauth")
        self.assertEqual(conf.default.timeout, 1800)
        self.assertEqual(conf.default.clean_up_period, 30)
        self.assertEqual(conf.default.ipmi_address_fields, ("redfish_address", "ilo_address"))
        self.assertEqual(conf.ironic.max_retries, 5)
        self.assertEqual(conf.ironic.retry_interval, 1.5)
        self.assertEqual(conf.ironic_auth.auth_type, "none")
        self.assertEqual(conf.ironic_auth.endpoint_override, "http://192.0.2.5:6385")
        self.assertIsNone(conf.ironic_auth.auth)
        self.assertEqual(conf.database.connection, "sqlite:////var/lib/ironic-inspector/inspector.sqlite")
        self.assertEqual(conf.pxe_filter.driver, "noop")
        self.assertEqual(conf.pxe_filter.sync_period, 20)
        self.assertEqual(conf.processing.add_ports, "all")
        self.assertEqual(conf.processing.keep_ports, "present")
        self.assertIs(conf.processing.overwrite_existing, False)
        self.assertIs(conf.processing.always_store_ramdisk_logs, True)
        self.assertIs(conf.processing.power_off, False)
        self.assertEqual(conf.processing.store_data, "database")
        self.assertEqual(conf.processing.ramdisk_logs_dir, "/var/log/ironic-inspector/ramdisk")
        self.assertIs(conf.capabilities.boot_mode, True)
        self.assertEqual(len(conf.pci_devices.alias), 2)
        self.assertEqual(
            conf.processing_hooks,
            ("ramdisk_error", "root_disk_selection", "scheduler", "validate_interfaces", "capabilities", "pci_devices"),
        )

    def test_ignored_options_listed(self):
        conf = config.load(self.write(INSPECTOR_CONF))
        self.assertEqual(
            sorted(conf.ignored_options),
            sorted(
                [
                    "[DEFAULT]debug",
                    "[DEFAULT]transport_url",
                    "[coordination]backend_url",
                    "[oslo_messaging_rabbit]heartbeat_timeout_threshold",
                ]
            ),
        )

    def test_defaults(self):
        minimal = "[DEFAULT]\nauth_strategy = noauth\n[ironic]\nendpoint_override = http://i:6385\n"
        conf = config.load(self.write(minimal))
        self.assertEqual(conf.default.listen_port, 5050)
        self.assertEqual(conf.default.timeout, 3600)
        self.assertEqual(conf.processing.add_ports, "pxe")
        self.assertEqual(conf.processing.keep_ports, "all")
        self.assertEqual(conf.ironic_client.max_in_flight, 8)
        self.assertEqual(conf.database.connection, config.DEFAULT_DATABASE)
        self.assertEqual(conf.ignored_options, ())

    def test_frozen(self):
        conf = config.load(self.write(INSPECTOR_CONF))
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, conf.default, "timeout", 1)
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, conf, "path", "x")

    def test_overrides(self):
        conf = config.load(self.write(INSPECTOR_CONF), overrides={("processing", "add_ports"): "pxe"})
        self.assertEqual(conf.processing.add_ports, "pxe")

    def test_extra_hooks(self):
        text = INSPECTOR_CONF.replace(
            "processing_hooks = $default_processing_hooks", "processing_hooks = ramdisk_error,scheduler"
        )
        self.assertEqual(config.load(self.write(text)).processing_hooks, ("ramdisk_error", "scheduler"))

    def test_oslo_db_options_accepted(self):
        """ironic-inspector's [database] is oslo.db's: kolla and TripleO set its pool options."""
        text = INSPECTOR_CONF.replace(
            "[database]\n", "[database]\nmax_retries = -1\nconnection_recycle_time = 3600\nmax_pool_size = 5\n"
        )
        conf = config.load(self.write(text))
        self.assertIn("[database]connection_recycle_time", conf.ignored_options)
        # Honoured: the start-up retries.
        self.assertNotIn("[database]max_retries", conf.ignored_options)
        self.assertEqual(conf.database.max_retries, -1)
        self.assertEqual(conf.database.retry_interval, 10)


    def test_password_auth_loads_keystone_plugin(self):
        """auth_type=password gives a keystoneauth plugin and session (no network)."""
        text = INSPECTOR_CONF.replace(
            "auth_type = none\nendpoint_override = http://192.0.2.5:6385\n",
            "auth_type = password\nauth_url = http://keystone.test:5000/v3\nusername = ironic\n"
            "password = s3cret\nproject_name = service\nuser_domain_name = Default\n"
            "project_domain_name = Default\nregion_name = RegionTwo\nvalid_interfaces = internal\n",
        )
        conf = config.load(self.write(text))
        auth = conf.ironic_auth
        self.assertEqual(auth.auth_type, "password")
        self.assertEqual(auth.auth.auth_url, "http://keystone.test:5000/v3")
        self.assertEqual(type(auth.auth).__name__, "Password")
        self.assertIsNotNone(auth.session)
        self.assertIsNone(auth.endpoint_override)
        self.assertEqual(auth.region_name, "RegionTwo")
        self.assertEqual(auth.interface, ("internal",))
        self.assertEqual(auth.service_type, "baremetal")
        self.assertNotIn("s3cret", repr(conf))

    def test_password_auth_missing_option(self):
        text = INSPECTOR_CONF.replace("auth_type = none", "auth_type = password\nusername = ironic")
        message = self.load_error(text)
        self.assertIn("[ironic]", message)
        self.assertIn("auth", message)


class ErrorTests(ConfigTestCase):
    def test_unknown_option(self):
        message = self.load_error(self.edit("processing", "no_such_option = 1"))
        self.assertIn("[processing]no_such_option", message)

    def test_unknown_default_option(self):
        self.assertIn("[DEFAULT]frobnicate", self.load_error(self.edit("DEFAULT", "frobnicate = yes")))

    def test_unknown_ironic_option(self):
        self.assertIn("[ironic]no_such_thing", self.load_error(self.edit("ironic", "no_such_thing = 1")))

    def test_all_unknown_options_named(self):
        text = self.edit("processing", "first_unknown = 1")
        text = self.edit("pxe_filter", "second_unknown = 2", base=text)
        message = self.load_error(text)
        self.assertIn("[processing]first_unknown", message)
        self.assertIn("[pxe_filter]second_unknown", message)

    def test_unknown_section(self):
        self.assertIn("[no_such_section]key", self.load_error(INSPECTOR_CONF + "\n[no_such_section]\nkey = v\n"))
        self.assertIn("[empty_section]", self.load_error(INSPECTOR_CONF + "\n[empty_section]\n"))

    def test_invalid_port(self):
        message = self.load_error(INSPECTOR_CONF.replace("listen_port = 5051", "listen_port = abc"))
        self.assertIn("listen_port", message)
        self.assertIn("abc", message)

    def test_invalid_choice(self):
        message = self.load_error(INSPECTOR_CONF.replace("add_ports = all", "add_ports = bogus"))
        self.assertIn("add_ports", message)
        self.assertIn("bogus", message)

    def test_negative_timeout(self):
        self.assertIn("timeout", self.load_error(INSPECTOR_CONF.replace("timeout = 1800", "timeout = -1")))

    def test_invalid_boolean(self):
        self.assertIn("power_off", self.load_error(INSPECTOR_CONF.replace("power_off = false", "power_off = perhaps")))

    def test_unknown_processing_hook(self):
        text = INSPECTOR_CONF.replace(
            "processing_hooks = $default_processing_hooks", "processing_hooks = $default_processing_hooks,lldp_magic"
        )
        message = self.load_error(text)
        self.assertIn("[processing]processing_hooks", message)
        self.assertIn("lldp_magic", message)

    def test_bad_pci_alias(self):
        message = self.load_error(self.edit("pci_devices", 'alias = {"vendor_id": "8086"}'))
        self.assertIn("[pci_devices]alias", message)

    def test_missing_file(self):
        path = os.path.join(self.mktemp(), "ironic-inspector.conf")
        with self.assertRaises(errors.ConfigError) as caught:
            config.load(path)
        self.assertIn(path, str(caught.exception))
        self.assertIn("does not exist", str(caught.exception))

    def test_unparsable_file(self):
        self.assertIn("cannot parse", self.load_error("listen_port = 5050\n"))

    def test_noauth_needs_endpoint(self):
        message = self.load_error(INSPECTOR_CONF.replace("endpoint_override = http://192.0.2.5:6385\n", ""))
        self.assertIn("[ironic]endpoint_override", message)

    def test_disabled_ports_cannot_keep_added(self):
        text = INSPECTOR_CONF.replace("add_ports = all", "add_ports = disabled")
        self.assertEqual(config.load(self.write(text)).processing.add_ports, "disabled")
        message = self.load_error(text.replace("keep_ports = present", "keep_ports = added"))
        self.assertIn("add_ports=disabled", message)
        self.assertIn("keep_ports=added", message)

    def test_setting_ipmi_credentials_needs_pyghmi(self):
        text = INSPECTOR_CONF.replace("power_off = false", "power_off = false\nenable_setting_ipmi_credentials = true", 1)
        self.assertTrue(config.load(self.write(text)).processing.enable_setting_ipmi_credentials)
        self.patch(ipmi, "pyghmi_available", lambda: False)
        self.assertIn("[processing]enable_setting_ipmi_credentials needs pyghmi", self.load_error(text))

    def test_unsupported_values_refused(self):
        cases = [
            ("auth_strategy = noauth", "auth_strategy = magic", "auth_strategy"),
            ("driver = noop", "driver = no-such-filter", "[pxe_filter]driver"),
            ("power_off = false", "power_off = false\nnode_not_found_hook = example", "[processing]node_not_found_hook"),
        ]
        for old, new, named in cases:
            self.assertIn(named, self.load_error(INSPECTOR_CONF.replace(old, new, 1)), new)
