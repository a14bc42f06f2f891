"""Configuration: an ironic-inspector.conf loads; mistakes name the option."""

import dataclasses
import os
import subprocess
import sys
import textwrap
import typing

from twisted.trial.unittest import SynchronousTestCase

from inspectord import config, ipmi, errors, service

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
        """The refusal of ``text``, by config.load or by a component's check at start."""
        with self.assertRaises(errors.ConfigError) as caught:
            service.check(config.load(self.write(text)))
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

    def test_proxy_headers_option(self):
        """[oslo_middleware]enable_proxy_headers_parsing is read (true by default, as ironic-inspector applied
        X-Forwarded-* always); its neighbours are ignored."""
        minimal = "[DEFAULT]\nauth_strategy = noauth\n[ironic]\nendpoint_override = http://i:6385\n"
        self.assertTrue(config.load(self.write(minimal)).oslo_middleware.enable_proxy_headers_parsing)
        conf = config.load(self.write(
            minimal + "[oslo_middleware]\nenable_proxy_headers_parsing = false\nmax_request_body_size = 1\n"
        ))
        self.assertFalse(conf.oslo_middleware.enable_proxy_headers_parsing)
        self.assertEqual(conf.ignored_options, ("[oslo_middleware]max_request_body_size",))
        self.assertRaises(errors.ConfigError, config.load,
                          self.write(minimal + "[oslo_middleware]\nenable_proxy_headers_parsing = maybe\n"))

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


class UnknownOptionTests(ConfigTestCase):
    """As oslo.config: an option nobody knows is reported, never refused."""

    def load(self, text):
        return config.load(self.write(text))

    def test_unknown_option(self):
        conf = self.load(self.edit("processing", "no_such_option = 1"))
        self.assertEqual(conf.unknown_options, ("[processing]no_such_option",))
        self.assertEqual(conf.processing.add_ports, "all")  # the rest of the file still applies

    def test_unknown_default_ironic_and_section(self):
        text = self.edit("DEFAULT", "frobnicate = yes")
        text = self.edit("ironic", "no_such_thing = 1", base=text)
        text += "\n[no_such_section]\nkey = v\n\n[empty_section]\n"
        conf = self.load(text)
        self.assertEqual(
            conf.unknown_options,
            ("[DEFAULT]frobnicate", "[ironic]no_such_thing", "[no_such_section]key", "[empty_section]"),
        )

    def test_options_deployment_tools_still_write(self):
        """Options ironic-inspector dropped long ago, written by kolla, TripleO, puppet..."""
        text = self.edit("ironic", "os_region = RegionOne")
        text = self.edit("processing", "store_data_location = inspector_data", base=text)
        text = self.edit("DEFAULT", "log_color = true\nlogdir = /var/log/x\nlogfile = x.log\nlog_config = /etc/l", base=text)
        text += "\n[iptables]\nmanage_firewall = false\n"
        conf = self.load(text)
        self.assertEqual(
            conf.unknown_options, ("[ironic]os_region", "[processing]store_data_location", "[iptables]manage_firewall")
        )
        # oslo.log options and their old names, which ironic-inspector still read
        for name in ("[DEFAULT]debug", "[DEFAULT]log_color", "[DEFAULT]logdir", "[DEFAULT]logfile", "[DEFAULT]log_config"):
            self.assertIn(name, conf.ignored_options)

    def test_invalid_value_still_refused_next_to_unknown_options(self):
        text = self.edit("processing", "no_such_option = 1").replace("add_ports = all", "add_ports = bogus")
        message = self.load_error(text)
        self.assertIn("add_ports", message)
        self.assertIn("bogus", message)

    def test_unknown_option_with_invalid_looking_value_is_not_parsed(self):
        self.assertIn("[DEFAULT]old_port", self.load(self.edit("DEFAULT", "old_port = not-a-number")).unknown_options)


