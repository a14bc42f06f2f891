"""inspectord.keystone: keystoneauth's options declared without keystoneauth, http_basic, the lazy import."""

import os
import subprocess
import sys
import tempfile
import textwrap

from oslo_config import cfg
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from inspectord import config, errors, keystone, keystone_options


def _shape(opt):
    return (
        type(opt).__name__,
        opt.dest,
        opt.default,
        opt.secret,
        sorted((d.group, d.name) for d in opt.deprecated_opts),
        bool(opt.deprecated_for_removal),
        type(opt.type).__name__,
        sorted(getattr(opt.type, "choices", None) or (), key=str),
    )


class DeclarationTests(SynchronousTestCase):
    """The static declaration is what the installed keystoneauth registers, option by option."""

    def test_conf_options_match_keystoneauth(self):
        from keystoneauth1 import loading as ks_loading

        declared = {o.dest: _shape(o) for o in keystone_options.AUTH_COMMON_OPTS + keystone_options.SESSION_OPTS + keystone_options.ADAPTER_OPTS}
        upstream = {
            o.dest: _shape(o)
            for o in ks_loading.get_auth_common_conf_options()
            + ks_loading.get_session_conf_options()
            + ks_loading.get_adapter_conf_options(include_deprecated=True)
        }
        self.assertEqual(declared, upstream)

    def test_registered_group_is_keystoneauths(self):
        from keystoneauth1 import loading as ks_loading

        ours, theirs = cfg.ConfigOpts(), cfg.ConfigOpts()
        keystone_options.register_options(ours, "ironic")
        ks_loading.register_auth_conf_options(theirs, "ironic")
        ks_loading.register_session_conf_options(theirs, "ironic")
        ks_loading.register_adapter_conf_options(theirs, "ironic")
        self.assertEqual(sorted(ours["ironic"]), sorted(theirs["ironic"]))

    def test_plugin_option_names_match_keystoneauth(self):
        from keystoneauth1 import loading as ks_loading

        for plugin, names in keystone_options.PLUGIN_OPTIONS.items():
            loader = ks_loading.get_plugin_loader(plugin)
            upstream = set()
            for opt in loader.get_options():
                upstream.add(opt.dest)
                upstream.update(old.dest for old in opt.deprecated)
            self.assertEqual(set(names), upstream, plugin)

    def test_http_basic_options_match_keystoneauth(self):
        from keystoneauth1 import loading as ks_loading

        loader = ks_loading.get_plugin_loader("http_basic")
        upstream = {o.dest: sorted(d.dest for d in o.deprecated) for o in loader.get_options()}
        ours = {o.dest: sorted({d.name.replace("-", "_") for d in o.deprecated_opts}) for o in keystone_options._HTTP_BASIC_OPTS}
        self.assertEqual(ours, upstream)


BASE = """\
[DEFAULT]
auth_strategy = noauth
[ironic]
{ironic}
[pxe_filter]
driver = noop
"""


class LoadTests(SynchronousTestCase):
    def write(self, ironic):
        fd, path = tempfile.mkstemp(suffix=".conf")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "w") as f:
            f.write(BASE.format(ironic=textwrap.dedent(ironic)))
        return path

    def test_http_basic_without_keystoneauth(self):
        path = self.write("auth_type = http_basic\nusername = ironic\npassword = s3cret\n"
                          "endpoint_override = http://ironic.test:6385\n")
        auth = config.load(path).ironic_auth
        self.assertIsNone(auth.auth)
        endpoint = keystone.endpoint_for(auth, None, None)
        base, headers = self.successResultOf(defer.Deferred.fromCoroutine(endpoint()))
        self.assertEqual(base.to_text(), "http://ironic.test:6385")
        self.assertEqual(headers, {"Authorization": "Basic aXJvbmljOnMzY3JldA=="})  # ironic:s3cret
        self.assertNotIn("s3cret", repr(auth))

    def test_http_basic_endpoint_option(self):
        path = self.write("auth_type = http_basic\nuser_name = ironic\npassword = pw\nendpoint = http://ironic.test:6385/v1\n")
        auth = config.load(path).ironic_auth
        self.assertEqual(auth.endpoint_override, "http://ironic.test:6385/v1")

    def test_http_basic_needs_username_and_endpoint(self):
        path = self.write("auth_type = http_basic\npassword = pw\nendpoint_override = http://ironic.test:6385\n")
        self.assertIn("[ironic]username", str(self.assertRaises(errors.ConfigError, config.load, path)))
        path = self.write("auth_type = http_basic\nusername = ironic\n")
        self.assertIn("[ironic]endpoint_override", str(self.assertRaises(errors.ConfigError, config.load, path)))

    def test_plugin_options_of_other_types_are_not_unknown(self):
        path = self.write("auth_type = none\nendpoint_override = http://ironic.test:6385\n"
                          "tenant_name = old\nos_region = x\n")
        self.assertEqual(config.load(path).unknown_options, ("[ironic]os_region",))

    def test_keystoneauth_imported_only_with_keystone(self):
        """A fresh interpreter: loading a configuration without Keystone leaves keystoneauth1 and requests out."""
        probe = textwrap.dedent("""
            import sys
            from inspectord import config
            for path in sys.argv[1:]:
                config.load(path)
            print(sorted(m for m in ("keystoneauth1", "requests", "urllib3") if m in sys.modules))
        """)

        none = self.write("auth_type = none\nendpoint_override = http://ironic.test:6385\n")
        basic = self.write("auth_type = http_basic\nusername = u\nendpoint_override = http://ironic.test:6385\n")
        out = subprocess.run([sys.executable, "-c", probe, none, basic], capture_output=True, text=True,
                             check=True, timeout=60)
        self.assertEqual(out.stdout.strip(), "[]")


class _HeadersOnly:
    """A keystoneauth plugin and session that give headers but no expiry (no get_access)."""

    def __init__(self):
        self.asked = 0
        self.auth = self.session = self

    def get_auth_headers(self, auth):
        self.asked += 1
        return {"X-Auth-Token": "t{}".format(self.asked)}


class SessionTests(SynchronousTestCase):
    def test_without_expiry_asked_again_hourly_on_the_clock(self):
        from twisted.internet import task

        from inspectord.threads import SynchronousRunner

        clock = task.Clock()
        clock.advance(1_000)
        plugin = _HeadersOnly()
        token = keystone.ServiceToken(plugin, plugin, clock, SynchronousRunner(), error=errors.IronicError)
        self.assertEqual(self.successResultOf(defer.Deferred.fromCoroutine(token.get())), "t1")
        clock.advance(keystone.UNTIMED_LIFETIME - keystone.REFRESH_MARGIN - 1)
        self.assertEqual(self.successResultOf(defer.Deferred.fromCoroutine(token.get())), "t1")
        clock.advance(1)
        self.assertEqual(self.successResultOf(defer.Deferred.fromCoroutine(token.get())), "t2")
        self.assertEqual(token.fetched, 2)
