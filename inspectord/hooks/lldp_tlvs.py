"""LLDP TLVs (IEEE 802.1AB, 802.1Q annex D, 802.3 clause 79) to name/value pairs.

The ramdisk sends each interface's LLDP TLVs as ``[[type, "hex value"], ...]``
(ironic-python-agent's ``lldp`` collector).  :func:`parse` turns them into the
``lldp_processed`` dictionary ironic-inspector's ``lldp_basic`` hook builds,
with the same names and value formats, so introspection rules and tools
reading ``lldp_processed`` keep working.  Pure functions, no I/O.

As ironic-inspector: the first TLV of a kind wins, Management Address, VLAN
Name, Port and Protocol VLAN and Protocol Identity TLVs accumulate in lists,
a TLV that cannot be decoded is skipped with a warning.  Unlike it, a TLV
with an unknown chassis or port ID subtype, or a value that is not
hexadecimal, is skipped instead of failing the whole introspection, and the
``10BASE-T fdx`` capability is read from its own bit.
"""

import binascii
import ipaddress
import struct

# TLV types
END_LLDPPDU = 0
CHASSIS_ID = 1
PORT_ID = 2
TTL = 3
PORT_DESCRIPTION = 4
SYSTEM_NAME = 5
SYSTEM_DESCRIPTION = 6
SYSTEM_CAPABILITIES = 7
MANAGEMENT_ADDRESS = 8
ORGANIZATIONALLY_SPECIFIC = 127

OUI_802_1 = "0080c2"
OUI_802_3 = "00120f"

# Names in lldp_processed (ironic-inspector's).
CHASSIS_ID_NM = "switch_chassis_id"
PORT_ID_NM = "switch_port_id"
PORT_DESC_NM = "switch_port_description"
SYS_NAME_NM = "switch_system_name"
SYS_DESC_NM = "switch_system_description"
CAP_SUPPORT_NM = "switch_capabilities_support"
CAP_ENABLED_NM = "switch_capabilities_enabled"
MGMT_ADDRESSES_NM = "switch_mgmt_addresses"
PORT_VLANID_NM = "switch_port_untagged_vlan_id"
PORT_PROT_VLAN_ENABLED_NM = "switch_port_protocol_vlan_enabled"
PORT_PROT_VLAN_SUPPORT_NM = "switch_port_protocol_vlan_support"
PORT_PROT_VLANIDS_NM = "switch_port_protocol_vlan_ids"
PORT_VLANS_NM = "switch_port_vlans"
PROTOCOL_IDENTITIES_NM = "switch_protocol_identities"
PORT_MGMT_VLANID_NM = "switch_port_management_vlan_id"
PORT_LINK_AGG_ENABLED_NM = "switch_port_link_aggregation_enabled"
PORT_LINK_AGG_SUPPORT_NM = "switch_port_link_aggregation_support"
PORT_LINK_AGG_ID_NM = "switch_port_link_aggregation_id"
PORT_AUTONEG_ENABLED_NM = "switch_port_autonegotiation_enabled"
PORT_AUTONEG_SUPPORT_NM = "switch_port_autonegotiation_support"
PORT_CAPABILITIES_NM = "switch_port_physical_capabilities"
PORT_MAU_TYPE_NM = "switch_port_mau_type"
MTU_NM = "switch_port_mtu"

# System capabilities, least significant bit first (bit 0, "other", is not reported).
SYSTEM_CAPABILITY_BITS = (
    (1, "Repeater"),
    (2, "Bridge"),
    (3, "WLAN"),
    (4, "Router"),
    (5, "Telephone"),
    (6, "DOCSIS cable device"),
    (7, "Station only"),
    (8, "C-Vlan"),
    (9, "S-Vlan"),
    (10, "TPMR"),
)

# PMD auto-negotiation advertised capability (RFC 4836 IANAifMauAutoNegCapBits):
# bit numbers count from the most significant bit of the 16-bit field.
PMD_CAPABILITY_BITS = (
    (1, "10BASE-T hdx"),
    (2, "10BASE-T fdx"),
    (3, "10BASE-T4"),
    (4, "100BASE-TX hdx"),
    (5, "100BASE-TX fdx"),
    (6, "100BASE-T2 hdx"),
    (7, "100BASE-T2 fdx"),
    (8, "PAUSE fdx"),
    (9, "Asym PAUSE fdx"),
    (10, "Sym PAUSE fdx"),
    (11, "Asym and Sym PAUSE fdx"),
    (12, "1000BASE-X hdx"),
    (13, "1000BASE-X fdx"),
    (14, "1000BASE-T hdx"),
    (15, "1000BASE-T fdx"),
)