class SeveralFilesTests(ConfigTestCase):
    """--config-file and --config-dir merged in order, later ones winning option by option."""

    def directory(self, files):
        path = self.mktemp()
        os.makedirs(path)
        for name, text in files.items():
            with open(os.path.join(path, name), "w", encoding="utf-8") as f:
                f.write(textwrap.dedent(text))
        return path

    def test_tripleo_dist_then_site_file(self):
        dist = self.write(INSPECTOR_CONF)
        site = self.write("[DEFAULT]\ntimeout = 900\n[processing]\nadd_ports = active\n")
        conf = config.load(config_files=[dist, site])
        self.assertEqual(conf.default.timeout, 900)  # from the second file
        self.assertEqual(conf.processing.add_ports, "active")
        self.assertEqual(conf.default.listen_port, 5051)  # from the first: merged option by option
        self.assertEqual(conf.processing.keep_ports, "present")
        self.assertEqual(conf.files, (dist, site))
        self.assertEqual(conf.path, site)

    def test_order_decides(self):
        first = self.write("[DEFAULT]\ntimeout = 900\n")
        second = self.write("[DEFAULT]\ntimeout = 1200\n")
        base = self.write(INSPECTOR_CONF)
        self.assertEqual(config.load(config_files=[base, first, second]).default.timeout, 1200)
        self.assertEqual(config.load(config_files=[base, second, first]).default.timeout, 900)

    def test_config_dir_in_name_order_and_only_conf_files(self):
        directory = self.directory({
            "20-late.conf": "[DEFAULT]\ntimeout = 20\n",
            "10-early.conf": "[DEFAULT]\ntimeout = 10\nclean_up_period = 7\n",
            "99-ignored.conf.bak": "[DEFAULT]\ntimeout = 99\n",
        })
        conf = config.load(self.write(INSPECTOR_CONF), config_dirs=[directory])
        self.assertEqual(conf.default.timeout, 20)
        self.assertEqual(conf.default.clean_up_period, 7)
        self.assertEqual([os.path.basename(f) for f in conf.files[1:]], ["10-early.conf", "20-late.conf"])

    def test_command_line_order_of_files_and_dirs(self):
        directory = self.directory({"a.conf": "[DEFAULT]\ntimeout = 10\n"})
        base = self.write(INSPECTOR_CONF)
        after = self.write("[DEFAULT]\ntimeout = 30\n")
        conf = config.load(sources=[("file", base), ("dir", directory), ("file", after)])
        self.assertEqual(conf.default.timeout, 30)
        conf = config.load(sources=[("file", base), ("file", after), ("dir", directory)])
        self.assertEqual(conf.default.timeout, 10)

    def test_multi_valued_options_follow_oslo_config(self):
        """oslo.config: a MultiStrOpt's values from every file are concatenated."""
        extra = self.write('[pci_devices]\nalias = {"vendor_id": "15b3", "product_id": "1017", "name": "cx5"}\n')
        conf = config.load(config_files=[self.write(INSPECTOR_CONF), extra])
        self.assertEqual(len(conf.pci_devices.alias), 3)

    def test_unknown_options_of_every_file_each_named_once(self):
        first = self.write(self.edit("DEFAULT", "log_colour = true"))
        second = self.write("[DEFAULT]\nlog_colour = false\n[processing]\nstore_data_location = x\n")
        conf = config.load(config_files=[first, second])
        self.assertEqual(conf.unknown_options, ("[DEFAULT]log_colour", "[processing]store_data_location"))

    def test_invalid_value_in_a_later_file_named(self):
        message = self.load_error_files([self.write(INSPECTOR_CONF), self.write("[DEFAULT]\nlisten_port = huge\n")])
        self.assertIn("listen_port", message)
        self.assertIn("huge", message)

    def load_error_files(self, files):
        with self.assertRaises(errors.ConfigError) as caught:
            config.load(config_files=files)
        return str(caught.exception)

    def test_missing_directory(self):
        missing = os.path.join(self.mktemp(), "conf.d")
        with self.assertRaises(errors.ConfigError) as caught:
            config.load(self.write(INSPECTOR_CONF), config_dirs=[missing])
        self.assertIn(missing, str(caught.exception))


