"""Turn the raw results of :mod:`bench.run` into a Markdown report and PNG plots.

``python -m bench.report [bench/results]`` rebuilds both from ``results.json``.
"""

import json
import pathlib
import statistics
import sys

SYSTEMS = ("inspectord", "ironic-inspector", "floor")
SERVICES = ("inspectord", "ironic-inspector")


def _get(result, path):
    value = result
    for key in path.split("."):
        if isinstance(value, list) and key.isdigit():
            value = value[int(key)] if int(key) < len(value) else None
            continue
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _group(results):
    """``{(nodes, system): [result per run]}`` of the runs that did not fail."""
    groups = {}
    for result in results:
        if "failed" in result:
            continue
        groups.setdefault((result["nodes"], result["system"]), []).append(result)
    return groups


def _by_run(results):
    runs = {}
    for result in results:
        if "failed" not in result:
            runs.setdefault((result["run"], result["nodes"]), {})[result["system"]] = result
    return runs


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


# (label, path in a result, format, scale)
FIGURES = [
    ("wall time, first callback -> all finished (s)", "storm.wall_s", "{:.1f}", 1),
    ("callbacks (nodes) per second", "storm.callbacks_per_s", "{:.2f}", 1),
    ("first node finished, after the first callback (s)", "storm.completions.0", "{:.2f}", 1),
    ("callback latency p50 (s)", "storm.latency_p50_s", "{:.2f}", 1),
    ("callback latency p99 (s)", "storm.latency_p99_s", "{:.2f}", 1),
    ("service CPU per node, storm, without the status polls (ms)", "storm.service_cpu_without_polls_ms_per_node",
     "{:.1f}", 1),
    ("  of which system CPU (system calls), storm (ms per node)", "storm.service_system_cpu_without_polls_ms_per_node",
     "{:.1f}", 1),
    ("service CPU per node, storm, with the harness's status polls (ms)", "storm.service_cpu_ms_per_node", "{:.1f}", 1),
    ("status polls by the harness after the storm's callbacks, per node", None, "{:.1f}", 1),
    ("Ironic CPU per node, storm (ms)", "storm.ironic_cpu_ms_per_node", "{:.0f}", 1),
    ("Ironic API calls per node (start + storm)", "ironic_calls_per_node", "{:.2f}", 1),
    ("Ironic API calls per node, storm only", "ironic_calls_per_node_storm", "{:.2f}", 1),
    ("service CPU, start of N introspections, without the status polls (s)", "start.service_cpu_without_polls_s",
     "{:.2f}", 1),
    ("  of which system CPU (system calls), start (s)", "start.service_system_cpu_without_polls_s", "{:.2f}", 1),
    ("service CPU, start of N introspections, with the harness's status polls (s)", "start.service_cpu_s",
     "{:.2f}", 1),
    ("status reads/s, 1 client", "status.1.rps", "{:.0f}", 1),
    ("status p99, 1 client (ms)", "status.1.p99_ms", "{:.1f}", 1),
    ("status reads/s, 50 clients (wrk)", "status.50.rps", "{:.0f}", 1),
    ("status p50, 50 clients (ms)", "status.50.p50_ms", "{:.1f}", 1),
    ("status p99, 50 clients (ms)", "status.50.p99_ms", "{:.1f}", 1),
    ("service CPU per 1000 status reads, 50 clients (ms)", None, "{:.0f}", 1),
    ("CPU of other processes on the machine during the storm (s)", "storm.cpu.background", "{:.1f}", 1),
    ("CPU of other processes during the 50-client status reads (s)", "status.50.cpu.background", "{:.1f}", 1),
    ("RSS idle after start (MB)", "idle_rss_mb", "{:.1f}", 1),
    ("peak RSS (MB)", "peak_rss_mb", "{:.1f}", 1),
    ("import floor RSS (MB)", "import_floor_mb", "{:.1f}", 1),
    ("peak RSS above import floor (MB)", None, "{:.1f}", 1),
]
COUNTS = [
    ("callback errors (sum over runs)", "storm.callback_errors"),
    ("nodes lost: error or unfinished (sum over runs)", "storm.lost"),
    ("Ironic connection resets seen by the proxy (sum over runs)", "ironic_resets"),
]


