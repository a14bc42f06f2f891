"""The lldp_basic hook: raw LLDP TLVs into ``lldp_processed``."""

from twisted.logger import Logger

from inspectord.hooks import lldp_tlvs
from inspectord.processing.hooks import ProcessingHook, get_inventory, processing_hook


def interface_tlvs(data, iface):
    """An interface's raw TLVs: ``lldp_raw[name]`` (older ramdisks) or the inventory's ``lldp``."""
    return (data.get("lldp_raw") or {}).get(iface.get("name")) or iface.get("lldp")


@processing_hook
class LLDPBasicHook(ProcessingHook):
    """Parse the basic management, 802.1 and 802.3 TLVs of every interface.

    The result goes to ``all_interfaces[name]["lldp_processed"]`` (names like
    ``switch_chassis_id``, ``switch_port_id``, ``switch_system_name``,
    ``switch_port_vlans``, ``switch_port_mtu``,
    ``switch_port_link_aggregation_enabled``), where introspection rules and
    the local_link_connection hook find it.  Interfaces that
    validate_interfaces did not keep (no valid MAC) are skipped.
    """

    name = "lldp_basic"
    log = Logger()

    def before_update(self, data, node):
        all_interfaces = data.get("all_interfaces") or {}
        for iface in get_inventory(data)["interfaces"]:
            name = iface.get("name")
            tlvs = interface_tlvs(data, iface)
            if tlvs is None:
                self.log.warn("Node {node}: no LLDP data found for interface {iface}", node=node.uuid, iface=name)
                continue
            if name not in all_interfaces:
                self.log.debug("Node {node}: interface {iface} has no valid MAC, LLDP data skipped",
                               node=node.uuid, iface=name)
                continue

            def warn(message, name=name):
                self.log.warn("Node {node}, interface {iface}: {message}", node=node.uuid, iface=name,
                              message=message)

            values = lldp_tlvs.parse(tlvs, warn)
            if values:
                all_interfaces[name]["lldp_processed"] = values
