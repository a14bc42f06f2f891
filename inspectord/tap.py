"""``twistd inspectord``: command-line options and the service maker.

The only module that looks up the global reactor.
"""

import sys

from twisted.python import usage

from inspectord import config as config_mod
from inspectord import errors


class Options(usage.Options):
    synopsis = "--config-file FILE"
    optParameters = [
        ["config-file", "c", None, "ironic-inspector compatible configuration file."],
    ]
    longdesc = "inspectord: bare-metal introspection for OpenStack Ironic (ironic-inspector API)."

    def postOptions(self):
        try:
            self["config"] = config_mod.load(self["config-file"])
        except errors.ConfigError as e:
            raise usage.UsageError("configuration error: {}".format(e)) from None


def makeService(options):
    from twisted.internet import reactor
    from twisted.logger import Logger

    from inspectord.service import make_service

    config = options["config"]
    log = Logger(namespace="inspectord")
    if config.ignored_options:
        log.warn(
            "Ignoring ironic-inspector option(s) inspectord does not use: {options}",
            options=", ".join(config.ignored_options),
        )
    log.info("inspectord starting with {path}", path=config.path or "built-in defaults")
    try:
        return make_service(config, reactor)
    except errors.ConfigError as e:
        # Files the configuration names (htpasswd, policy...) are read here.
        raise SystemExit("inspectord: configuration error: {}".format(e)) from None


def main_dbsync(argv=None):
    """``inspectord-dbsync --config-file FILE upgrade|adopt``.

    ``upgrade`` applies migrations and, the first time the database is
    found to hold ironic-inspector's tables, adopts their data; ``adopt``
    (again) copies whatever ironic-inspector's tables hold that inspectord's
    do not.  Both print what they adopted.
    """
    import argparse

    import sqlalchemy

    from inspectord.store.sql import make_engine, thd_upgrade_and_adopt

    parser = argparse.ArgumentParser(prog="inspectord-dbsync", description="Manage inspectord's database schema.")
    parser.add_argument("--config-file", required=False)
    parser.add_argument("command", choices=["upgrade", "adopt"])
    args = parser.parse_args(argv)
    try:
        config = config_mod.load(args.config_file)
    except errors.ConfigError as e:
        print("inspectord-dbsync: configuration error: {}".format(e), file=sys.stderr)
        return 2
    try:
        engine = make_engine(config.database.connection)
    except errors.ConfigError as e:
        print("inspectord-dbsync: configuration error: {}".format(e), file=sys.stderr)
        return 2
    try:
        report = thd_upgrade_and_adopt(engine, first_only=args.command == "upgrade")
    except errors.ConfigError as e:
        print("inspectord-dbsync: configuration error: {}".format(e), file=sys.stderr)
        return 2
    except errors.SchemaError as e:
        print("inspectord-dbsync: {}".format(e), file=sys.stderr)
        return 1
    except sqlalchemy.exc.DBAPIError as e:
        print("inspectord-dbsync: database error: {}".format(e.orig), file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print("database schema is up to date")
    if report is not None:
        print(report.summary())
        for uuid in report.failed:
            print("node {}: interrupted by the swap, now in error".format(uuid))
    elif args.command == "adopt":
        print("nothing to adopt: no ironic-inspector schema in the database")
    return 0


def main_dbsync_exit():
    sys.exit(main_dbsync())
