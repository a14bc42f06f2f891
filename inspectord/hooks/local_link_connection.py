"""The local_link_connection hook: where each port is plugged in, from LLDP."""

import binascii

from twisted.logger import Logger

from inspectord.hooks import lldp_tlvs
from inspectord.hooks.lldp_basic import interface_tlvs
from inspectord.processing.hooks import ProcessingHook, interfaces_with_ports, processing_hook

# lldp_processed name -> local_link_connection key
_FROM_PROCESSED = (
    (lldp_tlvs.CHASSIS_ID_NM, "switch_id"),
    (lldp_tlvs.PORT_ID_NM, "port_id"),
    (lldp_tlvs.SYS_NAME_NM, "switch_info"),
)


def _is_mac(value):
    parts = value.split(":") if isinstance(value, str) else []
    return len(parts) == 6 and all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts)


def from_raw(tlvs, warn):
    """``{switch_id, port_id, switch_info}`` read from raw TLVs (the first of each)."""
    found = {}
    for entry in tlvs or []:
        try:
            tlv_type, hex_value = entry
            data = binascii.a2b_hex(hex_value)
        except (TypeError, ValueError) as e:
            warn("LLDP TLV {!r} is not [type, hexadecimal value]: {}".format(entry, e))
            continue
        try:
            if tlv_type == lldp_tlvs.PORT_ID:
                found.setdefault("port_id", lldp_tlvs.port_id(data))
            elif tlv_type == lldp_tlvs.CHASSIS_ID:
                value, is_mac = lldp_tlvs.chassis_id(data)
                if is_mac:  # only a MAC identifies the switch
                    found.setdefault("switch_id", value)
            elif tlv_type == lldp_tlvs.SYSTEM_NAME:
                found.setdefault("switch_info", bytes(data).decode("utf-8"))
        except (lldp_tlvs.TLVError, UnicodeDecodeError, ValueError) as e:
            warn("LLDP TLV type {} skipped: {}".format(tlv_type, e))
    return {k: v for k, v in found.items() if v}


def acceptable(llc):
    """Whether Ironic's port schema accepts ``llc`` as a ``local_link_connection``.

    ``port_id`` with ``switch_id`` (or a smart NIC's ``hostname``), or an
    unmanaged network; LLDP without a MAC chassis ID gives a ``port_id``
    alone, which Ironic refuses (and with it the whole port update).
    """
    if not llc or llc.get("network_type") == "unmanaged":
        return True
    return "port_id" in llc and ("switch_id" in llc or "hostname" in llc)


@processing_hook
class LocalLinkConnectionHook(ProcessingHook):
    """Set ``local_link_connection`` (switch_id, port_id, switch_info) of ports from LLDP.

    Uses ``lldp_processed`` when lldp_basic ran before, else the raw TLVs.
    ``switch_id`` is only set from a MAC chassis ID; ``switch_info`` is the
    switch's system name (an addition to ironic-inspector, which sets only
    the first two).  A port whose result Ironic would refuse (a ``port_id``
    without ``switch_id``: LLDP without a MAC chassis ID) is left alone,
    with a warning naming it.  Existing values are kept unless
    ``[processing]overwrite_existing``; unchanged values are not sent.
    Changes join the port's creation request or its one PATCH.
    """

    name = "local_link_connection"
    dependencies = ("validate_interfaces",)
    log = Logger()

    def before_update(self, data, node):
        all_interfaces = data.get("all_interfaces") or {}
        overwrite = self.config.processing.overwrite_existing
        for iface, name, mac, port in interfaces_with_ports(data, node):
            if port is None:
                self.log.debug("Node {node}: no port for interface {iface} ({mac}), skipped",
                               node=node.uuid, iface=name, mac=mac)
                continue
            tlvs = interface_tlvs(data, iface)
            if tlvs is None:
                self.log.warn("Node {node}: no LLDP data found for interface {iface}", node=node.uuid, iface=name)
                continue

            def warn(message, name=name):
                self.log.warn("Node {node}, interface {iface}: {message}", node=node.uuid, iface=name,
                              message=message)

            values = self._from_processed(all_interfaces[name].get("lldp_processed"), node, name)
            if not values:
                values = from_raw(tlvs, warn)
            current = port.get("local_link_connection") or {}
            changes = {
                key: value for key, value in values.items()
                if current.get(key) != value and (overwrite or key not in current)
            }
            if not changes:
                continue
            if not acceptable(dict(current, **changes)):
                self.log.warn(
                    "Node {node}: port {mac} (interface {iface}): LLDP gave {keys} but no switch chassis MAC; "
                    "Ironic needs switch_id with port_id, local_link_connection left as it is",
                    node=node.uuid, mac=mac, iface=name, keys=", ".join(sorted(values)),
                )
                continue
            node.patch_port(mac, [
                {"op": "add", "path": "/local_link_connection/" + key, "value": value}
                for key, value in sorted(changes.items())
            ])

    def _from_processed(self, processed, node, iface):
        values = {}
        for source, key in _FROM_PROCESSED:
            value = (processed or {}).get(source)
            if not value:
                continue
            if key == "switch_id" and not _is_mac(value):
                self.log.info("Node {node}, interface {iface}: switch chassis ID {value} is not a MAC, "
                              "switch_id not set", node=node.uuid, iface=iface, value=value)
                continue
            values[key] = value
        return values
