"""CPU cost of one log line through the observer chain twistd sets up.

::

    python -m bench.logcost --lines 10000 [--profile DIR]

For each way inspectord's log is written (``twistd --logfile FILE``,
``twistd --logger inspectord.logs.json_to_stdout`` with standard output
on a file, and the ``ironic-inspector`` command's
:func:`inspectord.logs.leveled_file_observer`), a fresh process starts
twistd's own logger (``UnixAppLogger``) exactly as ``twistd -n`` does, then
times, one kind at a time:

- ``access``: one access-log line as the API's site writes it for a
  finished request (``Site.log``: the combined-format formatter, then
  twistd's observers), for a path without a query;
- ``access_secret``: the same for a query string that carries a password
  (masked);
- ``node``: one of inspectord's own lines about a node (a
  :class:`~inspectord.logs.NodeLogger` adding ``mac`` and ``bmc_address``).

Printed: µs of process CPU (user + system, so the ``write`` calls are in)
per line, the least of ``--rounds`` rounds, and the first line of each
kind as written, to compare the content before and after a change.  With
``--profile DIR`` each child also saves a cProfile of its timed loops.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

MODES = ("logfile", "json", "leveled")
KINDS = ("access", "access_secret", "node")
NODE = "8f1e4c2a-55b0-4d4f-9a47-3c6f0a1b2c3d"


def _request(site, uri):
    """A request ``site`` has served (and logged once), to be logged again."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    served = []
    log = site.log
    site.log = served.append
    try:
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        channel.makeConnection(StringTransport())
        channel.dataReceived(
            b"GET " + uri + b" HTTP/1.1\r\nHost: 127.0.0.1:5050\r\nUser-Agent: python-requests/2.31.0\r\n"
            b"Referer: http://127.0.0.1/ui\r\n\r\n"
        )
    finally:
        site.log = log
    (request,) = served
    return request


class _Source:
    """An object with a NodeLogger, as Introspection is."""

    def __init__(self):
        from inspectord.logs import NodeLogFields

        self.fields = NodeLogFields()
        self.fields.remember(NODE, ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"], ["192.0.2.20"])

    def node_log_fields(self, uuid):
        return self.fields.get(uuid)


def child(mode, lines, rounds, out_path, profile):
    from twisted.application import service
    from twisted.internet import task
    from twisted.scripts._twistd_unix import UnixAppLogger
    from twisted.web import resource, static

    from inspectord import logs
    from inspectord.api.app import make_site

    workdir = tempfile.mkdtemp(prefix="logcost-")
    logfile = os.path.join(workdir, "inspectord.log")
    options = {"logfile": None, "logger": None, "nodaemon": True, "syslog": False, "prefix": "twisted"}
    if mode == "logfile":
        options["logfile"] = logfile
    elif mode == "json":
        fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        sys.stdout.flush()
        os.dup2(fd, 1)
        os.close(fd)
        options["logger"] = logs.json_to_stdout
    else:
        options["logger"] = lambda: logs.leveled_file_observer(logfile, False)
    applogger = UnixAppLogger(options)
    applogger.start(service.Application("logcost"))

    root = resource.Resource()
    root.putChild(b"v1", static.Data(b"{}", "application/json"))
    clock = task.Clock()
    site = make_site(root, 1024, reactor=clock)
    site.doStart()
    requests = {
        "access": _request(site, b"/v1/introspection/" + NODE.encode()),
        "access_secret": _request(site, b"/v1/introspection/" + NODE.encode() + b"?new_ipmi_password=Zq7Secret"),
    }

    class Introspection(_Source):
        log = logs.NodeLogger()

    source = Introspection()

    def emit(kind, count):
        if kind == "node":
            for _ in range(count):
                source.log.info("Node {node}: waiting for the ramdisk", node=NODE)
        else:
            request = requests[kind]
            for _ in range(count):
                site.log(request)

    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    results = {}
    samples = {}
    for kind in KINDS:
        size = os.path.getsize(logfile)
        emit(kind, 1)
        with open(logfile, "rb") as f:
            f.seek(size)
            samples[kind] = f.read().decode("utf-8", "replace").strip("\x1e\n").split("\n")[0]
        best = None
        for _ in range(rounds):
            if profiler:
                profiler.enable()
            before = time.process_time()
            emit(kind, lines)
            spent = time.process_time() - before
            if profiler:
                profiler.disable()
            best = spent if best is None else min(best, spent)
        results[kind] = 1e6 * best / lines
    applogger.stop()
    if profiler:
        profiler.dump_stats(os.path.join(profile, "logcost-{}.prof".format(mode)))
    with open(out_path, "w") as f:
        json.dump({"us_per_line": results, "samples": samples}, f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--profile", help="directory for one cProfile file per mode")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.lines, args.rounds, args.out, args.profile)
        return 0
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    report = {}
    for mode in args.modes.split(","):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, "-m", "bench.logcost", "--child", mode, "--lines", str(args.lines),
                       "--rounds", str(args.rounds), "--out", out.name]
            if args.profile:
                command += ["--profile", os.path.abspath(args.profile)]
            subprocess.run(command, check=True)
            report[mode] = json.load(open(out.name))
    for mode, result in report.items():
        print("{:8} ".format(mode) + "  ".join(
            "{} {:.1f} µs".format(kind, result["us_per_line"][kind]) for kind in KINDS))
    for mode, result in report.items():
        for kind in KINDS:
            print("{} {}: {}".format(mode, kind, result["samples"][kind]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