# Operational MAU types (RFC 4836 ifMauTypeList), as ironic-inspector knows them.
OPER_MAU_TYPES = dict(
    enumerate(
        (
            "Unknown", "AUI", "10BASE-5", "FOIRL", "10BASE-2", "10BASE-T duplex mode unknown",
            "10BASE-FP", "10BASE-FB", "10BASE-FL duplex mode unknown", "10BROAD36",
            "10BASE-T half duplex", "10BASE-T full duplex", "10BASE-FL half duplex",
            "10BASE-FL full duplex", "100 BASE-T4", "100BASE-TX half duplex", "100BASE-TX full duplex",
            "100BASE-FX half duplex", "100BASE-FX full duplex", "100BASE-T2 half duplex",
            "100BASE-T2 full duplex", "1000BASE-X half duplex", "1000BASE-X full duplex",
            "1000BASE-LX half duplex", "1000BASE-LX full duplex", "1000BASE-SX half duplex",
            "1000BASE-SX full duplex", "1000BASE-CX half duplex", "1000BASE-CX full duplex",
            "1000BASE-T half duplex", "1000BASE-T full duplex", "10GBASE-X", "10GBASE-LX4",
            "10GBASE-R", "10GBASE-ER", "10GBASE-LR", "10GBASE-SR", "10GBASE-W", "10GBASE-EW",
            "10GBASE-LW", "10GBASE-SW", "10GBASE-CX4", "2BASE-TL", "10PASS-TS", "100BASE-BX10D",
            "100BASE-BX10U", "100BASE-LX10", "1000BASE-BX10D", "1000BASE-BX10U", "1000BASE-LX10",
            "1000BASE-PX10D", "1000BASE-PX10U", "1000BASE-PX20D", "1000BASE-PX20U",
        )
    )
)


class TLVError(ValueError):
    """A TLV that cannot be decoded; it is skipped."""


def _take(data, size, what):
    if len(data) < size:
        raise TLVError("{}: expected {} byte(s), got {}".format(what, size, len(data)))
    return data[:size]


def _exact(data, size, what):
    if len(data) != size:
        raise TLVError("{}: expected length {}, got {}".format(what, size, len(data)))
    return data


def _u16(data, what):
    return struct.unpack("!H", _take(data, 2, what))[0]


def _text(data):
    return bytes(data).decode("utf-8")


def mac_text(data):
    return ":".join("{:02x}".format(b) for b in _take(data, 6, "MAC address"))


# IANA address families (RFC 3232): what each decodes to.
_FAMILIES = {
    1: (4, lambda b: str(ipaddress.IPv4Address(bytes(b)))),
    2: (16, lambda b: str(ipaddress.IPv6Address(bytes(b)))),
    6: (6, mac_text),
}


def _address(family, data):
    """An IANA-family address as text; None for a family without a decoder."""
    if family not in _FAMILIES:
        return None
    size, decode = _FAMILIES[family]
    return decode(_take(data, size, "address of family {}".format(family)))


def _chassis_id(data):
    subtype = _take(data, 1, "chassis ID subtype")[0]
    value = data[1:]
    if subtype in (1, 2, 3, 6, 7):  # chassis component, interface alias, port component, name, local
        return _text(value)
    if subtype == 4:
        return mac_text(value)
    if subtype == 5:
        return _address(_take(value, 1, "address family")[0], value[1:])
    raise TLVError("unknown chassis ID subtype {}".format(subtype))


def _port_id(data):
    subtype = _take(data, 1, "port ID subtype")[0]
    value = data[1:]
    if subtype in (1, 2, 5, 7):  # interface alias, port component, interface name, local
        return _text(value)
    if subtype == 3:
        return mac_text(value)
    if subtype == 4:
        return _address(_take(value, 1, "address family")[0], value[1:])
    raise TLVError("unknown port ID subtype {}".format(subtype))


def _bits(value, table, width):
    return [name for bit, name in table if value >> (width - 1 - bit if width else bit) & 1]


