"""Boot-storm benchmark: inspectord, ironic-inspector 12.5.0 and the floor, side by side.

::

    python -m bench.run                                  # quick: 100 nodes, 1 run
    python -m bench.run --nodes 100,500,1000 --runs 3 --systems inspectord,ironic-inspector,floor

For every run, node count and system, a fresh real Ironic (39, standalone,
fake-hardware) is started on a copy of a database holding the N enrolled
nodes (4 ports each, ``manageable``), with the counting proxy
(:mod:`bench.proxy`) in front of it.  Then:

* a service (inspectord or ironic-inspector) is started against the proxy;
  introspection of every node is started and awaited until all are
  ``waiting``; then one IPA callback per node is posted to ``/v1/continue``,
  ``--callback-concurrency`` in flight, and the statuses are polled until
  every node is finished; then ``GET /v1/introspection/<uuid>`` is loaded
  with wrk at 1 and 50 keep-alive clients;
* the floor makes, for every node, the Ironic calls introspection cannot
  avoid -- one PATCH with every property, one power-off PUT -- directly,
  ``--floor-concurrency`` nodes at once.

Results go to ``bench/results/``: ``results.json`` (every figure of every
run), ``results.md`` (the table, ratios, targets) and PNG plots.
"""

import argparse
import asyncio
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench import growth, procstats, report, statusload, workload
from bench.experiments import EXPERIMENTS
from bench.systems import SERVICES, IronicInspector, Proxy

ALL_SYSTEMS = ("inspectord", "ironic-inspector", "floor")
RESULTS = pathlib.Path(__file__).resolve().parent / "results"
_T0 = time.monotonic()


def say(message):
    print("[bench {:6.0f}s] {}".format(time.monotonic() - _T0, message), flush=True)


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Snapshot:
    """A database of Ironic holding N enrolled nodes, copied for each fresh Ironic."""

    def __init__(self, root, count, concurrency):
        self.dir = pathlib.Path(root) / "snapshot-{}".format(count)
        self.count = count
        self.concurrency = concurrency
        self.uuids = None

    def build(self):
        from devenv.ironic import IronicServer

        saved = self.dir / "uuids.json"
        if saved.exists() and (self.dir / "ironic" / "ironic.sqlite").exists():
            self.uuids = json.loads(saved.read_text())
            say("reusing the {} enrolled nodes of {}".format(self.count, self.dir))
            return

        say("enrolling {} nodes with {} ports each (once, then copied for every system and run)".format(
            self.count, workload.PORTS_PER_NODE))
        ironic = IronicServer(self.dir / "ironic")
        ironic.start()
        try:
            started = time.monotonic()
            self.uuids = asyncio.run(workload.enroll(ironic.url, self.count, self.concurrency, say))
            say("enrolled {} nodes in {:.0f} s".format(self.count, time.monotonic() - started))
        finally:
            ironic.stop()
        (self.dir / "uuids.json").write_text(json.dumps(self.uuids))

    def fresh_ironic(self, workdir):
        """A started IronicServer on a copy of this snapshot's database."""
        from devenv.ironic import IronicServer

        if self.uuids is None:
            self.build()
        target = pathlib.Path(workdir) / "ironic"
        target.mkdir(parents=True)
        for path in (self.dir / "ironic").glob("ironic.sqlite*"):
            shutil.copy2(path, target / path.name)
        ironic = IronicServer(target)
        ironic.start()
        return ironic


POWER_CALL = "PUT /v1/nodes/{node}/states/power"


