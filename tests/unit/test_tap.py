"""``twistd inspectord``: option parsing and the service tree (never started)."""

import gc
import io
import os
import platform
import sys

import sqlalchemy as sa
from twisted.application import app, internet, service
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from inspectord import logs, tap
from inspectord.sdnotify import Notifier
from inspectord.service import OrderedMultiService
from inspectord.api.app import API, make_site
from inspectord.api.auth import NoAuth
from inspectord.introspection import Introspection
from inspectord.service import InspectordService, settle_memory
from inspectord.threads import ThreadPoolService
from inspectord.store import SQLStore, make_engine
from inspectord.store.pool import DatabasePool, SynchronousPool
from tests.unit.helpers import make_config

CONF = """\
[DEFAULT]
listen_address = 127.0.0.1
listen_port = 5055
auth_strategy = noauth
clean_up_period = {clean_up_period}

[ironic]
auth_type = none
endpoint_override = http://127.0.0.1:6385

[database]
connection = sqlite:///{database}
"""


class TapTestCase(SynchronousTestCase):
    def write_config(self, clean_up_period=60, extra=""):
        directory = self.mktemp()
        os.makedirs(directory)
        self.database = os.path.join(directory, "db", "inspectord.sqlite")
        path = os.path.join(directory, "inspectord.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(CONF.format(database=self.database, clean_up_period=clean_up_period) + extra)
        return path

    def options(self, *argv):
        options = tap.Options()
        options.parseOptions(list(argv))
        return options


class OptionsTests(TapTestCase):
    def test_config_file(self):
        path = self.write_config()
        options = self.options("--config-file", path)
        self.assertEqual(options["config-file"], path)
        self.assertEqual(options["config"].path, path)
        self.assertEqual(options["config"].default.listen_port, 5055)

    def test_short_flag(self):
        path = self.write_config()
        self.assertEqual(self.options("-c", path)["config"].database.connection, "sqlite:///" + self.database)

    def test_missing_file(self):
        path = os.path.join(self.mktemp(), "nothing.conf")
        with self.assertRaises(usage.UsageError) as caught:
            self.options("--config-file", path)
        self.assertIn(path, str(caught.exception))

    def test_bad_option_named(self):
        path = self.write_config(extra="\n[processing]\nadd_ports = sometimes\n")
        with self.assertRaises(usage.UsageError) as caught:
            self.options("--config-file", path)
        self.assertIn("configuration error", str(caught.exception))
        self.assertIn("add_ports", str(caught.exception))

    def test_unknown_option_warned_once_not_refused(self):
        path = self.write_config(extra="\n[processing]\nno_such_option = 1\n[DEFAULT]\ndebug = true\n")
        options = self.options("--config-file", path)
        self.assertEqual(options["config"].unknown_options, ("[processing]no_such_option",))
        events = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        tap.makeService(options)
        warnings = [e for e in events if e.get("log_level") is not None and e["log_level"].name == "warn"]
        unknown = [e for e in warnings if "no_such_option" in e.get("options", "")]
        self.assertEqual(len(unknown), 1)
        self.assertIn("Unknown option", unknown[0]["log_format"])
        self.assertEqual([e["options"] for e in warnings if "debug" in e.get("options", "")], ["[DEFAULT]debug"])

    def test_several_config_files_and_dirs_in_order(self):
        base = self.write_config()
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "10-timeout.conf"), "w") as f:
            f.write("[DEFAULT]\ntimeout = 100\nlisten_port = 5056\n")
        later = os.path.join(directory, "later.ini")
        with open(later, "w") as f:
            f.write("[DEFAULT]\ntimeout = 200\n")
        options = self.options("--config-file", base, "--config-dir", directory, "--config-file", later)
        self.assertEqual(options["config"].default.timeout, 200)
        self.assertEqual(options["config"].default.listen_port, 5056)
        self.assertEqual(options["config-file"], later)
        options = self.options("-c", base, "--config-file", later, "--config-dir", directory)
        self.assertEqual(options["config"].default.timeout, 100)

    def test_ironic_inspector_command_is_twistd_in_the_foreground(self):
        argv = tap.twistd_argv(["--config-file", "/etc/a.conf", "--config-file", "/etc/b.conf"])
        self.assertEqual(argv[argv.index("inspectord"):], ["inspectord", "--config-file", "/etc/a.conf", "--config-file", "/etc/b.conf"])
        self.assertIn("--nodaemon", argv[:argv.index("inspectord")])
        from twisted.scripts.twistd import ServerOptions

        parsed = ServerOptions()
        parsed.parseOptions(argv[1:3] + ["inspectord", "--config-file", self.write_config()])
        self.assertTrue(parsed["nodaemon"])
        self.assertEqual(parsed.subCommand, "inspectord")
        self.assertEqual(parsed.subOptions["config"].default.listen_port, 5055)

    def test_oslo_log_flags_split_off(self):
        rest, log_file, debug = tap.split_oslo_log_flags(
            ["--config-file", "/etc/a.conf", "--log-file=/var/log/x.log", "-d", "--config-dir", "/etc/d"]
        )
        self.assertEqual((rest, log_file, debug), (["--config-file", "/etc/a.conf", "--config-dir", "/etc/d"],
                                                   "/var/log/x.log", True))
        self.assertEqual(tap.split_oslo_log_flags(["--logfile", "x.log", "--log-dir", "/var/log/i", "--debug",
                                                   "--nodebug"]),
                         ([], "/var/log/i/x.log", False))
        self.assertEqual(tap.split_oslo_log_flags(["--logdir", "/var/log/i"]),
                         ([], "/var/log/i/ironic-inspector.log", False))
        self.assertEqual(tap.split_oslo_log_flags(["-c", "/etc/a.conf"]), (["-c", "/etc/a.conf"], None, False))

    def run_ironic_inspector(self, *flags):
        """The twistd options ``ironic-inspector --config-file FILE FLAGS`` runs with (twistd itself not run)."""
        ran = []
        self.patch(sys, "argv", list(sys.argv))
        self.patch(app, "run", lambda run_app, options_class: ran.append(options_class))
        tap.ironic_inspector_exit(["--config-file", self.write_config(), *flags])
        options = ran[0]()
        options.parseOptions(sys.argv[1:])
        return options

    def emit_all_levels(self, observer):
        for level in (LogLevel.debug, LogLevel.info, LogLevel.warn):
            observer({"log_level": level, "log_format": "{level} line", "level": level.name,
                      "log_time": 0.0, "log_namespace": "inspectord.test", "log_system": "-"})

    def test_ironic_inspector_log_file_and_debug(self):
        path = os.path.join(self.mktemp(), "inspector.log")
        os.makedirs(os.path.dirname(path))
        options = self.run_ironic_inspector("--log-file", path, "--debug")
        self.assertEqual(options.subCommand, "inspectord")
        self.assertEqual(options["logfile"], path)
        self.emit_all_levels(options["logger"]())
        with open(path) as f:
            lines = f.read()
        self.assertIn("debug line", lines)
        self.assertIn("warn line", lines)

    def test_ironic_inspector_without_debug_logs_from_info(self):
        path = os.path.join(self.mktemp(), "inspector.log")
        os.makedirs(os.path.dirname(path))
        options = self.run_ironic_inspector("--log-file=" + path)
        self.emit_all_levels(options["logger"]())
        with open(path) as f:
            lines = f.read()
        self.assertNotIn("debug line", lines)
        self.assertIn("info line", lines)

    def test_leveled_observer_to_stdout(self):
        out = io.StringIO()
        self.emit_all_levels(logs.leveled_file_observer(None, False, stdout=out))
        self.assertEqual(["info" in out.getvalue(), "debug" in out.getvalue()], [True, False])

    def test_dbsync_arguments(self):
        self.assertEqual(
            tap._parse_dbsync("ironic-inspector-dbsync", ["--config-file", "a", "--config-dir", "d", "--config-file", "b", "upgrade"]),
            ([("file", "a"), ("dir", "d"), ("file", "b")], "upgrade"),
        )
        self.assertRaises(SystemExit, tap._parse_dbsync, "x", ["--config-file", "a", "downgrade"])

    def test_dbsync_merges_files(self):
        base = self.write_config()
        moved = os.path.join(os.path.dirname(self.database), "moved.sqlite")
        later = base + ".later"
        with open(later, "w") as f:
            f.write("[database]\nconnection = sqlite:///{}\n".format(moved))
        self.assertEqual(tap.main_dbsync(["--config-file", base, "--config-file", later, "upgrade"]), 0)
        self.assertTrue(os.path.exists(moved))
        self.assertFalse(os.path.exists(self.database))

    def test_unknown_flag(self):
        self.assertRaises(usage.UsageError, self.options, "--no-such-flag")

    def test_plugin(self):
        """The twistd plugin names this module."""
        from twisted.plugins import inspectord_plugin

        maker = inspectord_plugin.inspectord
        self.assertEqual((maker.tapname, maker.module), ("inspectord", "inspectord.tap"))
        self.assertIs(maker.options, tap.Options)


