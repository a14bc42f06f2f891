"""inspectord's own growth with the number of nodes, against a fast fake Ironic.

``python -m bench.growth --scale 1000,10000`` (``make bench
BENCH_ARGS="--scale 10000"`` runs it after the storm, at 1,000 and at the
given count) measures, for each count N, inspectord alone: Ironic is
inspectord's Klein fake (:mod:`bench.fakeironic`) served over real HTTP on
loopback in its own process, answering in microseconds.

For each N: introspection of N nodes started (``--start-concurrency`` in
flight) until every node is ``waiting`` (start throughput, service CPU);
``GET /v1/introspection?limit=1000`` paged through all of them (page
latencies); the service's CPU while the N nodes wait
(``--idle-window`` seconds, as CPU seconds per minute: the periodic jobs);
then N ramdisk callbacks at ``--callback-concurrency`` in flight until every
node is finished (callback throughput, latencies, service CPU); paging
again; peak RSS (``VmHWM``) against the idle RSS after start.  Raw data
goes to ``growth.json``, the table to ``growth.md``, the plot of each
figure against N to ``growth.png``.
"""

import argparse
import asyncio
import json
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from bench import procstats, workload
from devenv.daemon import InspectordProcess, free_port

BENCH_DIR = pathlib.Path(__file__).resolve().parent
PAGE = 1000


def say(message):
    print("[{}] {}".format(time.strftime("%H:%M:%S"), message), flush=True)


def _percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class FakeIronicProcess:
    def __init__(self, workdir, count):
        self.port = free_port()
        self.uuids_file = pathlib.Path(workdir) / "uuids"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.fakeironic", "--port", str(self.port), "--nodes", str(count),
             "--uuids-file", str(self.uuids_file)],
            stdout=subprocess.PIPE, cwd=str(BENCH_DIR.parent), start_new_session=True,
        )
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the fake Ironic did not start")
        self.url = json.loads(line)["url"]
        self.uuids = self.uuids_file.read_text().split()

    def stop(self):
        self.process.terminate()
        self.process.wait(30)


class MemoryTracer:
    """tracemalloc in the service (``bench/tracemem``): snapshots on demand, their growth over idle."""

    def __init__(self, workdir, top):
        self.directory = pathlib.Path(workdir) / "tracemalloc"
        self.directory.mkdir()
        self.top = top
        self.labels = []
        self.env = {
            "INSPECTORD_BENCH_TRACEMALLOC": str(self.directory),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR / "tracemem"), os.environ.get("PYTHONPATH")])),
        }

    def snapshot(self, pid, label):
        path = self.directory / "snapshot-{}.tracemalloc".format(len(self.labels))
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 300
        while not path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("no tracemalloc snapshot from the service at " + label)
            time.sleep(0.2)
        self.labels.append(label)
        say("tracemalloc snapshot: " + label)

    def growth(self):
        """For each snapshot after the first: traced MB and the top allocation sites grown since idle."""
        import tracemalloc

        def load(i):
            return tracemalloc.Snapshot.load(str(self.directory / "snapshot-{}.tracemalloc".format(i))).filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)])

        idle = load(0)
        out = {"idle_traced_mb": sum(s.size for s in idle.statistics("filename")) / 2**20, "snapshots": []}
        for i, label in enumerate(self.labels[1:], 1):
            snap = load(i)
            stats = snap.compare_to(idle, "lineno")
            out["snapshots"].append({
                "label": label,
                "traced_mb": sum(s.size for s in snap.statistics("filename")) / 2**20,
                "top": [{"where": "{}:{}".format(_short(s.traceback[0].filename), s.traceback[0].lineno),
                         "grown_kb": s.size_diff / 1024, "count_grown": s.count_diff}
                        for s in stats[:self.top]],
            })
        return out


def _short(filename):
    for marker in ("site-packages/", "/inspectord/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1] if marker != "/inspectord/" else "inspectord/" + filename.split(
                marker, 1)[1]
    return filename


