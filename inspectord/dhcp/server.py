"""inspectord's own DHCP / ProxyDHCP server, answering only machines the PXE filter allows.

* :class:`Leases`: the address pool, in memory, written through to the
  store so leases survive a restart.
* :class:`DHCPResponder`: request in, reply (or silence) out; no I/O.
* :class:`DHCPProtocol`: a Twisted UDP protocol on port 67 of one
  interface (``SO_BINDTODEVICE``: a UDP socket broadcasts on the interface
  it is bound to).

In ``dhcp`` mode it leases addresses from a range and gives the boot file
by client architecture (option 93: BIOS, UEFI x86-64, UEFI ARM64; iPXE,
recognised by its user class, gets ``ipxe_boot_file``, usually a script
URL).  In ``proxy`` mode it runs beside an existing DHCP server: it answers
PXE clients' DISCOVERs with an offer that carries only the boot
information (no address), as ProxyDHCP (PXE 2.1) does.
"""

import dataclasses
import ipaddress
import socket

from twisted.internet import protocol
from twisted.logger import Logger

from inspectord.dhcp import packets

#: Seconds an offered address is held for the client that was offered it.
OFFER_HOLD = 60


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    server_address: str
    mode: str = "dhcp"
    range_start: str = None
    range_end: str = None
    netmask: str = "255.255.255.0"
    router: str = None
    dns_servers: tuple = ()
    lease_time: int = 600
    next_server: str = None
    bios_boot_file: str = "undionly.kpxe"
    uefi_boot_file: str = "snponly.efi"
    arm64_boot_file: str = "snponly-arm64.efi"
    ipxe_boot_file: str = "inspector.ipxe"

    def __post_init__(self):
        ipaddress.IPv4Address(self.server_address)
        if self.mode not in ("dhcp", "proxy"):
            raise ValueError("mode must be dhcp or proxy, not {!r}".format(self.mode))
        if self.mode == "dhcp":
            start, end = ipaddress.IPv4Address(self.range_start), ipaddress.IPv4Address(self.range_end)
            if end < start:
                raise ValueError("range_end {} is before range_start {}".format(end, start))

    @property
    def siaddr(self):
        return self.next_server or self.server_address


def boot_file(request, options):
    """The boot file for the client: iPXE first, then by architecture."""
    if request.ipxe:
        return options.ipxe_boot_file
    if request.arch in packets.ARCH_UEFI_X86_64:
        return options.uefi_boot_file
    if request.arch in packets.ARCH_UEFI_ARM64:
        return options.arm64_boot_file
    return options.bios_boot_file


class Leases:
    """The address pool.

    :param leases: ``{mac: (ip, expires)}`` read from the store.
    :param persist: ``persist(mac, ip, expires)`` called when a lease is
        granted (ACK), to write it to the store.
    """

    def __init__(self, start, end, lease_time, leases=None, persist=None):
        self._start = int(ipaddress.IPv4Address(start))
        self._end = int(ipaddress.IPv4Address(end))
        self.lease_time = lease_time
        self.by_mac = dict(leases or {})
        self._persist = persist

    def _in_range(self, ip):
        try:
            return self._start <= int(ipaddress.IPv4Address(ip)) <= self._end
        except ValueError:
            return False

    def _holder(self, ip, now):
        for mac, (held, expires) in self.by_mac.items():
            if held == ip and expires > now:
                return mac
        return None

    def offer(self, mac, now, requested=None):
        """An address for ``mac`` (held OFFER_HOLD seconds), or None when the pool is exhausted."""
        current = self.by_mac.get(mac)
        candidates = []
        if current is not None:
            candidates.append(current[0])
        if requested:
            candidates.append(requested)
        for ip in candidates:
            if self._in_range(ip) and self._holder(ip, now) in (None, mac):
                break
        else:
            taken = {held for m, (held, expires) in self.by_mac.items() if expires > now and m != mac}
            for value in range(self._start, self._end + 1):
                ip = str(ipaddress.IPv4Address(value))
                if ip not in taken:
                    break
            else:
                return None
        expires = max(now + OFFER_HOLD, current[1] if current and current[0] == ip else 0)
        self.by_mac[mac] = (ip, expires)
        return ip

    def grant(self, mac, ip, now):
        """Lease ``ip`` to ``mac`` if it may have it; True if granted."""
        if not self._in_range(ip) or self._holder(ip, now) not in (None, mac):
            return False
        expires = now + self.lease_time
        self.by_mac[mac] = (ip, expires)
        if self._persist is not None:
            self._persist(mac, ip, expires)
        return True

    def release(self, mac):
        self.by_mac.pop(mac, None)