def _value(result, label, path):
    if path is not None:
        return _get(result, path)
    if label.startswith("service CPU per 1000 status"):
        cpu, requests = _get(result, "status.50.service_cpu_s"), _get(result, "status.50.requests")
        return 1e6 * cpu / requests if cpu is not None and requests else None
    if label.startswith("status polls by the harness"):
        polls = _get(result, "storm.status_polls")
        return polls / result["nodes"] if polls is not None and result.get("nodes") else None
    if label.startswith("peak RSS above"):
        peak, floor = result.get("peak_rss_mb"), result.get("import_floor_mb")
        return peak - floor if peak is not None and floor is not None else None
    return None


def _fmt(fmt, value):
    return "—" if value is None else fmt.format(value)


def pair_ratios(results, count):
    """Ratios computed within each run, then their median over runs."""
    ratios = {}

    def add(name, value):
        if value is not None:
            ratios.setdefault(name, []).append(value)

    for (run, nodes), systems in sorted(_by_run(results).items()):
        if nodes != count:
            continue
        ins, ii, fl = systems.get("inspectord"), systems.get("ironic-inspector"), systems.get("floor")
        w = lambda r: _get(r, "storm.wall_s") if r else None  # noqa: E731
        add("wall: inspectord / floor", _ratio(w(ins), w(fl)))
        add("wall: ironic-inspector / floor", _ratio(w(ii), w(fl)))
        add("wall: inspectord / ironic-inspector", _ratio(w(ins), w(ii)))
        if ins and ii:
            add("callback latency p50: inspectord / ironic-inspector",
                _ratio(_get(ins, "storm.latency_p50_s"), _get(ii, "storm.latency_p50_s")))
            add("service CPU per node, storm: inspectord / ironic-inspector",
                _ratio(_get(ins, "storm.service_cpu_without_polls_ms_per_node"),
                       _get(ii, "storm.service_cpu_without_polls_ms_per_node")))
            add("service CPU, start: inspectord / ironic-inspector",
                _ratio(_get(ins, "start.service_cpu_without_polls_s"), _get(ii, "start.service_cpu_without_polls_s")))
            add("service CPU per node, storm, with status polls: inspectord / ironic-inspector",
                _ratio(_get(ins, "storm.service_cpu_ms_per_node"), _get(ii, "storm.service_cpu_ms_per_node")))
            add("service CPU, start, with status polls: inspectord / ironic-inspector",
                _ratio(_get(ins, "start.service_cpu_s"), _get(ii, "start.service_cpu_s")))
            add("Ironic CPU per node: inspectord / ironic-inspector",
                _ratio(_get(ins, "storm.ironic_cpu_ms_per_node"), _get(ii, "storm.ironic_cpu_ms_per_node")))
            add("status reads/s at 50 clients: inspectord / ironic-inspector",
                _ratio(_get(ins, "status.50.rps"), _get(ii, "status.50.rps")))
            add("peak RSS: inspectord / ironic-inspector", _ratio(ins.get("peak_rss_mb"), ii.get("peak_rss_mb")))
        if ins and fl:
            add("Ironic CPU per node: inspectord / floor",
                _ratio(_get(ins, "storm.ironic_cpu_ms_per_node"), _get(fl, "storm.ironic_cpu_ms_per_node")))
    return {name: (_median(values), values) for name, values in ratios.items()}