class MakeServiceTests(TapTestCase):
    def make(self, **kwargs):
        top = tap.makeService(self.options("--config-file", self.write_config(**kwargs)))
        self.assertFalse(top.running)
        return top

    def test_service_tree(self):
        top = self.make()
        self.assertIsInstance(top, service.MultiService)
        children = list(top)
        self.assertEqual(len(children), 4)
        db = top.getServiceNamed("database-pool")
        self.assertIsInstance(db, DatabasePool)
        io = top.getServiceNamed("inspectord-io")
        self.assertIsInstance(io, ThreadPoolService)
        self.assertEqual(io.pool.max, 4)
        # The systemd notifier first: stopped last, its watchdog keep-alives go on during a stop.
        self.assertEqual([type(c) for c in children], [Notifier, DatabasePool, ThreadPoolService, InspectordService])
        self.assertFalse(any(c.running for c in children))

    def test_ipmi_verifier_runs_in_the_ipmi_pool(self):
        """The pyghmi logins run in the named pool the service tree stops (with its bounded grace)."""
        top = self.make(extra="\n[processing]\nenable_setting_ipmi_credentials = true\n")
        ipmi = top.getServiceNamed("inspectord-ipmi")
        self.assertIsInstance(ipmi, ThreadPoolService)
        main = list(top)[-1]
        self.assertIs(main.introspection.verifier._pool, ipmi)

    def test_database_from_config(self):
        main = list(self.make())[-1]
        self.assertEqual(str(main.store.engine.url), "sqlite:///" + self.database)
        self.assertTrue(os.path.isdir(os.path.dirname(self.database)))
        self.assertEqual(main.introspection.config.default.listen_port, 5055)

    def test_listening_endpoint(self):
        main = list(self.make())[-1]
        endpoint = main._api.endpoint
        self.assertEqual((endpoint._port, endpoint._interface), (5055, "127.0.0.1"))

    def test_periodic_timer(self):
        main = list(self.make(clean_up_period=30))[-1]
        self.assertIsInstance(main._timer, internet.TimerService)
        self.assertEqual(main._timer.step, 30)

    def test_no_timer_when_disabled(self):
        main = list(self.make(clean_up_period=0))[-1]
        self.assertIsNone(main._timer)


