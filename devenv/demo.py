"""``make demo``: a real Ironic, inspectord, and three nodes introspected.

``python -m devenv.demo start`` starts a standalone Ironic
(fake-hardware) and inspectord in ``.demo/``, enrolls three nodes, starts
their introspection through inspectord's API, posts real
ironic-python-agent payloads (with each node's own MACs) to ``/v1/continue``
as their ramdisks would, and prints what Ironic now knows about them.
Both services keep running for you to explore; ``stop`` stops them.
"""

import argparse
import copy
import json
import pathlib
import sys
import time

from devenv import ironic as ironic_env
from devenv.daemon import InspectordProcess, stop_detached

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
WORKDIR = ROOT / ".demo"
IRONIC_PORT = 6385

NODES = [
    ("demo-node-1", "ipa-payload.json", ["52:54:00:de:01:01", "52:54:00:de:01:02"]),
    ("demo-node-2", "ipa-payload-all-collectors.json", ["52:54:00:de:02:01", "52:54:00:de:02:02"]),
    ("demo-node-3", "ipa-payload.json", ["52:54:00:de:03:01"]),
]


def payload(fixture, macs):
    data = json.loads((FIXTURES / fixture).read_text())
    data = copy.deepcopy(data)
    template = data["inventory"]["interfaces"][0]
    data["inventory"]["interfaces"] = [
        dict(template, name="eth{}".format(i), mac_address=mac, ipv4_address="192.0.2.{}".format(20 + i), ipv6_address=None)
        for i, mac in enumerate(macs)
    ]
    data["boot_interface"] = "01-" + macs[0].replace(":", "-")
    return data


def say(text):
    print(text, flush=True)


def start():
    WORKDIR.mkdir(exist_ok=True)
    stop(quiet=True)
    say("Starting Ironic {} (standalone, fake-hardware)...".format(ironic_env.IRONIC_VERSION))
    ironic_url = ironic_env.start_detached(WORKDIR / "ironic", port=IRONIC_PORT)
    say("  Ironic API: " + ironic_url)
    inspectord = InspectordProcess(WORKDIR / "inspectord", ironic_url, port=5050)
    inspectord.start()
    say("  inspectord API: {} (log: {})".format(inspectord.url, inspectord.log_path))
    server = ironic_env.IronicServer(WORKDIR / "ironic", port=IRONIC_PORT)
    client = server.client()

    uuids = {}
    for name, _, macs in NODES:
        existing = [n for n in client.node.list() if n.name == name]
        for node in existing:
            client.node.delete(node.uuid)
        node = server.enroll_node(name, macs[:1])
        uuids[name] = node.uuid
        say("Enrolled {} ({}) with port {}".format(name, node.uuid, macs[0]))

    began = time.monotonic()
    for name, _, _ in NODES:
        status, _, body = inspectord.call("POST", "/v1/introspection/" + name)
        if status != 202:
            raise SystemExit("starting introspection of {} failed: {} {}".format(name, status, body))
        say("Introspection of {} started (202)".format(name))
    for name, _, _ in NODES:
        _wait(inspectord, uuids[name], ("waiting",))
    for name, fixture, macs in NODES:
        status, _, body = inspectord.call("POST", "/v1/continue", payload(fixture, macs))
        say("Ramdisk of {} posted {} -> {} {}".format(name, fixture, status, body))
    for name, _, _ in NODES:
        inspectord.wait_finished(uuids[name])
    elapsed = time.monotonic() - began

    rows = [("node", "state", "cpus", "arch", "memory_mb", "local_gb", "power", "ports", "capabilities")]
    for name, _, _ in NODES:
        node = client.node.get(uuids[name])
        _, _, status = inspectord.call("GET", "/v1/introspection/" + uuids[name])
        ports = ",".join(sorted(p.address for p in client.port.list(node=node.uuid)))
        props = node.properties
        rows.append(
            (name, status["state"] + (" ({})".format(status["error"]) if status["error"] else ""),
             props.get("cpus", "-"), props.get("cpu_arch", "-"), props.get("memory_mb", "-"),
             props.get("local_gb", "-"), node.power_state or "-", ports, props.get("capabilities", "-"))
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    say("")
    for i, row in enumerate(rows):
        say("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
        if i == 0:
            say("  ".join("-" * w for w in widths))
    say("")
    say("{} nodes introspected in {:.1f} s. Ironic: {}  inspectord: {}".format(len(NODES), elapsed, ironic_url, inspectord.url))
    say("Try: curl -s {}/v1/introspection/demo-node-1 | python3 -m json.tool".format(inspectord.url))
    say("Stop both with: make demo-stop")


def _wait(inspectord, uuid, states, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        _, _, body = inspectord.call("GET", "/v1/introspection/" + uuid)
        if body and body.get("state") in states:
            return body
        if body and body.get("finished"):
            raise SystemExit("introspection of {} ended early: {}".format(uuid, body))
        if time.monotonic() > deadline:
            raise SystemExit("node {} did not reach {}: {}".format(uuid, states, body))
        time.sleep(0.1)


def stop(quiet=False):
    stopped = stop_detached(WORKDIR / "inspectord")
    stopped = ironic_env.stop_detached(WORKDIR / "ironic") or stopped
    if not quiet:
        print("stopped" if stopped else "nothing was running")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="inspectord-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop"])
    args = parser.parse_args(argv)
    start() if args.command == "start" else stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
