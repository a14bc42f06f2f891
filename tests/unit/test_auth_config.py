"""Configuration of authentication: [keystone_authtoken], [oslo_policy], [http_basic]."""

import textwrap

from twisted.trial.unittest import SynchronousTestCase

from inspectord import config, errors

# The authentication part of a typical deployed ironic-inspector.conf
# (kolla-ansible / TripleO shaped), keystonemiddleware options included.
KEYSTONE_CONF = """\
[DEFAULT]
auth_strategy = keystone
listen_address = 192.0.2.1

[ironic]
auth_type = none
endpoint_override = http://192.0.2.5:6385

[keystone_authtoken]
www_authenticate_uri = https://keystone.example.com:5000
auth_url = https://keystone-internal.example.com:5000
auth_type = password
project_domain_id = default
user_domain_id = default
project_name = service
username = ironic-inspector
password = SECRET
region_name = RegionOne
memcache_security_strategy = ENCRYPT
memcache_secret_key = ALSO-SECRET
memcached_servers = 192.0.2.10:11211,192.0.2.11:11211
service_token_roles_required = true
service_type = baremetal-introspection
cafile = /etc/ssl/certs/ca-certificates.crt
token_cache_time = 600
http_connect_timeout = 5

[oslo_policy]
policy_file = /etc/ironic-inspector/policy.yaml
enforce_scope = true
enforce_new_defaults = true
"""


class KeystoneAuthtokenConfigTests(SynchronousTestCase):
    def write(self, text):
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text))
        return path

    def load_error(self, text):
        with self.assertRaises(errors.ConfigError) as caught:
            config.load(self.write(text))
        return str(caught.exception)

    def test_deployed_file_loads(self):
        conf = config.load(self.write(KEYSTONE_CONF))
        ks = conf.keystone_authtoken
        self.assertEqual(conf.default.auth_strategy, "keystone")
        self.assertEqual(ks.auth_url, "https://keystone-internal.example.com:5000")
        self.assertEqual(ks.www_authenticate_uri, "https://keystone.example.com:5000")
        self.assertEqual((ks.username, ks.password, ks.project_name), ("ironic-inspector", "SECRET", "service"))
        self.assertEqual((ks.user_domain_id, ks.project_domain_id), ("default", "default"))
        self.assertEqual(ks.token_cache_time, 600)
        self.assertEqual(ks.http_connect_timeout, 5)
        self.assertEqual(ks.cafile, "/etc/ssl/certs/ca-certificates.crt")
        self.assertEqual(conf.oslo_policy.policy_file, "/etc/ironic-inspector/policy.yaml")
        self.assertIs(conf.oslo_policy.enforce_new_defaults, True)
        self.assertEqual(
            sorted(conf.ignored_options),
            sorted([
                "[keystone_authtoken]region_name",
                "[keystone_authtoken]memcache_security_strategy",
                "[keystone_authtoken]memcache_secret_key",
                "[keystone_authtoken]memcached_servers",
                "[keystone_authtoken]service_token_roles_required",
                "[keystone_authtoken]service_type",
                "[oslo_policy]enforce_scope",
            ]),
        )

    def test_defaults(self):
        conf = config.load(self.write(KEYSTONE_CONF.replace("token_cache_time = 600\n", "")))
        self.assertEqual(conf.keystone_authtoken.token_cache_time, 300)
        self.assertEqual(conf.keystone_authtoken.auth_type, "password")
        self.assertIs(conf.keystone_authtoken.insecure, False)
        conf = config.load(self.write("[DEFAULT]\nauth_strategy = noauth\n[ironic]\nendpoint_override = http://i:6385\n"))
        self.assertEqual(conf.oslo_policy.policy_file, "policy.yaml")
        self.assertEqual(conf.http_basic.default_roles, ("admin",))
        self.assertEqual(conf.http_basic.user_roles, {})

    def test_auth_uri_is_the_old_name(self):
        text = KEYSTONE_CONF.replace("www_authenticate_uri =", "auth_uri =")
        self.assertEqual(config.load(self.write(text)).keystone_authtoken.www_authenticate_uri,
                         "https://keystone.example.com:5000")

    def test_unknown_option_reported(self):
        text = KEYSTONE_CONF.replace("[keystone_authtoken]\n", "[keystone_authtoken]\nusernam = x\n")
        self.assertIn("[keystone_authtoken]usernam", config.load(self.write(text)).unknown_options)

    def test_missing_service_credentials(self):
        cases = [
            ("auth_url = https://keystone-internal.example.com:5000\n", "[keystone_authtoken]auth_url"),
            ("username = ironic-inspector\n", "[keystone_authtoken]username"),
            ("password = SECRET\n", "[keystone_authtoken]password"),
            ("user_domain_id = default\n", "[keystone_authtoken]user_domain_name"),
            ("project_domain_id = default\n", "[keystone_authtoken]project_domain_name"),
        ]
        for line, named in cases:
            message = self.load_error(KEYSTONE_CONF.replace(line, ""))
            self.assertIn(named, message)
            self.assertIn("[DEFAULT]auth_strategy=keystone", message)

    def test_noauth_needs_no_keystone_options(self):
        text = ("[DEFAULT]\nauth_strategy = noauth\n[ironic]\nendpoint_override = http://i:6385\n"
                "[keystone_authtoken]\nauth_type = password\n")
        self.assertEqual(config.load(self.write(text)).default.auth_strategy, "noauth")

    def test_application_credential(self):
        text = KEYSTONE_CONF.replace("auth_type = password\n", "auth_type = v3applicationcredential\n")
        self.assertIn("application_credential_secret", self.load_error(text))
        text = text.replace("password = SECRET\n",
                            "application_credential_id = ac\napplication_credential_secret = s\n")
        self.assertEqual(config.load(self.write(text)).keystone_authtoken.application_credential_id, "ac")

    def test_secrets_not_in_repr(self):
        """The frozen options are plain values; the secret ones must not reach logs through the sample."""
        self.assertIn("#password = <None>", config.sample())
        self.assertIn("[keystone_authtoken]", config.sample())
        self.assertIn("[oslo_policy]", config.sample())
