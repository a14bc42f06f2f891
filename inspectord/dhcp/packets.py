"""DHCP packets built and parsed with scapy (pure functions, no sockets).

scapy is imported lazily: it takes a second or two to import and only the
prober (and, later, the sniffer and responder) need it.
"""

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


def _scapy():
    from scapy import all as scapy  # noqa: import late, see the module docstring

    return scapy


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
        options.append(("pxe_client_architecture", arch.to_bytes(2, "big")))
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