async def page_through(url, state=None):
    """Every page of ``GET /v1/introspection?limit=1000``: (statuses, [seconds per page])."""
    client = workload.service_client(url, 1)
    statuses, latencies, marker = [], [], None
    try:
        while True:
            path = "/v1/introspection?limit={}".format(PAGE) + ("&marker=" + marker if marker else "")
            started = time.monotonic()
            response = await client.request("GET", path)
            latencies.append(time.monotonic() - started)
            if response.status != 200:
                raise RuntimeError("GET {}: {} {}".format(path, response.status, response.body[:200]))
            page = response.json()["introspection"]
            if not page:
                return statuses, latencies
            statuses.extend(page)
            marker = page[-1]["uuid"]
    finally:
        await client.close()


def paging(url, rounds, pid):
    """Page through the list ``rounds`` times: latencies of every page and of the pages that carried statuses.

    The empty page that ends each round costs little; with N = 1,000 it is
    half of the pages, so the figures of a page of 1,000 leave it out.  The
    service's CPU per full page (``pid``'s, over all the rounds) depends
    less on what else the machine runs than the latencies do.
    """
    every, full = [], []
    cpu = procstats.cpu_seconds(pid)
    for _ in range(rounds):
        latencies = asyncio.run(page_through(url))[1]
        every += latencies
        full += latencies[:-1]
    cpu = procstats.cpu_seconds(pid) - cpu
    figures = {"pages": len(every), "p50_ms": 1000 * _percentile(every, 0.5),
               "p99_ms": 1000 * _percentile(every, 0.99), "max_ms": 1000 * max(every)}
    if full:
        figures.update(full_pages=len(full), full_p50_ms=1000 * _percentile(full, 0.5),
                       full_p99_ms=1000 * _percentile(full, 0.99), cpu_ms_per_full_page=1000 * cpu / len(full),
                       full_ms=[round(1000 * t, 1) for t in full])  # in order: outliers and trends show
    return figures


def wait_all(url, count, done, timeout, label):
    """Page through the list until ``done(status)`` holds for ``count`` nodes; the statuses."""
    deadline = time.monotonic() + timeout
    while True:
        statuses, _ = asyncio.run(page_through(url))
        finished = sum(1 for s in statuses if done(s))
        if finished >= count or time.monotonic() > deadline:
            say("{}: {}/{}".format(label, finished, count))
            return statuses
        time.sleep(0.5)


def run_one(count, args, workdir):
    result = {"nodes": count}
    ironic = FakeIronicProcess(workdir, count)
    say("fake Ironic with {} nodes at {}".format(count, ironic.url))
    tracer = MemoryTracer(workdir, args.tracemalloc_top) if args.tracemalloc else None
    service = InspectordProcess(pathlib.Path(workdir) / "inspectord", ironic.url, clean_up_period=60,
                                extra_config=args.inspectord_config, env=tracer.env if tracer else None)
    try:
        service.start(timeout=args.start_timeout)
        pid = service.process.pid
        time.sleep(1.0)
        result["idle_rss_mb"] = procstats.rss_mb(pid)
        if tracer:
            tracer.snapshot(pid, "idle")

        # -- start every node, until all wait for their ramdisk
        cpu, t = procstats.cpu_seconds(pid), time.monotonic()
        failures = asyncio.run(workload.start_introspection(service.url, ironic.uuids, args.start_concurrency, say))
        waiting = wait_all(service.url, count, lambda s: s["state"] == "waiting" or s["finished"], args.timeout,
                           "waiting")
        wall = time.monotonic() - t
        result["start"] = {
            "wall_s": wall, "nodes_per_s": count / wall, "failures": len(failures),
            "failure_samples": failures[:5], "cpu_s": procstats.cpu_seconds(pid) - cpu,
            "waiting": sum(1 for s in waiting if s["state"] == "waiting"),
        }
        result["start"]["cpu_ms_per_node"] = 1000 * result["start"]["cpu_s"] / count
        if tracer:
            tracer.snapshot(pid, "waiting")

        # -- paging with N nodes waiting
        result["paging_waiting"] = paging(service.url, args.paging_rounds, pid)

        # -- the periodic jobs with N nodes waiting
        cpu, t = procstats.cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle_window)
        elapsed = time.monotonic() - t
        result["periodic_cpu_s_per_min"] = 60 * (procstats.cpu_seconds(pid) - cpu) / elapsed

        # -- the callbacks
        bodies = workload.payloads(count)
        cpu, t = procstats.cpu_seconds(pid), time.monotonic()
        records, _ = asyncio.run(workload.storm(service.url, bodies, args.callback_concurrency, say))
        answered = time.monotonic() - t
        if tracer:
            tracer.snapshot(pid, "callbacks answered")
        finished = wait_all(service.url, count, lambda s: s["finished"], args.timeout, "finished")
        wall = time.monotonic() - t
        latencies = [r["latency"] for r in records if r["status"] == 200]
        errors = [r for r in records if r["status"] != 200]
        result["callbacks"] = {
            "wall_s": wall, "answered_s": answered, "nodes_per_s": count / wall,
            "cpu_s": procstats.cpu_seconds(pid) - cpu,
            "p50_ms": 1000 * _percentile(latencies, 0.5) if latencies else None,
            "p99_ms": 1000 * _percentile(latencies, 0.99) if latencies else None,
            "errors": len(errors), "error_samples": [r["error"] for r in errors[:5]],
            "finished_ok": sum(1 for s in finished if s["finished"] and not s.get("error")),
        }
        result["callbacks"]["cpu_ms_per_node"] = 1000 * result["callbacks"]["cpu_s"] / count
        result["lost"] = count - result["callbacks"]["finished_ok"]

        result["paging_finished"] = paging(service.url, args.paging_rounds, pid)
        result["peak_rss_mb"] = procstats.peak_rss_mb(pid)
        result["peak_over_idle_mb"] = result["peak_rss_mb"] - result["idle_rss_mb"]
        if tracer:
            tracer.snapshot(pid, "finished")
            result["tracemalloc"] = tracer.growth()
    finally:
        service.stop()
        ironic.stop()
    say("{} nodes: start {:.0f}/s, callbacks {:.0f}/s, peak RSS {:.1f} MB (+{:.1f}), paging p99 {:.0f} ms, "
        "periodic {:.2f} CPU s/min, lost {}".format(
            count, result["start"]["nodes_per_s"], result["callbacks"]["nodes_per_s"], result["peak_rss_mb"],
            result["peak_over_idle_mb"], result["paging_finished"]["p99_ms"], result["periodic_cpu_s_per_min"],
            result["lost"]))
    return result


