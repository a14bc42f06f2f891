"""inspectord's Klein fake Ironic (:class:`inspectord.testing.FakeIronic`) over real HTTP.

``python -m bench.fakeironic --port PORT --nodes N`` enrolls ``N``
``manageable`` nodes (``bench-<i>``, the MACs of :func:`bench.workload.node_macs`,
so that the boot-storm payloads match them) and serves the fake on
127.0.0.1 until SIGTERM.  It prints one JSON line when listening:
``{"url", "uuids"}`` (the UUIDs written to ``--uuids-file``).

Ironic answers in microseconds here: what grows with the number of
nodes is inspectord's own work.
"""

import argparse
import json
import sys
import uuid as uuidlib

from twisted.internet import endpoints
from twisted.web import server

from bench.workload import node_macs
from inspectord.testing import FakeIronic


def build(count):
    fake = FakeIronic()
    uuids = []
    for index in range(count):
        node_uuid = str(uuidlib.UUID(int=index + 1))
        fake.add_node(
            name="bench-{}".format(index),
            uuid=node_uuid,
            macs=node_macs(index),
            driver_info={"ipmi_address": "10.{}.{}.{}".format((index >> 16) & 255, (index >> 8) & 255, index & 255)},
        )
        uuids.append(node_uuid)
    # Ironic keeps no request log: neither does a long-running fake.
    fake.requests = _Discard()
    fake.patches = _Discard()
    return fake, uuids


class _Discard(list):
    def append(self, item):
        pass


def main(argv=None):
    from twisted.internet import reactor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--uuids-file", required=True)
    args = parser.parse_args(argv)
    fake, uuids = build(args.nodes)
    with open(args.uuids_file, "w") as f:
        f.write("\n".join(uuids) + "\n")
    site = server.Site(fake.app.resource())
    site.log = lambda request: None  # no access log: Ironic's is not measured either
    endpoint = endpoints.TCP4ServerEndpoint(reactor, args.port, backlog=1024, interface="127.0.0.1")

    def listening(_):
        print(json.dumps({"url": "http://127.0.0.1:{}".format(args.port), "nodes": len(uuids)}), flush=True)

    endpoint.listen(site).addCallbacks(listening, lambda f: (print(f, file=sys.stderr), reactor.stop()))
    reactor.run()


if __name__ == "__main__":
    main()
