"""inspectord's CPU time per introspected node, start and callback phases apart.

::

    python -m bench.cpu --nodes 200 --runs 3

For every run, inspectord's Klein fake Ironic (:mod:`bench.fakeironic`) is
served on 127.0.0.1 with ``--nodes`` enrolled nodes and a fresh inspectord
(SQLite, its real thread pools, access log and metrics) is started against
it.  Introspection of every node is started, then one ramdisk callback per
node is posted to ``/v1/continue``; the statuses are polled (one listing
every half second) until every node is waiting, then finished.

The figure is inspectord's own CPU time (user + system, from ``/proc``) over
each phase divided by the number of nodes: unlike wall-clock times, it
hardly moves with the load of the machine, so changes to the service can be
compared on a shared machine.  Ironic answers in microseconds here and its
CPU is not counted.  The median (and the least) of the runs is printed as JSON and, with
``--markdown``, as a table row.
"""

import argparse
import asyncio
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from bench import procstats, workload
from bench.growth import FakeIronicProcess, wait_all
from devenv.daemon import InspectordProcess


def say(message):
    print("[cpu] {}".format(message), file=sys.stderr, flush=True)


class ProfiledInspectord(InspectordProcess):
    """inspectord under twistd's cProfile (the reactor thread only), its stats saved to ``profile``."""

    profile = None

    def command(self):
        twistd, nodaemon, *rest = super().command()
        return [twistd, nodaemon, "--profile", self.profile, "--profiler", "cprofile", "--savestats", *rest]


def run_once(count, args, workdir):
    ironic = FakeIronicProcess(workdir, count)
    process = InspectordProcess
    if args.profile:
        process = type("Profiled", (ProfiledInspectord,), {"profile": str(pathlib.Path(args.profile).resolve())})
    service = process(pathlib.Path(workdir) / "inspectord", ironic.url, clean_up_period=600,
                                extra_config=args.inspectord_config)
    try:
        service.start()
        pid = service.process.pid
        time.sleep(0.5)

        cpu = procstats.cpu_seconds(pid)
        failures = asyncio.run(workload.start_introspection(service.url, ironic.uuids, args.start_concurrency, say))
        waiting = wait_all(service.url, count, lambda s: s["state"] == "waiting" or s["finished"], args.timeout,
                           "waiting")
        start_cpu = procstats.cpu_seconds(pid) - cpu
        if failures or sum(1 for s in waiting if s["state"] == "waiting") != count:
            raise RuntimeError("start: {} failures, e.g. {}".format(len(failures), failures[:3]))

        bodies = workload.payloads(count)
        cpu = procstats.cpu_seconds(pid)
        records, _ = asyncio.run(workload.storm(service.url, bodies, args.callback_concurrency, say))
        finished = wait_all(service.url, count, lambda s: s["finished"], args.timeout, "finished")
        callback_cpu = procstats.cpu_seconds(pid) - cpu
        errors = [r for r in records if r["status"] != 200]
        ok = sum(1 for s in finished if s["finished"] and not s.get("error"))
        if errors or ok != count:
            raise RuntimeError("callbacks: {} errors, {} finished without error".format(len(errors), ok))
        return {"start_ms_per_node": 1000 * start_cpu / count, "callback_ms_per_node": 1000 * callback_cpu / count}
    finally:
        service.stop()
        ironic.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--start-concurrency", type=int, default=50)
    parser.add_argument("--callback-concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--inspectord-config", default="", help="extra ini text for inspectord.conf")
    parser.add_argument("--profile", default=None,
                        help="save cProfile stats of inspectord's reactor thread to this file (CPU figures then inflated)")
    parser.add_argument("--label", default=None, help="the row's label with --markdown (default: the commit)")
    parser.add_argument("--markdown", action="store_true", help="also print a table row")
    args = parser.parse_args(argv)

    runs = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="inspectord-cpu-") as workdir:
            runs.append(run_once(args.nodes, args, workdir))
        say("run {}: {}".format(index + 1, runs[-1]))
    result = {
        "nodes": args.nodes,
        "runs": runs,
        "start_ms_per_node": statistics.median(r["start_ms_per_node"] for r in runs),
        "callback_ms_per_node": statistics.median(r["callback_ms_per_node"] for r in runs),
        "start_ms_per_node_min": min(r["start_ms_per_node"] for r in runs),
        "callback_ms_per_node_min": min(r["callback_ms_per_node"] for r in runs),
    }
    print(json.dumps(result))
    if args.markdown:
        label = args.label or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        print("| {} | {} | {:.2f} ({:.2f}) | {:.2f} ({:.2f}) |".format(
            label, args.nodes, result["start_ms_per_node"], result["start_ms_per_node_min"],
            result["callback_ms_per_node"], result["callback_ms_per_node_min"]))


if __name__ == "__main__":
    main()