FIGURES = [
    ("start throughput (nodes/s)", ("start", "nodes_per_s"), "{:.0f}"),
    ("callback throughput (nodes/s)", ("callbacks", "nodes_per_s"), "{:.0f}"),
    ("service CPU per node, start (ms)", ("start", "cpu_ms_per_node"), "{:.1f}"),
    ("service CPU per node, callback (ms)", ("callbacks", "cpu_ms_per_node"), "{:.1f}"),
    ("callback p50 (ms)", ("callbacks", "p50_ms"), "{:.0f}"),
    ("callback p99 (ms)", ("callbacks", "p99_ms"), "{:.0f}"),
    ("idle RSS after start (MB)", ("idle_rss_mb",), "{:.1f}"),
    ("peak RSS (MB)", ("peak_rss_mb",), "{:.1f}"),
    ("peak RSS over idle (MB; goal < 60)", ("peak_over_idle_mb",), "{:.1f}"),
    ("paging p99, nodes waiting (ms; goal < 100)", ("paging_waiting", "p99_ms"), "{:.1f}"),
    ("paging p99, nodes finished (ms; goal < 100)", ("paging_finished", "p99_ms"), "{:.1f}"),
    ("full pages only (no final empty page): p50, nodes waiting (ms)", ("paging_waiting", "full_p50_ms"), "{:.1f}"),
    ("full pages only: p99, nodes waiting (ms)", ("paging_waiting", "full_p99_ms"), "{:.1f}"),
    ("full pages only: p50, nodes finished (ms)", ("paging_finished", "full_p50_ms"), "{:.1f}"),
    ("full pages only: p99, nodes finished (ms)", ("paging_finished", "full_p99_ms"), "{:.1f}"),
    ("service CPU per full page, nodes waiting (ms)", ("paging_waiting", "cpu_ms_per_full_page"), "{:.1f}"),
    ("service CPU per full page, nodes finished (ms)", ("paging_finished", "cpu_ms_per_full_page"), "{:.1f}"),
    ("periodic jobs' CPU with the nodes waiting (s/min; goal < 1)", ("periodic_cpu_s_per_min",), "{:.2f}"),
    ("lost nodes", ("lost",), "{}"),
]


def _get(result, path):
    for key in path:
        result = result.get(key) if isinstance(result, dict) else None
    return result


