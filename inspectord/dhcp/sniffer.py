"""Which machines asked for DHCP, and whether the PXE filter let them through.

A scapy sniffer on the provisioning interface sees DHCP requests before
the firewall drops them, so it can tell "never booted" (no request seen)
from "booted but blocked" (seen, refused) from "booted and answered, but
the ramdisk never called back" (seen, allowed).  The sniffer runs in its
own thread (scapy's ``AsyncSniffer``), stoppable, with a timeout on every
receive; what it sees is handed to the reactor thread, and at most
``max_macs`` MACs are remembered (oldest forgotten first).
"""

import collections

from twisted.application import service
from twisted.logger import Logger

from inspectord import threads
from inspectord.dhcp import packets

MAX_MACS = 100_000


class DHCPSeen:
    """The last DHCP request seen from each MAC (reactor thread only)."""

    def __init__(self, max_macs=MAX_MACS, observe=None):
        self._max = max_macs
        #: ``observe(allowed)`` for every request recorded (metrics).
        self._observe = observe
        self._by_mac = collections.OrderedDict()
        # Recorded here and not yet written to the database (by MAC).
        self._unsaved = {}

    def record(self, mac, kind, allowed, when):
        """A request seen here: remembered, and kept for :meth:`take_unsaved`."""
        self._put(mac, kind, allowed, when)
        self._unsaved[mac] = self._by_mac[mac]
        if self._observe is not None:
            self._observe(allowed)

    def merge(self, mac, kind, allowed, when):
        """A request another instance (or this one before a restart) saw; kept if newer than ours."""
        found = self._by_mac.get(mac)
        if found is None or found["last_dhcp_request"] < when:
            self._put(mac, kind, allowed, when)

    def take_unsaved(self):
        """``[(mac, when, kind, allowed)]`` recorded since the last call (for the database)."""
        unsaved, self._unsaved = self._unsaved, {}
        return [(mac, r["last_dhcp_request"], r["dhcp_message"], r["allowed_by_filter"]) for mac, r in unsaved.items()]

    def requeue(self, rows):
        """Rows from :meth:`take_unsaved` that could not be written: unsaved again if still the latest."""
        for mac, when, _kind, _allowed in rows:
            found = self._by_mac.get(mac)
            if mac not in self._unsaved and found is not None and found["last_dhcp_request"] == when:
                self._unsaved[mac] = found

    def _put(self, mac, kind, allowed, when):
        self._by_mac.pop(mac, None)
        self._by_mac[mac] = {"last_dhcp_request": when, "dhcp_message": kind, "allowed_by_filter": allowed}
        while len(self._by_mac) > self._max:
            self._by_mac.popitem(last=False)
        while len(self._unsaved) > self._max:
            self._unsaved.pop(next(iter(self._unsaved)))

    def get(self, mac):
        found = self._by_mac.get(mac)
        return dict(found) if found else None

    def __len__(self):
        return len(self._by_mac)


def client_request(packet):
    """``(mac, kind)`` of a client's DHCP request seen on the wire, or None."""
    reply = packets.parse(packet)
    if reply is None or reply["op"] != 1:
        return None
    return reply["mac"], reply["type"]


class DHCPSniffer(service.Service):
    """Records DHCP requests on ``interface`` into a :class:`DHCPSeen`.

    :param allows: ``allows(mac) -> bool``, the filter's current verdict.
    :param open_socket: ``open_socket(interface)`` returning a scapy L2
        socket (tests open it in a network namespace); scapy's default
        otherwise.
    """

    log = Logger()
    name = "dhcp-sniffer"

    def __init__(self, reactor, interface, allows, seen=None, open_socket=None):
        self._reactor = reactor
        self.interface = interface
        self._allows = allows
        self.seen = seen if seen is not None else DHCPSeen()
        self._open_socket = open_socket
        self._sniffer = None
        self.error = None

    def _packet(self, packet):
        # Sniffer thread: parse here, record in the reactor thread.
        found = client_request(packet)
        if found is not None:
            self._reactor.callFromThread(self._record, *found)

    def _record(self, mac, kind):
        self.seen.record(mac, kind, self._allows(mac), self._reactor.seconds())

    def startService(self):
        super().startService()
        from scapy.layers.inet import UDP
        from scapy.sendrecv import AsyncSniffer

        packets.preload()
        kwargs = dict(
            store=False,
            prn=self._packet,
            lfilter=lambda p: p.haslayer(UDP) and p[UDP].dport == 67,
        )
        try:
            if self._open_socket is not None:
                kwargs["opened_socket"] = self._open_socket(self.interface)
            else:
                kwargs["iface"] = self.interface
            self._sniffer = AsyncSniffer(**kwargs)
            self._sniffer.start()
        except Exception as e:  # scapy raises OSError, Scapy_Exception...
            self.error = str(e) or e.__class__.__name__
            self._sniffer = None
            self.log.error(
                "Cannot sniff DHCP on {interface} ({error}); DHCP diagnosis is off",
                interface=self.interface,
                error=self.error,
            )
            return
        self.log.info("Recording DHCP requests seen on {interface}", interface=self.interface)

    def stopService(self):
        super().stopService()
        sniffer, self._sniffer = self._sniffer, None
        if sniffer is None:
            return None
        # stop() joins the sniffer thread: not in the reactor thread, and not for longer than the grace.
        d = threads.call_in_own_thread(self._reactor, sniffer.stop, name="dhcp-sniffer-join")
        d.addErrback(lambda f: self.log.failure("Stopping the DHCP sniffer failed", f))
        return threads.bounded(d, threads.STOP_GRACE, self._reactor, on_timeout=self._late)

    def _late(self):
        self.log.warn("The DHCP sniffer on {interface} did not stop within {grace} s; not waiting for it",
                      interface=self.interface, grace=threads.STOP_GRACE)
