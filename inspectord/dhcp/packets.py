"""DHCP packets built and parsed with scapy (pure functions, no sockets).

scapy is imported only where DHCP is handled (the builtin server, the
sniffer, the prober), and then only the layers used: ``scapy.all`` costs
about 58 MB and a second or two.  Services call :func:`preload` when they
start, so the import never stalls the first packet.
"""

import dataclasses
import types

MESSAGE_TYPES = {
    1: "discover",
    2: "offer",
    3: "request",
    4: "decline",
    5: "ack",
    6: "nak",
    7: "release",
    8: "inform",
}


_layers = []


def _scapy():
    if not _layers:
        from scapy.layers.dhcp import BOOTP, DHCP
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether

        _layers.append(types.SimpleNamespace(BOOTP=BOOTP, DHCP=DHCP, IP=IP, UDP=UDP, Ether=Ether))
    return _layers[0]


def preload():
    """Import scapy's DHCP layers now (at service start), not on the first packet."""
    _scapy()


def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def discover(mac, xid, arch=None):
    """A broadcast DHCPDISCOVER from ``mac`` (Ethernet source and chaddr).

    :param arch: client system architecture (option 93: 0 BIOS, 7 UEFI
        x86-64, 11 UEFI ARM64), as PXE firmware sends it; None leaves it out.
    """
    s = _scapy()
    options = [("message-type", "discover"), ("param_req_list", [1, 3, 6, 66, 67])]
    if arch is not None:
        # As PXE firmware does: the architecture, and the vendor class naming it.
        options.append(("pxe_client_architecture", arch.to_bytes(2, "big")))
        options.append(("vendor_class_id", "PXEClient:Arch:{:05d}:UNDI:003016".format(arch).encode("ascii")))
    options.append("end")
    return (
        s.Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
        / s.IP(src="0.0.0.0", dst="255.255.255.255")
        / s.UDP(sport=68, dport=67)
        / s.BOOTP(chaddr=mac_bytes(mac) + b"\0" * 10, xid=xid, flags=0x8000)
        / s.DHCP(options=options)
    )


def options(packet):
    """``{name: value}`` of a packet's DHCP options."""
    s = _scapy()
    found = {}
    for option in packet[s.DHCP].options:
        if isinstance(option, tuple) and len(option) >= 2:
            found[option[0]] = option[1] if len(option) == 2 else option[1:]
    return found


def parse(packet):
    """``{"mac", "op", "type", "xid", "yiaddr", "server", "siaddr", "file"}`` of a DHCP packet, or None."""
    s = _scapy()
    if not packet.haslayer(s.BOOTP) or not packet.haslayer(s.DHCP):
        return None
    bootp = packet[s.BOOTP]
    opts = options(packet)
    kind = opts.get("message-type")
    return {
        "mac": ":".join("{:02x}".format(b) for b in bytes(bootp.chaddr)[:6]),
        "op": bootp.op,
        "type": MESSAGE_TYPES.get(kind, kind),
        "xid": bootp.xid,
        "yiaddr": bootp.yiaddr,
        "siaddr": bootp.siaddr,
        "server": opts.get("server_id"),
        "file": bytes(bootp.file).rstrip(b"\0").decode("ascii", "replace"),
    }


# -- the server side: requests in, replies out (UDP payloads, no Ethernet/IP) --

#: Client system architectures (option 93, RFC 4578) inspectord tells apart.
ARCH_BIOS = 0
ARCH_UEFI_X86_64 = (7, 9)
ARCH_UEFI_ARM64 = (11,)


@dataclasses.dataclass(frozen=True)
class Request:
    """What a DHCP server needs of a client's message."""

    mac: str
    xid: int
    kind: str
    flags: int = 0
    ciaddr: str = "0.0.0.0"
    giaddr: str = "0.0.0.0"
    requested_ip: str = None
    server_id: str = None
    arch: int = None
    ipxe: bool = False
    pxe: bool = False


def _raw(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("latin-1")
    if isinstance(value, (list, tuple)):
        return b"".join(_raw(v) for v in value)
    return bytes(value)


def parse_request(payload):
    """A :class:`Request` from a UDP payload sent to port 67, or None if it is not one."""
    s = _scapy()
    try:
        bootp = s.BOOTP(payload)
    except Exception:  # scapy raises many types on garbage
        return None
    if bootp.op != 1 or bootp.htype != 1 or bootp.hlen != 6 or not bootp.haslayer(s.DHCP):
        return None
    opts = options(bootp)
    kind = MESSAGE_TYPES.get(opts.get("message-type"))
    if kind is None:
        return None
    arch = opts.get("pxe_client_architecture")
    if arch is not None:
        raw = _raw(arch)
        arch = int.from_bytes(raw[:2], "big") if len(raw) >= 2 else None
    user_class = _raw(opts.get("user_class", b""))
    vendor = _raw(opts.get("vendor_class_id", b""))
    return Request(
        mac=":".join("{:02x}".format(b) for b in bytes(bootp.chaddr)[:6]),
        xid=bootp.xid,
        kind=kind,
        flags=bootp.flags,
        ciaddr=bootp.ciaddr,
        giaddr=bootp.giaddr,
        requested_ip=opts.get("requested_addr"),
        server_id=opts.get("server_id"),
        arch=arch,
        ipxe=b"iPXE" in user_class or 175 in opts,
        pxe=vendor.startswith(b"PXEClient"),
    )


@dataclasses.dataclass(frozen=True)
class Reply:
    """What to answer: filled in by :mod:`inspectord.dhcp.server`, encoded by :func:`build_reply`."""

    kind: str
    yiaddr: str = "0.0.0.0"
    siaddr: str = "0.0.0.0"
    server_id: str = None
    boot_file: str = ""
    lease_time: int = None
    netmask: str = None
    router: str = None
    dns: tuple = ()
    pxe_client: bool = False


def build_reply(request, reply):
    """The UDP payload answering ``request`` with ``reply``."""
    s = _scapy()
    opts = [("message-type", reply.kind)]
    if reply.server_id:
        opts.append(("server_id", reply.server_id))
    if reply.lease_time is not None:
        opts += [
            ("lease_time", reply.lease_time),
            ("renewal_time", reply.lease_time // 2),
            ("rebinding_time", reply.lease_time * 7 // 8),
        ]
    if reply.netmask:
        opts.append(("subnet_mask", reply.netmask))
    if reply.router:
        opts.append(("router", reply.router))
    if reply.dns:
        opts.append(("name_server",) + tuple(reply.dns))
    if reply.boot_file:
        opts.append(("boot-file-name", reply.boot_file.encode("ascii")))
    if reply.pxe_client:
        # ProxyDHCP: "PXEClient", and PXE_DISCOVERY_CONTROL=8 (boot the file given, no boot server discovery).
        opts += [("vendor_class_id", b"PXEClient"), ("vendor_specific", b"\x06\x01\x08\xff")]
    opts.append("end")
    packet = s.BOOTP(
        op=2,
        xid=request.xid,
        flags=request.flags,
        ciaddr=request.ciaddr,
        yiaddr=reply.yiaddr,
        siaddr=reply.siaddr,
        giaddr=request.giaddr,
        chaddr=mac_bytes(request.mac) + b"\0" * 10,
        file=reply.boot_file.encode("ascii")[:127],
    ) / s.DHCP(options=opts)
    return bytes(packet)