def _median_by_count(results, path):
    by = {}
    for r in results:
        value = _get(r, path)
        if value is not None:
            by.setdefault(r["nodes"], []).append(value)
    return {n: statistics.median(v) for n, v in sorted(by.items())}


def markdown(meta, results):
    counts = sorted({r["nodes"] for r in results})
    lines = [
        "# inspectord's growth against a fast fake Ironic",
        "",
        "{} ({} CPUs{}), {}; {} run(s) per count, medians shown.  Ironic is inspectord's Klein fake over HTTP "
        "in its own process; starts {} in flight, callbacks {} in flight.".format(
            meta["machine"], meta["cpus"], ", shared with other engineers' tests" if meta["shared"] else "",
            meta["when"], meta["runs"], meta["start_concurrency"], meta["callback_concurrency"]),
        "",
        "| figure | " + " | ".join("{:,} nodes".format(n) for n in counts) + " |",
        "|---|" + "---|" * len(counts),
    ]
    for label, path, fmt in FIGURES:
        medians = _median_by_count(results, path)
        lines.append("| {} | ".format(label) + " | ".join(
            fmt.format(medians[n]) if n in medians else "-" for n in counts) + " |")
    lines += pxe_markdown(meta.get("pxe"))
    traced = [r for r in results if r.get("tracemalloc")]
    if traced:
        lines += ["", "## What grew in memory (tracemalloc, `--tracemalloc`)", "",
                  "Allocation sites of the service grown since idle (tracing slows the service: the figures "
                  "above are of a traced run)."]
    for r in traced:
        t = r["tracemalloc"]
        lines += ["", "### {:,} nodes (run {}); traced at idle: {:.1f} MB".format(
            r["nodes"], r.get("run", 0), t["idle_traced_mb"])]
        for snap in t["snapshots"]:
            lines += ["", "{}: traced {:.1f} MB".format(snap["label"], snap["traced_mb"]), "",
                      "| where | grown (KB) | blocks |", "|---|---|---|"]
            lines += ["| `{}` | {:.0f} | {} |".format(e["where"], e["grown_kb"], e["count_grown"]) for e in snap["top"]]
    lines += ["", "Raw data: `growth.json`; plot: `growth.png`.", ""]
    return "\n".join(lines)


PXE_COLORS = {"noop": "tab:gray", "iptables": "tab:red", "nftables": "tab:green", "dnsmasq": "tab:blue",
              "builtin": "tab:orange"}
PXE_PHASES = (("full", "full sync"), ("incremental", "incremental sync (one node starts)"),
              ("first", "first sync from start (Ironic's ports read)"))


def load_pxe(paths):
    """The per-driver rows of ``bench/pxe_filter.py --json`` files (comma-separated ``paths``), or None.

    Several files (runs at different sizes) are reported together; the
    description of each run is shown.
    """
    meta, rows = None, []
    for path in str(paths).split(","):
        try:
            data = json.loads(pathlib.Path(path).read_text())
        except (OSError, ValueError):
            continue
        meta = (meta or []) + [data.get("meta", {})]
        # Rows name their driver, phase and size (files of older runs lack them: not reported).
        rows += [r for r in data.get("rows", []) if r.get("group") == "drivers" and "driver" in r]
    return {"meta": meta, "rows": rows} if rows else None


def pxe_markdown(pxe):
    if not pxe:
        return []
    rows = pxe["rows"]
    splits = sorted({(r["allowed"], r["denied"]) for r in rows})
    drivers = list(dict.fromkeys(r["driver"] for r in rows))
    runs = "; ".join("{} at {}: median of {} runs, load average {:.1f} on {} CPUs at the end".format(
        ", ".join("{:,} + {:,}".format(a, d) for a, d in zip(m.get("allowed") or [], m.get("denied") or [])),
        m.get("when"), m.get("runs"), (m.get("load_average") or [0])[0], m.get("cpus")) for m in pxe["meta"])
    lines = ["", "## PXE filter sync per driver (`bench/pxe_filter.py`, through the filter service)", "",
             runs + ".  The builtin driver's first sync in a run includes loading its DHCP packet code.", "",
             "| driver | sync | " + " | ".join("{:,} allowed + {:,} denied".format(a, d) for a, d in splits) + " |",
             "|---|---|" + "---|" * len(splits)]
    for driver in drivers:
        for phase, label in PXE_PHASES:
            values = {(r["allowed"], r["denied"]): r["value"] for r in rows
                      if r["driver"] == driver and r["phase"] == phase}
            if values:
                lines.append("| {} | {} (ms) | ".format(driver, label) + " | ".join(
                    "{:.1f}".format(values[k]) if k in values else "-" for k in splits) + " |")
    return lines