class Parser:
    """Collects name/value pairs from TLVs; the first value of a name wins.

    :param warn: called with a message for each TLV skipped.
    """

    def __init__(self, warn=None):
        self.values = {}
        self._warn = warn or (lambda message: None)

    def set(self, name, value):
        if value is not None:
            self.values.setdefault(name, value)

    def append(self, name, value):
        self.values.setdefault(name, []).append(value)

    def parse(self, tlvs):
        """Parse ``[[type, hex], ...]``; the values found (``lldp_processed``)."""
        for entry in tlvs or []:
            try:
                tlv_type, hex_value = entry
                data = binascii.a2b_hex(hex_value)
            except (TypeError, ValueError) as e:
                self._warn("LLDP TLV {!r} is not [type, hexadecimal value]: {}".format(entry, e))
                continue
            try:
                self.tlv(tlv_type, data)
            except (TLVError, UnicodeDecodeError, struct.error, ValueError) as e:
                self._warn("LLDP TLV type {} skipped: {}".format(tlv_type, e))
        return self.values

    def tlv(self, tlv_type, data):
        """Handle one TLV; False when its type is not known."""
        handler = {
            CHASSIS_ID: lambda d: self.set(CHASSIS_ID_NM, _chassis_id(d)),
            PORT_ID: lambda d: self.set(PORT_ID_NM, _port_id(d)),
            TTL: lambda d: None,
            PORT_DESCRIPTION: lambda d: self.set(PORT_DESC_NM, _text(d)),
            SYSTEM_NAME: lambda d: self.set(SYS_NAME_NM, _text(d)),
            SYSTEM_DESCRIPTION: lambda d: self.set(SYS_DESC_NM, _text(d)),
            SYSTEM_CAPABILITIES: self._capabilities,
            MANAGEMENT_ADDRESS: self._management_address,
            ORGANIZATIONALLY_SPECIFIC: self._organizationally_specific,
            END_LLDPPDU: lambda d: None,
        }.get(tlv_type)
        if handler is None:
            return False
        handler(data)
        return True

    def _capabilities(self, data):
        _exact(data, 4, "system capabilities")
        system, enabled = struct.unpack("!HH", data)
        self.set(CAP_SUPPORT_NM, _bits(system, SYSTEM_CAPABILITY_BITS, 0))
        self.set(CAP_ENABLED_NM, _bits(enabled, SYSTEM_CAPABILITY_BITS, 0))

    def _management_address(self, data):
        # Address string length, then the family and the address; the
        # interface numbering and OID that follow are not reported.
        _take(data, 2, "management address")
        address = _address(data[1], data[2:])
        if address:
            self.append(MGMT_ADDRESSES_NM, address)

    def _organizationally_specific(self, data):
        header = _take(data, 4, "organizationally specific TLV")
        oui, subtype, value = header[:3].hex(), header[3], data[4:]
        if oui == OUI_802_1:
            self._dot1(subtype, value)
        elif oui == OUI_802_3:
            self._dot3(subtype, value)
        else:
            raise TLVError("organizationally unique ID {} not recognized".format(oui))

    def _link_aggregation(self, data):
        _exact(data, 5, "link aggregation")
        status, port = struct.unpack("!BI", data)
        self.set(PORT_LINK_AGG_ENABLED_NM, bool(status & 0x02))
        self.set(PORT_LINK_AGG_SUPPORT_NM, bool(status & 0x01))
        self.set(PORT_LINK_AGG_ID_NM, port)

    def _dot1(self, subtype, data):
        if subtype == 1:
            self.set(PORT_VLANID_NM, _u16(data, "port VLAN ID"))
        elif subtype == 2:
            _exact(data, 3, "port and protocol VLAN ID")
            flags, vlan = struct.unpack("!BH", data)
            self.set(PORT_PROT_VLAN_ENABLED_NM, bool(flags & 0x04))
            self.set(PORT_PROT_VLAN_SUPPORT_NM, bool(flags & 0x02))
            self.append(PORT_PROT_VLANIDS_NM, vlan)
        elif subtype == 3:
            vlan = _u16(data, "VLAN ID")
            length = _take(data[2:], 1, "VLAN name length")[0]
            name = _text(_take(data[3:], length, "VLAN name")).rstrip("\x00")
            self.append(PORT_VLANS_NM, {"name": name, "id": vlan})
        elif subtype == 4:
            length = _take(data, 1, "protocol identity length")[0]
            self.append(PROTOCOL_IDENTITIES_NM, _take(data[1:], length, "protocol identity").hex())
        elif subtype == 6:
            self.set(PORT_MGMT_VLANID_NM, _u16(data, "management VLAN ID"))
        elif subtype == 7:
            self._link_aggregation(data)

    def _dot3(self, subtype, data):
        if subtype == 1:
            _exact(data, 5, "MAC/PHY configuration/status")
            autoneg, pmd, mau = struct.unpack("!BHH", data)
            if mau not in OPER_MAU_TYPES:
                raise TLVError("unknown operational MAU type {}".format(mau))
            self.set(PORT_AUTONEG_ENABLED_NM, bool(autoneg & 0x02))
            self.set(PORT_AUTONEG_SUPPORT_NM, bool(autoneg & 0x01))
            self.set(PORT_CAPABILITIES_NM, sorted(_bits(pmd, PMD_CAPABILITY_BITS, 16)))
            self.set(PORT_MAU_TYPE_NM, OPER_MAU_TYPES[mau])
        elif subtype == 3:
            self._link_aggregation(data)
        elif subtype == 4:
            self.set(MTU_NM, _u16(data, "maximum frame size"))


def parse(tlvs, warn=None):
    """``lldp_processed`` for one interface's ``[[type, hex], ...]``."""
    return Parser(warn).parse(tlvs)


def chassis_id(data):
    """The value of a raw Chassis ID TLV and whether it is a MAC address."""
    return _chassis_id(data), _take(data, 1, "chassis ID subtype")[0] == 4


def port_id(data):
    """The value of a raw Port ID TLV."""
    return _port_id(data)