def targets(results, count):
    """``[(target, measured, ok)]`` for the issue's targets at ``count`` nodes (medians)."""
    groups = _group(results)
    ins = groups.get((count, "inspectord"), [])
    ii = groups.get((count, "ironic-inspector"), [])
    ratios = pair_ratios(results, count)
    rows = []

    def ratio(name):
        return ratios.get(name, (None, []))[0]

    r = ratio("wall: inspectord / floor")
    if r is not None:
        rows.append(("storm wall time ≤ 1.15 × floor", "{:.2f} × floor".format(r), r <= 1.15))
    if ins:
        lost = sum(_get(x, "storm.lost") or 0 for x in ins) + sum(_get(x, "storm.callback_errors") or 0 for x in ins)
        rows.append(("0 callbacks lost", "{} lost or failed".format(lost), lost == 0))
    for phase, name in (("storm", "service CPU per node, storm: inspectord / ironic-inspector"),
                        ("start", "service CPU, start: inspectord / ironic-inspector")):
        r = ratio(name)
        if r is not None:
            rows.append(("service CPU per node, {} (without status polls) ≤ 0.1 × ironic-inspector".format(phase),
                         "{:.3f} ×".format(r), r <= 0.1))
    r = ratio("callback latency p50: inspectord / ironic-inspector")
    if r is not None:
        rows.append(("callback latency p50 under the storm ≤ 0.2 × ironic-inspector", "{:.3f} ×".format(r), r <= 0.2))
    r = ratio("status reads/s at 50 clients: inspectord / ironic-inspector")
    if r is not None:
        rows.append(("status reads/s at 50 clients ≥ 5 × ironic-inspector", "{:.1f} ×".format(r), r >= 5))
    p99 = _median([_get(x, "status.50.p99_ms") for x in ins])
    if p99 is not None:
        rows.append(("status p99 at 50 clients < 50 ms", "{:.1f} ms".format(p99), p99 < 50))
    peak = _median([x.get("peak_rss_mb") for x in ins])
    floor = _median([x.get("import_floor_mb") for x in ins])
    if peak is not None and floor is not None:
        rows.append(("peak RSS ≤ import floor + 15 MB",
                     "{:.1f} MB peak, {:.1f} MB floor (+{:.1f})".format(peak, floor, peak - floor), peak - floor <= 15))
    ii_peak = _median([x.get("peak_rss_mb") for x in ii])
    if peak is not None and ii_peak:
        rows.append(("peak RSS ≤ 0.8 × ironic-inspector's peak",
                     "{:.2f} × ({:.1f} MB)".format(peak / ii_peak, ii_peak), peak <= 0.8 * ii_peak))
    return rows