def plot(directory, results, pxe=None):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    shown = [f for f in FIGURES if f[1] != ("lost",)]
    phases = [p for p in PXE_PHASES[:2] if pxe and any(r["phase"] == p[0] for r in pxe["rows"])]
    columns = 3
    rows = (len(shown) + len(phases) + columns - 1) // columns
    figure, axes = pyplot.subplots(rows, columns, figsize=(5 * columns, 3.2 * rows))
    for ax, (label, path, _fmt) in zip(axes.flat, shown):
        medians = _median_by_count(results, path)
        ax.plot(list(medians), list(medians.values()), marker="o")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("nodes")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    for ax, (phase, label) in zip(list(axes.flat)[len(shown):], phases):
        for driver in dict.fromkeys(r["driver"] for r in pxe["rows"]):
            points = sorted((r["allowed"], r["value"]) for r in pxe["rows"]
                            if r["driver"] == driver and r["phase"] == phase)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=driver,
                        color=PXE_COLORS.get(driver))
        ax.set_title("PXE filter {} (ms), allowed MACs; 10x as many denied".format(label), fontsize=9)
        ax.set_xlabel("nodes under introspection (allowed MACs)")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(shown) + len(phases):]:
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(os.path.join(directory, "growth.png"), dpi=90)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="1000,10000",
                        help="node counts, comma-separated (default 1000,10000); one count N means 1000,N")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--start-concurrency", type=int, default=200)
    parser.add_argument("--callback-concurrency", type=int, default=200)
    parser.add_argument("--idle-window", type=float, default=60.0, help="seconds of CPU watched with nodes waiting")
    parser.add_argument("--paging-rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds for the service to answer")
    parser.add_argument("--inspectord-config", default="", help="appended to inspectord's configuration")
    parser.add_argument("--pxe-json", default="",
                        help="per-driver PXE filter figures to report (bench/pxe_filter.py --json; comma-separated "
                        "files are reported together; default: pxe_filter.json in --out, if there)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite growth.md and growth.png from growth.json in --out (and the PXE figures)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the service's allocations (slower) and report what grew since idle")
    parser.add_argument("--tracemalloc-top", type=int, default=25, help="allocation sites reported per snapshot")
    parser.add_argument("--shared", action="store_true", help="say the machine was shared with other work")
    parser.add_argument("--out", default=str(BENCH_DIR / "results"))
    args = parser.parse_args(argv)
    if args.report_only:
        out = pathlib.Path(args.out)
        data = json.loads((out / "growth.json").read_text())
        data["meta"]["pxe"] = load_pxe(args.pxe_json or out / "pxe_filter.json")
        write(out, data["meta"], data["results"])
        return
    counts = [int(c) for c in args.scale.split(",") if c.strip()]
    if len(counts) == 1:
        counts.append(1000)
    counts = sorted(set(counts))
    results = []
    for run in range(args.runs):
        for count in counts:
            with tempfile.TemporaryDirectory(prefix="inspectord-growth-") as workdir:
                result = run_one(count, args, workdir)
            result["run"] = run
            results.append(result)
    meta = {
        "machine": platform.platform(), "python": platform.python_version(),
        "cpus": len(procstats.psutil.Process().cpu_affinity()), "shared": args.shared,
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "runs": args.runs,
        "start_concurrency": args.start_concurrency, "callback_concurrency": args.callback_concurrency,
        "idle_window_s": args.idle_window,
    }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta["pxe"] = load_pxe(args.pxe_json or out / "pxe_filter.json")
    write(out, meta, results)


def write(out, meta, results):
    (out / "growth.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    (out / "growth.md").write_text(markdown(meta, results))
    try:
        plot(str(out), results, meta.get("pxe"))
    except ImportError:  # matplotlib comes with the "bench" extra
        say("no growth.png: matplotlib is not installed")
    print(markdown(meta, results))


if __name__ == "__main__":
    main()