class DHCPResponder:
    """Decides the reply to each request.

    :param allows: ``allows(mac) -> bool``: the PXE filter's verdict.
    :param seen: ``seen(mac, kind, allowed)`` for every request (diagnosis).
    """

    log = Logger()

    def __init__(self, options, leases, allows, clock, seen=None):
        self.options = options
        self.leases = leases
        self._allows = allows
        self._clock = clock
        self._seen = seen

    def handle(self, request):
        allowed = self._allows(request.mac)
        if self._seen is not None:
            self._seen(request.mac, request.kind, allowed)
        if not allowed:
            return None
        if self.options.mode == "proxy":
            return self._proxy(request)
        return self._dhcp(request)

    def _proxy(self, request):
        if request.kind != "discover" or not (request.pxe or request.ipxe):
            return None
        o = self.options
        return packets.Reply(
            kind="offer", siaddr=o.siaddr, server_id=o.server_address, boot_file=boot_file(request, o), pxe_client=True
        )

    def _reply(self, kind, request, ip):
        o = self.options
        return packets.Reply(
            kind=kind,
            yiaddr=ip,
            siaddr=o.siaddr,
            server_id=o.server_address,
            boot_file=boot_file(request, o),
            lease_time=o.lease_time,
            netmask=o.netmask,
            router=o.router,
            dns=tuple(o.dns_servers),
            pxe_client=request.pxe,
        )

    def _dhcp(self, request):
        now = self._clock.seconds()
        o = self.options
        if request.kind == "discover":
            ip = self.leases.offer(request.mac, now, request.requested_ip)
            if ip is None:
                self.log.warn("DHCP pool exhausted: no address for {mac}", mac=request.mac)
                return None
            return self._reply("offer", request, ip)
        if request.kind == "request":
            if request.server_id and request.server_id != o.server_address:
                self.leases.release(request.mac)  # it chose another server
                return None
            ip = request.requested_ip or (request.ciaddr if request.ciaddr != "0.0.0.0" else None)
            if ip and self.leases.grant(request.mac, ip, now):
                return self._reply("ack", request, ip)
            return packets.Reply(kind="nak", server_id=o.server_address)
        if request.kind in ("release", "decline"):
            self.leases.release(request.mac)
        return None


def open_socket(interface, port=67):
    """A non-blocking UDP socket on ``port`` that sends and receives on ``interface`` only."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode("ascii"))
        sock.bind(("0.0.0.0", port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class DHCPProtocol(protocol.DatagramProtocol):
    """Hands each datagram to the responder and sends its reply."""

    log = Logger()

    def __init__(self, responder):
        self.responder = responder

    def datagramReceived(self, data, addr):
        try:
            request = packets.parse_request(data)
            if request is None:
                return
            reply = self.responder.handle(request)
            if reply is None:
                return
            payload = packets.build_reply(request, reply)
        except Exception:
            self.log.failure("Cannot handle a DHCP packet from {addr}", addr=addr)
            return
        if request.giaddr != "0.0.0.0":
            destination = (request.giaddr, 67)
        else:
            destination = ("255.255.255.255", 68)
        self.transport.write(payload, destination)
