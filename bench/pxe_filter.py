"""PXE filter benchmark: 100,000 known MACs through the real drivers.

Run as root (``.venv/bin/python bench/pxe_filter.py``); everything happens
in a network namespace the benchmark creates and deletes, so the host's
firewall is never touched.  Measures, as medians of ``--runs`` runs:

* a full sync of ``--macs`` MACs with the nftables driver (one ``nft -f``)
  and the iptables driver (one ``iptables-restore``, plus the jump check),
  and an incremental nftables sync (one node starting);
* the dnsmasq driver: the first full write of the hostsdir, then an
  incremental change (one node starting: two files), and the same event
  through the whole service (store read, decision, driver);
* memory of the filter state for ``--macs`` MACs (tracemalloc);
* every driver (noop, iptables, nftables, dnsmasq, builtin) behind the
  filter service, with ``--allowed`` nodes under introspection in the store
  and ``--denied`` more Ironic ports (default 10,000 and 100,000;
  comma-separated pairs measure several sizes): the first sync from start
  (Ironic's ports read), a full sync, and an incremental sync (one node
  starts); ``--json`` writes them for :mod:`bench.growth`'s report;
* one ``iptables`` process per MAC, as ironic-inspector does, for
  ``--per-mac`` MACs (extrapolated linearly to ``--macs``, a lower bound:
  each call gets slower as the chain grows), and the ratio.
"""

import argparse
import datetime
import os
import resource
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402
from twisted.python import threadpool  # noqa: E402

from inspectord.dhcp.server import ServerOptions  # noqa: E402
from inspectord.pxe import NoopFilter, decisions, dnsmasq, iptables, nftables  # noqa: E402
from inspectord.pxe.builtin import BuiltinDriver  # noqa: E402
from inspectord.pxe.process import Runner  # noqa: E402
from inspectord.pxe.service import PXEFilterService  # noqa: E402
from inspectord.store import SQLStore, make_engine, schema  # noqa: E402
from inspectord.threads import PoolRunner  # noqa: E402
from inspectord.store.pool import SynchronousPool  # noqa: E402

INTERFACE = "bench0"
PARTS = ("nftables", "iptables", "dnsmasq", "memory", "drivers")
DRIVERS = ("noop", "iptables", "nftables", "dnsmasq", "builtin")
CHAIN = "ironic-inspector"


def macs(count, prefix=0x02):
    return ["{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}".format(
        prefix, (i >> 32) & 0xFF, (i >> 24) & 0xFF, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF)
        for i in range(count)]


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_ms(samples):
    return statistics.median(samples) * 1000


async def timed(reactor, make_coro):
    start = time.perf_counter()
    await make_coro()
    return time.perf_counter() - start


