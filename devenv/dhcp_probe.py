"""Ask for DHCP offers with chosen MACs, all at once, and report who got one.

Run as root on the interface facing the DHCP server (the integration tests
run it inside a network namespace)::

    python -m devenv.dhcp_probe --interface eth1 --timeout 2 52:54:00:00:00:01 52:54:00:00:00:02

prints one JSON object: ``{"offers": {mac: {"yiaddr", "server", ...}}, "silent": [mac...]}``.
Every DISCOVER is sent before any answer is awaited (an unanswered probe
costs the whole timeout, so batches cost one timeout, not one each), and
sent ``--tries`` times to survive a lost packet.
"""

import argparse
import json
import random
import sys
import time

from inspectord.dhcp import packets


def probe(interface, macs, timeout=2.0, tries=2, arch=None):
    """``{mac: parsed offer}`` of the MACs that got an OFFER (blocking)."""
    from scapy import all as scapy

    xids = {mac: random.randrange(1, 2**32) for mac in macs}
    offers = {}

    def keep(packet):
        reply = packets.parse(packet)
        if reply and reply["op"] == 2 and reply["type"] == "offer" and xids.get(reply["mac"]) == reply["xid"]:
            offers.setdefault(reply["mac"], reply)

    sniffer = scapy.AsyncSniffer(
        iface=interface, store=False, prn=keep, lfilter=lambda p: p.haslayer(scapy.UDP) and p[scapy.UDP].sport == 67
    )
    sniffer.start()
    try:
        time.sleep(0.2)  # the sniffer's socket is open before the first DISCOVER leaves
        sock = scapy.conf.L2socket(iface=interface)
        try:
            for attempt in range(tries):
                for mac in macs:
                    if mac not in offers:
                        sock.send(packets.discover(mac, xids[mac], arch=arch))
                deadline = time.monotonic() + timeout / tries
                while time.monotonic() < deadline and len(offers) < len(macs):
                    time.sleep(0.05)
        finally:
            sock.close()
    finally:
        sniffer.stop()
    return offers


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m devenv.dhcp_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--interface", required=True)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for offers, in all")
    parser.add_argument("--tries", type=int, default=2)
    parser.add_argument("--arch", type=int, default=None, help="option 93 value (0 BIOS, 7 UEFI x86-64)")
    parser.add_argument("macs", nargs="+")
    args = parser.parse_args(argv)
    macs = [m.lower() for m in args.macs]
    offers = probe(args.interface, macs, timeout=args.timeout, tries=args.tries, arch=args.arch)
    json.dump({"offers": offers, "silent": [m for m in macs if m not in offers]}, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