def last_call_cpu(proxy, pid, count, before, timeout, settle=0.5):
    """The service's ``(total, system)`` CPU seconds since ``before`` (a
    :func:`bench.procstats.cpu_times` reading), read when Ironic has
    answered ``count`` power requests (the last Ironic call of a start and of
    a node's processing, for both services) and ``settle`` seconds more for
    the state write that follows; ``(None, None)`` if that never happens.

    The status polls that tell the harness a node is done cost the service
    CPU too, and how many there are depends on how long the harness waits
    after the callbacks are answered (ironic-inspector answers a callback
    when the node is finished, inspectord before powering it off): this
    figure leaves them out, for both services alike.  Only the proxy is
    asked here, never the service.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.stats().get("answered", {}).get(POWER_CALL, 0) >= count:
            time.sleep(settle)
            total, system = procstats.cpu_times(pid)
            return total - before[0], system - before[1]
        time.sleep(0.05)
    return None, None


class Profiler:
    """py-spy recording one process (raw collapsed stacks), while a phase runs."""

    def __init__(self, pid, output):
        self.output = output
        py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        self.process = None
        if not os.path.exists(py_spy):
            say("py-spy not found: no profile")
            return
        self.process = subprocess.Popen(
            # --gil: only samples of the thread holding the GIL, i.e. where the CPU goes
            [py_spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--output", str(output),
             "--nonblocking", "--gil"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )

    def stop(self):
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.output if os.path.exists(self.output) else None


def run_service(name, snapshot, workdir, args):
    """One boot storm and status measurement of a service; its figures."""
    count = snapshot.count
    uuids = snapshot.uuids
    bodies = workload.payloads(count)
    ironic = snapshot.fresh_ironic(workdir)
    proxy = Proxy(ironic.url, workdir)
    service = None
    profiler = None
    result = {"system": name, "nodes": count}
    try:
        service = SERVICES[name](pathlib.Path(workdir) / name, proxy.url,
                                 extra_config=args.inspectord_config if name == "inspectord" else "")
        if name == "inspectord" and args.experiment:
            os.environ["BENCH_PRELOAD"] = str(pathlib.Path(__file__).resolve().parent / "experiments.py")
            os.environ["BENCH_EXPERIMENT"] = args.experiment
        try:
            service.start()
        finally:
            os.environ.pop("BENCH_PRELOAD", None)
            os.environ.pop("BENCH_EXPERIMENT", None)
        say("{} is up at {} (pid {}); Ironic at {} behind the counting proxy {}".format(
            name, service.url, service.pid, ironic.url, proxy.url))
        result["idle_rss_mb"] = procstats.rss_mb(service.pid)
        proxy.reset()

        # -- start introspection of every node, wait until all are waiting
        if args.profile in (name, "all"):
            profiler = Profiler(service.pid, RESULTS / "profile-{}-{}-start.txt".format(name, count))
        start_before, cpu_ironic, t = procstats.cpu_times(service.pid), procstats.cpu_seconds(ironic.pid), time.time()
        cpu_service = start_before[0]
        failures = asyncio.run(workload.start_introspection(service.url, uuids, args.start_concurrency, say))
        # The service's own CPU for the starts, without the harness's status
        # polls: read once Ironic has answered every node's power request
        # (the last call of a start, for both services).
        start_own, start_system = last_call_cpu(proxy, service.pid, count, start_before, args.timeout)
        waiting = asyncio.run(workload.poll_status(
            service.url, uuids, lambda s: s.get("state") == "waiting" or s.get("finished"), say, "waiting",
            timeout=args.timeout))
        start_stats = proxy.reset()
        if profiler is not None:
            result["profile_start"] = _name(profiler.stop())
            profiler = None
        result["start"] = {
            "seconds": time.time() - t,
            "failures": failures[:20],
            "failed": len(failures),
            "not_waiting": sum(1 for u in uuids if waiting.get(u, {}).get("state") != "waiting"),
            "service_cpu_s": procstats.cpu_seconds(service.pid) - cpu_service,
            "service_cpu_without_polls_s": start_own,
            "service_system_cpu_without_polls_s": start_system,
            "ironic_cpu_s": procstats.cpu_seconds(ironic.pid) - cpu_ironic,
            "ironic": start_stats,
        }
        say("all introspections started in {:.1f} s ({} failed to start, {} not waiting)".format(
            result["start"]["seconds"], len(failures), result["start"]["not_waiting"]))

        # -- the storm: N callbacks, then poll until all finished
        if args.profile in (name, "all"):
            profiler = Profiler(service.pid, RESULTS / "profile-{}-{}.txt".format(name, count))
        storm_before, cpu_ironic = procstats.cpu_times(service.pid), procstats.cpu_seconds(ironic.pid)
        cpu_service = storm_before[0]
        window = procstats.Window(service=service.pid, ironic=ironic.pid, proxy=proxy.pid)
        say("posting {} callbacks, {} in flight".format(count, args.callback_concurrency))
        records, stale = asyncio.run(workload.storm(service.url, bodies, args.callback_concurrency, say))
        answered = time.time()
        storm_own, storm_system = last_call_cpu(proxy, service.pid, count, storm_before, args.timeout)
        polls = {}
        final = asyncio.run(workload.poll_status(
            service.url, uuids, lambda s: s.get("finished"), say, "finished", timeout=args.timeout, counts=polls))
        detected = time.time()
        cpu_service = procstats.cpu_seconds(service.pid) - cpu_service
        cpu_ironic = procstats.cpu_seconds(ironic.pid) - cpu_ironic
        storm_stats = proxy.reset()
        cpu_window = window.stop()
        if profiler is not None:
            result["profile"] = _name(profiler.stop())
            profiler = None
        first = min(r["sent"] for r in records)
        finished_at = [workload.parse_time(s.get("finished_at")) for s in final.values() if s.get("finished")]
        finished_at = [f for f in finished_at if f]
        last = max(finished_at) if len(finished_at) == count else detected
        wall = last - first
        latencies = [r["latency"] for r in records if r["error"] is None]
        callback_errors = [r for r in records if r["error"] is not None]
        node_errors = {u: s.get("error") for u, s in final.items() if s.get("finished") and s.get("error")}
        unfinished = [u for u in uuids if not final.get(u, {}).get("finished")]
        result["storm"] = {
            "wall_s": wall,
            "wall_polled_s": detected - first,
            "answered_s": answered - first,
            "callbacks_per_s": count / wall if wall > 0 else None,
            "latency_p50_s": percentile(latencies, 50),
            "latency_p99_s": percentile(latencies, 99),
            "latency_max_s": max(latencies) if latencies else None,
            "latencies": [round(x, 4) for x in latencies],
            "completions": sorted(round(f - first, 3) for f in finished_at),
            "callback_errors": len(callback_errors),
            "callback_error_samples": sorted({r["error"][:200] for r in callback_errors})[:10],
            "node_errors": len(node_errors),
            "node_error_samples": sorted(set(node_errors.values()))[:10],
            "unfinished": len(unfinished),
            "lost": len({u for u in unfinished} | set(node_errors)),
            "client_stale_retries": stale,
            "service_cpu_s": cpu_service,
            "ironic_cpu_s": cpu_ironic,
            "service_cpu_ms_per_node": 1000 * cpu_service / count,
            "service_cpu_without_polls_ms_per_node": 1000 * storm_own / count if storm_own is not None else None,
            "status_polls": polls.get("requests", 0),
            "service_system_cpu_without_polls_ms_per_node": (
                1000 * storm_system / count if storm_system is not None else None),
            "ironic_cpu_ms_per_node": 1000 * cpu_ironic / count,
            "ironic": storm_stats,
            "cpu": cpu_window,
        }
        calls = start_stats["total"] + storm_stats["total"]
        result["ironic_calls_per_node"] = calls / count
        result["ironic_calls_per_node_storm"] = storm_stats["total"] / count
        result["ironic_resets"] = start_stats["resets"] + storm_stats["resets"]
        result["peak_rss_storm_mb"] = procstats.peak_rss_mb(service.pid)
        s = result["storm"]
        say("{}: {} nodes finished in {:.1f} s after the first callback ({:.1f}/s), p50 {:.2f} s, p99 {:.2f} s, "
            "{} callback errors, {} lost; CPU {:.0f} ms/node service, {:.0f} ms/node Ironic; "
            "{:.1f} Ironic calls/node".format(
                name, count - len(unfinished), wall, s["callbacks_per_s"] or 0, s["latency_p50_s"] or 0,
                s["latency_p99_s"] or 0, s["callback_errors"], s["lost"], s["service_cpu_ms_per_node"],
                s["ironic_cpu_ms_per_node"], result["ironic_calls_per_node"]))

        # -- the status read path
        result["status"] = {}
        if statusload.have_wrk() and args.status_seconds > 0:
            for clients in (1, 50):
                say("status reads: {} client(s) for {} s (wrk)".format(clients, args.status_seconds))
                cpu = procstats.cpu_seconds(service.pid)
                window = procstats.Window(service=service.pid, ironic=ironic.pid)
                if clients == 50 and args.profile in (name, "all"):
                    profiler = Profiler(service.pid, RESULTS / "profile-{}-{}-status.txt".format(name, count))
                figures = statusload.run_wrk(service.url, uuids[:200], clients, args.status_seconds)
                if profiler is not None:
                    result["profile_status"] = _name(profiler.stop())
                    profiler = None
                figures["service_cpu_s"] = procstats.cpu_seconds(service.pid) - cpu
                figures["cpu"] = window.stop()
                result["status"][str(clients)] = figures
                say("  {:.0f} requests/s, p50 {:.1f} ms, p99 {:.1f} ms, {} errors".format(
                    figures["rps"], figures["p50_ms"], figures["p99_ms"], figures["errors"]))
            result["status"]["ironic"] = proxy.reset()
        elif args.status_seconds > 0:
            say("wrk is not installed (apt-get install wrk): status reads not measured")
        result["peak_rss_mb"] = procstats.peak_rss_mb(service.pid)
    finally:
        if profiler is not None:
            profiler.stop()
        if service is not None:
            service.stop()
        proxy.stop()
        ironic.stop()
    floor = service.import_floor() if service is not None else None
    if floor:
        result["import_floor_mb"] = floor["rss_kb"] / 1024.0
        result["import_floor_modules"] = floor["imported"]
    say("{}: peak RSS {:.1f} MB, import floor {:.1f} MB".format(
        name, result.get("peak_rss_mb", 0), result.get("import_floor_mb") or 0))
    return result


def run_floor(snapshot, workdir, args):
    """The floor at every ``--floor-concurrency``; the fastest without errors is *the* floor.

    Each concurrency gets a fresh Ironic; the result keeps the whole sweep
    (``floor_sweep``) and the concurrency chosen (``floor_concurrency``).
    """
    sweep = []
    for concurrency in args.floor_concurrency:
        sweep.append(_floor_once(snapshot, pathlib.Path(workdir) / "c{}".format(concurrency), concurrency, args))
    clean = [r for r in sweep if not r["storm"]["callback_errors"]] or sweep
    best = min(clean, key=lambda r: r["storm"]["wall_s"])
    result = dict(best)
    result["floor_sweep"] = [{
        "concurrency": r["floor_concurrency"],
        "wall_s": r["storm"]["wall_s"],
        "nodes_per_s": r["storm"]["callbacks_per_s"],
        "latency_p50_s": r["storm"]["latency_p50_s"],
        "errors": r["storm"]["callback_errors"],
        "resets": r["ironic_resets"],
        "ironic_cpu_ms_per_node": r["storm"]["ironic_cpu_ms_per_node"],
    } for r in sweep]
    if len(sweep) > 1:
        say("floor: fastest at {} in flight ({:.1f} nodes/s) of {}".format(
            best["floor_concurrency"], best["storm"]["callbacks_per_s"],
            ", ".join("{}: {:.1f}/s".format(r["floor_concurrency"], r["storm"]["callbacks_per_s"]) for r in sweep)))
    return result


def _floor_once(snapshot, workdir, concurrency, args):
    count = snapshot.count
    ironic = snapshot.fresh_ironic(workdir)
    proxy = Proxy(ironic.url, workdir)
    result = {"system": "floor", "nodes": count, "floor_concurrency": concurrency}
    try:
        # As after the start of an introspection: every node powered on.
        asyncio.run(workload.power(ironic.url, snapshot.uuids, "power on", args.start_concurrency, say,
                                   "powered on (set-up)"))
        proxy.reset()
        cpu_ironic = procstats.cpu_seconds(ironic.pid)
        window = procstats.Window(ironic=ironic.pid, proxy=proxy.pid)
        say("floor: PATCH + power-off PUT for {} nodes, {} in flight".format(count, concurrency))
        records = asyncio.run(workload.floor(proxy.url, snapshot.uuids, concurrency, say))
        cpu_ironic = procstats.cpu_seconds(ironic.pid) - cpu_ironic
        stats = proxy.reset()
        cpu_window = window.stop()
    finally:
        proxy.stop()
        ironic.stop()
    first = min(r["sent"] for r in records)
    wall = max(r["done"] for r in records) - first
    errors = [r for r in records if r["error"] is not None]
    latencies = [r["latency"] for r in records if r["error"] is None]
    result["storm"] = {
        "wall_s": wall,
        "callbacks_per_s": count / wall if wall > 0 else None,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "latencies": [round(x, 4) for x in latencies],
        "completions": sorted(round(r["done"] - first, 3) for r in records if r["error"] is None),
        "callback_errors": len(errors),
        "callback_error_samples": sorted({r["error"][:200] for r in errors})[:10],
        "lost": len(errors),
        "ironic_cpu_s": cpu_ironic,
        "ironic_cpu_ms_per_node": 1000 * cpu_ironic / count,
        "ironic": stats,
        "cpu": cpu_window,
    }
    result["ironic_calls_per_node"] = stats["total"] / count
    result["ironic_resets"] = stats["resets"]
    say("floor: {} nodes in {:.1f} s ({:.1f} nodes/s), {:.0f} ms Ironic CPU per node, {} errors".format(
        count, wall, count / wall, result["storm"]["ironic_cpu_ms_per_node"], len(errors)))
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__[__doc__.index("For every"):])
    parser.add_argument("--nodes", default="100", help="comma-separated node counts (default: 100)")
    parser.add_argument("--runs", type=int, default=1, help="runs of every system at every node count (default: 1)")
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                        help="comma-separated, of " + ", ".join(ALL_SYSTEMS) + " (empty: none, e.g. with --append "
                        "--pxe yes to add only the PXE filter figures)")
    parser.add_argument("--callback-concurrency", type=int, default=50, help="IPA callbacks in flight (default: 50)")
    parser.add_argument("--floor-concurrency", default="4,8,16,32,48",
                        help="floor nodes in flight, comma-separated: the floor is measured at each (a fresh Ironic "
                        "each time) and the fastest without errors is the floor of the ratios (default: 4,8,16,32,48)")
    parser.add_argument("--start-concurrency", type=int, default=8, help="introspection starts in flight (default: 8)")
    parser.add_argument("--enroll-concurrency", type=int, default=8, help="nodes enrolled at once (default: 8)")
    parser.add_argument("--status-seconds", type=int, default=10, help="seconds of each wrk status run (0: skip)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for all nodes to finish")
    parser.add_argument("--profile", choices=["none", "inspectord", "ironic-inspector", "all"], default="none",
                        help="record py-spy profiles of the service during the starts and during the storm")
    parser.add_argument("--inspectord-config", default="",
                        help="text appended to inspectord's configuration (e.g. '[ironic_client]\\nmax_in_flight = 16')")
    parser.add_argument("--experiment", help="start inspectord with these changes of bench/experiments.py patched "
                        "in (comma-separated: {})".format(", ".join(sorted(EXPERIMENTS))))
    parser.add_argument("--pxe", choices=["auto", "yes", "no"], default="auto",
                        help="also run bench/pxe_filter.py (needs root: it works in a network namespace of its own) "
                        "and add its table to the report; auto: when root (default)")
    parser.add_argument("--pxe-args", default="", help="arguments for bench/pxe_filter.py, e.g. '--runs 3'")
    parser.add_argument("--scale", type=int, default=0,
                        help="also measure inspectord's growth against its fast fake Ironic (bench/growth.py) at "
                        "1,000 and at this many nodes, e.g. 10000 (default: 0, skipped; make bench: 1000)")
    parser.add_argument("--scale-args", default="", help="more arguments for bench/growth.py, e.g. '--runs 3'")
    parser.add_argument("--workdir", help="keep every work directory here (default: a temporary one, removed)")
    parser.add_argument("--output", default=str(RESULTS), help="results directory (default: bench/results)")
    parser.add_argument("--append", action="store_true",
                        help="add to the results.json already in the results directory (runs are numbered on)")
    args = parser.parse_args(argv)
    args.nodes = [int(n) for n in args.nodes.split(",") if n.strip()]
    args.floor_concurrency = [int(n) for n in str(args.floor_concurrency).split(",") if n.strip()]
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(ALL_SYSTEMS)
    if unknown:
        parser.error("unknown system(s): " + ", ".join(sorted(unknown)))
    unknown = set((args.experiment or "").split(",")) - set(EXPERIMENTS) - {""}
    if unknown:
        parser.error("unknown experiment(s): " + ", ".join(sorted(unknown)))
    args.inspectord_config = args.inspectord_config.replace("\\n", "\n")
    if args.inspectord_config and not args.inspectord_config.startswith("\n"):
        args.inspectord_config = "\n" + args.inspectord_config + "\n"
    return args


def main(argv=None):
    global RESULTS
    args = parse_args(argv)
    RESULTS = pathlib.Path(args.output)
    RESULTS.mkdir(parents=True, exist_ok=True)
    root = pathlib.Path(args.workdir) if args.workdir else pathlib.Path(tempfile.mkdtemp(prefix="inspectord-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    if "ironic-inspector" in args.systems:
        IronicInspector.ensure_venv()
    if not statusload.have_wrk():
        say("warning: wrk is not installed; status reads will not be measured (apt-get install wrk)")
    say("nodes {}, {} run(s), systems {}; work directory {}".format(
        ",".join(map(str, args.nodes)), args.runs, ", ".join(args.systems), root))
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "nodes": args.nodes,
        "runs": args.runs,
        "systems": args.systems,
        "callback_concurrency": args.callback_concurrency,
        "floor_concurrency": args.floor_concurrency,
        "status_seconds": args.status_seconds,
        "cpus": os.cpu_count(),
        "inspectord_config": args.inspectord_config,
        "experiment": args.experiment,
    }
    results = []
    first_run = 1
    existing = RESULTS / "results.json"
    if args.append and existing.exists():
        previous = json.loads(existing.read_text())
        results = previous["results"]
        first_run = 1 + max((r.get("run", 0) for r in results), default=0)
        old = previous["meta"]
        meta["nodes"] = sorted(set(old.get("nodes", [])) | set(args.nodes))
        meta["systems"] = [s for s in ALL_SYSTEMS if s in set(old.get("systems", [])) | set(args.systems)]
        meta["runs"] = old.get("runs", 0) + (args.runs if args.systems else 0)
        meta["started"] = old.get("started", meta["started"])
    snapshots = {}
    try:
        for run in range(first_run, first_run + args.runs):
            # Rotate the order so that no system always runs first (a noisy machine drifts).
            shift = (run - 1) % max(len(args.systems), 1)
            order = args.systems[shift:] + args.systems[:shift]
            for count in args.nodes if args.systems else []:
                if count not in snapshots:
                    snapshots[count] = Snapshot(root, count, args.enroll_concurrency)
                    snapshots[count].build()
                for name in order:
                    say("=== run {}/{}, {} nodes: {} ===".format(run, first_run + args.runs - 1, count, name))
                    workdir = root / "run{}-n{}-{}".format(run, count, name)
                    shutil.rmtree(workdir, ignore_errors=True)  # left by an earlier invocation
                    try:
                        if name == "floor":
                            result = run_floor(snapshots[count], workdir, args)
                        else:
                            result = run_service(name, snapshots[count], workdir, args)
                    except Exception as e:  # one failed system must not lose the others' figures
                        say("{} failed: {}: {}".format(name, e.__class__.__name__, e))
                        result = {"system": name, "nodes": count, "failed": "{}: {}".format(e.__class__.__name__, e)}
                    result["run"] = run
                    results.append(result)
                    _save(meta, results)
        if args.pxe == "yes" or (args.pxe == "auto" and os.geteuid() == 0):
            run_pxe(args)
        if args.scale:
            counts = sorted({min(1000, args.scale), args.scale})
            say("growth against the fake Ironic: {} nodes".format(" and ".join(map(str, counts))))
            growth.main(["--scale", ",".join(map(str, counts)), "--out", str(RESULTS), *shlex.split(args.scale_args)])
    except KeyboardInterrupt:
        say("interrupted: writing what was measured")
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    _save(meta, results)
    text = report.write(RESULTS, meta, results)
    print()
    print(text)
    say("results in {}".format(RESULTS))
    return 0


def run_pxe(args):
    """The PXE filter benchmark (bench/pxe_filter.py, its own figures) into results/pxe_filter.md."""
    script = pathlib.Path(__file__).resolve().parent / "pxe_filter.py"
    if not script.exists():
        say("no bench/pxe_filter.py: PXE filter figures skipped")
        return
    extra = shlex.split(args.pxe_args)
    if "--allowed" not in extra:
        # Every driver at 1,000 and at the growth's count (10,000 by default) under introspection, with ten
        # times as many other ports: growth.md reports them and plots how they grow.
        top = max(args.scale, 10000)
        extra += ["--allowed", "1000,{}".format(top), "--denied", "10000,{}".format(10 * top)]
    if "--json" not in extra:
        extra += ["--json", str(RESULTS / "pxe_filter.json")]
    say("PXE filter benchmark: {} {}".format(script.name, " ".join(extra)).rstrip())
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(script), *extra], capture_output=True, text=True, timeout=3600)
    output = (result.stdout.strip() + ("\n" + result.stderr.strip() if result.returncode else "")).strip()
    (RESULTS / "pxe_filter.md").write_text(
        "## PXE filter (`bench/pxe_filter.py {}`{})\n\n```\n{}\n```\n".format(
            args.pxe_args, "" if result.returncode == 0 else ", exit status {}".format(result.returncode), output))
    say("PXE filter benchmark done in {:.0f} s (exit status {})".format(time.monotonic() - started, result.returncode))


def _name(path):
    """A profile's file name (it lives in the results directory), or None."""
    return pathlib.Path(path).name if path else None


def _save(meta, results):
    (RESULTS / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