class FailingStore:
    def upgrade(self):
        return defer.fail(RuntimeError("database is locked"))


class InspectordServiceTests(SynchronousTestCase):
    """The main service on a memory reactor: migrations, then API and timer."""

    def make(self, store, clean_up_period=60, settle=None):
        self.reactor = MemoryReactorClock()
        config = make_config()
        self.introspection = Introspection(store, None, config, self.reactor)
        api = API(self.introspection, store, None, config, NoAuth("127.0.0.1"))
        site = make_site(api.app.resource(), 1024)
        return InspectordService(
            self.reactor, store, self.introspection, "tcp:5055:interface=127.0.0.1", site, clean_up_period,
            settle=settle,
        )

    def test_memory_settled_once_ready(self):
        engine = make_engine("sqlite://")
        self.addCleanup(engine.dispose)
        settled = []
        main = self.make(SQLStore(engine, SynchronousPool()), settle=lambda: settled.append(1))
        main.startService()
        self.successResultOf(main.ready)
        self.assertEqual(settled, [1])
        self.successResultOf(main.stopService())

    def test_settle_memory_freezes_and_trims(self):
        self.addCleanup(gc.unfreeze)
        trimmed = settle_memory()
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertEqual(trimmed, platform.libc_ver()[0] == "glibc")

    def test_start_migrates_then_listens(self):
        engine = make_engine("sqlite://")
        self.addCleanup(engine.dispose)
        main = self.make(SQLStore(engine, SynchronousPool()), clean_up_period=30)
        periodic = []
        self.patch(self.introspection, "periodic", lambda: _record_call(periodic))
        main.startService()
        self.successResultOf(main.ready)
        self.assertIn("inspectord_nodes", sa.inspect(engine).get_table_names())
        listening = [(port, interface) for port, _, _, interface in self.reactor.tcpServers]
        self.assertEqual(listening, [(5055, "127.0.0.1")])
        self.assertEqual(len(periodic), 1)  # the timer runs at once...
        self.reactor.advance(30)
        self.assertEqual(len(periodic), 2)  # ...then every clean_up_period
        self.successResultOf(main.stopService())
        self.reactor.advance(60)
        self.assertEqual(len(periodic), 2)

    def test_failed_start_stops_reactor(self):
        main = self.make(FailingStore())
        self.reactor.running = True
        main.startService()
        self.successResultOf(main.ready)
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(self.reactor.tcpServers, [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


def _record_call(calls):
    async def run():
        calls.append(1)

    return run()


class OrderedStopTests(SynchronousTestCase):
    def test_children_stop_one_after_the_other_last_first(self):
        events = []
        pending = {}

        class Child(service.Service):
            def stopService(self):
                super().stopService()
                events.append(self.name)
                pending[self.name] = defer.Deferred()
                return pending[self.name]

        top = OrderedMultiService()
        for name in ("pool", "main"):
            child = Child()
            child.name = name
            child.setServiceParent(top)
        top.startService()
        d = top.stopService()
        self.assertEqual(events, ["main"])  # the pool waits for main
        pending["main"].callback(None)
        self.assertEqual(events, ["main", "pool"])
        self.assertNoResult(d)
        pending["pool"].callback(None)
        self.successResultOf(d)
