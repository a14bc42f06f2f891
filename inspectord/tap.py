"""``twistd inspectord``, ``ironic-inspector``: command-line options and the service maker.

The only module that looks up the global reactor.
"""

import argparse
import functools
import os
import sys

from twisted.python import usage

from inspectord import config as config_mod
from inspectord import errors


class Options(usage.Options):
    synopsis = "[--config-file FILE]... [--config-dir DIR]..."
    longdesc = (
        "inspectord: bare-metal introspection for OpenStack Ironic (ironic-inspector API). "
        "--config-file and --config-dir may be repeated; they are read in the order given, "
        "later ones overriding earlier ones option by option, as oslo.config does."
    )

    def __init__(self):
        super().__init__()
        self["sources"] = []

    def opt_config_file(self, path):
        """ironic-inspector compatible configuration file (may be repeated)."""
        self["sources"].append(("file", path))

    opt_c = opt_config_file

    def opt_config_dir(self, path):
        """Directory whose *.conf files are read in name order (may be repeated)."""
        self["sources"].append(("dir", path))

    def postOptions(self):
        files = [path for kind, path in self["sources"] if kind == "file"]
        self["config-file"] = files[-1] if files else None
        try:
            self["config"] = config_mod.load(sources=self["sources"])
            from inspectord.service import check

            check(self["config"])
        except errors.ConfigError as e:
            raise usage.UsageError("configuration error: {}".format(e)) from None


def makeService(options):
    from twisted.internet import reactor
    from twisted.logger import Logger

    from inspectord import listening
    from inspectord.service import make_service

    config = options["config"]
    log = Logger(namespace="inspectord")
    if config.unknown_options:
        log.warn(
            "Unknown option(s), neither inspectord's nor ironic-inspector's (misspelt, or dropped "
            "by ironic-inspector), ignored: {options}",
            options=", ".join(config.unknown_options),
        )
    if config.ignored_options:
        log.warn(
            "Ignoring ironic-inspector option(s) inspectord does not use: {options}",
            options=", ".join(config.ignored_options),
        )
    for message in listening.warnings(config.default, config.ssl):
        log.warn("{message}", message=message)
    log.info(
        "inspectord starting with {files}, API on {where}",
        files=", ".join(config.files) or "built-in defaults",
        where=listening.describe(config.default),
    )
    try:
        return make_service(config, reactor)
    except errors.ConfigError as e:
        # Files the configuration names (certificates, htpasswd, policy...) are read here.
        raise SystemExit("inspectord: configuration error: {}".format(e)) from None


def _parse_dbsync(prog, argv):
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description="Manage inspectord's database schema.")
    sources = []

    class Source(argparse.Action):
        def __call__(self, parser, namespace, value, option_string=None):
            sources.append(("dir" if option_string == "--config-dir" else "file", value))

    parser.add_argument("--config-file", action=Source, metavar="FILE", help="may be repeated")
    parser.add_argument("--config-dir", action=Source, metavar="DIR", help="may be repeated")
    parser.add_argument("command", choices=["upgrade", "adopt"])
    args = parser.parse_args(argv)
    return sources, args.command


def main_dbsync(argv=None, prog="inspectord-dbsync"):
    """``inspectord-dbsync --config-file FILE upgrade|adopt``.

    ``upgrade`` applies migrations and, the first time the database is
    found to hold ironic-inspector's tables, adopts their data; ``adopt``
    (again) copies whatever ironic-inspector's tables hold that inspectord's
    do not.  Both print what they adopted.
    """
    import sqlalchemy

    from inspectord.store.sql import make_engine, thd_upgrade_and_adopt

    sources, command = _parse_dbsync(prog, argv)
    try:
        config = config_mod.load(sources=sources)
    except errors.ConfigError as e:
        print("{}: configuration error: {}".format(prog, e), file=sys.stderr)
        return 2
    try:
        engine = make_engine(config.database.connection)
    except errors.ConfigError as e:
        print("{}: configuration error: {}".format(prog, e), file=sys.stderr)
        return 2
    try:
        report = thd_upgrade_and_adopt(engine, first_only=command == "upgrade")
    except errors.ConfigError as e:
        print("{}: configuration error: {}".format(prog, e), file=sys.stderr)
        return 2
    except errors.SchemaError as e:
        print("{}: {}".format(prog, e), file=sys.stderr)
        return 1
    except sqlalchemy.exc.DBAPIError as e:
        print("{}: database error: {}".format(prog, e.orig), file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print("database schema is up to date")
    if report is not None:
        print(report.summary())
        for uuid in report.failed:
            print("node {}: interrupted by the swap, now in error".format(uuid))
    elif command == "adopt":
        print("nothing to adopt: no ironic-inspector schema in the database")
    return 0


def main_dbsync_exit():
    sys.exit(main_dbsync())


def ironic_dbsync_exit():
    """``ironic-inspector-dbsync --config-file FILE upgrade``, as kolla and puppet run it."""
    sys.exit(main_dbsync(prog="ironic-inspector-dbsync"))


def twistd_argv(argv, log_file=None):
    """The ``twistd`` command line that ``ironic-inspector ARGV`` stands for.

    The daemon runs in the foreground (as ironic-inspector did under
    systemd and in containers), logging to standard output or ``log_file``,
    without a pid file; ``ARGV`` (``--config-file``, ``--config-dir``) goes
    to the plugin.
    """
    logging = ["--logfile={}".format(log_file)] if log_file else []
    return ["twistd", "--nodaemon", "--pidfile=", *logging, "inspectord", *argv]


def split_oslo_log_flags(argv):
    """``(rest of argv, log file or None, debug)`` from ironic-inspector's command line.

    oslo.log gave ironic-inspector ``--log-file``/``--logfile``,
    ``--log-dir``/``--logdir`` (the file ``ironic-inspector.log`` in it, or
    ``--log-file`` relative to it) and ``--debug``/``-d``/``--nodebug``;
    deployment units pass them.  Everything else is left for the plugin.
    """
    parser = argparse.ArgumentParser(prog="ironic-inspector", add_help=False, allow_abbrev=False)
    parser.add_argument("--log-file", "--logfile", dest="log_file")
    parser.add_argument("--log-dir", "--logdir", dest="log_dir")
    parser.add_argument("-d", "--debug", dest="debug", action="store_true")
    parser.add_argument("--nodebug", dest="debug", action="store_false")
    known, rest = parser.parse_known_args(argv)
    log_file = known.log_file
    if known.log_dir:
        log_file = os.path.join(known.log_dir, log_file or "ironic-inspector.log")
    return rest, log_file, known.debug


def ironic_inspector_exit(argv=None):
    """``ironic-inspector --config-file FILE``: the same daemon as ``twistd -n inspectord``.

    oslo.log's flags map onto twistd's logging: ``--log-file`` is twistd's
    ``--logfile``; without ``--debug`` debug events are left out, as
    oslo.log's default level (INFO) did.
    """
    from twisted.application import app
    from twisted.scripts import twistd

    from inspectord import logs

    argv = sys.argv[1:] if argv is None else argv
    rest, log_file, debug = split_oslo_log_flags(argv)

    class ServerOptions(twistd.ServerOptions):
        def postOptions(self):
            super().postOptions()
            self["logger"] = functools.partial(logs.leveled_file_observer, log_file, debug)

    sys.argv = twistd_argv(rest, log_file)
    sys.argv[0] = os.path.join(os.path.dirname(sys.executable), "twistd")
    app.run(twistd.runApp, ServerOptions)
