"""inspectord's idle footprint: RSS after start and the heavy modules it imported.

``python -m bench.footprint [--runs N] [--out bench/results]`` starts
``twistd inspectord`` with the benchmark's default configuration
(:data:`devenv.daemon.BASE_CONFIG`: no auth, ``auth_type = none``,
SQLite, ``[pxe_filter] driver = noop``) twice on one database: the first
start creates the schema, the restart finds it at its head.  Each time it
waits until the service has settled, reads its ``VmRSS``, stops it and
reads the modules it had imported (written by :mod:`bench.launch`).
Raw data goes to ``footprint.json``, the table to ``footprint.md``.

Ironic is not needed to start: the configuration points at a closed
loopback port, and the idle service makes no call until the periodic
sync (``clean_up_period``, set longer than the measurement).
"""

import argparse
import json
import pathlib
import platform
import statistics
import sys
import tempfile
import time

from bench import procstats
from devenv.daemon import InspectordProcess, free_port

BENCH_DIR = pathlib.Path(__file__).resolve().parent

#: Libraries the default configuration does not use: none of them may be
#: imported by an idle inspectord on a migrated database.
NOT_NEEDED = (
    "alembic",  # only when migrating
    "mako",
    "pygments",
    "jsonpath_ng",  # rules with JSON path conditions
    "jsonpatch",  # rules and hooks that patch
    "yaml",  # policy files, the accelerators hook
    "scapy",  # builtin DHCP, sniffer
    "pyghmi",  # setting BMC credentials
    "sqlalchemy.dialects.postgresql",  # other databases' dialects
    "psycopg2",
    "pymysql",
    "swiftclient",
    "keystoneauth1",  # only when a section authenticates through Keystone
    "requests",  # keystoneauth's
    "urllib3",
)
#: Libraries it needs, whatever the configuration: their absence would mean
#: the measurement missed the service.
NEEDED = ("twisted.web.server", "klein", "treq", "sqlalchemy", "prometheus_client")
#: Heavy libraries reported, needed or not.
REPORTED = NOT_NEEDED + NEEDED + ("cryptography", "OpenSSL", "oslo_config")


class _Recorded(InspectordProcess):
    """``twistd inspectord`` run through :mod:`bench.launch`, which writes its modules at exit."""

    def __init__(self, workdir, modules_file, **kwargs):
        super().__init__(workdir, "http://127.0.0.1:{}".format(free_port()), clean_up_period=3600, **kwargs)
        self.modules_file = pathlib.Path(modules_file)

    def command(self):
        twistd, *args = super().command()
        return [sys.executable, str(BENCH_DIR / "launch.py"), str(self.modules_file), twistd, *args]


def _settled_rss_mb(pid, settle, timeout=30.0):
    """RSS once it has not moved by more than 0.2 MB for ``settle`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = procstats.rss_mb(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = procstats.rss_mb(pid)
        if abs(now - last) > 0.2:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            break
    return procstats.rss_mb(pid)


def start_once(workdir, name, settle=2.0, source=None):
    """Start inspectord in ``workdir`` (keeping its database), measure, stop.

    :param source: another checkout's top directory to run inspectord from
        (its ``inspectord`` package first on ``PYTHONPATH``), to compare.
    """
    modules_file = pathlib.Path(workdir) / "{}.modules".format(name)
    process = _Recorded(workdir, modules_file, env={"PYTHONPATH": str(source)} if source else None)
    process.start()
    try:
        rss = _settled_rss_mb(process.process.pid, settle)
        peak = procstats.peak_rss_mb(process.process.pid)
    finally:
        process.stop()
    modules = set(modules_file.read_text().split())
    return {
        "start": name,
        "idle_rss_mb": round(rss, 1),
        "peak_rss_mb": round(peak, 1),
        "modules": len(modules),
        "imported": sorted(m for m in REPORTED if m in modules),
        "all_modules": sorted(modules),
    }


def measure(workdir, settle=2.0, source=None):
    """Fresh database, then restart: ``[first, restart]`` records."""
    return [start_once(workdir, "first", settle, source), start_once(workdir, "restart", settle, source)]


def markdown(runs, meta):
    lines = [
        "# inspectord idle footprint",
        "",
        "Default configuration of the benchmark (noauth, ``[ironic] auth_type = none``, SQLite, "
        "``[pxe_filter] driver = noop``); RSS read once it stopped moving after start.  "
        "{} run(s) on {} ({} CPUs{}).".format(
            len(runs), meta["machine"], meta["cpus"], ", shared with other work" if meta.get("shared") else ""
        ),
        "",
        *(["inspectord run from ``{}``.".format(meta["source"]), ""] if meta.get("source") else []),
        "| start | idle RSS (MB), median | min | max | heavy libraries imported |",
        "|---|---|---|---|---|",
    ]
    for index, name in enumerate(("first", "restart")):
        values = [run[index]["idle_rss_mb"] for run in runs]
        lines.append("| {} | {:.1f} | {:.1f} | {:.1f} | {} |".format(
            "fresh database (migrates)" if name == "first" else "restart (database at its head)",
            statistics.median(values), min(values), max(values), ", ".join(runs[0][index]["imported"]),
        ))
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(BENCH_DIR / "results"))
    parser.add_argument("--source", help="run inspectord from this checkout instead (e.g. an older commit's "
                        "'git archive'), to compare; its results go to footprint-source.*")
    parser.add_argument("--shared", action="store_true", help="say the machine was shared with other work")
    args = parser.parse_args(argv)
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="inspectord-footprint-") as workdir:
            runs.append(measure(workdir, source=args.source))
        print("idle RSS: first start {:.1f} MB, restart {:.1f} MB".format(
            runs[-1][0]["idle_rss_mb"], runs[-1][1]["idle_rss_mb"]), flush=True)
    meta = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "cpus": len(procstats.psutil.Process().cpu_affinity()),
        "shared": args.shared,
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta["source"] = args.source
    stem = "footprint-source" if args.source else "footprint"
    (out / (stem + ".json")).write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")
    (out / (stem + ".md")).write_text(markdown(runs, meta))
    print(markdown(runs, meta))


if __name__ == "__main__":
    main()