def markdown(meta, results, directory="."):
    groups = _group(results)
    counts = sorted({r["nodes"] for r in results})
    systems = [s for s in SYSTEMS if s in meta["systems"]]
    lines = [
        "# Boot storm: inspectord vs ironic-inspector 12.5.0 vs the floor",
        "",
        "Measured {} on {} CPU(s): Ironic 39 standalone (fake-hardware, SQLite), a fresh copy of the enrolled "
        "database for every system and run, 4 ports per node; {} IPA callbacks in flight; the floor makes "
        "one PATCH + one power-off PUT per node at each of {} nodes in flight, the fastest without errors "
        "being the floor (see its sweep); status reads for {} s per client count "
        "with wrk. Medians over runs (counted in each table); ratios are computed within each run, then their "
        "median is shown. Service CPU \"without the status polls\" is read when Ironic has answered the "
        "last power request of the phase (the last Ironic call of a start and of a node's processing, for "
        "both services) plus 0.5 s, before the harness polls the statuses; \"with the harness's status "
        "polls\" runs until every node is seen waiting or finished by polling each node's status every "
        "0.25 s, 4 requests in flight (status reads are measured on their own below).".format(
            meta["started"], meta["cpus"], meta["callback_concurrency"],
            ", ".join(map(str, meta["floor_concurrency"])) if isinstance(meta["floor_concurrency"], list)
            else meta["floor_concurrency"],
            meta["status_seconds"]),
        "",
    ]
    if meta.get("experiment"):
        lines += ["**Experiment**: inspectord ran with `{}` of `bench/experiments.py` patched in.".format(
            meta["experiment"]), ""]
    if meta.get("inspectord_config", "").strip():
        lines += ["inspectord extra configuration: `{}`".format(meta["inspectord_config"].strip().replace("\n", " ")), ""]
    failed = [r for r in results if "failed" in r]
    for count in counts:
        lines += ["## {} nodes".format(count), ""]
        header = ["figure"] + systems
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines.append("| runs | {} |".format(" | ".join(str(len(groups.get((count, s), []))) for s in systems)))
        for label, path, fmt, _scale in FIGURES:
            cells = []
            for system in systems:
                runs = groups.get((count, system), [])
                cells.append(_fmt(fmt, _median([_value(r, label, path) for r in runs])))
            if all(c == "—" for c in cells):
                continue
            lines.append("| {} | {} |".format(label, " | ".join(cells)))
        for label, path in COUNTS:
            cells = []
            for system in systems:
                runs = groups.get((count, system), [])
                cells.append(str(sum(_get(r, path) or 0 for r in runs)) if runs else "—")
            lines.append("| {} | {} |".format(label, " | ".join(cells)))
        lines.append("")
        ratios = pair_ratios(results, count)
        if ratios:
            lines += ["| ratio (median of per-run ratios) | value | per run |", "|---|---|---|"]
            for name, (median, values) in ratios.items():
                lines.append("| {} | {:.2f} | {} |".format(name, median, ", ".join("{:.2f}".format(v) for v in values)))
            lines.append("")
        rows = targets(results, count)
        if rows:
            lines += ["| target | measured | |", "|---|---|---|"]
            for name, measured, ok in rows:
                lines.append("| {} | {} | {} |".format(name, measured, "met" if ok else "**missed**"))
            lines.append("")
        lines += _floor_sweep(groups, count)
        breakdown = _call_breakdown(groups, count)
        if breakdown:
            lines += breakdown
    for result in failed:
        lines.append("* run {} {} at {} nodes failed: {}".format(result.get("run"), result["system"], result["nodes"],
                                                                result["failed"]))
    errors = [(r["system"], r["nodes"], s) for r in results for s in (_get(r, "storm.callback_error_samples") or [])
              + (_get(r, "storm.node_error_samples") or [])]
    if errors:
        lines += ["", "Error samples:", ""]
        for system, nodes, sample in sorted(set(errors))[:20]:
            lines.append("* {} ({} nodes): `{}`".format(system, nodes, sample.replace("`", "'")[:200]))
    lines += ["", "Plots: `throughput_vs_n.png`, `latency_distribution.png`, `completions.png`.", ""]
    from bench import profiles

    seen = set()
    for result in results:
        for key, phase in (("profile", "boot storm"), ("profile_status", "status reads, 50 clients")):
            path = result.get(key)
            if not path:
                continue
            path = pathlib.Path(directory) / pathlib.Path(path).name
            if path in seen or not path.exists():
                continue
            seen.add(path)
            lines += ["## Profile: {} during the {} ({} nodes, run {})".format(
                result["system"], phase, result["nodes"], result.get("run")), ""]
            lines += profiles.markdown(path, "`{}`".format(pathlib.Path(path).name))
    pxe = pathlib.Path(directory) / "pxe_filter.md"
    if pxe.exists():
        lines += ["", pxe.read_text()]
    return "\n".join(lines)


def _floor_sweep(groups, count):
    """The floor at each concurrency tried, every run: where Ironic is fastest."""
    rows = []
    for result in groups.get((count, "floor"), []):
        for point in result.get("floor_sweep") or []:
            chosen = point["concurrency"] == result.get("floor_concurrency")
            rows.append("| {} | {}{} | {:.1f} | {:.1f} | {} | {} | {:.0f} | {} |".format(
                result.get("run"), point["concurrency"], " (the floor)" if chosen else "", point["wall_s"], point["nodes_per_s"] or 0,
                "{:.0f}".format(1000 * point["latency_p50_s"]) if point["latency_p50_s"] is not None else "—",
                point["errors"], point["ironic_cpu_ms_per_node"], point["resets"],
            ))
    if not rows:
        return []
    return ["Floor sweep (one PATCH + one power-off PUT per node, a fresh Ironic at each concurrency):", "",
            "| run | in flight | wall (s) | nodes/s | p50 (ms) | errors | Ironic CPU/node (ms) | resets |",
            "|---|---|---|---|---|---|---|---|", *rows, ""]