class Bench:
    def __init__(self, reactor, args):
        self.reactor = reactor
        self.args = args
        self.ns = "inspd-bench{}".format(os.getpid())
        self.runner = Runner(reactor, prefix=("ip", "netns", "exec", self.ns), timeout=3600)
        self.rows = []
        self.known = macs(args.macs)
        # A few nodes under introspection (allowed), the rest denied, unknown allowed:
        # every MAC is listed, the largest rule set the filter can produce.
        self.allowed = frozenset(self.known[:4])
        self.state = decisions.FilterState(self.allowed, frozenset(self.known) - self.allowed, True)
        started = frozenset(self.known[:6])
        self.next_state = decisions.FilterState(started, frozenset(self.known) - started, True)

    def row(self, what, value, unit, target=None, note="", group="100k", **fields):
        self.rows.append((what, value, unit, target, note, group, fields))
        print("  {}: {:.1f} {}".format(what, value, unit), file=sys.stderr)

    async def setup(self):
        # Rules name the interface; it need not exist.
        subprocess.run(["ip", "netns", "add", self.ns], check=True)

    def teardown(self):
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)

    async def runs(self, make_coro, before=None):
        samples, self.cpu = [], []
        for _ in range(self.args.runs):
            if before is not None:
                await before()
            used = children_cpu()
            samples.append(await timed(self.reactor, make_coro))
            self.cpu.append(children_cpu() - used)
        return samples

    def cpu_row(self, what):
        """CPU time (user + sys) of the commands of the last runs: what wall time is on an idle machine."""
        self.row("  CPU time of the commands ({})".format(what), median_ms(self.cpu), "ms")

    async def netns_overhead(self):
        samples = await self.runs(lambda: self.runner.run(("true",)))
        self.row("`ip netns exec true` (included in every figure below)", median_ms(samples), "ms")

    async def nft(self):
        driver = nftables.NftablesDriver(self.runner, "inspectord", INTERFACE)
        full = await self.runs(lambda: driver.apply(self.state))
        n = len(self.known)
        self.row("nftables full sync, {:,} MACs (one nft -f)".format(n), median_ms(full), "ms", 1000)
        self.cpu_row("nft")
        incremental = await self.runs(
            lambda: driver.apply(self.next_state, previous=self.state),
            before=lambda: driver.apply(self.state),
        )
        self.row("nftables incremental sync (one node starts)", median_ms(incremental), "ms")
        await self.runner.run(("nft", "delete", "table", "inet", "inspectord"))

    async def iptables_restore(self):
        driver = iptables.IptablesDriver(self.runner, CHAIN, INTERFACE)
        full = await self.runs(lambda: driver.apply(self.state))
        self.restore_seconds = statistics.median(full)
        self.row(
            "iptables full sync, {:,} MACs (iptables-restore + -S INPUT)".format(len(self.known)),
            median_ms(full), "ms", 1000,
        )
        self.cpu_row("iptables-restore, iptables -S")
        if shutil.which("iptables-legacy-restore"):
            text = iptables.restore_input(CHAIN, self.state)
            legacy = await self.runs(lambda: self.runner.run(("iptables-legacy-restore", "-w", "--noflush"), stdin=text))
            self.row("  same with iptables-legacy-restore", median_ms(legacy), "ms")
            await self.runner.run(("iptables-legacy", "-w", "-F", CHAIN))
            await self.runner.run(("iptables-legacy", "-w", "-X", CHAIN))
        await self.runner.run(("iptables", "-w", "-D") + iptables.jump_rule(CHAIN, INTERFACE, "4"))
        await self.runner.run(("iptables", "-w", "-F", CHAIN))
        await self.runner.run(("iptables", "-w", "-X", CHAIN))

    async def iptables_per_mac(self):
        count = min(self.args.per_mac, len(self.known))
        sample = self.known[:count]
        # One namespace entry, then one iptables process per MAC, as ironic-inspector's loop.
        script = "iptables -w -N {c}_pm\nfor m in {macs}; do iptables -w -A {c}_pm -m mac --mac-source $m -j DROP; done\n".format(
            c=CHAIN, macs=" ".join(sample))
        seconds = await timed(self.reactor, lambda: self.runner.run(("sh", "-c", script)))
        await self.runner.run(("iptables", "-w", "-F", CHAIN + "_pm"))
        await self.runner.run(("iptables", "-w", "-X", CHAIN + "_pm"))
        self.row("one iptables process per MAC, {:,} MACs (measured)".format(count), seconds * 1000, "ms")
        small = decisions.FilterState(frozenset(), frozenset(sample), True)
        driver = iptables.IptablesDriver(self.runner, CHAIN, INTERFACE)
        restore_small = statistics.median(await self.runs(lambda: driver.apply(small)))
        self.row("iptables-restore, the same {:,} MACs".format(count), restore_small * 1000, "ms",
                 note="ratio {:.0f}x".format(seconds / restore_small))
        extrapolated = seconds * len(self.known) / count
        self.row("one process per MAC, extrapolated to {:,} MACs (lower bound)".format(len(self.known)),
                 extrapolated, "s", note="ratio {:.0f}x vs one restore".format(extrapolated / self.restore_seconds))
        await self.runner.run(("iptables", "-w", "-D") + iptables.jump_rule(CHAIN, INTERFACE, "4"))
        await self.runner.run(("iptables", "-w", "-F", CHAIN))
        await self.runner.run(("iptables", "-w", "-X", CHAIN))

    async def dnsmasq_files(self):
        workdir = tempfile.mkdtemp(prefix="inspectord-bench-")
        pool = threadpool.ThreadPool(1, 1, "bench-io")
        pool.start()
        try:
            hostsdir = os.path.join(workdir, "hosts")
            driver = dnsmasq.DnsmasqDriver(self.runner, PoolRunner(self.reactor, pool).run, hostsdir)
            first = await timed(self.reactor, lambda: driver.apply(self.state))
            self.row("dnsmasq first full write, {:,} files".format(driver.last_written), first * 1000, "ms")
            full = await self.runs(lambda: driver.apply(self.state))
            self.row("dnsmasq full sync, nothing changed (no file written)", median_ms(full), "ms")
            samples = []
            for i in range(self.args.runs):
                await driver.apply(self.state, previous=self.next_state)
                samples.append(await timed(self.reactor, lambda: driver.apply(self.next_state, previous=self.state)))
            self.row("dnsmasq incremental change (one node starts: {} files)".format(driver.last_written),
                     median_ms(samples), "ms", 50)
            await self.dnsmasq_event(driver)
        finally:
            pool.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    async def dnsmasq_event(self, driver):
        """notify() to applied, through the service: store query, decision over 100k MACs, files."""
        store = SQLStore(make_engine("sqlite://"), SynchronousPool())
        store.upgrade()
        known = self.known

        class Ports:
            async def list_all_port_macs(self):
                return known

        service = PXEFilterService(driver, store, Ports(), self.reactor, sync_period=0, delay=0)
        service.startService()
        await service.sync()
        now = datetime.datetime(2027, 1, 1)
        samples = []
        for i in range(self.args.runs):
            uuid = "node-{}".format(i)
            store.start(uuid, now, True, {}, {}, [("mac", known[100 + i])])
            start = time.perf_counter()
            service.notify()
            while service.applied is None or known[100 + i] not in service.applied.allowed:
                await task.deferLater(self.reactor, 0.0005, lambda: None)
            samples.append(time.perf_counter() - start)
        await service.stopService()
        self.row("event to applied through the service (dnsmasq, {:,} known)".format(len(known)),
                 median_ms(samples), "ms", 1000)

    # -- every driver through the service, at --allowed / --denied ----------

    def split_store(self, allowed, denied):
        """A store with ``allowed`` nodes waiting (one MAC each), and Ironic's ports: those plus ``denied``."""
        known = macs(allowed + denied, prefix=0x0a)
        store = SQLStore(make_engine("sqlite://"), SynchronousPool())
        store.upgrade()
        now = datetime.datetime(2027, 1, 1)
        nodes = [dict(uuid="{:08x}-0000-4000-8000-000000000000".format(i), state="waiting", started_at=now,
                      finished_at=None, error=None, manage_boot=True, version_id="v", lease_until=None,
                      lease_owner=None, data_pending=False, node={}, ports={known[i]: {}}, options={})
                 for i in range(allowed)]
        with store.engine.begin() as conn:
            conn.execute(schema.nodes.insert(), nodes)
            conn.execute(schema.attributes.insert(),
                         [dict(node_uuid=n["uuid"], name="mac", value=known[i]) for i, n in enumerate(nodes)])
        return store, known

    def make_driver(self, name, store, workdir, pool):
        if name == "iptables":
            return iptables.IptablesDriver(self.runner, CHAIN, INTERFACE)
        if name == "nftables":
            return nftables.NftablesDriver(self.runner, "inspectord", INTERFACE)
        if name == "dnsmasq":
            return dnsmasq.DnsmasqDriver(self.runner, PoolRunner(self.reactor, pool).run, os.path.join(workdir, "hosts"))
        if name == "builtin":
            # The DHCP server's socket on loopback (the sync itself never touches it).
            def open_socket(interface):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind(("127.0.0.1", 0))
                sock.setblocking(False)
                return sock

            options = ServerOptions("127.0.0.1", mode="proxy")
            return BuiltinDriver(self.reactor, options, "lo", store, open_socket=open_socket)
        raise ValueError(name)

    async def drivers(self):
        for allowed, denied in zip(self.args.allowed, self.args.denied):
            await self.drivers_at(allowed, denied)

    async def drivers_at(self, allowed, denied):
        """Each driver behind the filter service: ``allowed`` nodes under introspection, ``denied`` other ports."""
        split = "{:,} allowed, {:,} denied".format(allowed, denied)
        at = dict(allowed=allowed, denied=denied)
        store, known = self.split_store(allowed, denied)

        class Ports:
            async def list_all_port_macs(self):
                return known

        noop = NoopFilter()
        samples = []
        for _ in range(self.args.runs):
            samples.append(await timed(self.reactor, lambda: noop.sync(full=True)))
        self.row("noop: sync (nothing is applied), {}".format(split), median_ms(samples), "ms", group="drivers",
                 driver="noop", phase="full", **at)
        spare = iter(known[allowed:])
        for name in self.args.drivers.split(","):
            if name == "noop":
                continue
            workdir = tempfile.mkdtemp(prefix="inspectord-bench-")
            pool = threadpool.ThreadPool(1, 1, "bench-io")
            pool.start()
            driver = self.make_driver(name, store, workdir, pool)
            service = PXEFilterService(driver, store, Ports(), self.reactor, sync_period=0, delay=0, poll_interval=0)
            try:
                start = time.perf_counter()
                service.startService()
                # Until the state applied lists every Ironic port (read after the first store sync).
                while service.applied is None or len(service.applied.denied) + len(service.applied.allowed) < len(known):
                    await task.deferLater(self.reactor, 0.001, lambda: None)
                self.row("{}: first sync from start (Ironic's ports read), {}".format(name, split),
                         (time.perf_counter() - start) * 1000, "ms", group="drivers", driver=name, phase="first", **at)
                full = await self.runs(lambda: service.sync(full=True))
                self.row("{}: full sync, {}".format(name, split), median_ms(full), "ms", 1000, group="drivers",
                         driver=name, phase="full", **at)
                samples = []
                for _ in range(self.args.runs):
                    mac = next(spare)
                    store.start("{}-{}".format(name, mac), datetime.datetime(2027, 1, 2), True, {}, {mac: {}},
                                [("mac", mac)])
                    samples.append(await timed(self.reactor, lambda: service.sync(full=False)))
                    assert service.applied.allows(mac), (name, mac)
                self.row("{}: incremental sync (one node starts), {}".format(name, split), median_ms(samples), "ms",
                         group="drivers", driver=name, phase="incremental", **at)
            finally:
                await service.stopService()
                pool.stop()
                shutil.rmtree(workdir, ignore_errors=True)
                await self.clean(name)

    async def clean(self, name):
        if name == "nftables":
            await self.runner.run(("nft", "delete", "table", "inet", "inspectord"))
        elif name == "iptables":
            await self.runner.run(("iptables", "-w", "-D") + iptables.jump_rule(CHAIN, INTERFACE, "4"))
            await self.runner.run(("iptables", "-w", "-F", CHAIN))
            await self.runner.run(("iptables", "-w", "-X", CHAIN))

    def memory(self):
        known_list = macs(len(self.known), prefix=0x06)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        known = frozenset(known_list)
        state = decisions.decide(known_list[:4], True, known, False, False)
        state_bytes = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.reset_peak()
        text = nftables.full_ruleset("inspectord", INTERFACE, "4", state)
        nft_peak = tracemalloc.get_traced_memory()[1] - base - state_bytes
        del text
        tracemalloc.reset_peak()
        text = iptables.restore_input(CHAIN, state)
        ipt_peak = tracemalloc.get_traced_memory()[1] - base - state_bytes
        del text
        written = dict.fromkeys(known, False)
        cache = tracemalloc.get_traced_memory()[0] - base - state_bytes
        tracemalloc.stop()
        del written
        n = len(known)
        self.row("memory: Ironic MACs + filter state, {:,} MACs".format(n), state_bytes / 2**20, "MiB")
        self.row("memory: peak while rendering the nft input", nft_peak / 2**20, "MiB")
        self.row("memory: peak while rendering the iptables-restore input", ipt_peak / 2**20, "MiB")
        self.row("memory: dnsmasq driver's record of written files", cache / 2**20, "MiB")

    def table(self):
        lines = ["", "PXE filter benchmark: {:,} MACs; every driver at {} (allowed + denied); median of {} runs".format(
            len(self.known), ", ".join("{:,} + {:,}".format(a, d) for a, d in zip(self.args.allowed, self.args.denied)),
            self.args.runs), ""]
        width = max(len(r[0]) for r in self.rows)
        lines.append("{:<{w}}  {:>12}  {:>8}  {}".format("measure", "value", "target", "note", w=width))
        lines.append("-" * (width + 40))
        for what, value, unit, target, note, _group, _fields in self.rows:
            shown = "{:,.1f} {}".format(value, unit)
            goal = "" if target is None else "< {} {}".format(target, unit)
            if target is not None:
                note = ("OK " if value < target else "MISSED ") + note
            lines.append("{:<{w}}  {:>12}  {:>8}  {}".format(what, shown, goal, note, w=width))
        lines.append("")
        lines.append("max RSS of this process: {:.0f} MiB".format(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        lines.append("load average at the end: {:.2f} {:.2f} {:.2f} on {} CPUs (wall times grow with it)".format(
            *os.getloadavg(), os.cpu_count()))
        return "\n".join(lines)


    def dump(self, path):
        rows = [dict(zip(("what", "value", "unit", "target", "note", "group"), r), **r[6]) for r in self.rows]
        meta = {"macs": len(self.known), "allowed": self.args.allowed, "denied": self.args.denied,
                "runs": self.args.runs, "load_average": os.getloadavg(), "cpus": os.cpu_count(),
                "when": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        with open(path, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


async def main(reactor, args):
    bench = Bench(reactor, args)
    parts = set(args.only.split(",")) if args.only else set(PARTS)
    try:
        await bench.setup()
        await bench.netns_overhead()
        if "nftables" in parts:
            await bench.nft()
        if "iptables" in parts:
            await bench.iptables_restore()
            await bench.iptables_per_mac()
        if "dnsmasq" in parts:
            await bench.dnsmasq_files()
        if "memory" in parts:
            bench.memory()
        if "drivers" in parts:
            await bench.drivers()
    finally:
        bench.teardown()
    print(bench.table())
    if args.json:
        bench.dump(args.json)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--macs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--per-mac", type=int, default=1000, help="MACs for the one-process-per-MAC comparison")
    parser.add_argument("--allowed", default="10000",
                        help="drivers part: MACs of nodes under introspection (allowed), comma-separated counts")
    parser.add_argument("--denied", default="100000",
                        help="drivers part: other Ironic port MACs (denied), one count per --allowed count")
    parser.add_argument("--drivers", default=",".join(DRIVERS), help="drivers part: comma-separated drivers")
    parser.add_argument("--json", default="", help="also write the figures there (for bench.growth's report)")
    parser.add_argument("--only", default="", help="comma-separated parts: " + ",".join(PARTS))
    args = parser.parse_args(argv)
    args.allowed = [int(n) for n in args.allowed.split(",") if n.strip()]
    args.denied = [int(n) for n in args.denied.split(",") if n.strip()]
    if len(args.allowed) != len(args.denied):
        parser.error("--allowed and --denied need as many counts")
    return args


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench/pxe_filter.py needs root (it creates a network namespace)")
    arguments = parse(sys.argv[1:])
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