class ErrorTests(ConfigTestCase):
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


class OptionTableTests(ConfigTestCase):
    """doc/ironic-inspector-12.5.0-options.tsv (every ironic-inspector option) matches the loader."""

    TABLE = os.path.join(os.path.dirname(__file__), "..", "..", "doc", "ironic-inspector-12.5.0-options.tsv")

    def test_every_option_is_honoured_or_accepted(self):
        with open(self.TABLE, encoding="utf-8") as f:
            header, *lines = f.read().splitlines()
        self.assertEqual(header.split("\t"), ["section", "option", "deprecated_names", "handling", "note"])
        self.assertGreater(len(lines), 300)
        text = []
        expected_ignored = set()
        for line in lines:
            section, option, _, handling, note = line.split("\t")
            self.assertIn(handling, ("honoured", "ignored"), line)
            if handling == "ignored":
                self.assertTrue(note, "no reason given for ignoring [{}]{}".format(section, option))
            text.append("[{}]\n{} = x\n".format(section, option))
            expected_ignored.add("[{}]{}".format(section, option))
        ignored, unknown = {}, {}
        conf = config._make_conf()
        for i, chunk in enumerate(text):
            path = self.write(chunk)
            config._classify(conf, path, ignored, unknown)
        self.assertEqual(list(unknown), [])  # no ironic-inspector option is "unknown"
        # what the loader ignores is what the table says (plus the few parsed but not acted on)
        self.assertLessEqual(set(ignored), expected_ignored)


class LeafTests(ConfigTestCase):
    """config.py parses and freezes; it imports no component and builds typed records."""

    def test_imports_no_component(self):
        """Importing config.py and loading a file (checks included) loads no other inspectord module."""
        path = self.write(INSPECTOR_CONF)
        code = (
            "import sys, inspectord.config; inspectord.config.load(sys.argv[1]); "
            "print(' '.join(m for m in sys.modules if m.startswith('inspectord')))"
        )
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        out = subprocess.run([sys.executable, "-c", code, os.path.abspath(path)], cwd=root, capture_output=True, text=True, check=True)
        self.assertEqual(sorted(out.stdout.split()), ["inspectord", "inspectord.config", "inspectord.errors", "inspectord.keystone_options"])

    def assertTyped(self, cls):
        for field in dataclasses.fields(cls):
            self.assertNotIn(field.type, (object, typing.Any), "{}.{}".format(cls.__name__, field.name))

    def test_every_field_typed(self):
        self.assertTyped(config.Config)
        self.assertEqual(set(config.SECTIONS), set(config._OPTS))
        for cls in config.SECTIONS.values():
            self.assertTyped(cls)
            self.assertIs(getattr(config, cls.__name__), cls)

    def test_values_have_their_types(self):
        """Every frozen value, default or read from a file, is an instance of its field's type."""
        conf = config.load(self.write(INSPECTOR_CONF + "\n[DEFAULT]\nlisten_unix_socket_mode = 0660\n"))
        checked = 0
        for field in dataclasses.fields(config.Config):
            section = getattr(conf, field.name)
            if type(section) not in config.SECTIONS.values():
                continue
            self.assertIsInstance(section, typing.get_args(field.type) or field.type)
            for option in dataclasses.fields(section):
                value = getattr(section, option.name)
                allowed = typing.get_args(option.type) or (option.type,)
                self.assertIsInstance(value, allowed, "[{}]{}".format(field.name, option.name))
                checked += 1
        self.assertEqual(checked, sum(len(dataclasses.fields(cls)) for cls in config.SECTIONS.values()))
        self.assertEqual(conf.default.listen_unix_socket_mode, 0o660)
        self.assertEqual(config.DefaultOptions.__dataclass_fields__["listen_unix_socket_mode"].type, typing.Optional[int])
        self.assertIs(config.ProcessingOptions.__dataclass_fields__["power_off"].type, bool)