def _call_breakdown(groups, count):
    """Ironic calls per node by request, first run of each service."""
    keys = {}
    for system in SYSTEMS:
        runs = groups.get((count, system), [])
        if not runs:
            continue
        first = runs[0]
        calls = {}
        for phase in ("start", "storm"):
            for key, n in (_get(first, phase + ".ironic.calls") or {}).items():
                calls[(phase, key)] = calls.get((phase, key), 0) + n
        for key, n in calls.items():
            keys.setdefault(key, {})[system] = n / count
    if not keys:
        return []
    systems = [s for s in SYSTEMS if any(s in v for v in keys.values())]
    lines = ["Ironic calls per node by request (first run):", "",
             "| phase | request | " + " | ".join(systems) + " |", "|---|---|" + "---|" * len(systems)]
    for (phase, key), per in sorted(keys.items()):
        lines.append("| {} | `{}` | {} |".format(phase if phase == "start" else "storm", key,
                                                 " | ".join("{:.2f}".format(per[s]) if s in per else "" for s in systems)))
    return lines + [""]


def plots(directory, meta, results):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    groups = _group(results)
    counts = sorted({r["nodes"] for r in results if "failed" not in r})
    systems = [s for s in SYSTEMS if s in meta["systems"]]
    colors = {"inspectord": "tab:blue", "ironic-inspector": "tab:orange", "floor": "tab:gray"}
    written = []

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for system in systems:
        xs = [n for n in counts if groups.get((n, system))]
        if not xs:
            continue
        for ax, key in ((ax1, "storm.callbacks_per_s"), (ax2, "storm.wall_s")):
            values = [[v for v in (_get(r, key) for r in groups[(n, system)]) if v is not None] for n in xs]
            mid = [statistics.median(v) if v else None for v in values]
            low = [m - min(v) if v else 0 for m, v in zip(mid, values)]
            high = [max(v) - m if v else 0 for m, v in zip(mid, values)]
            ax.errorbar(xs, mid, yerr=[low, high], fmt="o-", capsize=4, color=colors[system],
                        label=system + " (median, min-max)")
    ax1.set_xticks(counts)
    ax2.set_xticks(counts)
    ax1.set_xlabel("nodes")
    ax1.set_ylabel("nodes finished per second")
    ax1.set_title("Boot storm throughput")
    ax2.set_xlabel("nodes")
    ax2.set_ylabel("seconds, first callback to all finished")
    ax2.set_title("Boot storm wall time")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.tight_layout()
    path = directory / "throughput_vs_n.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    for name, key, xlabel, title in (
        ("latency_distribution.png", "storm.latencies", "seconds", "Callback latency (floor: PATCH + PUT of a node), CDF"),
        ("completions.png", "storm.completions", "seconds since the first callback", "Nodes finished over time"),
    ):
        fig, axes = plt.subplots(1, len(counts), figsize=(5.5 * len(counts), 4.2), squeeze=False)
        for ax, count in zip(axes[0], counts):
            for system in systems:
                runs = groups.get((count, system), [])
                if not runs:
                    continue
                if key == "storm.latencies":
                    values = sorted(v for r in runs for v in (_get(r, key) or []))
                    if values:
                        ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], color=colors[system],
                                label=system)
                else:
                    values = _get(runs[0], key) or []
                    if values:
                        ax.step(values, range(1, len(values) + 1), where="post", color=colors[system], label=system)
            ax.set_title("{} nodes".format(count))
            ax.set_xlabel(xlabel)
            ax.set_ylabel("fraction of callbacks" if key == "storm.latencies" else "nodes finished (first run)")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(title)
        fig.tight_layout()
        path = directory / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write(directory, meta, results):
    directory = pathlib.Path(directory)
    text = markdown(meta, results, directory)
    (directory / "results.md").write_text(text + "\n")
    plots(directory, meta, results)
    return text


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    directory = pathlib.Path(argv[0] if argv else pathlib.Path(__file__).resolve().parent / "results")
    data = json.loads((directory / "results.json").read_text())
    print(write(directory, data["meta"], data["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
